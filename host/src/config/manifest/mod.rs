//! `NAME.toml`: the optional manifest beside `NAME.wasm`.

use super::{ConfigError, duration, parse_toml};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A connector's manifest. Every section is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Manifest {
    /// How pushes to `/ingest/NAME` are authenticated and limited.
    pub push: PushSection,
    /// When and how the connector is pulled.
    pub pull: PullSection,
    /// Per-connector sandbox limits and outbound network grants.
    pub sandbox: SandboxSection,
    /// How long, and how much, of the source's journal is kept.
    pub stream: StreamSection,
    /// Free-form settings the connector reads with `host.config(key)`.
    /// Scalars (strings, numbers, booleans) are passed as strings.
    #[serde(deserialize_with = "config_table")]
    pub config: BTreeMap<String, String>,
}

/// `[stream]`: retention of the source's journal. Without it, events are
/// kept forever.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSection {
    /// Events received longer ago are removed once every registered
    /// consumer cursor has passed them.
    #[serde(deserialize_with = "duration::deserialize_opt")]
    pub retention: Option<Duration>,
    /// The journal is cut, oldest first, to stay under this many bytes,
    /// even past a consumer cursor (counted as forced in metrics).
    pub max_bytes: Option<u64>,
    /// How long event ids and idempotency keys are remembered, for pushed
    /// and pulled events alike (one dedup namespace per source, so a hybrid
    /// connector stores an event seen by both paths once). Default 7 days,
    /// longer than Stripe's three days of retries. See
    /// [`Manifest::dedup_window`].
    #[serde(deserialize_with = "duration::deserialize_opt")]
    pub dedup_window: Option<Duration>,
}

/// The dedup window when a manifest sets none: longer than Stripe's three
/// days of retries.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// `[push]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushSection {
    /// Who may push, checked by the host before the connector runs.
    pub auth: AuthConfig,
    /// Header carrying the idempotency key; when unset the host uses
    /// `Idempotency-Key`, then `webhook-id`.
    pub idempotency_header: Option<String>,
    /// The first name of `[stream] dedup_window`, still accepted.
    #[serde(deserialize_with = "duration::deserialize_opt")]
    pub dedup_window: Option<Duration>,
    /// Per-source token bucket; absent means unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Concurrent pushes to this source before 503.
    pub max_in_flight: Option<u32>,
    /// Pushes the connector failed on, kept for replay.
    pub dead_letters: DeadLettersConfig,
    /// Sender addresses allowed to push (CIDR ranges or addresses, IPv4
    /// and IPv6); others get 403 before their body is read. Behind a
    /// proxy, the address is read from `X-Forwarded-For` as far as
    /// `trusted_proxies` in `inlet.toml` vouch for it.
    pub allowed_ips: Option<Vec<String>>,
    /// The URL senders post to for this source, as they sign it (`square`,
    /// `twilio`, `{url}`): overrides `public_url` in `inlet.toml` + the
    /// source's path, for a proxy that rewrites paths.
    pub public_url: Option<String>,
}

/// `[push] dead_letters = { keep = "14d", max_bytes = 67108864, on = [...] }`:
/// which failed pushes are kept, and for how long.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLettersConfig {
    /// `false` keeps none.
    pub enabled: bool,
    /// Letters received longer ago are removed. Default: the source's
    /// dedup window; never longer (a replay after the event ids and
    /// idempotency key are forgotten could store the events twice).
    #[serde(deserialize_with = "duration::deserialize_opt")]
    pub keep: Option<Duration>,
    /// The source's letters are cut, oldest first, to stay under this
    /// many bytes (the newest is always kept).
    pub max_bytes: u64,
    /// The failure classes kept: `invalid`, `unauthorized`, `unavailable`,
    /// `rate_limited`, `error`, `trap`, `deadline`, `source_timeout`,
    /// `memory`, `limit`, `output`. Default: all but `unauthorized`.
    pub on: Vec<String>,
}

