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
    /// A second listener for the admin API (`/v1`), `/metrics`, `/healthz`
    /// and `/readyz`: with it, `listen` serves only `/ingest` (and the
    /// health checks) and answers 404 for the rest, so it can face the
    /// internet while operators use this one.
    pub admin_listen: Option<SocketAddr>,
    /// Directory scanned for `NAME.wasm` connectors and `NAME.toml` manifests.
    pub plugins_dir: PathBuf,
    /// Directory of the embedded store and the compiled-component cache.
    pub data_dir: PathBuf,
    /// Name of an environment variable holding the admin token: every
    /// `/v1/*` route then needs `Authorization: Bearer <its value>`. Named
    /// but unset or empty refuses the start.
    pub admin_token_env: Option<String>,
    /// Serve `/v1/*` without a token on a listener that is not loopback
    /// (refused otherwise). Off by default.
    pub admin_open: bool,
    /// Name of an environment variable holding the consumers' token: it
    /// reads streams (`GET /v1/streams/{source}/events`) and reads and moves
    /// cursors, and nothing else. Needs `admin_token_env`.
    pub consumer_token_env: Option<String>,
    /// Name of an environment variable holding the token `/metrics` needs
    /// (a scraper's token, separate from the admin token). Named but unset
    /// or empty refuses the start.
    pub metrics_token_env: Option<String>,
    /// Load a `NAME.wasm` only with its `NAME.toml` beside it: closes the
    /// window where a component copied before its manifest runs with the
    /// defaults (`auth = none`). Off by default.
    pub require_manifest: bool,
    /// Global limits on the push and pull paths.
    pub limits: Limits,
    /// Sandbox defaults for every connector; manifests may override them.
    pub sandbox: SandboxDefaults,
    /// How often retention (`[stream]` in manifests) is applied and expired
    /// dedup marks are collected.
    #[serde(deserialize_with = "duration::deserialize")]
    pub compaction_interval: Duration,
    /// Where events, dedup marks and checkpoints live.
    pub store: StoreConfig,
    /// TLS on the listeners (both, with `admin_listen`): HTTP/1.1 and
    /// HTTP/2 over TLS 1.2/1.3 only.
    pub tls: Option<TlsConfig>,
    /// Proxies (CIDR ranges or addresses) whose `X-Forwarded-For` entries
    /// are believed, for `[push] allowed_ips`: the sender is the
    /// rightmost address not appended by one of them. Empty: the peer
    /// address is the sender, and the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// OpenTelemetry traces (off without it): spans of every push and pull
    /// run exported over OTLP/HTTP.
    pub telemetry: Option<TelemetryConfig>,
    /// The host's external base URL (`https://hooks.example.com`): a
    /// source's URL as its senders sign it is this + `/ingest/NAME`
    /// (`square`, `twilio` and `{url}` in an `hmac` template need it).
    pub public_url: Option<String>,
}

/// `[telemetry]`: where the host's spans go. The export runs on its own
/// thread in batches; a collector that is down loses spans, never pushes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP (protobuf) endpoint: `http://HOST:4318`
    /// (`/v1/traces` is added when the URL has no path) or the full URL of
    /// its traces endpoint.
    pub otlp_endpoint: String,
    /// `service.name` of the spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The share of traces that begin here (a push without `traceparent`,
    /// a pull run) that are recorded, from 0 to 1; a sender's `traceparent`
    /// decides for its own trace.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

fn default_service_name() -> String {
    "inlet".into()
}

fn default_sample_ratio() -> f64 {
    1.0
}

impl TelemetryConfig {
    /// The URL spans are posted to.
    pub fn traces_url(&self) -> String {
        let url = self.otlp_endpoint.trim();
        match url.parse::<http::Uri>() {
            Ok(uri) if matches!(uri.path(), "" | "/") && uri.query().is_none() => {
                format!("{}/v1/traces", url.trim_end_matches('/'))
            }
            _ => url.to_string(),
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let uri = self.otlp_endpoint.trim().parse::<http::Uri>().ok();
        let ok = uri.as_ref().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.host().is_some_and(|h| !h.is_empty())
        });
        if !ok {
            return Err(ConfigError::invalid(
                path,
                "telemetry.otlp_endpoint",
                "use the collector's OTLP/HTTP URL, such as \"http://127.0.0.1:4318\"",
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::invalid(
                path,
                "telemetry.sample_ratio",
                "use a number from 0 to 1",
            ));
        }
        if self.service_name.trim().is_empty() {
            return Err(ConfigError::invalid(
                path,
                "telemetry.service_name",
                "use a non-empty name",
            ));
        }
        Ok(())
    }
}

