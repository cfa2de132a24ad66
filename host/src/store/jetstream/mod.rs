//! The [`Store`] on NATS JetStream, shared by several hosts
//! (`[store] kind = "jetstream"`).
//!
//! Layout (prefixes from `[store]`):
//! - events: one stream per source, `{stream_prefix}{source}`, subject
//!   `{subject_prefix}.{source}`; the offset of an event is its stream
//!   sequence. A stream per source (not one stream with a subject each)
//!   keeps offsets dense per source as on sled, gives each source its own
//!   duplicate window (`dedup_window` is a manifest setting) and its own
//!   retention limits, and lets one source be purged or moved alone.
//! - dedup: every event is published with `Nats-Msg-Id` (the event id, or
//!   the request's idempotency key and the event's index), and the stream's
//!   duplicate window is the source's `dedup_window`, so JetStream drops a
//!   repeat whichever host receives it. The answer to an idempotency key is
//!   kept in the KV bucket `{bucket_prefix}idem_{source}` (entries live for
//!   `dedup_window`), so a retry gets the original answer.
//! - checkpoints: KV bucket `{bucket_prefix}checkpoints`, written with
//!   compare-and-set on the revision this host read before the pull.
//! - cursors: KV bucket `{bucket_prefix}cursors`.
//! - pull leases and host membership: KV bucket `{bucket_prefix}leases`
//!   whose entries expire `lease_ttl` after their last write.
//! - dead letters: KV bucket `{bucket_prefix}dl_{source}` per source (see
//!   `dead.rs`); replay claims in the leases bucket.
//!
//! A pull batch is published first and its checkpoint is written after every
//! publish ack, with compare-and-set on the revision the pull read, so the
//! checkpoint never runs ahead of the data and never moves under another
//! writer. A crash in between leaves the old checkpoint; the next pull reads
//! the same batch again and its msg-ids (event ids, or for events without
//! one a digest of the partition, the checkpoint it was pulled from and the
//! event's content) make the re-publish a no-op.

mod buckets;
mod dead;
mod journal;
mod leases;
mod msg_id;
#[cfg(test)]
mod tests;

use self::buckets::kv_bucket;
use self::leases::renewals;
use super::{
    Checkpoint, CheckpointRead, Checkpoints, Commit, CommitOutcome, CommitSignals, Cursors,
    Journal, PullLeases, PushRecord, Retention, StoreError, TrimOutcome, now_ms,
};
use crate::config::StoreConfig;
use async_nats::jetstream::{self, kv, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Most bytes one read returns (but always one event), as on sled.
const READ_BUDGET: usize = 8 << 20;
/// Direct gets in flight during one read.
const READ_PIPELINE: usize = 64;
/// How often long polls re-check for events other hosts stored.
const POLL_TICK: Duration = Duration::from_millis(250);
/// Most events one retention pass looks at (the next pass goes on).
const TRIM_SCAN_MAX: u64 = 100_000;
/// Bytes JetStream's file store adds to a message's subject, headers and
/// payload (its record header and hash).
const STORED_OVERHEAD: u64 = 30;
/// Publish acks one commit waits for at once; more waits for the oldest.
const ACK_WINDOW: usize = 256;
/// Header naming the idempotency key (hashed) an event was pushed with.
const KEY_HEADER: &str = "Inlet-Key";
/// History kept per checkpoint (`nats kv history` shows earlier values).
const CHECKPOINT_HISTORY: i64 = 5;

/// NATS JetStream storage. See the module docs for the layout.
pub struct JetStreamStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    config: StoreConfig,
    host_id: String,
    checkpoints: kv::Store,
    cursors: kv::Store,
    leases: kv::Store,
    /// Per-source stream and idempotency bucket, once looked up or created
    /// (no I/O is done under this lock).
    sources: Mutex<HashMap<String, Arc<SourceHandles>>>,
    /// Per-source dead-letter buckets, once they exist.
    dead: Mutex<HashMap<String, Arc<dead::Bucket>>>,
    /// Dead-letter replay claims this host holds: key → revision.
    dead_claims: Mutex<HashMap<String, u64>>,
    /// Sources whose pull schedule runs on this host: its memberships.
    joined: Mutex<std::collections::HashSet<String>>,
    /// Set at shutdown: no lease is taken or renewed any more.
    closing: AtomicBool,
    /// Hosts pulling each source, at the last membership check.
    members: Mutex<HashMap<String, usize>>,
    /// Lease key → what this host holds.
    held: Mutex<HashMap<String, Held>>,
    /// Serializes lease writes (claims, renewals, releases): each write
    /// expects the revision the previous one produced.
    lease_ops: tokio::sync::Mutex<()>,
    commits: Arc<CommitSignals>,
    size: AtomicU64,
}

struct SourceHandles {
    stream: stream::Stream,
    idempotency: kv::Store,
    dedup_window: Duration,
}

struct Held {
    source: String,
    revision: u64,
    last_used: Instant,
}