/// Why a push became a dead letter: the connector's own error kinds, then
/// the sandbox's failure classes. `[push] dead_letters.on` names these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterClass {
    Invalid,
    Unauthorized,
    Unavailable,
    RateLimited,
    /// The connector's `error::other`.
    Error,
    Trap,
    Deadline,
    SourceTimeout,
    Memory,
    /// A per-call limit (outbound requests, log, checkpoint size).
    Limit,
    /// More or larger events than one call may return (422).
    Output,
}

impl DeadLetterClass {
    pub const ALL: [DeadLetterClass; 11] = [
        DeadLetterClass::Invalid,
        DeadLetterClass::Unauthorized,
        DeadLetterClass::Unavailable,
        DeadLetterClass::RateLimited,
        DeadLetterClass::Error,
        DeadLetterClass::Trap,
        DeadLetterClass::Deadline,
        DeadLetterClass::SourceTimeout,
        DeadLetterClass::Memory,
        DeadLetterClass::Limit,
        DeadLetterClass::Output,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterClass::Invalid => "invalid",
            DeadLetterClass::Unauthorized => "unauthorized",
            DeadLetterClass::Unavailable => "unavailable",
            DeadLetterClass::RateLimited => "rate_limited",
            DeadLetterClass::Error => "error",
            DeadLetterClass::Trap => "trap",
            DeadLetterClass::Deadline => "deadline",
            DeadLetterClass::SourceTimeout => "source_timeout",
            DeadLetterClass::Memory => "memory",
            DeadLetterClass::Limit => "limit",
            DeadLetterClass::Output => "output",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Default `[push] dead_letters.max_bytes`: 64 MiB per source.
pub const DEFAULT_DEAD_LETTER_BYTES: u64 = 64 << 20;

impl Default for DeadLettersConfig {
    fn default() -> Self {
        DeadLettersConfig {
            enabled: true,
            keep: None,
            max_bytes: DEFAULT_DEAD_LETTER_BYTES,
            // A request the connector calls unauthentic is no data to
            // replay, and kept it would let anyone who can reach the
            // listener push real letters out of the byte budget.
            on: DeadLetterClass::ALL
                .into_iter()
                .filter(|c| *c != DeadLetterClass::Unauthorized)
                .map(|c| c.as_str().to_string())
                .collect(),
        }
    }
}

impl DeadLettersConfig {
    /// How long letters are kept: `keep`, else the dedup window.
    pub fn keep(&self, dedup_window: Duration) -> Duration {
        self.keep.unwrap_or(dedup_window)
    }

    /// Whether a failure of `class` is kept.
    pub fn keeps(&self, class: DeadLetterClass) -> bool {
        self.enabled && self.on.iter().any(|c| c == class.as_str())
    }
}

/// `rate_limit = { per_second = 50, burst = 100 }`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second (0 does not parse).
    pub per_second: std::num::NonZeroU32,
    /// Requests allowed at once above the sustained rate (0 does not parse).
    pub burst: std::num::NonZeroU32,
}

/// The authentication schemes of `[push] auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthScheme {
    /// Anyone who can reach the listener may push.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// An HMAC-SHA256 of the body in a configurable header.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// GitHub's `X-Hub-Signature-256: sha256=<hex>`.
    Github,
    /// Stripe's `Stripe-Signature: t=..,v1=..` over `"{t}.{body}"`.
    Stripe,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    StandardWebhooks,
    /// The HMAC family as a template: `algorithm`, `header`, `format`,
    /// `signed`, `timestamp_header`, `tolerance` (registry/template.rs).
    Hmac,
    // Provider presets (registry/presets.rs): each is one template, or a
    // check of its own (gitlab, mailgun), with the provider's headers.
    /// Slack: `X-Slack-Signature: v0=` over `v0:{timestamp}:{body}`.
    Slack,
    /// Shopify: `X-Shopify-Hmac-Sha256`, base64 over the body.
    Shopify,
    /// Zoom: `x-zm-signature: v0=` over `v0:{timestamp}:{body}`.
    Zoom,
    /// Paddle Billing: `Paddle-Signature: ts=..;h1=..` over `{ts}:{body}`.
    Paddle,
    /// Linear: `Linear-Signature`, hex over the body.
    Linear,
    /// Intercom: `X-Hub-Signature: sha1=` over the body.
    Intercom,
    /// Typeform: `Typeform-Signature: sha256=` base64 over the body.
    Typeform,
    /// Calendly: `Calendly-Webhook-Signature: t=..,v1=..` over `{t}.{body}`.
    Calendly,
    /// Twitch EventSub: `Twitch-Eventsub-Message-Signature: sha256=` over
    /// message id, timestamp and body.
    Twitch,
    /// GitLab: the secret token in `X-Gitlab-Token`.
    Gitlab,
    /// Square: `x-square-hmacsha256-signature`, base64 over the public
    /// URL and the body.
    Square,
    /// Twilio: `X-Twilio-Signature`, HMAC-SHA1 base64 over the public URL
    /// and the sorted form parameters (`bodySHA256` for other bodies).
    Twilio,
    /// Mailgun: `signature.{timestamp,token,signature}` in the body.
    Mailgun,
    /// Ed25519 over timestamp and body (Discord interactions:
    /// `X-Signature-Ed25519`, `X-Signature-Timestamp`).
    Ed25519,
    /// ECDSA P-256 with SHA-256 over timestamp and body (SendGrid's Event
    /// Webhook: `X-Twilio-Email-Event-Webhook-Signature`, `-Timestamp`).
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
}

