//! Durable storage: per-source journals, dedup marks and checkpoints behind
//! one trait, so a distributed implementation can replace the embedded one.
//!
//! The storage interface is split by what callers need: [`Journal`]
//! (events, dedup, idempotency, retention), [`Checkpoints`], [`Cursors`],
//! [`PullLeases`] and [`DeadLetters`]; [`Store`] is all five, the object
//! the host holds.
//!
//! Every write is a [`Commit`]: the events of one push request or one pull
//! batch, their dedup marks, the request's idempotency mark and the new
//! checkpoint. On sled a commit is one atomic batch, flushed to disk before
//! the call returns. On JetStream its events are published one by one and
//! the call returns once every publish is acknowledged (stored by the
//! stream's replicas); the idempotency answer and the checkpoint are
//! written after them, so a crash in between leaves events without the
//! marks, and the retry or the next pull re-publishes them under the same
//! msg-ids, which the stream drops (see `jetstream/mod.rs`). Nothing is
//! acknowledged before the events are durable.

pub(crate) mod dead_letters;
mod envelope;
mod jetstream;
mod signals;
mod sled;

pub use dead_letters::{
    DeadLetter, DeadLetterFilter, DeadLetterPage, DeadLetterStats, DeadLetters, DeadRequest,
};
pub use envelope::Mode;
pub use jetstream::JetStreamStore;
pub use signals::CommitSignals;
pub use sled::SledStore;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An event ready for the journal: its dedup id and its envelope, rendered
/// off the writer's path, with the offset still to be assigned.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub(crate) id: Option<String>,
    pub(crate) tail: Vec<u8>,
}

/// One atomic write.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The source (connector file stem) the events belong to.
    pub source: String,
    pub events: Vec<PreparedEvent>,
    /// How long the event ids and the idempotency key are remembered.
    pub dedup_window: Duration,
    /// The push request's idempotency key and the answer it got.
    pub idempotency: Option<(String, PushRecord)>,
    /// The checkpoint to store with these events (pull batches).
    pub checkpoint: Option<(Option<String>, String)>,
    /// The checkpoint the batch was pulled from (pull batches): a shared
    /// store writes `checkpoint` only if nobody moved it since.
    pub since: Option<CheckpointRead>,
}

/// A checkpoint as a pull read it: its value and the store's revision of it
/// (0 when the store keeps none, or there is no checkpoint yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointRead {
    pub value: Option<String>,
    pub revision: u64,
}

/// What a push request was answered, remembered with its idempotency key so
/// that a retry gets the original answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    /// Events stored by the original request (after dedup).
    pub events: u32,
    pub first_offset: Option<u64>,
    pub last_offset: Option<u64>,
    /// The connector's own reply, if it gave one.
    pub reply: Option<StoredReply>,
}

/// A connector-provided HTTP reply, as remembered for retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Base64 in the record (before, a JSON array of numbers: up to four
    /// bytes a byte; both are read).
    #[serde(with = "reply_body")]
    pub body: Vec<u8>,
}

mod reply_body {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(body))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Base64(String),
        Numbers(Vec<u8>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Stored::deserialize(d)? {
            Stored::Base64(text) => STANDARD.decode(text).map_err(serde::de::Error::custom),
            Stored::Numbers(bytes) => Ok(bytes),
        }
    }
}

/// The result of a [`Commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The commit is on disk. `record` has the offsets actually assigned;
    /// `dropped` counts events whose id was already stored.
    Stored { record: PushRecord, dropped: u32 },
    /// The idempotency key was seen within its window; nothing was written.
    Duplicate(PushRecord),
}

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version")]
pub enum Checkpoint {
    #[serde(rename = "1")]
    V1 {
        /// The connector's cursor, opaque to the host.
        value: String,
        /// When it was written, in ms since the epoch.
        updated_ms: u64,
    },
}

impl Checkpoint {
    pub fn value(&self) -> &str {
        match self {
            Checkpoint::V1 { value, .. } => value,
        }
    }

    pub fn updated_ms(&self) -> u64 {
        match self {
            Checkpoint::V1 { updated_ms, .. } => *updated_ms,
        }
    }
}

/// A storage failure. The store is unusable for this call; nothing of the
/// call was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
    /// A compare-and-set lost: someone else wrote the value first.
    #[error("store write conflict: {0}")]
    Conflict(String),
    /// The store's settings cannot work (a bad URL, a missing secret).
    #[error("store settings: {0}")]
    Config(String),
}

/// Everything the host needs from storage, as one object: the journal,
/// checkpoints, consumer cursors, pull leases and dead letters.
/// Implemented for any type that implements the five parts; callers name
/// the part they use (`use crate::store::Journal as _`).
pub trait Store: Journal + Checkpoints + Cursors + PullLeases + DeadLetters {}

impl<T: Journal + Checkpoints + Cursors + PullLeases + DeadLetters> Store for T {}

