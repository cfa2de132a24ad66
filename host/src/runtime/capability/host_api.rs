//! The `host` interface: `log` (to the call's log, runtime/log.rs) and
//! `config` (the manifest's `[config]` table, never a secret).

use crate::runtime::bindings::{host_api, types};
use crate::runtime::log::{CallLog, Level};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Per-call state of the `host` interface.
pub(crate) struct HostApi {
    /// The call's log and its budget.
    pub(crate) log: Arc<CallLog>,
    /// The manifest's `[config]` table.
    pub(crate) config: Arc<BTreeMap<String, String>>,
}

impl types::Host for HostApi {}

impl host_api::Host for HostApi {
    fn log(&mut self, level: host_api::Level, message: String) {
        let level = match level {
            host_api::Level::Trace => Level::Trace,
            host_api::Level::Debug => Level::Debug,
            host_api::Level::Info => Level::Info,
            host_api::Level::Warn => Level::Warn,
            host_api::Level::Error => Level::Error,
        };
        self.log.line(level, "log", message.as_bytes());
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}