fn unavailable(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("NATS JetStream: {what}: {err}"))
}

impl JetStreamStore {
    /// Connects to NATS and opens (creating when missing) the shared KV
    /// buckets; per-source streams are created on first write.
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let host_id = config.host_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "inlet".into());
            format!("{host}-{}", std::process::id())
        });
        let host_id: String = host_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("inlet {host_id}"))
            .connection_timeout(config.request_timeout)
            .request_timeout(Some(config.request_timeout))
            .retry_on_initial_connect();
        if let Some(path) = &config.creds_file {
            options = options.credentials_file(path).await.map_err(|e| {
                StoreError::Config(format!(
                    "cannot read the NATS credentials file {}: {e}",
                    path.display()
                ))
            })?;
        }
        let secret = |var: &str| {
            crate::config::SecretRef::Env(var.to_string())
                .read(std::path::Path::new("."))
                .map(|s| s.expose().to_string())
                .map_err(|e| StoreError::Config(format!("[store]: {e}")))
        };
        if let Some(var) = &config.token_env {
            options = options.token(secret(var)?);
        }
        if let Some(user) = &config.user {
            let password = match &config.password_env {
                Some(var) => secret(var)?,
                None => String::new(),
            };
            options = options.user_and_password(user.clone(), password);
        }
        let servers: Vec<async_nats::ServerAddr> = config
            .url
            .split(',')
            .map(|u| u.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::Config(format!("[store] url {:?}: {e}", config.url)))?;
        // `retry_on_initial_connect` returns at once; wait (bounded) for the
        // first connection so a wrong URL fails the start with its cause.
        let client = options
            .connect(servers)
            .await
            .map_err(|e| unavailable(&format!("cannot connect to {}", config.url), e))?;
        let deadline = Instant::now() + config.request_timeout.max(Duration::from_secs(5));
        while client.connection_state() != async_nats::connection::State::Connected {
            if Instant::now() >= deadline {
                return Err(StoreError::Io(format!(
                    "NATS JetStream: cannot connect to {} (is nats-server running with JetStream enabled?)",
                    config.url
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .ack_timeout(config.request_timeout)
            .build(client.clone());
        account_storage(&client).await?;
        let bucket = |name: &str| format!("{}{name}", config.bucket_prefix);
        let replicas = config.replicas;
        let checkpoints = kv_bucket(
            &js,
            &bucket("checkpoints"),
            CHECKPOINT_HISTORY,
            Duration::ZERO,
            replicas,
        )
        .await?;
        let cursors = kv_bucket(&js, &bucket("cursors"), 1, Duration::ZERO, replicas).await?;
        let leases = kv_bucket(&js, &bucket("leases"), 1, config.lease_ttl, replicas).await?;
        let commits = Arc::new(CommitSignals::default());
        let inner = Arc::new(Inner {
            client,
            js,
            config: config.clone(),
            host_id,
            checkpoints,
            cursors,
            leases,
            sources: Default::default(),
            dead: Default::default(),
            dead_claims: Default::default(),
            joined: Default::default(),
            closing: AtomicBool::new(false),
            members: Default::default(),
            held: Default::default(),
            lease_ops: Default::default(),
            commits,
            size: AtomicU64::new(0),
        });
        if config.replicas == 1 {
            tracing::warn!(
                "[store] replicas = 1: an acknowledged event survives an inlet or nats-server crash, but nats-server fsyncs its file store only every two minutes by default, so a power cut of that machine can lose it; use a three-node NATS cluster with replicas = 3 in production."
            );
        }
        tokio::spawn(renewals(Arc::downgrade(&inner)));
        tokio::spawn(upkeep(Arc::downgrade(&inner)));
        tokio::spawn(poll_ticks(Arc::downgrade(&inner)));
        tracing::info!(url = %config.url, host_id = %inner.host_id, "Store: NATS JetStream.");
        Ok(JetStreamStore { inner })
    }
}

impl Inner {
    fn connected(&self) -> Result<(), StoreError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(StoreError::Io(format!(
                "NATS JetStream: not connected to {} ({state:?}); retry shortly",
                self.config.url
            ))),
        }
    }

    /// Bounds a lease-bucket call by a third of the lease TTL, so a slow
    /// NATS cannot hold `lease_ops` (and the renewals waiting on it) past
    /// the leases' life.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = T>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.config.lease_ttl / 3, call)
            .await
            .map_err(|_| StoreError::Io("NATS JetStream: a lease call timed out".into()))
    }

    /// Drops the cached handles of `source`, so the next call looks its
    /// stream up again (after an error that may mean it changed or went).
    fn forget(&self, source: &str) {
        self.sources.lock().expect("lock").remove(source);
    }

    fn stream_name(&self, source: &str) -> String {
        format!("{}{source}", self.config.stream_prefix)
    }

    fn subject(&self, source: &str) -> String {
        format!("{}.{source}", self.config.subject_prefix)
    }

    /// The source's stream and idempotency bucket; created (or their dedup
    /// window updated) when `create` names the window.
    async fn source(
        &self,
        source: &str,
        create: Option<Duration>,
    ) -> Result<Option<Arc<SourceHandles>>, StoreError> {
        if let Some(h) = self.sources.lock().expect("lock").get(source)
            && create.is_none_or(|w| w == h.dedup_window)
        {
            return Ok(Some(h.clone()));
        }
        let name = self.stream_name(source);
        let bucket = format!("{}idem_{source}", self.config.bucket_prefix);
        let handles = match create {
            None => {
                let stream = match self.js.get_stream(&name).await {
                    Ok(s) => s,
                    Err(e) => {
                        if let jetstream::context::GetStreamErrorKind::JetStream(j) = e.kind()
                            && j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                        {
                            return Ok(None);
                        }
                        return Err(unavailable(&format!("stream {name}"), e));
                    }
                };
                let idempotency = self
                    .js
                    .get_key_value(&bucket)
                    .await
                    .map_err(|e| unavailable(&format!("KV bucket {bucket}"), e))?;
                let dedup_window = stream.cached_info().config.duplicate_window;
                SourceHandles {
                    stream,
                    idempotency,
                    dedup_window,
                }
            }
            Some(window) => {
                // The bucket first: a stream that exists always has one.
                let idempotency =
                    kv_bucket(&self.js, &bucket, 1, window, self.config.replicas).await?;
                let mut config = stream::Config {
                    name: name.clone(),
                    subjects: vec![self.subject(source)],
                    duplicate_window: window,
                    num_replicas: self.config.replicas,
                    storage: stream::StorageType::File,
                    allow_direct: true,
                    ..Default::default()
                };
                let mut stream = self
                    .js
                    .get_or_create_stream(config.clone())
                    .await
                    .map_err(|e| unavailable(&format!("cannot create stream {name}"), e))?;
                let current = stream.cached_info().config.clone();
                if current.duplicate_window != window && !current.max_age.is_zero() {
                    // The window cannot outlast the events (retention).
                    config.duplicate_window = window.min(current.max_age);
                }
                if current.duplicate_window != config.duplicate_window {
                    config.max_age = current.max_age;
                    config.max_bytes = current.max_bytes;
                    self.js
                        .update_stream(config)
                        .await
                        .map_err(|e| unavailable(&format!("cannot update stream {name}"), e))?;
                    stream = self
                        .js
                        .get_stream(&name)
                        .await
                        .map_err(|e| unavailable(&format!("stream {name}"), e))?;
                }
                SourceHandles {
                    stream,
                    idempotency,
                    dedup_window: window,
                }
            }
        };
        let handles = Arc::new(handles);
        self.sources
            .lock()
            .expect("lock")
            .insert(source.to_string(), handles.clone());
        Ok(Some(handles))
    }

    async fn stream_state(&self, source: &str) -> Result<Option<stream::State>, StoreError> {
        let Some(h) = self.source(source, None).await? else {
            return Ok(None);
        };
        let info = h.stream.get_info().await.map_err(|e| {
            self.forget(source);
            unavailable(&format!("stream info of {source}"), e)
        })?;
        Ok(Some(info.state))
    }
}