/// `[tls]`: the listeners' certificate (PEM files, re-read when they
/// change), and optionally the CA whose client certificates are required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Require client certificates issued by this CA (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: None,
            plugins_dir: PathBuf::from("plugins.d"),
            data_dir: PathBuf::from("data"),
            admin_token_env: None,
            admin_open: false,
            consumer_token_env: None,
            require_manifest: false,
            metrics_token_env: None,
            limits: Limits::default(),
            sandbox: SandboxDefaults::default(),
            compaction_interval: Duration::from_secs(60),
            store: StoreConfig::default(),
            tls: None,
            trusted_proxies: Vec::new(),
            telemetry: None,
            public_url: None,
        }
    }
}

/// `[store]`: the embedded sled store (default) or NATS JetStream, shared
/// by several hosts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sled` (embedded, in `data_dir`) or `jetstream`.
    pub kind: StoreKind,
    /// NATS server URL(s), comma-separated (`jetstream` only).
    pub url: String,
    /// A NATS credentials file (JWT + NKey seed), relative to `inlet.toml`.
    pub creds_file: Option<PathBuf>,
    /// Environment variable holding a NATS token.
    pub token_env: Option<String>,
    /// NATS user name; its password comes from `password_env`.
    pub user: Option<String>,
    /// Environment variable holding the NATS user's password.
    pub password_env: Option<String>,
    /// Prefix of the per-source event streams (`{prefix}{source}`).
    pub stream_prefix: String,
    /// Prefix of the event subjects (`{prefix}.{source}`).
    pub subject_prefix: String,
    /// Prefix of the KV buckets (checkpoints, cursors, leases, idempotency).
    pub bucket_prefix: String,
    /// Replicas of every stream and bucket (1, 3 or 5 in a NATS cluster).
    pub replicas: usize,
    /// How long a pull lease lives without renewal: a host that dies loses
    /// its partitions after at most this long, and the other hosts take
    /// them at their next scheduled run.
    #[serde(deserialize_with = "duration::deserialize")]
    pub lease_ttl: Duration,
    /// How long a JetStream request (publish ack, KV write) may take before
    /// the call fails with `store_unavailable`.
    #[serde(deserialize_with = "duration::deserialize")]
    pub request_timeout: Duration,
    /// This host's name in leases and logs; defaults to `hostname-pid`.
    pub host_id: Option<String>,
}

/// Which store implementation `[store] kind` selects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Sled,
    Jetstream,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Sled,
            url: "nats://127.0.0.1:4222".into(),
            creds_file: None,
            token_env: None,
            user: None,
            password_env: None,
            stream_prefix: "INLET_".into(),
            subject_prefix: "inlet.events".into(),
            bucket_prefix: "inlet_".into(),
            replicas: 1,
            lease_ttl: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            host_id: None,
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
    /// Connections open at once; past it a connection gets 503 and is
    /// closed. 0: the file limit (raised to its hard limit) less 256 and
    /// the outbound share, within [64, 65536].
    pub max_connections: u32,
    /// Connections open at once from one address; 0 for no cap (behind a
    /// reverse proxy every sender has the proxy's address).
    pub max_connections_per_peer: u32,
    /// Long polls (`wait=`) waiting at once; past it `wait` gets 503.
    pub max_long_polls: u32,
    /// Push body bytes buffered at once before their sender is known to be
    /// authentic (signature schemes, `auth = none`), host-wide.
    pub unauthenticated_bytes: u64,
    /// The same, from one address; 0 for no per-address cap.
    pub unauthenticated_bytes_per_peer: u64,
    /// Outbound requests (wasi:http) in flight at once across every
    /// connector; a request past it waits for a slot within its call's
    /// deadline. 0: a quarter of the file limit, within [16, 4096].
    pub max_outbound_requests: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_in_flight: 1024,
            pull_workers: 8,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 0,
            max_connections_per_peer: 512,
            max_long_polls: 4096,
            unauthenticated_bytes: 256 << 20,
            unauthenticated_bytes_per_peer: 16 << 20,
            max_outbound_requests: 0,
        }
    }
}