impl AuthScheme {
    /// The scheme as a manifest writes it.
    pub fn name(self) -> &'static str {
        match self {
            AuthScheme::None => "none",
            AuthScheme::Bearer => "bearer",
            AuthScheme::HmacSha256 => "hmac-sha256",
            AuthScheme::Github => "github",
            AuthScheme::Stripe => "stripe",
            AuthScheme::StandardWebhooks => "standard-webhooks",
            AuthScheme::Hmac => "hmac",
            AuthScheme::Slack => "slack",
            AuthScheme::Shopify => "shopify",
            AuthScheme::Zoom => "zoom",
            AuthScheme::Paddle => "paddle",
            AuthScheme::Linear => "linear",
            AuthScheme::Intercom => "intercom",
            AuthScheme::Typeform => "typeform",
            AuthScheme::Calendly => "calendly",
            AuthScheme::Twitch => "twitch",
            AuthScheme::Gitlab => "gitlab",
            AuthScheme::Square => "square",
            AuthScheme::Twilio => "twilio",
            AuthScheme::Mailgun => "mailgun",
            AuthScheme::Ed25519 => "ed25519",
            AuthScheme::EcdsaP256 => "ecdsa-p256",
        }
    }
}

/// Where a secret comes from: one environment variable or file, or several
/// (every one is accepted, for rotation).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    One(String),
    Many(Vec<String>),
}

