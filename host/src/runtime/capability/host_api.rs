//! The `host` interface: `log` (to tracing, under the connector's name,
//! truncated) and `config` (the manifest's `[config]` table, never a
//! secret).

use crate::runtime::bindings::{host_api, types};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Per-call state of the `host` interface: the connector it serves.
pub(crate) struct HostApi {
    pub(crate) connector: Arc<str>,
    /// The manifest's `[config]` table.
    pub(crate) config: Arc<BTreeMap<String, String>>,
}

impl types::Host for HostApi {}

impl host_api::Host for HostApi {
    fn log(&mut self, level: host_api::Level, message: String) {
        let connector = &*self.connector;
        let message = truncate(&message, 8 * 1024);
        match level {
            host_api::Level::Trace => {
                tracing::trace!(target: "inlet::guest", connector, "{message}")
            }
            host_api::Level::Debug => {
                tracing::debug!(target: "inlet::guest", connector, "{message}")
            }
            host_api::Level::Info => tracing::info!(target: "inlet::guest", connector, "{message}"),
            host_api::Level::Warn => tracing::warn!(target: "inlet::guest", connector, "{message}"),
            host_api::Level::Error => {
                tracing::error!(target: "inlet::guest", connector, "{message}")
            }
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