/// Memberships and the store-size gauge, every third of the lease TTL.
async fn upkeep(inner: Weak<Inner>) {
    let tick = match inner.upgrade() {
        Some(i) => i.config.lease_ttl / 3,
        None => return,
    };
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        if inner.connected().is_err() {
            continue;
        }
        let bound = tick.max(Duration::from_secs(1));
        let _ = tokio::time::timeout(bound, inner.refresh_members()).await;
        if let Ok(Ok(storage)) = tokio::time::timeout(bound, account_storage(&inner.client)).await {
            inner.size.store(storage, Ordering::Relaxed);
        }
    }
}

/// Wakes long polls regularly while there are any, so they see events
/// other hosts stored (this host's own commits wake them at once).
async fn poll_ticks(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(POLL_TICK).await;
        let Some(inner) = inner.upgrade() else { return };
        inner.commits.notify_waiting();
    }
}

/// The account's JetStream storage in bytes, by a raw `$JS.API.INFO`
/// request (the typed one expects fields nats-server 2.9 does not send);
/// fails when JetStream is not enabled.
async fn account_storage(client: &async_nats::Client) -> Result<u64, StoreError> {
    let reply = client
        .request("$JS.API.INFO", Bytes::new())
        .await
        .map_err(|e| unavailable("account info", e))?;
    let info: serde_json::Value =
        serde_json::from_slice(&reply.payload).map_err(|e| unavailable("account info", e))?;
    if let Some(err) = info.get("error") {
        return Err(StoreError::Io(format!(
            "NATS JetStream is not available for this account ({err}); start nats-server with -js"
        )));
    }
    Ok(info["storage"].as_u64().unwrap_or(0))
}
