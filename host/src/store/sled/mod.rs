//! The embedded store: one sled tree, one writer thread doing group commit.
//!
//! Key layout (one tree, so that one `apply_batch` is atomic):
//!
//! | key                                   | value                          |
//! |---------------------------------------|--------------------------------|
//! | `e` 0 source 0 offset(u64 BE)         | `1` + NDJSON envelope line     |
//! | `i` 0 source 0 idempotency key        | `1` + expiry(u64 BE) + JSON [`PushRecord`] |
//! | `d` 0 source 0 event id               | `1` + expiry(u64 BE)           |
//! | `c` 0 source 0 (0 \| 1 partition)     | JSON [`Checkpoint`] (version-tagged) |
//! | `o` 0 source 0                        | next offset (u64 BE), written by `trim` before it removes events, so offsets never repeat |
//! | `u` 0 source 0 consumer               | cursor offset (u64 BE)         |
//! | `x` 0 source 0 dead-letter id         | a [`DeadLetter`](crate::store::DeadLetter) (see `dead_letters.rs`) |
//!
//! Values start with a format version byte. Commits are sent to a single
//! writer thread that drains every request waiting, applies them as one
//! batch and flushes once: concurrent requests share one fsync, and no
//! caller is answered before that fsync returns.

mod compact;
mod dead;
mod keys;
#[cfg(test)]
mod tests;
mod writer;

use self::keys::{
    FORMAT_V1, checkpoint_key, decode_checkpoint, decode_idempotency, decode_u64, event_key, io,
    key, last_offset,
};
use self::writer::{Op, Writer};
use super::{
    Checkpoint, CheckpointRead, Checkpoints, Commit, CommitOutcome, CommitSignals, Cursors,
    Journal, PullLeases, PushRecord, Retention, StoreError, TrimOutcome, now_ms,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot, watch};

/// Most bytes one `read` returns (it always returns at least one event).
const READ_BUDGET: usize = 8 << 20;

/// How long one group write (batch and flush) may take before the store
/// counts as stalled: a request waiting on it is answered
/// `store_unavailable` (its write may still land; a retry is deduplicated)
/// and `/readyz` fails until the writer moves again. A healthy flush takes
/// milliseconds; a disk or a descriptor table in trouble can block for
/// ever, and then no request may wait for ever with it.
pub const WRITE_STALL: std::time::Duration = std::time::Duration::from_secs(10);

/// How long dropping the store waits for its writer to finish.
const WRITER_EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The sled implementation of [`Store`].
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    /// The highest durable offset per source written by this process;
    /// readers never see past it (everything found at open is durable).
    visible: Arc<std::sync::Mutex<HashMap<String, u64>>>,
    ops: mpsc::UnboundedSender<Op>,
    commits: Arc<CommitSignals>,
    /// Set by the writer when a write failed: from then on the in-memory
    /// tree may hold what never reached the disk, so nothing answers from
    /// it (idempotency, dedup) and `/readyz` fails until a restart.
    failed: Arc<OnceLock<String>>,
    /// When the writer started the group it is writing (ms on `clock`,
    /// plus one), 0 while it waits for work.
    busy_since_ms: Arc<AtomicU64>,
    /// A monotonic clock shared with the writer.
    clock: std::time::Instant,
    /// Dead letters' count and bytes per source, counted once per source
    /// from the tree and then kept in step by this process (the only one
    /// writing the store); its lock also orders dead-letter writes.
    dead: tokio::sync::Mutex<HashMap<String, crate::store::DeadLetterStats>>,
    /// Dead letters being replayed (source, id).
    replaying: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    _writer: Arc<WriterHandle>,
}

struct WriterHandle(Option<std::thread::JoinHandle<()>>);