impl SecretSource {
    pub fn names(&self) -> Vec<&str> {
        match self {
            SecretSource::One(n) => vec![n.as_str()],
            SecretSource::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }

    /// Reads every secret an `env` and a `file` setting name (each one
    /// name or a list, for rotation), the variables first; a file is
    /// relative to the manifest at `path`. `env` and `file` pair each
    /// setting's full key (named in an error, and beside each value read)
    /// with its value. The one
    /// reader of secret lists: auth secrets, public keys and `mac` grants.
    pub fn read_all<'k>(
        path: &Path,
        env: (&'k str, Option<&SecretSource>),
        file: (&'k str, Option<&SecretSource>),
    ) -> Result<Vec<(&'k str, super::Secret)>, ConfigError> {
        let base = path.parent().unwrap_or(Path::new("."));
        let refs = env
            .1
            .into_iter()
            .flat_map(|e| e.names())
            .map(|var| (env.0, super::SecretRef::Env(var.to_string())))
            .chain(
                file.1
                    .into_iter()
                    .flat_map(|f| f.names())
                    .map(|name| (file.0, super::SecretRef::File(name.into()))),
            );
        refs.map(|(key, secret)| {
            secret
                .read(base)
                .map(|value| (key, value))
                .map_err(|e| ConfigError::invalid(path, key, e.to_string()))
        })
        .collect()
    }
}

/// How `hmac-sha256` signatures are encoded in their header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

/// `auth = { scheme = "...", ... }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub scheme: AuthScheme,
    /// `bearer`: variable(s) holding the accepted token(s).
    pub token_env: Option<SecretSource>,
    /// `bearer`: file(s) holding the accepted token(s).
    pub token_file: Option<SecretSource>,
    /// Signature schemes: variable(s) holding the secret(s).
    pub secret_env: Option<SecretSource>,
    /// Signature schemes: file(s) holding the secret(s).
    pub secret_file: Option<SecretSource>,
    /// `hmac-sha256`: the header carrying the signature.
    pub header: Option<String>,
    /// `hmac-sha256`: `hex` (default) or `base64`.
    pub encoding: Option<SignatureEncoding>,
    /// `hmac-sha256`: a prefix before the signature, such as `sha256=`.
    pub prefix: Option<String>,
    /// `hmac`: `sha1`, `sha256` (default) or `sha512`.
    pub algorithm: Option<String>,
    /// `hmac`: how the header carries the signature, e.g. `v0={hex}`,
    /// `{base64}`, `t={timestamp},v1={hex}`.
    pub format: Option<String>,
    /// `hmac`: what is signed, from `{body}`, `{timestamp}` and
    /// `{header:NAME}` (default `{body}`).
    pub signed: Option<String>,
    /// `hmac`: the header with the signed timestamp (Unix seconds).
    pub timestamp_header: Option<String>,
    /// `stripe`, `standard-webhooks` and `hmac` with a timestamp (default
    /// 5m): how far the signed timestamp may be from now.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub tolerance: Option<Duration>,
    /// `ed25519` / `ecdsa-p256`: the sender's public key as the provider
    /// prints it (hex for Ed25519; base64 DER or PEM for P-256).
    /// A list accepts any of the keys (rotation).
    pub public_key: Option<SecretSource>,
    /// ... or the variable(s) holding it.
    pub public_key_env: Option<SecretSource>,
    /// ... or the file(s) holding it (relative to the manifest).
    pub public_key_file: Option<SecretSource>,
}

/// `[pull]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PullSection {
    /// Base interval between pulls; defaults to the connector's schedule.
    #[serde(deserialize_with = "duration::deserialize_opt")]
    pub every: Option<Duration>,
    /// A cron expression instead of `every`: six fields, seconds first
    /// (`sec min hour day-of-month month day-of-week`, an optional seventh
    /// for the year), evaluated in UTC. Checked when the manifest loads.
    pub cron: Option<String>,
    /// Adaptive polling never goes faster than this.
    #[serde(deserialize_with = "duration::deserialize_opt")]
    pub min_interval: Option<Duration>,
    /// Adaptive polling never goes slower than this.
    #[serde(deserialize_with = "duration::deserialize_opt")]
    pub max_interval: Option<Duration>,
    /// Partitions pulled at once.
    pub max_parallel: u32,
    /// Backoff after failures.
    pub retry: Retry,
    /// Most batches one run may pull while the connector says `has-more`.
    pub max_batches_per_run: u32,
    /// Longest one run may keep pulling while the connector says `has-more`.
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_run_time: Duration,
}

