//! `inlet.toml`: the host's own settings. Every key is optional.

use super::{ConfigError, duration, parse_toml};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The host configuration (`inlet.toml`). Relative paths are resolved
/// against the directory that holds the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Address of the HTTP listener; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Directory scanned for `NAME.wasm` connectors and `NAME.toml` manifests.
    pub plugins_dir: PathBuf,
    /// Directory of the embedded store and the compiled-component cache.
    pub data_dir: PathBuf,
    /// Name of an environment variable; when it is set, every `/v1/*` route
    /// needs `Authorization: Bearer <its value>`.
    pub admin_token_env: Option<String>,
    /// Name of an environment variable; when it is set, `/metrics` needs
    /// `Authorization: Bearer <its value>` (a scraper's token, separate from
    /// the admin token).
    pub metrics_token_env: Option<String>,
    /// Global limits on the push and pull paths.
    pub limits: Limits,
    /// Sandbox defaults for every connector; manifests may override them.
    pub sandbox: SandboxDefaults,
    /// How often retention (`[stream]` in manifests) is applied and expired
    /// dedup marks are collected.
    #[serde(deserialize_with = "duration::deserialize")]
    pub compaction_interval: Duration,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            plugins_dir: PathBuf::from("plugins.d"),
            data_dir: PathBuf::from("data"),
            admin_token_env: None,
            metrics_token_env: None,
            limits: Limits::default(),
            sandbox: SandboxDefaults::default(),
            compaction_interval: Duration::from_secs(60),
        }
    }
}

/// `[limits]`: global limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted push body; larger ones get 413 without being read.
    pub max_body_bytes: u64,
    /// Concurrent push requests across all sources before 503.
    pub max_in_flight: u32,
    /// Concurrent pulls across all connectors.
    pub pull_workers: u32,
    /// How long a client may take to send its request headers; slower
    /// connections (slowloris) are closed.
    #[serde(deserialize_with = "duration::deserialize")]
    pub header_read_timeout: Duration,
    /// How long a client may take to send a push body (408 after that).
    #[serde(deserialize_with = "duration::deserialize")]
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_in_flight: 1024,
            pull_workers: 8,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// `[sandbox]`: defaults applied to every connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxDefaults {
    /// Linear-memory limit of one connector instance, in MiB.
    pub memory_mb: u64,
    /// Deadline of one `on-push` call, covering wasm execution and the host
    /// calls it waits on.
    #[serde(deserialize_with = "duration::deserialize")]
    pub push_deadline: Duration,
    /// Deadline of one `pull` call, including its outbound requests.
    #[serde(deserialize_with = "duration::deserialize")]
    pub pull_deadline: Duration,
    /// Most events one call may return; more fails the call, nothing stored.
    pub max_events_per_call: u32,
    /// Most payload bytes one call may return; more fails the call.
    pub max_bytes_per_call: u64,
    /// Consecutive sandbox failures (trap, deadline, memory, limit) after
    /// which a connector is quarantined; 0 never quarantines.
    pub quarantine_after: u32,
    /// First quarantine cool-down; it doubles with each quarantine that
    /// follows without a good call in between (at most one hour).
    #[serde(deserialize_with = "duration::deserialize")]
    pub quarantine_cooldown: Duration,
}

impl Default for SandboxDefaults {
    fn default() -> Self {
        SandboxDefaults {
            memory_mb: 64,
            push_deadline: Duration::from_secs(2),
            pull_deadline: Duration::from_secs(60),
            max_events_per_call: 10_000,
            max_bytes_per_call: 64 * 1024 * 1024,
            quarantine_after: 5,
            quarantine_cooldown: Duration::from_secs(30),
        }
    }
}

impl HostConfig {
    /// Reads `path`, resolving relative directories against its parent.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: HostConfig = parse_toml(path, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.plugins_dir = base.join(&config.plugins_dir);
        config.data_dir = base.join(&config.data_dir);
        config.validate(path)?;
        Ok(config)
    }

    /// Checks values serde cannot: zero limits and out-of-range sizes.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let fix = "use a number greater than 0";
        if self.limits.max_body_bytes == 0 {
            return Err(ConfigError::invalid(path, "limits.max_body_bytes", fix));
        }
        if self.limits.max_in_flight == 0 {
            return Err(ConfigError::invalid(path, "limits.max_in_flight", fix));
        }
        if self.limits.pull_workers == 0 {
            return Err(ConfigError::invalid(path, "limits.pull_workers", fix));
        }
        if self.sandbox.memory_mb == 0 || self.sandbox.memory_mb > 4096 {
            return Err(ConfigError::invalid(
                path,
                "sandbox.memory_mb",
                "use a value from 1 to 4096 (MiB)",
            ));
        }
        for (key, d) in [
            (
                "limits.header_read_timeout",
                self.limits.header_read_timeout,
            ),
            ("limits.body_read_timeout", self.limits.body_read_timeout),
            ("sandbox.push_deadline", self.sandbox.push_deadline),
            ("sandbox.pull_deadline", self.sandbox.pull_deadline),
            (
                "sandbox.quarantine_cooldown",
                self.sandbox.quarantine_cooldown,
            ),
        ] {
            if d.is_zero() {
                return Err(ConfigError::invalid(path, key, "use a positive duration"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c: HostConfig = parse_toml(Path::new("inlet.toml"), "").unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.limits.max_body_bytes, 1 << 20);
        assert_eq!(c.sandbox.push_deadline, Duration::from_secs(2));
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = parse_toml::<HostConfig>(Path::new("inlet.toml"), "[limits]\nmax_bodyy = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("inlet.toml:"), "{err}");
        assert!(err.contains("max_bodyy"), "{err}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let err = parse_toml::<HostConfig>(
            Path::new("inlet.toml"),
            "[sandbox]\npush_deadline = \"soon\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("soon") && err.contains("30s"), "{err}");
    }
}
