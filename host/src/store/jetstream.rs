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
//!
//! A pull batch is published first and its checkpoint is written after every
//! publish ack, with compare-and-set on the revision the pull read, so the
//! checkpoint never runs ahead of the data and never moves under another
//! writer. A crash in between leaves the old checkpoint; the next pull reads
//! the same batch again and its msg-ids (event ids, or for events without
//! one a digest of the partition, the checkpoint it was pulled from and the
//! event's content) make the re-publish a no-op.

use super::{
    Checkpoint, CheckpointRead, Commit, CommitOutcome, CommitSignals, PushRecord, Retention, Store,
    StoreError, TrimOutcome, now_ms,
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

fn sha(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// A KV key token for a partition or other free text: as is when it is
/// letters, digits, `-` and `_`, else hex (KV keys allow few characters).
fn key_token(p: Option<&str>) -> String {
    match p {
        None => "default".into(),
        Some(p)
            if !p.is_empty()
                && p.len() <= 128
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            format!("n-{p}")
        }
        Some(p) => format!("x-{}", hex::encode(p)),
    }
}

fn parse_token(t: &str) -> Option<Option<String>> {
    match t {
        "default" => Some(None),
        _ => {
            if let Some(n) = t.strip_prefix("n-") {
                Some(Some(n.to_string()))
            } else {
                let raw = hex::decode(t.strip_prefix("x-")?).ok()?;
                Some(Some(String::from_utf8(raw).ok()?))
            }
        }
    }
}

fn checkpoint_key(source: &str, partition: Option<&str>) -> String {
    format!("{source}.{}", key_token(partition))
}

fn lease_key(source: &str, partition: Option<&str>) -> String {
    format!("lease.{source}.{}", key_token(partition))
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

    /// This host's name in leases.
    pub fn host_id(&self) -> &str {
        &self.inner.host_id
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

    /// A checkpoint and its KV revision (0: never written; a deleted one
    /// has the revision of its delete marker).
    async fn read_checkpoint(
        &self,
        source: &str,
        partition: Option<&str>,
    ) -> Result<(u64, Option<Checkpoint>), StoreError> {
        self.connected()?;
        let key = checkpoint_key(source, partition);
        let entry = self
            .checkpoints
            .entry(key.clone())
            .await
            .map_err(|e| unavailable(&format!("checkpoint {key}"), e))?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let cp: Checkpoint = serde_json::from_slice(&e.value).map_err(|err| {
                    StoreError::Corrupt(format!("checkpoint {key} is not a checkpoint: {err}"))
                })?;
                (e.revision, Some(cp))
            }
            Some(e) => (e.revision, None),
            None => (0, None),
        })
    }

    /// Renews a held lease on its revision; `false` (and forgotten) when it
    /// expired or another host has it now. The caller holds `lease_ops`.
    async fn renew(&self, key: &str, revision: u64) -> Result<bool, StoreError> {
        match self
            .bounded(
                self.leases
                    .update(key, Bytes::from(self.host_id.clone()), revision),
            )
            .await?
        {
            Ok(rev) => {
                if let Some(h) = self.held.lock().expect("lock").get_mut(key) {
                    h.revision = rev;
                }
                Ok(true)
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                self.held.lock().expect("lock").remove(key);
                Ok(false)
            }
            Err(e) => Err(unavailable(&format!("lease {key}"), e)),
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

    /// Gives up this host's leases of `source` (all sources: `None`).
    async fn release(&self, source: Option<&str>) {
        let held: Vec<(String, u64)> = {
            let mut held = self.held.lock().expect("lock");
            let keys: Vec<String> = held
                .iter()
                .filter(|(_, h)| source.is_none_or(|s| h.source == s))
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| held.remove(&k).map(|h| (k, h.revision)))
                .collect()
        };
        for (key, revision) in held {
            let _ = self
                .bounded(self.leases.delete_expect_revision(&key, Some(revision)))
                .await;
        }
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

    /// Writes `member.{source}.{host}` for every source this host pulls
    /// (they expire with the lease TTL) and counts the hosts of each.
    async fn refresh_members(&self) {
        let joined: Vec<String> = self.joined.lock().expect("lock").iter().cloned().collect();
        for source in joined {
            let key = format!("member.{source}.{}", self.host_id);
            if let Err(e) = self
                .leases
                .put(&key, Bytes::from(now_ms().to_string()))
                .await
            {
                tracing::debug!(error = %e, "Membership heartbeat failed.");
                return;
            }
        }
        // On an error, keep the counts of the last good listing.
        let Ok(keys) = keys_with_prefix(&self.leases, "member.", "member keys").await else {
            return;
        };
        let mut counts: HashMap<String, usize> = HashMap::new();
        for k in keys {
            if let Some((source, _host)) = k["member.".len()..].split_once('.') {
                *counts.entry(source.to_string()).or_default() += 1;
            }
        }
        *self.members.lock().expect("lock") = counts;
    }

    /// Renews every lease this host holds, all at once, each bounded by a
    /// third of the TTL; drops the ones lost or long unused.
    async fn renew_leases(&self) {
        let _ops = self.lease_ops.lock().await;
        let idle_after = (self.config.lease_ttl * 10).max(Duration::from_secs(300));
        let bound = self.config.lease_ttl / 3;
        let held: Vec<(String, u64, bool)> = self
            .held
            .lock()
            .expect("lock")
            .iter()
            .map(|(k, h)| (k.clone(), h.revision, h.last_used.elapsed() > idle_after))
            .collect();
        let renewals = held.into_iter().map(|(key, revision, idle)| async move {
            if idle {
                let _ = self
                    .leases
                    .delete_expect_revision(&key, Some(revision))
                    .await;
                return (key, None);
            }
            let renewed = tokio::time::timeout(
                bound,
                self.leases
                    .update(&key, Bytes::from(self.host_id.clone()), revision),
            )
            .await;
            match renewed {
                Ok(Ok(rev)) => (key, Some(rev)),
                Ok(Err(e)) => {
                    tracing::warn!(lease = %key, error = %e, "Pull lease lost; another host may take the partition over.");
                    (key, None)
                }
                Err(_) => {
                    tracing::warn!(lease = %key, "Pull lease renewal timed out; treating the lease as lost.");
                    (key, None)
                }
            }
        });
        let results = futures::future::join_all(renewals).await;
        let mut held = self.held.lock().expect("lock");
        for (key, revision) in results {
            match revision {
                Some(rev) => {
                    if let Some(h) = held.get_mut(&key) {
                        h.revision = rev;
                    }
                }
                None => {
                    held.remove(&key);
                }
            }
        }
    }
}

/// Renews the held leases every third of the lease TTL, on its own task so
/// nothing else it could wait on delays a renewal.
async fn renewals(inner: Weak<Inner>) {
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
        if inner.connected().is_ok() {
            inner.renew_leases().await;
        }
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

#[async_trait]
impl Store for JetStreamStore {
    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let inner = &self.inner;
        inner.connected()?;
        let source = &commit.source;
        let handles = inner
            .source(source, Some(commit.dedup_window))
            .await?
            .expect("created");
        // The push path looked the key up before calling the connector; the
        // record's `create` below settles a race with another host.
        let idem_key = commit
            .idempotency
            .as_ref()
            .map(|(k, _)| sha(&[k.as_bytes()]));
        let replay = replay_base(&commit);
        let mut occurrences: HashMap<String, usize> = HashMap::new();
        let subject = inner.subject(source);
        let mut pending = std::collections::VecDeque::with_capacity(ACK_WINDOW);
        let mut settled = Settled::default();
        for (i, event) in commit.events.iter().enumerate() {
            let (msg_id, own) = match (&event.id, &idem_key, &replay) {
                (Some(id), _, _) => (Some(format!("e:{}", sha(&[id.as_bytes()]))), false),
                (None, Some(k), _) => (Some(format!("k:{k}:{i}")), true),
                (None, None, Some(base)) => {
                    let digest = content_digest(&event.tail);
                    let n = occurrences.entry(digest.clone()).or_default();
                    *n += 1;
                    (
                        Some(format!(
                            "p:{}:{n}",
                            sha(&[base.as_bytes(), digest.as_bytes()])
                        )),
                        false,
                    )
                }
                (None, None, None) => (None, false),
            };
            let mut headers = async_nats::HeaderMap::new();
            if let Some(id) = &msg_id {
                headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            }
            if let Some(k) = &idem_key {
                headers.insert(KEY_HEADER, k.as_str());
            }
            let ack = match inner
                .js
                .publish_with_headers(subject.clone(), headers, Bytes::from(event.tail.clone()))
                .await
            {
                Ok(ack) => ack,
                Err(e) => {
                    inner.forget(source);
                    return Err(unavailable("publish", e));
                }
            };
            pending.push_back((ack, own));
            if pending.len() >= ACK_WINDOW {
                let (ack, own) = pending.pop_front().expect("not empty");
                settled
                    .settle(inner, source, &handles, idem_key.as_deref(), ack, own)
                    .await?;
            }
        }
        while let Some((ack, own)) = pending.pop_front() {
            settled
                .settle(inner, source, &handles, idem_key.as_deref(), ack, own)
                .await?;
        }
        let Settled {
            mut record,
            dropped,
            ..
        } = settled;
        if let (Some(k), Some((_, answer))) = (&idem_key, &commit.idempotency) {
            record.reply = answer.reply.clone();
            let value = serde_json::to_vec(&record).expect("record serializes");
            match claim(&handles.idempotency, k, Bytes::from(value)).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    // Another host answered the same key meanwhile; its events
                    // and ours were the same messages (same msg-ids).
                    if let Some(first) = read_record(&handles.idempotency, k).await? {
                        return Ok(CommitOutcome::Duplicate(first));
                    }
                }
                Err(e) => return Err(unavailable("idempotency record", e)),
            }
        }
        if let Some((partition, value)) = &commit.checkpoint {
            let expected = commit.since.as_ref().map_or(0, |s| s.revision);
            set_checkpoint_cas(inner, source, partition.as_deref(), value, expected).await?;
        }
        inner.commits.notify(source);
        Ok(CommitOutcome::Stored { record, dropped })
    }

    async fn checkpoint_for_pull(
        &self,
        source: &str,
        partition: Option<&str>,
    ) -> Result<CheckpointRead, StoreError> {
        let (revision, checkpoint) = self.inner.read_checkpoint(source, partition).await?;
        Ok(CheckpointRead {
            value: checkpoint.map(|c| c.value().to_string()),
            revision,
        })
    }

    async fn idempotency(&self, source: &str, key: &str) -> Result<Option<PushRecord>, StoreError> {
        self.inner.connected()?;
        let Some(h) = self.inner.source(source, None).await? else {
            return Ok(None);
        };
        read_record(&h.idempotency, &sha(&[key.as_bytes()])).await
    }

    async fn read(
        &self,
        source: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        self.inner.connected()?;
        let Some(h) = self.inner.source(source, None).await? else {
            return Ok(Vec::new());
        };
        let Some(state) = self.inner.stream_state(source).await? else {
            return Ok(Vec::new());
        };
        let first = after
            .map_or(1, |a| a.saturating_add(1))
            .max(state.first_sequence);
        if state.messages == 0 || first > state.last_sequence || limit == 0 {
            return Ok(Vec::new());
        }
        // Read from the stream leader (a direct get may be answered by a
        // replica that lags); a missing sequence is a message retention or
        // a purge removed, skipped until `limit` events are found.
        let stream = h.stream.clone();
        let mut gets = futures::stream::iter(first..=state.last_sequence)
            .map(|seq| {
                let stream = stream.clone();
                async move { (seq, stream.get_raw_message(seq).await) }
            })
            .buffered(READ_PIPELINE.min(limit));
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some((seq, got)) = gets.next().await {
            match got {
                Ok(m) => {
                    bytes += m.payload.len();
                    if bytes > READ_BUDGET && !out.is_empty() {
                        break;
                    }
                    if m.payload.first() != Some(&b'{') {
                        return Err(StoreError::Corrupt(format!(
                            "event {seq} of `{source}` in stream {} is not an envelope",
                            self.inner.stream_name(source)
                        )));
                    }
                    out.push((seq, Bytes::from(super::envelope::line(seq, &m.payload))));
                    if out.len() >= limit {
                        break;
                    }
                }
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => {}
                Err(e) => {
                    self.inner.forget(source);
                    return Err(unavailable(&format!("read {source} at {seq}"), e));
                }
            }
        }
        Ok(out)
    }

    async fn last_offset(&self, source: &str) -> Result<Option<u64>, StoreError> {
        self.inner.connected()?;
        Ok(self
            .inner
            .stream_state(source)
            .await?
            .map(|s| s.last_sequence)
            .filter(|l| *l > 0))
    }

    fn subscribe(&self, source: &str) -> watch::Receiver<u64> {
        self.inner.commits.subscribe(source)
    }

    async fn checkpoint(
        &self,
        source: &str,
        partition: Option<&str>,
    ) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.inner.read_checkpoint(source, partition).await?.1)
    }

    async fn checkpoints(
        &self,
        source: &str,
    ) -> Result<Vec<(Option<String>, Checkpoint)>, StoreError> {
        self.inner.connected()?;
        let prefix = format!("{source}.");
        let keys = keys_with_prefix(&self.inner.checkpoints, &prefix, "checkpoint keys").await?;
        let mut out = Vec::new();
        for key in keys {
            let Some(partition) = parse_token(&key[prefix.len()..]) else {
                continue;
            };
            if let (_, Some(cp)) = self
                .inner
                .read_checkpoint(source, partition.as_deref())
                .await?
            {
                out.push((partition, cp));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn set_checkpoint(
        &self,
        source: &str,
        partition: Option<&str>,
        value: Option<String>,
    ) -> Result<(), StoreError> {
        self.inner.connected()?;
        let key = checkpoint_key(source, partition);
        let kv = &self.inner.checkpoints;
        match value {
            Some(v) => {
                let cp = Checkpoint::V1 {
                    value: v.clone(),
                    updated_ms: now_ms(),
                };
                kv.put(&key, Bytes::from(serde_json::to_vec(&cp).expect("json")))
                    .await
                    .map_err(|e| unavailable(&format!("checkpoint {key}"), e))?;
            }
            None => {
                kv.delete(&key)
                    .await
                    .map_err(|e| unavailable(&format!("checkpoint {key}"), e))?;
            }
        }
        Ok(())
    }

    async fn collect_expired(&self, _now_ms: u64) -> Result<usize, StoreError> {
        // JetStream expires msg-ids (duplicate window) and idempotency
        // records (bucket max age) itself.
        Ok(0)
    }

    fn size_on_disk(&self) -> u64 {
        self.inner.size.load(Ordering::Relaxed)
    }

    fn available(&self) -> Result<(), StoreError> {
        self.inner.connected()
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every write was acknowledged by JetStream before it returned.
        self.inner
            .client
            .flush()
            .await
            .map_err(|e| unavailable("flush", e))
    }

    async fn cursor(&self, source: &str, name: &str) -> Result<Option<u64>, StoreError> {
        self.inner.connected()?;
        let key = format!("{source}.{name}");
        let value = self
            .inner
            .cursors
            .get(key.clone())
            .await
            .map_err(|e| unavailable(&format!("cursor {key}"), e))?;
        value
            .map(|v| {
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt(format!("cursor {key} is not a number")))
            })
            .transpose()
    }

    async fn cursors(&self, source: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.connected()?;
        let prefix = format!("{source}.");
        let keys = keys_with_prefix(&self.inner.cursors, &prefix, "cursor keys").await?;
        let mut out = Vec::new();
        for key in keys {
            let name = key[prefix.len()..].to_string();
            if let Some(offset) = self.cursor(source, &name).await? {
                out.push((name, offset));
            }
        }
        out.sort();
        Ok(out)
    }

    async fn set_cursor(&self, source: &str, name: &str, offset: u64) -> Result<(), StoreError> {
        self.inner.connected()?;
        let key = format!("{source}.{name}");
        self.inner
            .cursors
            .put(&key, Bytes::from(offset.to_string()))
            .await
            .map_err(|e| unavailable(&format!("cursor {key}"), e))?;
        Ok(())
    }

    /// The same policy as on sled: events older than `max_age` go once every
    /// consumer cursor has passed them; over `max_bytes` (the stream's own
    /// byte count) the oldest go even if unread (`forced`). Removal is a
    /// purge up to a sequence, so what goes is always a prefix.
    async fn trim(
        &self,
        source: &str,
        policy: &Retention,
        now: u64,
    ) -> Result<TrimOutcome, StoreError> {
        self.inner.connected()?;
        let Some(h) = self.inner.source(source, None).await? else {
            return Ok(TrimOutcome::default());
        };
        let Some(state) = self.inner.stream_state(source).await? else {
            return Ok(TrimOutcome::default());
        };
        let lowest_cursor = self
            .cursors(source)
            .await?
            .into_iter()
            .map(|(_, o)| o)
            .min();
        let cutoff = policy
            .max_age
            .map(|age| now.saturating_sub(age.as_millis() as u64));
        let subject_len = self.inner.subject(source).len() as u64;
        let mut total = state.bytes;
        let mut out = TrimOutcome::default();
        let mut keep_from = None;
        let last = state
            .last_sequence
            .min(state.first_sequence.saturating_add(TRIM_SCAN_MAX));
        let stream = h.stream.clone();
        let mut gets = futures::stream::iter(state.first_sequence..=last)
            .map(|seq| {
                let stream = stream.clone();
                async move { (seq, stream.get_raw_message(seq).await) }
            })
            .buffered(READ_PIPELINE);
        while let Some((seq, got)) = gets.next().await {
            let m = match got {
                Ok(m) => m,
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => continue,
                Err(e) => return Err(unavailable(&format!("retention of {source}"), e)),
            };
            let unread = lowest_cursor.is_some_and(|c| seq > c);
            let expired = cutoff
                .is_some_and(|c| super::envelope::received_ms(&m.payload).is_some_and(|r| r < c));
            let over = policy.max_bytes.is_some_and(|max| total > max);
            if !(over || (expired && !unread)) {
                break;
            }
            // What the file store counts for a message: its fixed record,
            // subject, headers (the msg-id) and payload.
            total = total.saturating_sub(
                STORED_OVERHEAD + subject_len + header_len(&m.headers) + m.payload.len() as u64,
            );
            out.removed += 1;
            if unread {
                out.forced += 1;
            }
            keep_from = Some(seq + 1);
        }
        drop(gets);
        if let Some(keep_from) = keep_from {
            let purged = h
                .stream
                .purge()
                .sequence(keep_from)
                .await
                .map_err(|e| unavailable(&format!("retention of {source}"), e))?;
            out.removed = purged.purged;
            out.forced = out.forced.min(out.removed);
        }
        out.bytes_after = match self.inner.stream_state(source).await? {
            Some(s) => s.bytes,
            None => 0,
        };
        Ok(out)
    }

    async fn lease(
        &self,
        source: &str,
        partition: Option<&str>,
        of: usize,
    ) -> Result<bool, StoreError> {
        let inner = &self.inner;
        inner.connected()?;
        let _ops = inner.lease_ops.lock().await;
        if inner.closing.load(Ordering::Acquire) {
            return Ok(false);
        }
        if !inner.joined.lock().expect("lock").contains(source) {
            // A manual pull on a host whose schedule has not joined yet.
            drop(_ops);
            self.join(source).await;
            return Box::pin(self.lease(source, partition, of)).await;
        }
        let hosts = inner
            .members
            .lock()
            .expect("lock")
            .get(source)
            .copied()
            .unwrap_or(1)
            .max(1);
        let share = of.div_ceil(hosts).max(1);
        let key = lease_key(source, partition);
        let (held_here, held_for_source) = {
            let mut held = inner.held.lock().expect("lock");
            let mine = held.get_mut(&key).map(|h| {
                h.last_used = Instant::now();
                h.revision
            });
            let count = held.values().filter(|h| h.source == source).count();
            (mine, count)
        };
        if let Some(revision) = held_here {
            if held_for_source > share {
                // More than a fair share since other hosts joined: hand this
                // one over (the run has not started on it).
                inner.held.lock().expect("lock").remove(&key);
                let _ = inner
                    .bounded(inner.leases.delete_expect_revision(&key, Some(revision)))
                    .await;
                tracing::info!(lease = %key, share, hosts, "Pull lease handed over to balance the hosts.");
                return Ok(false);
            }
            if inner.renew(&key, revision).await? {
                return Ok(true);
            }
            // Expired (and perhaps taken): claim it afresh below.
        } else if held_for_source >= share {
            return Ok(false);
        }
        match inner
            .bounded(claim(
                &inner.leases,
                &key,
                Bytes::from(inner.host_id.clone()),
            ))
            .await?
        {
            Ok(Some(revision)) => {
                inner.held.lock().expect("lock").insert(
                    key.clone(),
                    Held {
                        source: source.to_string(),
                        revision,
                        last_used: Instant::now(),
                    },
                );
                tracing::debug!(lease = %key, "Pull lease taken.");
                Ok(true)
            }
            // Another host's (a lease is never adopted: two processes with
            // one host id must not both hold it).
            Ok(None) => Ok(false),
            Err(e) => Err(unavailable(&format!("lease {key}"), e)),
        }
    }

    async fn keep_lease(&self, source: &str, partition: Option<&str>) -> Result<bool, StoreError> {
        let inner = &self.inner;
        inner.connected()?;
        let _ops = inner.lease_ops.lock().await;
        if inner.closing.load(Ordering::Acquire) {
            return Ok(false);
        }
        let key = lease_key(source, partition);
        let revision = {
            let mut held = inner.held.lock().expect("lock");
            match held.get_mut(&key) {
                Some(h) => {
                    h.last_used = Instant::now();
                    h.revision
                }
                None => return Ok(false),
            }
        };
        inner.renew(&key, revision).await
    }

    async fn release_leases(&self) {
        let inner = &self.inner;
        let _ops = inner.lease_ops.lock().await;
        inner.closing.store(true, Ordering::Release);
        inner.release(None).await;
        let joined: Vec<String> = inner.joined.lock().expect("lock").drain().collect();
        for source in joined {
            let _ = inner
                .bounded(
                    inner
                        .leases
                        .delete(format!("member.{source}.{}", inner.host_id)),
                )
                .await;
        }
    }

    async fn drop_lease(&self, source: &str, partition: Option<&str>) {
        let inner = &self.inner;
        let _ops = inner.lease_ops.lock().await;
        let key = lease_key(source, partition);
        let held = inner.held.lock().expect("lock").remove(&key);
        if let Some(h) = held {
            let _ = inner
                .bounded(inner.leases.delete_expect_revision(&key, Some(h.revision)))
                .await;
        }
    }

    async fn join(&self, source: &str) {
        let inner = &self.inner;
        if inner.closing.load(Ordering::Acquire)
            || !inner
                .joined
                .lock()
                .expect("lock")
                .insert(source.to_string())
        {
            return;
        }
        let key = format!("member.{source}.{}", inner.host_id);
        let joined = inner
            .bounded(inner.leases.put(&key, Bytes::from(now_ms().to_string())))
            .await;
        if !matches!(joined, Ok(Ok(_))) {
            tracing::debug!(
                source,
                "Joining the pullers of a source failed; the next heartbeat retries."
            );
        }
        // Count this host at once; the next listing corrects the number.
        let mut members = inner.members.lock().expect("lock");
        let n = members.entry(source.to_string()).or_insert(0);
        *n += 1;
    }

    async fn leave(&self, source: &str) {
        let inner = &self.inner;
        let _ops = inner.lease_ops.lock().await;
        inner.joined.lock().expect("lock").remove(source);
        inner.release(Some(source)).await;
        let _ = inner
            .bounded(
                inner
                    .leases
                    .delete(format!("member.{source}.{}", inner.host_id)),
            )
            .await;
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

/// Opens the KV bucket `name`, creating its stream (`KV_{name}`) when
/// missing and updating its history, max age and replicas when they
/// differ. Done by hand: the client's KV constructors query account fields
/// that nats-server 2.9 does not send.
async fn kv_bucket(
    js: &jetstream::Context,
    name: &str,
    history: i64,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, StoreError> {
    // Checkpoints and leases are read from the stream leader: a direct get
    // may be answered by a replica that lags (harmless for idempotency
    // answers, which a create settles anyway).
    let allow_direct = name.contains("idem_");
    let config = stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: history,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct,
        num_replicas: replicas,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    let what = || format!("cannot open KV bucket {name}");
    let mut stream = js
        .get_or_create_stream(config.clone())
        .await
        .map_err(|e| unavailable(&what(), e))?;
    let current = &stream.cached_info().config;
    if current.max_messages_per_subject != history
        || current.max_age != max_age
        || current.num_replicas != replicas
        || current.allow_direct != allow_direct
    {
        js.update_stream(config)
            .await
            .map_err(|e| unavailable(&what(), e))?;
        stream = js
            .get_stream(format!("KV_{name}"))
            .await
            .map_err(|e| unavailable(&what(), e))?;
    }
    drop(stream);
    js.get_key_value(name)
        .await
        .map_err(|e| unavailable(&what(), e))
}

/// What a commit's publish acks added up to.
#[derive(Default)]
struct Settled {
    record: PushRecord,
    dropped: u32,
    /// Sequences already counted for this commit (one event id twice in a
    /// request is one event).
    counted: std::collections::HashSet<u64>,
}

impl Settled {
    /// Waits for one publish ack. A duplicate of this request's own event
    /// (an earlier attempt of the same idempotency key stored it, on this
    /// host or another) is this request's; any other duplicate is dropped.
    async fn settle(
        &mut self,
        inner: &Inner,
        source: &str,
        handles: &SourceHandles,
        idem_key: Option<&str>,
        ack: jetstream::context::PublishAckFuture,
        own: bool,
    ) -> Result<(), StoreError> {
        let ack = match ack.await {
            Ok(ack) => ack,
            Err(e) => {
                // Looked up again next time, in case the stream was deleted
                // or changed behind our back.
                inner.forget(source);
                return Err(unavailable("publish ack", e));
            }
        };
        let own = own
            || (ack.duplicate
                && match idem_key {
                    Some(k) => {
                        match handles.stream.get_raw_message(ack.sequence).await {
                            Ok(original) => original
                                .headers
                                .get(KEY_HEADER)
                                .is_some_and(|v| v.as_str() == k),
                            // Removed by retention since: not this request's.
                            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                                false
                            }
                            Err(e) => return Err(unavailable("reading a duplicate's original", e)),
                        }
                    }
                    None => false,
                });
        if (ack.duplicate && !own) || !self.counted.insert(ack.sequence) {
            self.dropped += 1;
            return Ok(());
        }
        let r = &mut self.record;
        r.events += 1;
        r.first_offset = Some(r.first_offset.map_or(ack.sequence, |f| f.min(ack.sequence)));
        r.last_offset = Some(r.last_offset.map_or(ack.sequence, |l| l.max(ack.sequence)));
        Ok(())
    }
}

/// The part of a replay msg-id shared by a pull batch's id-less events:
/// the partition and the checkpoint it was pulled from. Only for batches
/// that move the checkpoint: a replay after a crash is the same pull from
/// the same checkpoint. A batch that leaves the checkpoint where it was
/// cannot be told from new data and gets no msg-ids (as on sled).
fn replay_base(commit: &Commit) -> Option<String> {
    let (partition, next) = commit.checkpoint.as_ref()?;
    let since = commit.since.as_ref()?.value.as_deref();
    if since == Some(next.as_str()) {
        return None;
    }
    Some(sha(&[
        partition.as_deref().unwrap_or("").as_bytes(),
        since.map_or(&b"\0none"[..], str::as_bytes),
    ]))
}

/// A digest of a stored envelope without its `received_ms` and `connector`
/// label, which differ between an original pull and its replay (later, or
/// after a reload, or on another host).
fn content_digest(tail: &[u8]) -> String {
    let mut kept: Vec<&[u8]> = Vec::with_capacity(3);
    let mut rest = tail;
    for (field, is_string) in [
        (&b"\"received_ms\":"[..], false),
        (&b"\"connector\":\""[..], true),
    ] {
        let Some(at) = rest.windows(field.len()).position(|w| w == field) else {
            continue;
        };
        kept.push(&rest[..at]);
        let value = &rest[at + field.len()..];
        let len = if is_string {
            // Labels are `name@version+sha256:hex`: no quotes or escapes.
            value
                .iter()
                .position(|b| *b == b'"')
                .map_or(value.len(), |q| q + 1)
        } else {
            value.iter().take_while(|b| b.is_ascii_digit()).count()
        };
        rest = &value[len..];
    }
    kept.push(rest);
    sha(&kept)
}

/// The wire size of a message's headers (`NATS/1.0` line, one
/// `Name: value` line each, blank line), as the file store counts them.
fn header_len(headers: &async_nats::HeaderMap) -> u64 {
    if headers.is_empty() {
        return 0;
    }
    let lines: usize = headers
        .iter()
        .map(|(name, values)| {
            values
                .iter()
                .map(|v| AsRef::<str>::as_ref(name).len() + 2 + v.as_str().len() + 2)
                .sum::<usize>()
        })
        .sum();
    (10 + lines + 2) as u64
}

/// Writes `key` only if it has no value (absent, expired or deleted):
/// `Some(revision)`, or `None` when it has one. Unlike the client's
/// `create`, a write whose ack was lost is an error, never "exists" (which
/// would make this host's own write look like another's).
async fn claim(kv: &kv::Store, key: &str, value: Bytes) -> Result<Option<u64>, kv::UpdateError> {
    match kv.update(key, value.clone(), 0).await {
        Ok(revision) => Ok(Some(revision)),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            let entry = kv
                .entry(key)
                .await
                .map_err(|e| kv::UpdateError::with_source(kv::UpdateErrorKind::Other, e))?;
            match entry {
                Some(e) if e.operation != kv::Operation::Put => {
                    match kv.update(key, value, e.revision).await {
                        Ok(revision) => Ok(Some(revision)),
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
                        Err(e) => Err(e),
                    }
                }
                _ => Ok(None),
            }
        }
        Err(e) => Err(e),
    }
}

/// The keys of a KV bucket that start with `prefix` (a listing of the
/// bucket: for status, memberships and retention, never a hot path).
async fn keys_with_prefix(
    kv: &kv::Store,
    prefix: &str,
    what: &str,
) -> Result<Vec<String>, StoreError> {
    kv.keys()
        .await
        .map_err(|e| unavailable(what, e))?
        .try_filter(|k| futures::future::ready(k.starts_with(prefix)))
        .try_collect()
        .await
        .map_err(|e| unavailable(what, e))
}

async fn read_record(kv: &kv::Store, key: &str) -> Result<Option<PushRecord>, StoreError> {
    let value = kv
        .get(key)
        .await
        .map_err(|e| unavailable("idempotency record", e))?;
    value
        .map(|v| {
            serde_json::from_slice(&v).map_err(|e| {
                StoreError::Corrupt(format!("idempotency record {key} is unreadable: {e}"))
            })
        })
        .transpose()
}

/// Moves a checkpoint from `expected`, the revision the pull read; fails
/// if anyone wrote it since.
async fn set_checkpoint_cas(
    inner: &Inner,
    source: &str,
    partition: Option<&str>,
    value: &str,
    expected: u64,
) -> Result<(), StoreError> {
    let key = checkpoint_key(source, partition);
    let cp = Checkpoint::V1 {
        value: value.to_string(),
        updated_ms: now_ms(),
    };
    let bytes = Bytes::from(serde_json::to_vec(&cp).expect("json"));
    match inner.checkpoints.update(&key, bytes, expected).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            Err(StoreError::Conflict(format!(
                "the checkpoint {key} moved since this pull read it (another host or the admin API wrote it); the batch's events are kept, their msg-ids make the re-pull harmless"
            )))
        }
        Err(e) => Err(unavailable(&format!("checkpoint {key}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tokens_round_trip_and_stay_kv_safe() {
        for p in [None, Some("eu-1"), Some("a.b/c d"), Some(""), Some("ü")] {
            let t = key_token(p);
            assert!(
                t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{t}"
            );
            assert_eq!(parse_token(&t), Some(p.map(str::to_string)), "{t}");
        }
        assert_ne!(key_token(Some("default")), key_token(None));
    }

    #[test]
    fn hashes_separate_their_parts() {
        assert_ne!(sha(&[b"ab", b"c"]), sha(&[b"a", b"bc"]));
    }
}