impl Default for PullSection {
    fn default() -> Self {
        PullSection {
            every: None,
            cron: None,
            min_interval: None,
            max_interval: None,
            max_parallel: 4,
            retry: Retry::default(),
            max_batches_per_run: 100,
            max_run_time: Duration::from_secs(60),
        }
    }
}

/// `retry = { initial = "1s", max = "5m" }`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    #[serde(deserialize_with = "duration::deserialize")]
    pub initial: Duration,
    #[serde(deserialize_with = "duration::deserialize")]
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

/// `[sandbox]` in a manifest; unset values come from `inlet.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSection {
    /// Hosts (`host` or `host:port`) the connector may call over wasi:http.
    pub allowed_hosts: Vec<String>,
    pub memory_mb: Option<u64>,
    /// Memory of all the source's live instances together, in MiB
    /// (default 8 × `memory_mb`).
    pub memory_budget_mb: Option<u64>,
    #[serde(deserialize_with = "duration::deserialize_opt")]
    pub push_deadline: Option<Duration>,
    #[serde(deserialize_with = "duration::deserialize_opt")]
    pub pull_deadline: Option<Duration>,
    pub max_events_per_call: Option<u32>,
    pub max_bytes_per_call: Option<u64>,
    /// Outbound requests one call may have in flight at once.
    pub max_outbound_requests: Option<u32>,
    /// Sandbox failures, net of completed calls, before quarantine; 0 never
    /// quarantines.
    pub quarantine_after: Option<u32>,
    /// First quarantine cool-down (doubles per repeated quarantine).
    #[serde(deserialize_with = "duration::deserialize_opt")]
    pub quarantine_cooldown: Option<Duration>,
    /// Headers the host adds to outbound requests; the guest never sees them.
    pub inject: Vec<Inject>,
    /// `[sandbox.sql.NAME]`: databases the connector may query read-only
    /// through the `sql` interface, by NAME.
    pub sql: BTreeMap<String, SqlSection>,
    /// `[sandbox.secrets]`: secrets the connector may MAC with through the
    /// `mac` interface, by NAME, without seeing them.
    pub secrets: BTreeMap<String, SecretGrant>,
}

/// `[sandbox.secrets] NAME = { env = "VAR" }` or `{ file = "path" }` (a
/// list of either for rotation: `sign` uses the first, `verify` any).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretGrant {
    pub env: Option<SecretSource>,
    pub file: Option<SecretSource>,
}

/// `[sandbox.sql.NAME]`: one PostgreSQL database a connector may query by
/// NAME. The host owns the pool and the credentials; the guest sees only
/// NAME. Exactly one of `url_env` and `url_file` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSection {
    /// Variable holding the connection URL
    /// (`postgres://user:password@127.0.0.1:5432/db`).
    pub url_env: Option<String>,
    /// File holding the connection URL, relative to the manifest.
    pub url_file: Option<PathBuf>,
    /// Most rows one query may return (default 10,000); more is an error.
    pub max_rows: Option<u32>,
    /// Most bytes of values one query may return (default 16 MiB).
    pub max_bytes: Option<u64>,
    /// Connections the host keeps open at most (default 4).
    pub pool_size: Option<u32>,
}

/// `[[sandbox.inject]]`: a header built from a secret, added by the host to
/// every outbound request for `host`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    /// `host` or `host:port`, as in `allowed_hosts`.
    pub host: String,
    /// Header name, such as `Authorization`.
    pub header: String,
    /// Variable holding the secret.
    pub value_env: Option<String>,
    /// File holding the secret.
    pub value_file: Option<PathBuf>,
    /// Template with `{}` where the secret goes, such as `"Bearer {}"`.
    #[serde(default = "default_format")]
    pub format: String,
}

/// Parses a pull schedule's cron expression (six or seven fields, seconds
/// first, UTC). The error says what is wrong and how to write one.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let schedule: cron::Schedule = expr.trim().parse().map_err(|e| {
        format!(
            "`{expr}` is not a cron expression ({e}); write six fields, seconds first, \
             such as \"0 */5 * * * *\" (every five minutes, UTC)"
        )
    })?;
    if schedule.upcoming(chrono::Utc).next().is_none() {
        return Err(format!(
            "`{expr}` never fires again; pick a schedule in the future"
        ));
    }
    Ok(schedule)
}