impl Drop for WriterHandle {
    fn drop(&mut self) {
        // The sender is dropped before this handle (field order), so the
        // writer drains what is queued and exits; a writer stuck in a
        // write is left behind rather than holding up the exit for ever.
        if let Some(h) = self.0.take() {
            let started = std::time::Instant::now();
            while !h.is_finished() && started.elapsed() < WRITER_EXIT_WAIT {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::error!(waited = ?WRITER_EXIT_WAIT, "The store writer is stuck in a write; exiting without it.");
            }
        }
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, observing each flush's
    /// duration. With `durable = false` commits are not flushed before they
    /// are acknowledged (benchmarks only).
    pub fn open_with(
        dir: &Path,
        durable: bool,
        flush_histogram: Option<prometheus_client::metrics::histogram::Histogram>,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))?;
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .mode(sled::Mode::HighThroughput)
            // Durability comes from the explicit flush after each group.
            .flush_every_ms(if durable { None } else { Some(1000) })
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Io(format!(
                        "{}: the data directory is in use by another process (is another `inlet serve` running on it?)",
                        dir.display()
                    ))
                }
                sled::Error::Corruption { .. } => corrupt(dir, &e.to_string()),
                other => {
                    let err = io(other);
                    StoreError::Io(format!("{}: cannot open the store: {err}", dir.display()))
                }
            })?;
        let tree = db.open_tree("inlet").map_err(io)?;
        check_marker(dir, &db, &tree)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let commits = Arc::new(CommitSignals::default());
        let visible = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let failed = Arc::new(OnceLock::new());
        let busy_since_ms = Arc::new(AtomicU64::new(0));
        let clock = std::time::Instant::now();
        let writer = Writer {
            busy_since_ms: busy_since_ms.clone(),
            clock,
            db: db.clone(),
            tree: tree.clone(),
            durable,
            flush_histogram,
            failed: failed.clone(),
            visible: visible.clone(),
            next_offsets: HashMap::new(),
            commits: commits.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("inlet-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(SledStore {
            db,
            tree,
            visible,
            ops: tx,
            commits,
            failed,
            busy_since_ms,
            clock,
            dead: Default::default(),
            replaying: Default::default(),
            _writer: Arc::new(WriterHandle(Some(handle))),
        })
    }
}

impl SledStore {
    /// The writer's answer to one request, or an error once the writer has
    /// been stuck past [`WRITE_STALL`].
    async fn answer<T>(
        &self,
        rx: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let mut rx = std::pin::pin!(rx);
        loop {
            // Waiting behind other groups is not a stall; one group stuck
            // in its write for WRITE_STALL is.
            match tokio::time::timeout(std::time::Duration::from_secs(1), rx.as_mut()).await {
                Ok(answer) => return answer.map_err(|_| StoreError::Closed)?,
                Err(_) => {
                    if let Some(stuck) = self.stuck_for() {
                        tracing::error!(
                            stuck_ms = stuck.as_millis() as u64,
                            "The store writer is stuck in one write; the request fails (its write may still land)."
                        );
                        return Err(StoreError::Io(format!(
                            "the store writer has been stuck in one write for {} s",
                            stuck.as_secs()
                        )));
                    }
                }
            }
        }
    }

    /// How long the writer has been in its current group, if past
    /// [`WRITE_STALL`].
    fn stuck_for(&self) -> Option<std::time::Duration> {
        let since = self.busy_since_ms.load(Ordering::Relaxed);
        let busy = std::time::Duration::from_millis(
            (self.clock.elapsed().as_millis() as u64).saturating_sub(since),
        );
        (since != 0 && busy > WRITE_STALL).then_some(busy)
    }
}

