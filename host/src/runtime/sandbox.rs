//! What one connector may do: memory, deadlines, output caps, and the
//! outbound hosts it may reach with the headers the host adds for it.

use crate::config::{ConfigError, Manifest, SandboxDefaults, SecretRef};
use http::{HeaderName, HeaderValue};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The resolved sandbox of one connector.
#[derive(Debug)]
pub struct Sandbox {
    /// The source name, for logs.
    pub name: Arc<str>,
    /// The manifest's `[config]` table, read by the guest via `host.config`.
    pub config: BTreeMap<String, String>,
    /// Linear-memory limit of one instance, in bytes.
    pub memory_bytes: usize,
    /// Deadline of `describe` and `on-push` (wasm and host calls).
    pub push_deadline: Duration,
    /// Deadline of `partitions` and `pull` (wasm and host calls).
    pub pull_deadline: Duration,
    /// Most events one call may return.
    pub max_events_per_call: u32,
    /// Most payload bytes one call may return.
    pub max_bytes_per_call: u64,
    /// Consecutive sandbox failures before quarantine; 0 never quarantines.
    pub quarantine_after: u32,
    /// First quarantine cool-down; doubles per repeated quarantine.
    pub quarantine_cooldown: Duration,
    allowed: Vec<HostPattern>,
    inject: Vec<(HostPattern, HeaderName, HeaderValue)>,
    /// `[sandbox.sql.NAME]` grants, by NAME.
    pub(crate) sql: BTreeMap<String, Arc<super::sql::SqlConnection>>,
}

/// `host`, `host:port` or `host:*`. A bare host allows the default ports
/// (80 and 443) only, so that granting `api.example.com` does not grant
/// every service on that machine.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    host: String,
    port: PortPattern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    Default,
    Exact(u16),
    Any,
}

impl HostPattern {
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        let (host, port) = match text.rsplit_once(':') {
            // An IPv6 literal without a port, such as `[::1]`.
            Some((h, _)) if h.ends_with(':') || (text.starts_with('[') && text.ends_with(']')) => {
                (text.clone(), PortPattern::Default)
            }
            Some((h, "*")) => (h.to_string(), PortPattern::Any),
            Some((h, p)) => (
                h.to_string(),
                PortPattern::Exact(
                    p.parse()
                        .map_err(|_| format!("`{text}`: `{p}` is not a port"))?,
                ),
            ),
            None => (text.clone(), PortPattern::Default),
        };
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        Ok(HostPattern {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.host.eq_ignore_ascii_case(host)
            && match self.port {
                PortPattern::Default => port == 80 || port == 443,
                PortPattern::Exact(p) => p == port,
                PortPattern::Any => true,
            }
    }
}

impl Sandbox {
    /// Resolves a connector's sandbox from its manifest and the host
    /// defaults, reading injected secrets now so a missing one fails at load.
    pub fn resolve(
        name: &str,
        manifest: &Manifest,
        defaults: &SandboxDefaults,
        manifest_path: &Path,
    ) -> Result<Self, ConfigError> {
        let s = &manifest.sandbox;
        let allowed = s
            .allowed_hosts
            .iter()
            .map(|h| HostPattern::parse(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| ConfigError::invalid(manifest_path, "sandbox.allowed_hosts", m))?;
        let mut inject = Vec::new();
        for (i, spec) in s.inject.iter().enumerate() {
            let key = format!("sandbox.inject[{i}]");
            let pattern = HostPattern::parse(&spec.host)
                .map_err(|m| ConfigError::invalid(manifest_path, &format!("{key}.host"), m))?;
            if !allowed.iter().any(|a| a == &pattern) {
                return Err(ConfigError::invalid(
                    manifest_path,
                    &format!("{key}.host"),
                    format!(
                        "`{}` is not in `sandbox.allowed_hosts`; add it there too",
                        spec.host
                    ),
                ));
            }
            let (field, source) = match (&spec.value_env, &spec.value_file) {
                (Some(var), _) => ("value_env", SecretRef::Env(var.clone())),
                (None, Some(file)) => ("value_file", SecretRef::File(file.clone())),
                (None, None) => unreachable!("validated by Manifest::parse"),
            };
            let secret = source
                .read(manifest_path.parent().unwrap_or(Path::new(".")))
                .map_err(|e| {
                    ConfigError::invalid(manifest_path, &format!("{key}.{field}"), e.to_string())
                })?;
            let secret = secret.expose();
            let value =
                HeaderValue::from_str(&spec.format.replace("{}", secret)).map_err(|_| {
                    ConfigError::invalid(
                        manifest_path,
                        &key,
                        "the secret makes an invalid header value (control characters?)",
                    )
                })?;
            let mut value = value;
            value.set_sensitive(true);
            let header = HeaderName::from_bytes(spec.header.as_bytes())
                .expect("validated by Manifest::parse");
            inject.push((pattern, header, value));
        }
        let push_deadline = s.push_deadline.unwrap_or(defaults.push_deadline);
        let pull_deadline = s.pull_deadline.unwrap_or(defaults.pull_deadline);
        // A connector that waits on a source needs room for the source and
        // the margin its waits leave before the deadline (runtime/wait.rs).
        if !allowed.is_empty() || !s.sql.is_empty() {
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
            config: manifest.config.clone(),
            memory_bytes: (s.memory_mb.unwrap_or(defaults.memory_mb) as usize) << 20,
            push_deadline,
            pull_deadline,
            max_events_per_call: s
                .max_events_per_call
                .unwrap_or(defaults.max_events_per_call),
            max_bytes_per_call: s.max_bytes_per_call.unwrap_or(defaults.max_bytes_per_call),
            quarantine_after: s.quarantine_after.unwrap_or(defaults.quarantine_after),
            quarantine_cooldown: s
                .quarantine_cooldown
                .unwrap_or(defaults.quarantine_cooldown),
            allowed,
            inject,
            sql: super::sql::SqlConnection::resolve_all(s, manifest_path)?,
        })
    }

    /// A sandbox with the host defaults and no grants (for `inlet check`).
    pub fn isolated(name: &str, defaults: &SandboxDefaults) -> Self {
        Self::resolve(name, &Manifest::default(), defaults, Path::new("-"))
            .expect("the empty manifest resolves")
    }

    pub(crate) fn outbound_allowed(&self, host: &str, port: u16) -> bool {
        self.allowed.iter().any(|p| p.matches(host, port))
    }

    pub(crate) fn injections_for(
        &self,
        host: &str,
        port: u16,
    ) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.inject
            .iter()
            .filter(move |(p, _, _)| p.matches(host, port))
            .map(|(_, n, v)| (n, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let p = HostPattern::parse("API.example.com").unwrap();
        assert!(p.matches("api.example.com", 443));
        assert!(!p.matches("api.example.com", 8443));
        let p = HostPattern::parse("127.0.0.1:9000").unwrap();
        assert!(p.matches("127.0.0.1", 9000));
        assert!(!p.matches("127.0.0.1", 9001));
        assert!(
            HostPattern::parse("localhost:*")
                .unwrap()
                .matches("localhost", 1)
        );
        assert!(HostPattern::parse("[::1]:80").unwrap().matches("[::1]", 80));
        assert!(HostPattern::parse("x:port").is_err());
    }
}