/// The per-source journal: events, their dedup marks and idempotency
/// answers, long-poll signals and retention.
#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Applies `commit` atomically (see the store's docs for what that means
    /// on a shared store) and returns once it is durable.
    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError>;

    /// The remembered answer for an unexpired idempotency key, if any.
    async fn idempotency(&self, source: &str, key: &str) -> Result<Option<PushRecord>, StoreError>;

    /// Up to `limit` NDJSON lines (without newline) with offsets greater than
    /// `after` (or from the start).
    async fn read(
        &self,
        source: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, bytes::Bytes)>, StoreError>;

    /// The highest offset stored for `source`.
    async fn last_offset(&self, source: &str) -> Result<Option<u64>, StoreError>;

    /// A receiver that changes after every commit to `source` (and only
    /// then, or on a store's own poll tick), for long polls.
    fn subscribe(&self, source: &str) -> tokio::sync::watch::Receiver<u64>;

    /// Removes dedup marks that expired before `now_ms`; returns how many.
    async fn collect_expired(&self, now_ms: u64) -> Result<usize, StoreError>;

    /// Applies a retention policy to the journal of `source`, oldest first.
    async fn trim(
        &self,
        source: &str,
        policy: &Retention,
        now_ms: u64,
    ) -> Result<TrimOutcome, StoreError>;

    /// Bytes on disk.
    fn size_on_disk(&self) -> u64;

    /// Whether the store can take writes now, cheaply (no I/O): `/readyz`
    /// fails while it cannot, so a load balancer routes around this host.
    fn available(&self) -> Result<(), StoreError>;

    /// Flushes everything written so far to disk.
    async fn flush(&self) -> Result<(), StoreError>;
}

/// Pull checkpoints, per source and partition.
#[async_trait]
pub trait Checkpoints: Send + Sync + 'static {
    async fn checkpoint(
        &self,
        source: &str,
        partition: Option<&str>,
    ) -> Result<Option<Checkpoint>, StoreError>;

    /// The checkpoint a pull starts from, with the revision a later
    /// [`Commit::since`] names (0 on a store that keeps no revisions).
    async fn checkpoint_for_pull(
        &self,
        source: &str,
        partition: Option<&str>,
    ) -> Result<CheckpointRead, StoreError>;

    /// Every checkpoint of `source`, keyed by partition.
    async fn checkpoints(
        &self,
        source: &str,
    ) -> Result<Vec<(Option<String>, Checkpoint)>, StoreError>;

    /// Sets (`Some`) or removes (`None`) a checkpoint, durably.
    async fn set_checkpoint(
        &self,
        source: &str,
        partition: Option<&str>,
        value: Option<String>,
    ) -> Result<(), StoreError>;
}

/// Consumer cursors: how far each named reader of a journal has read.
#[async_trait]
pub trait Cursors: Send + Sync + 'static {
    /// A consumer cursor: the last offset consumer `name` has read.
    async fn cursor(&self, source: &str, name: &str) -> Result<Option<u64>, StoreError>;

    /// Every consumer cursor of `source`.
    async fn cursors(&self, source: &str) -> Result<Vec<(String, u64)>, StoreError>;

    /// Registers or moves a consumer cursor, durably.
    async fn set_cursor(&self, source: &str, name: &str, offset: u64) -> Result<(), StoreError>;
}

/// Which host pulls which partition. A store one host owns alone grants
/// every lease (`SledStore`); a shared store divides them.
#[async_trait]
pub trait PullLeases: Send + Sync + 'static {
    /// Claims (or renews) this host's pull lease on `source`/`partition`,
    /// one of the `of` partitions the connector has; `true` when this host
    /// may pull it now. Hosts sharing a store each take about `of / hosts`
    /// leases.
    async fn lease(
        &self,
        source: &str,
        partition: Option<&str>,
        of: usize,
    ) -> Result<bool, StoreError>;

    /// Renews a lease this host holds, between the batches of a run: no
    /// rebalancing; `false` when it was lost (the run stops).
    async fn keep_lease(&self, source: &str, partition: Option<&str>) -> Result<bool, StoreError>;

    /// Gives up this host's lease of one partition (after a failed run, so
    /// a healthy host can take the partition over).
    async fn drop_lease(&self, source: &str, partition: Option<&str>);

    /// This host's pull schedule of `source` started: it shares the
    /// partitions of `source` with the other hosts that pull it.
    async fn join(&self, source: &str);

    /// This host stopped pulling `source` (unloaded): its leases are
    /// released and the other hosts stop counting it.
    async fn leave(&self, source: &str);

    /// Gives up every lease this host holds (at shutdown), so other hosts
    /// take the partitions over at once instead of after the TTL.
    async fn release_leases(&self);
}

/// How long, and how much, of a source's journal to keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Events received longer ago than this may go, once every consumer
    /// cursor has passed them.
    pub max_age: Option<Duration>,
    /// The journal is cut, oldest first, to stay under this many bytes, even
    /// if a consumer has not read those events yet.
    pub max_bytes: Option<u64>,
}

/// What [`Store::trim`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrimOutcome {
    pub removed: u64,
    /// Of those, events a consumer cursor had not reached (forced by
    /// `max_bytes`).
    pub forced: u64,
    pub bytes_after: u64,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_body_is_stored_as_base64_and_old_records_still_read() {
        let record = PushRecord {
            reply: Some(StoredReply {
                status: 200,
                headers: vec![],
                body: vec![0xff; 300],
            }),
            ..Default::default()
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.len() < 500, "{} bytes", json.len());
        assert_eq!(serde_json::from_str::<PushRecord>(&json).unwrap(), record);
        let old = r#"{"events":0,"first_offset":null,"last_offset":null,
            "reply":{"status":200,"headers":[],"body":[104,105]}}"#;
        let old: PushRecord = serde_json::from_str(old).unwrap();
        assert_eq!(old.reply.unwrap().body, b"hi");
    }
}