#[async_trait]
impl Journal for SledStore {
    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        self.available()?;
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(Op::Commit(commit, tx))
            .map_err(|_| StoreError::Closed)?;
        self.answer(rx).await
    }

    async fn idempotency(
        &self,
        source: &str,
        key_: &str,
    ) -> Result<Option<PushRecord>, StoreError> {
        // After a failed write the tree may hold a record that never
        // reached the disk: no answer from it.
        self.available()?;
        let Some(value) = self
            .tree
            .get(key(b'i', source, key_.as_bytes()))
            .map_err(io)?
        else {
            return Ok(None);
        };
        decode_idempotency(&value, now_ms())
    }

    async fn read(
        &self,
        source: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let start = match after {
            Some(o) if o == u64::MAX => return Ok(Vec::new()),
            Some(o) => event_key(source, o + 1),
            None => event_key(source, 0),
        };
        let end = event_key(source, u64::MAX);
        // Offsets this process wrote but has not flushed yet stay hidden: a
        // crash could still take them back.
        let durable = self
            .visible
            .lock()
            .expect("visible lock")
            .get(source)
            .copied();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.tree.range(start..=end).take(limit) {
            let (k, v) = item.map_err(io)?;
            let offset = u64::from_be_bytes(
                k[k.len() - 8..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("short event key".into()))?,
            );
            if durable.is_some_and(|d| offset > d) {
                break;
            }
            // A page is at most READ_BUDGET bytes (but always one event).
            bytes += v.len();
            if bytes > READ_BUDGET && !out.is_empty() {
                break;
            }
            if v.first() != Some(&FORMAT_V1) {
                return Err(StoreError::Corrupt(format!(
                    "event {offset} of `{source}` has unknown format {:?}",
                    v.first()
                )));
            }
            out.push((offset, Bytes::copy_from_slice(&v[1..])));
        }
        Ok(out)
    }

    async fn last_offset(&self, source: &str) -> Result<Option<u64>, StoreError> {
        self.available()?;
        last_offset(&self.tree, source)
    }

    fn subscribe(&self, source: &str) -> watch::Receiver<u64> {
        self.commits.subscribe(source)
    }

    async fn collect_expired(&self, now: u64) -> Result<usize, StoreError> {
        let tree = self.tree.clone();
        blocking(move || compact::collect_expired(&tree, now)).await
    }

    async fn trim(
        &self,
        source: &str,
        policy: &Retention,
        now: u64,
    ) -> Result<TrimOutcome, StoreError> {
        let lowest_cursor = self
            .cursors(source)
            .await?
            .into_iter()
            .map(|(_, o)| o)
            .min();
        let (tree, failed) = (self.tree.clone(), self.failed.clone());
        let (source, policy) = (source.to_string(), *policy);
        blocking(move || compact::trim(&tree, &failed, &source, &policy, lowest_cursor, now)).await
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn available(&self) -> Result<(), StoreError> {
        if let Some(reason) = self.failed.get() {
            return Err(StoreError::Io(reason.clone()));
        }
        if self.ops.is_closed() {
            return Err(StoreError::Closed);
        }
        if let Some(stuck) = self.stuck_for() {
            return Err(StoreError::Io(format!(
                "the store writer has been stuck in one write for {} s",
                stuck.as_secs()
            )));
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io)
    }
}

#[async_trait]
impl Checkpoints for SledStore {
    async fn checkpoint(
        &self,
        source: &str,
        partition: Option<&str>,
    ) -> Result<Option<Checkpoint>, StoreError> {
        self.tree
            .get(checkpoint_key(source, partition))
            .map_err(io)?
            .map(|v| decode_checkpoint(&v))
            .transpose()
    }

    async fn checkpoint_for_pull(
        &self,
        source: &str,
        partition: Option<&str>,
    ) -> Result<CheckpointRead, StoreError> {
        // sled keeps no revisions: the single writer is this host.
        Ok(CheckpointRead {
            value: self
                .checkpoint(source, partition)
                .await?
                .map(|c| c.value().to_string()),
            revision: 0,
        })
    }

