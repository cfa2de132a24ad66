//! What one connector may do: memory, deadlines, output caps, and the
//! outbound hosts it may reach with the headers the host adds for it.

use super::Usage;
use super::capability::outbound::OutboundGrant;
use super::capability::sql::SqlConnection;
use crate::config::{ConfigError, Manifest, SandboxDefaults};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The default `memory_budget_mb`, in calls of `memory_mb` each.
pub const MEMORY_BUDGET_CALLS: u64 = 8;

/// The most `memory_budget_mb` may be (1 TiB).
pub const MAX_MEMORY_BUDGET_MB: u64 = 1 << 20;

/// The resolved sandbox of one connector.
#[derive(Debug)]
pub struct Sandbox {
    /// The source name, for logs.
    pub name: Arc<str>,
    /// The manifest's `[config]` table, read by the guest via `host.config`.
    pub config: Arc<BTreeMap<String, String>>,
    /// Linear-memory limit of one instance (all its memories), in bytes.
    pub memory_bytes: usize,
    /// Linear memory of all the source's live instances together, in bytes.
    pub memory_budget_bytes: usize,
    /// Deadline of `on-push` (wasm and host calls); `describe` has a fixed
    /// 5 s (`DESCRIBE_DEADLINE`).
    pub push_deadline: Duration,
    /// Deadline of `partitions` and `pull` (wasm and host calls).
    pub pull_deadline: Duration,
    /// Most events one call may return.
    pub max_events_per_call: u32,
    /// Most bytes one call may return (runtime/output.rs counts them).
    pub max_bytes_per_call: u64,
    /// Outbound requests one call may have in flight at once.
    pub max_outbound_requests: u32,
    /// Consecutive sandbox failures before quarantine; 0 never quarantines.
    pub quarantine_after: u32,
    /// First quarantine cool-down; doubles per repeated quarantine.
    pub quarantine_cooldown: Duration,
    /// `allowed_hosts` and `[[sandbox.inject]]` (capability/outbound.rs).
    pub(crate) outbound: Arc<OutboundGrant>,
    /// `[sandbox.sql.NAME]` grants, by NAME (capability/sql.rs).
    pub(crate) sql: Arc<BTreeMap<String, Arc<SqlConnection>>>,
    /// `[sandbox.secrets]` grants, by NAME (capability/mac.rs).
    pub(crate) secrets: Arc<super::capability::mac::Secrets>,
    /// What the source's calls used (kept by the registry per source).
    pub(crate) usage: Arc<Usage>,
}

impl Sandbox {
    /// Resolves a connector's sandbox from its manifest and the host
    /// defaults, reading injected secrets now so a missing one fails at load.
    pub fn resolve(
        name: &str,
        manifest: &Manifest,
        defaults: &SandboxDefaults,
        manifest_path: &Path,
        usage: Arc<Usage>,
    ) -> Result<Self, ConfigError> {
        let s = &manifest.sandbox;
        let outbound = OutboundGrant::resolve(s, manifest_path)?;
        let memory_mb = s.memory_mb.unwrap_or(defaults.memory_mb);
        if let Some(budget) = s.memory_budget_mb
            && !(memory_mb..=MAX_MEMORY_BUDGET_MB).contains(&budget)
        {
            return Err(ConfigError::invalid(
                manifest_path,
                "sandbox.memory_budget_mb",
                format!(
                    "use a value from memory_mb ({memory_mb}: one call must fit) to {MAX_MEMORY_BUDGET_MB}"
                ),
            ));
        }
        let push_deadline = s.push_deadline.unwrap_or(defaults.push_deadline);
        let pull_deadline = s.pull_deadline.unwrap_or(defaults.pull_deadline);
        // A connector that waits on a source needs room for the source and
        // the margin its waits leave before the deadline (runtime/wait.rs).
        if !outbound.is_empty() || !s.sql.is_empty() {
            for (key, deadline) in [
                ("sandbox.push_deadline", push_deadline),
                ("sandbox.pull_deadline", pull_deadline),
            ] {
                if deadline < super::MIN_SOURCE_DEADLINE {
                    return Err(ConfigError::invalid(
                        manifest_path,
                        key,
                        format!(
                            "{deadline:?} is too short for a connector that calls a source \
                             (`allowed_hosts` or `[sandbox.sql]`): a source wait ends at least \
                             {:?} before the deadline, so the deadline must be at least {:?}",
                            super::MARGIN_FLOOR,
                            super::MIN_SOURCE_DEADLINE
                        ),
                    ));
                }
            }
        }
        Ok(Sandbox {
            name: Arc::from(name),
            config: Arc::new(manifest.config.clone()),
            memory_bytes: (memory_mb as usize) << 20,
            memory_budget_bytes: (s
                .memory_budget_mb
                .unwrap_or(memory_mb.saturating_mul(MEMORY_BUDGET_CALLS))
                as usize)
                << 20,
            push_deadline,
            pull_deadline,
            max_events_per_call: s
                .max_events_per_call
                .unwrap_or(defaults.max_events_per_call),
            max_bytes_per_call: s.max_bytes_per_call.unwrap_or(defaults.max_bytes_per_call),
            max_outbound_requests: s
                .max_outbound_requests
                .unwrap_or(defaults.max_outbound_requests),
            quarantine_after: s.quarantine_after.unwrap_or(defaults.quarantine_after),
            quarantine_cooldown: s
                .quarantine_cooldown
                .unwrap_or(defaults.quarantine_cooldown),
            outbound: Arc::new(outbound),
            sql: Arc::new(SqlConnection::resolve_all(s, manifest_path)?),
            secrets: Arc::new(super::capability::mac::resolve(s, manifest_path)?),
            usage,
        })
    }

    /// A sandbox with the host defaults and no grants (for `inlet check`).
    pub fn isolated(name: &str, defaults: &SandboxDefaults) -> Self {
        Self::resolve(
            name,
            &Manifest::default(),
            defaults,
            Path::new("-"),
            Arc::default(),
        )
        .expect("the empty manifest resolves")
    }
}