fn default_format() -> String {
    "{}".to_string()
}

fn config_table<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, toml::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            let s = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Datetime(t) => t.to_string(),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "config.{k}: is a {}; [config] values are strings, numbers or booleans",
                        other.type_str()
                    )));
                }
            };
            Ok((k, s))
        })
        .collect()
}

impl Manifest {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// How long the source remembers event ids and idempotency keys:
    /// `[stream] dedup_window`, else the older `[push] dedup_window`, else
    /// [`DEFAULT_DEDUP_WINDOW`]. Push and pull share it.
    pub fn dedup_window(&self) -> Duration {
        self.stream
            .dedup_window
            .or(self.push.dedup_window)
            .unwrap_or(DEFAULT_DEDUP_WINDOW)
    }

    /// Parses and checks manifest text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let manifest: Manifest = parse_toml(path, text)?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    /// The checks a field's type cannot make. Where a type says it all and
    /// serde's error stays clear, the field has that type (`NonZeroU32`
    /// rate limits, durations). Ranges and combinations are checked here
    /// instead of through more newtypes, on purpose: serde reports a bad
    /// typed value by line and column only, and every manifest error names
    /// its key (`pull.max_parallel`) and the fix.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let dead = &self.push.dead_letters;
        if let Some(bad) = dead.on.iter().find(|c| DeadLetterClass::parse(c).is_none()) {
            return Err(ConfigError::invalid(
                path,
                "push.dead_letters.on",
                format!(
                    "`{bad}` is no failure class; use any of {}",
                    DeadLetterClass::ALL.map(|c| c.as_str()).join(", ")
                ),
            ));
        }
        if let Some(keep) = dead.keep
            && keep > self.dedup_window()
        {
            return Err(ConfigError::invalid(
                path,
                "push.dead_letters.keep",
                format!(
                    "{keep:?} is longer than the source's dedup window ({:?}): a letter replayed after its idempotency key and event ids are forgotten could be stored twice; shorten `keep` or lengthen `[stream] dedup_window`",
                    self.dedup_window()
                ),
            ));
        }
        if dead.max_bytes == 0 || dead.keep.is_some_and(|k| k.is_zero()) {
            return Err(ConfigError::invalid(
                path,
                "push.dead_letters",
                "`keep` and `max_bytes` must be greater than 0 (use `enabled = false` to keep none)",
            ));
        }
        let pull = &self.pull;
        if pull.every.is_some() && pull.cron.is_some() {
            return Err(ConfigError::invalid(
                path,
                "pull.cron",
                "set either `every` or `cron`, not both",
            ));
        }
        if let Some(expr) = &pull.cron {
            parse_cron(expr).map_err(|m| ConfigError::invalid(path, "pull.cron", m))?;
        }
        if pull.every.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::invalid(
                path,
                "pull.every",
                "use a positive duration",
            ));
        }
        if let (Some(min), Some(max)) = (pull.min_interval, pull.max_interval)
            && min > max
        {
            return Err(ConfigError::invalid(
                path,
                "pull.min_interval",
                "must not be greater than `max_interval`",
            ));
        }
        if pull.max_parallel == 0 {
            return Err(ConfigError::invalid(
                path,
                "pull.max_parallel",
                "use a number greater than 0",
            ));
        }
        if pull.max_batches_per_run == 0 {
            return Err(ConfigError::invalid(
                path,
                "pull.max_batches_per_run",
                "use a number greater than 0",
            ));
        }
        if pull.retry.initial.is_zero() || pull.retry.initial > pull.retry.max {
            return Err(ConfigError::invalid(
                path,
                "pull.retry",
                "`initial` must be positive and not greater than `max`",
            ));
        }
        if let Some(n) = self.sandbox.max_outbound_requests
            && !(1..=super::host::MAX_OUTBOUND_PER_CALL).contains(&n)
        {
            return Err(ConfigError::invalid(
                path,
                "sandbox.max_outbound_requests",
                format!(
                    "use a value from 1 to {}",
                    super::host::MAX_OUTBOUND_PER_CALL
                ),
            ));
        }
        if self.push.max_in_flight == Some(0) {
            return Err(ConfigError::invalid(
                path,
                "push.max_in_flight",
                "use a number greater than 0",
            ));
        }
        for (key, window) in [
            ("stream.dedup_window", self.stream.dedup_window),
            ("push.dedup_window", self.push.dedup_window),
        ] {
            if window.is_some_and(|w| w.is_zero()) {
                return Err(ConfigError::invalid(
                    path,
                    key,
                    "use a positive duration such as \"7d\"",
                ));
            }
        }
        if let (Some(stream), Some(push)) = (self.stream.dedup_window, self.push.dedup_window)
            && stream != push
        {
            return Err(ConfigError::invalid(
                path,
                "push.dedup_window",
                "the source has one dedup window for push and pull; set `[stream] dedup_window` only",
            ));
        }
        if let Some(mb) = self.sandbox.memory_mb
            && (mb == 0 || mb > 4096)
        {
            return Err(ConfigError::invalid(
                path,
                "sandbox.memory_mb",
                "use a value from 1 to 4096 (MiB)",
            ));
        }
        if self.sandbox.quarantine_cooldown == Some(Duration::ZERO) {
            return Err(ConfigError::invalid(
                path,
                "sandbox.quarantine_cooldown",
                "use a positive duration such as \"30s\" (set `quarantine_after = 0` to never quarantine)",
            ));
        }
        for host in &self.sandbox.allowed_hosts {
            if host.is_empty() || host.contains('/') || host.contains("://") {
                return Err(ConfigError::invalid(
                    path,
                    "sandbox.allowed_hosts",
                    format!("`{host}` is not a host; write `api.example.com` or `127.0.0.1:9000`"),
                ));
            }
        }
        for (name, sql) in &self.sandbox.sql {
            let key = format!("sandbox.sql.{name}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ConfigError::invalid(
                    path,
                    &key,
                    "name connections with letters, digits, `_` and `-`",
                ));
            }
            if sql.url_env.is_some() == sql.url_file.is_some() {
                return Err(ConfigError::invalid(
                    path,
                    &key,
                    "set exactly one of `url_env` or `url_file` (a postgres:// URL)",
                ));
            }
            if sql.max_rows == Some(0) || sql.max_bytes == Some(0) {
                return Err(ConfigError::invalid(
                    path,
                    &key,
                    "`max_rows` and `max_bytes` must be greater than 0",
                ));
            }
            if sql.pool_size.is_some_and(|n| n == 0 || n > 64) {
                return Err(ConfigError::invalid(
                    path,
                    &format!("{key}.pool_size"),
                    "use a value from 1 to 64",
                ));
            }
        }
        for (i, inject) in self.sandbox.inject.iter().enumerate() {
            let key = format!("sandbox.inject[{i}]");
            if inject.value_env.is_some() == inject.value_file.is_some() {
                return Err(ConfigError::invalid(
                    path,
                    &key,
                    "set exactly one of `value_env` or `value_file`",
                ));
            }
            if !inject.format.contains("{}") {
                return Err(ConfigError::invalid(
                    path,
                    &format!("{key}.format"),
                    "the format needs a `{}` where the secret goes",
                ));
            }
            if http::HeaderName::from_bytes(inject.header.as_bytes()).is_err() {
                return Err(ConfigError::invalid(
                    path,
                    &format!("{key}.header"),
                    format!("`{}` is not a valid header name", inject.header),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