    async fn checkpoints(
        &self,
        source: &str,
    ) -> Result<Vec<(Option<String>, Checkpoint)>, StoreError> {
        let prefix = key(b'c', source, &[]);
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, v) = item.map_err(io)?;
            let rest = &k[prefix.len()..];
            let partition = match rest.first() {
                Some(0) => None,
                Some(1) => Some(String::from_utf8_lossy(&rest[1..]).into_owned()),
                _ => return Err(StoreError::Corrupt("bad checkpoint key".into())),
            };
            out.push((partition, decode_checkpoint(&v)?));
        }
        Ok(out)
    }

    async fn set_checkpoint(
        &self,
        source: &str,
        partition: Option<&str>,
        value: Option<String>,
    ) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(Op::SetCheckpoint {
                source: source.to_string(),
                partition: partition.map(str::to_string),
                value,
                reply: tx,
            })
            .map_err(|_| StoreError::Closed)?;
        self.answer(rx).await
    }
}

#[async_trait]
impl Cursors for SledStore {
    async fn cursor(&self, source: &str, name: &str) -> Result<Option<u64>, StoreError> {
        self.available()?;
        self.tree
            .get(key(b'u', source, name.as_bytes()))
            .map_err(io)?
            .map(|v| decode_u64(&v))
            .transpose()
    }

    async fn cursors(&self, source: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.available()?;
        let prefix = key(b'u', source, &[]);
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, v) = item.map_err(io)?;
            out.push((
                String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                decode_u64(&v)?,
            ));
        }
        Ok(out)
    }

    async fn set_cursor(&self, source: &str, name: &str, offset: u64) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(Op::Write {
                writes: vec![(
                    key(b'u', source, name.as_bytes()),
                    Some(offset.to_be_bytes().to_vec()),
                )],
                reply: tx,
            })
            .map_err(|_| StoreError::Closed)?;
        self.answer(rx).await
    }
}

/// One host owns a sled store: every pull lease is this host's.
#[async_trait]
impl PullLeases for SledStore {
    async fn lease(&self, _: &str, _: Option<&str>, _: usize) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn keep_lease(&self, _: &str, _: Option<&str>) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn drop_lease(&self, _: &str, _: Option<&str>) {}

    async fn join(&self, _: &str) {}

    async fn leave(&self, _: &str) {}

    async fn release_leases(&self) {}
}

/// Runs a scan of the tree off the async workers (compaction walks whole
/// journals).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Io(format!("compaction task failed: {e}")))?
}

/// The error for a store that cannot be trusted: it names the path and
/// what to do, and the host never recreates the store by itself.
fn corrupt(dir: &Path, what: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "the store in {} is corrupt ({what}); inlet will not recreate it. Stop every process using it, move the directory aside and restore it from a backup, or start with an empty --data directory (the events and checkpoints in it are then lost)",
        dir.display()
    ))
}

/// The store's birth certificate: a file beside sled and a key inside it,
/// written together when the store is created. sled recovers a damaged
/// log by truncating it, which looks like an empty store; the marker tells
/// "new" from "lost its contents".
fn check_marker(dir: &Path, db: &sled::Db, tree: &sled::Tree) -> Result<(), StoreError> {
    const KEY: &[u8] = b"m\0store";
    let file = dir.join("STORE");
    let inside = tree.get(KEY).map_err(io)?;
    match (file.exists(), inside) {
        (true, Some(_)) => Ok(()),
        (true, None) => Err(corrupt(
            dir,
            "it was initialised (STORE exists) but its data is gone or unreadable",
        )),
        (false, Some(_)) => std::fs::write(&file, b"inlet store, format 1\n")
            .map_err(|e| StoreError::Io(format!("{}: {e}", file.display()))),
        (false, None) => {
            if tree.iter().next().is_some() {
                return Err(corrupt(dir, "it holds data but no store marker"));
            }
            tree.insert(KEY, &[FORMAT_V1]).map_err(io)?;
            db.flush().map_err(io)?;
            std::fs::write(&file, b"inlet store, format 1\n")
                .map_err(|e| StoreError::Io(format!("{}: {e}", file.display())))
        }
    }
}