/// The most `sandbox.max_outbound_requests` may be.
pub const MAX_OUTBOUND_PER_CALL: u32 = 256;

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
    /// Most bytes one call may return (payloads, ids, keys, content
    /// types, attributes, checkpoint, reply); more fails the call.
    pub max_bytes_per_call: u64,
    /// Outbound requests one call may have in flight at once; one more
    /// fails at once (`connection-limit-reached`).
    pub max_outbound_requests: u32,
    /// Sandbox failures (trap, deadline, memory, limit), each completed
    /// call taking one off, after which a connector is quarantined; 0 never
    /// quarantines.
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
            max_outbound_requests: 16,
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
        if let Some(tls) = &mut config.tls {
            tls.cert_file = base.join(&tls.cert_file);
            tls.key_file = base.join(&tls.key_file);
            tls.client_ca_file = tls.client_ca_file.as_ref().map(|p| base.join(p));
        }
        config.data_dir = base.join(&config.data_dir);
        if let Some(creds) = &config.store.creds_file {
            config.store.creds_file = Some(base.join(creds));
        }
        config.validate(path)?;
        Ok(config)
    }

    /// Checks values serde cannot: zero limits and out-of-range sizes.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        super::parse_ip_ranges(&self.trusted_proxies)
            .map_err(|e| ConfigError::invalid(path, "trusted_proxies", e))?;
        if let Some(telemetry) = &self.telemetry {
            telemetry.validate(path)?;
        }
        if let Some(url) = &self.public_url {
            super::check_public_url(url)
                .map_err(|e| ConfigError::invalid(path, "public_url", e))?;
        }
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
        if self.limits.max_long_polls == 0 {
            return Err(ConfigError::invalid(path, "limits.max_long_polls", fix));
        }
        // A budget smaller than one body would refuse that body for ever.
        let body = self.limits.max_body_bytes;
        for (key, budget, zero_means_off) in [
            (
                "limits.unauthenticated_bytes",
                self.limits.unauthenticated_bytes,
                false,
            ),
            (
                "limits.unauthenticated_bytes_per_peer",
                self.limits.unauthenticated_bytes_per_peer,
                true,
            ),
        ] {
            if budget < body && !(zero_means_off && budget == 0) {
                return Err(ConfigError::invalid(
                    path,
                    key,
                    format!(
                        "{budget} is less than limits.max_body_bytes ({body}): one body must fit{}",
                        if zero_means_off {
                            " (or 0 for no per-address cap)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        if !(1..=MAX_OUTBOUND_PER_CALL).contains(&self.sandbox.max_outbound_requests) {
            return Err(ConfigError::invalid(
                path,
                "sandbox.max_outbound_requests",
                format!("use a value from 1 to {MAX_OUTBOUND_PER_CALL}"),
            ));
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
            ("store.request_timeout", self.store.request_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::invalid(path, key, "use a positive duration"));
            }
        }
        let store = &self.store;
        if store.lease_ttl < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                path,
                "store.lease_ttl",
                "use at least \"1s\" (leases are renewed every third of it)",
            ));
        }
        if !matches!(store.replicas, 1..=5) {
            return Err(ConfigError::invalid(
                path,
                "store.replicas",
                "use 1 to 5 (JetStream's limit; 3 is the usual choice in a cluster)",
            ));
        }
        let name_part = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        for (key, value) in [
            ("store.stream_prefix", &store.stream_prefix),
            ("store.bucket_prefix", &store.bucket_prefix),
        ] {
            if !name_part(value) {
                return Err(ConfigError::invalid(
                    path,
                    key,
                    "use letters, digits, `-` and `_` only (it starts JetStream names)",
                ));
            }
        }
        let subject_ok = !store.subject_prefix.is_empty()
            && store
                .subject_prefix
                .split('.')
                .all(|t| !t.is_empty() && name_part(t));
        if !subject_ok {
            return Err(ConfigError::invalid(
                path,
                "store.subject_prefix",
                "use dot-separated tokens of letters, digits, `-` and `_` (no wildcards)",
            ));
        }
        if store.kind == StoreKind::Jetstream && store.url.trim().is_empty() {
            return Err(ConfigError::invalid(
                path,
                "store.url",
                "name the NATS server, such as \"nats://127.0.0.1:4222\"",
            ));
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
    fn store_section_selects_jetstream_and_checks_names() {
        let c: HostConfig = parse_toml(
            Path::new("inlet.toml"),
            "[store]\nkind = \"jetstream\"\nurl = \"nats://a:4222,nats://b:4222\"\nreplicas = 3\nlease_ttl = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(c.store.kind, StoreKind::Jetstream);
        assert_eq!(c.store.replicas, 3);
        assert_eq!(c.store.lease_ttl, Duration::from_secs(5));
        c.validate(Path::new("inlet.toml")).unwrap();
        assert_eq!(HostConfig::default().store.kind, StoreKind::Sled);

        let err = parse_toml::<HostConfig>(Path::new("inlet.toml"), "[store]\nkind = \"redis\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis") && err.contains("jetstream"), "{err}");
        for (toml, key) in [
            ("[store]\nstream_prefix = \"a.b\"\n", "store.stream_prefix"),
            (
                "[store]\nsubject_prefix = \"in.*\"\n",
                "store.subject_prefix",
            ),
            ("[store]\nreplicas = 7\n", "store.replicas"),
            ("[store]\nlease_ttl = \"100ms\"\n", "store.lease_ttl"),
        ] {
            let c: HostConfig = parse_toml(Path::new("inlet.toml"), toml).unwrap();
            let err = c.validate(Path::new("inlet.toml")).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
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
