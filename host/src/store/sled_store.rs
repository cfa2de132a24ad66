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
//! | `o` 0 source 0                        | next offset (u64 BE): offsets never repeat, even after trimming |
//! | `u` 0 source 0 consumer               | cursor offset (u64 BE)         |
//!
//! Values start with a format version byte. Commits are sent to a single
//! writer thread that drains every request waiting, applies them as one
//! batch and flushes once: concurrent requests share one fsync, and no
//! caller is answered before that fsync returns.

use super::envelope::{line, received_ms};
use super::{
    Checkpoint, Commit, CommitOutcome, CommitSignals, PushRecord, Retention, Store, StoreError,
    TrimOutcome, now_ms,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot, watch};

const FORMAT_V1: u8 = 1;
/// Most bytes one `read` returns (it always returns at least one event).
const READ_BUDGET: usize = 8 << 20;
/// Most requests folded into one group commit.
const MAX_GROUP: usize = 512;

enum Op {
    Commit(Commit, oneshot::Sender<Result<CommitOutcome, StoreError>>),
    SetCheckpoint {
        source: String,
        partition: Option<String>,
        value: Option<String>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A raw key write (cursors), applied with the next group.
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

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
    _writer: Arc<WriterHandle>,
}

struct WriterHandle(Option<std::thread::JoinHandle<()>>);

impl Drop for WriterHandle {
    fn drop(&mut self) {
        // The sender is dropped before this handle (field order), so the
        // writer drains what is queued and exits.
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

fn key(kind: u8, source: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + source.len() + rest.len());
    k.push(kind);
    k.push(0);
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(rest);
    k
}

fn event_key(source: &str, offset: u64) -> Vec<u8> {
    key(b'e', source, &offset.to_be_bytes())
}

fn checkpoint_key(source: &str, partition: Option<&str>) -> Vec<u8> {
    match partition {
        None => key(b'c', source, &[0]),
        Some(p) => {
            let mut rest = vec![1];
            rest.extend_from_slice(p.as_bytes());
            key(b'c', source, &rest)
        }
    }
}

fn io(err: sled::Error) -> StoreError {
    match err {
        sled::Error::Corruption { .. } => StoreError::Corrupt(err.to_string()),
        other => StoreError::Io(other.to_string()),
    }
}

fn expiry_of(value: &[u8]) -> Option<u64> {
    if value.first() != Some(&FORMAT_V1) || value.len() < 9 {
        return None;
    }
    Some(u64::from_be_bytes(value[1..9].try_into().ok()?))
}

fn mark(expires_ms: u64, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + body.len());
    v.push(FORMAT_V1);
    v.extend_from_slice(&expires_ms.to_be_bytes());
    v.extend_from_slice(body);
    v
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. With `durable = false` commits
    /// are not flushed before they are acknowledged (benchmarks only).
    pub fn open(dir: &Path, durable: bool) -> Result<Self, StoreError> {
        Self::open_with(dir, durable, None)
    }

    /// Like [`SledStore::open`], observing each flush's duration.
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
        let writer = Writer {
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
            _writer: Arc::new(WriterHandle(Some(handle))),
        })
    }
}

#[async_trait]
impl Store for SledStore {
    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        self.available()?;
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(Op::Commit(commit, tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
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
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn collect_expired(&self, now: u64) -> Result<usize, StoreError> {
        let tree = self.tree.clone();
        blocking(move || collect_expired(&tree, now)).await
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
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io)
    }

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
            .send(Op::Put {
                key: key(b'u', source, name.as_bytes()),
                value: offset.to_be_bytes().to_vec(),
                reply: tx,
            })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
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
        let (tree, source, policy) = (self.tree.clone(), source.to_string(), *policy);
        blocking(move || trim(&tree, &source, &policy, lowest_cursor, now)).await
    }
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

/// Removes dedup and idempotency marks that expired before `now`.
fn collect_expired(tree: &sled::Tree, now: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    for prefix in [b'i', b'd'] {
        for item in tree.scan_prefix([prefix, 0]) {
            let (k, v) = item.map_err(io)?;
            if expiry_of(&v).is_some_and(|e| e <= now) {
                // Compare-and-swap: a mark rewritten since we read it stays.
                if tree
                    .compare_and_swap(&k, Some(&v), None as Option<&[u8]>)
                    .map_err(io)?
                    .is_ok()
                {
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}

/// Applies `policy` to the journal of `source`, oldest first.
fn trim(
    tree: &sled::Tree,
    source: &str,
    policy: &Retention,
    lowest_cursor: Option<u64>,
    now: u64,
) -> Result<TrimOutcome, StoreError> {
    let start = event_key(source, 0);
    let end = event_key(source, u64::MAX);
    let mut total: u64 = 0;
    for item in tree.range(start.clone()..=end.clone()) {
        let (_, v) = item.map_err(io)?;
        total += v.len() as u64;
    }
    let cutoff = policy
        .max_age
        .map(|age| now.saturating_sub(age.as_millis() as u64));
    let mut out = TrimOutcome::default();
    for item in tree.range(start..=end) {
        let (k, v) = item.map_err(io)?;
        let offset = u64::from_be_bytes(
            k[k.len() - 8..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("short event key".into()))?,
        );
        let unread = lowest_cursor.is_some_and(|c| offset > c);
        let expired = cutoff.is_some_and(|c| received_ms(&v).is_some_and(|r| r < c));
        let over = policy.max_bytes.is_some_and(|m| total > m);
        if !(over || (expired && !unread)) {
            break;
        }
        // Events are immutable once written, so a plain remove is safe.
        tree.remove(&k).map_err(io)?;
        total -= v.len() as u64;
        out.removed += 1;
        if unread {
            out.forced += 1;
        }
    }
    out.bytes_after = total;
    Ok(out)
}

fn last_offset(tree: &sled::Tree, source: &str) -> Result<Option<u64>, StoreError> {
    let start = event_key(source, 0);
    let end = event_key(source, u64::MAX);
    match tree.range(start..=end).next_back() {
        None => Ok(None),
        Some(item) => {
            let (k, _) = item.map_err(io)?;
            Ok(Some(u64::from_be_bytes(
                k[k.len() - 8..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("short event key".into()))?,
            )))
        }
    }
}

fn decode_idempotency(value: &[u8], now: u64) -> Result<Option<PushRecord>, StoreError> {
    let expires = expiry_of(value)
        .ok_or_else(|| StoreError::Corrupt("idempotency mark has an unknown format".into()))?;
    if expires <= now {
        return Ok(None);
    }
    serde_json::from_slice(&value[9..])
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("idempotency mark: {e}")))
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

fn decode_u64(value: &[u8]) -> Result<u64, StoreError> {
    value
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("expected an 8-byte number".into()))
}

/// `received_ms` from a stored envelope, without parsing all of it.
fn decode_checkpoint(value: &[u8]) -> Result<Checkpoint, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt(format!("checkpoint: {e}")))
}

struct Writer {
    db: sled::Db,
    tree: sled::Tree,
    durable: bool,
    flush_histogram: Option<prometheus_client::metrics::histogram::Histogram>,
    /// Set after a failed write or flush: every later write is refused,
    /// and the store answers nothing from memory (shared with it).
    failed: Arc<OnceLock<String>>,
    /// The highest durable offset per source, shared with readers.
    visible: Arc<std::sync::Mutex<HashMap<String, u64>>>,
    /// Next offset per source, loaded lazily from the journal.
    next_offsets: HashMap<String, u64>,
    commits: Arc<CommitSignals>,
}

/// What a group has written but not yet applied, so that two requests in
/// one group see each other's marks.
#[derive(Default)]
struct Pending {
    keys: HashSet<Vec<u8>>,
    records: HashMap<Vec<u8>, PushRecord>,
    /// The highest offset per source this group writes.
    visible: HashMap<String, u64>,
    /// The last durable offset per source before this group.
    floor: HashMap<String, u64>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(op) => group.push(op),
                    Err(_) => break,
                }
            }
            self.apply_group(group);
        }
    }

    fn apply_group(&mut self, group: Vec<Op>) {
        let now = now_ms();
        let mut batch = sled::Batch::default();
        let mut pending = Pending::default();
        let mut results = Vec::with_capacity(group.len());
        let offsets_before = self.next_offsets.clone();
        for op in &group {
            let result = match op {
                Op::Commit(commit, _) => {
                    self.stage(commit, now, &mut batch, &mut pending).map(Some)
                }
                Op::Put { key, value, .. } => {
                    batch.insert(key.clone(), value.clone());
                    Ok(None)
                }
                Op::SetCheckpoint {
                    source,
                    partition,
                    value,
                    ..
                } => {
                    let k = checkpoint_key(source, partition.as_deref());
                    match value {
                        Some(v) => batch.insert(k, checkpoint_bytes(v, now)),
                        None => batch.remove(k),
                    }
                    Ok(None)
                }
            };
            results.push(result);
        }
        {
            // Hide what this group writes until its flush returns.
            let mut visible = self.visible.lock().expect("visible lock");
            for (source, floor) in pending.floor.drain() {
                visible.entry(source).or_insert(floor);
            }
        }
        let applied = if let Some(reason) = self.failed.get() {
            Err(StoreError::Io(reason.clone()))
        } else {
            let written = self.tree.apply_batch(batch).map_err(io).and_then(|()| {
                if !self.durable {
                    return Ok(());
                }
                let started = std::time::Instant::now();
                let flushed = self.db.flush().map(|_| ()).map_err(io);
                if let Some(h) = &self.flush_histogram {
                    h.observe(started.elapsed().as_secs_f64());
                }
                flushed
            });
            if let Err(err) = &written {
                // The batch may be in the tree but not on disk (or half in
                // sled's memory, for a failed apply). Going on could hand
                // out offsets a crash would reuse and answer retries from
                // what was lost, so stop until a restart recovers what
                // really reached the disk.
                let reason = format!(
                    "the store stopped accepting writes after a failed write ({err}); restart inlet"
                );
                tracing::error!(error = %err, "Store write failed; refusing further writes and lookups until restart.");
                let _ = self.failed.set(reason);
                self.next_offsets = offsets_before;
            }
            written
        };
        let mut grown = Vec::new();
        if let Err(err) = &applied {
            tracing::error!(error = %err, requests = group.len(), "Store commit failed; the requests are answered with an error.");
        } else {
            // Readers see offsets only once they are durable.
            let mut visible = self.visible.lock().expect("visible lock");
            for (source, last) in pending.visible.drain() {
                visible.insert(source.clone(), last);
                grown.push(source);
            }
        }
        for (op, result) in group.into_iter().zip(results) {
            let result = match (&applied, result) {
                (Err(err), _) => Err(StoreError::Io(err.to_string())),
                (Ok(()), r) => r,
            };
            match op {
                Op::Commit(_, reply) => {
                    let _ = reply.send(result.map(|o| o.expect("commits stage an outcome")));
                }
                Op::SetCheckpoint { reply, .. } | Op::Put { reply, .. } => {
                    let _ = reply.send(result.map(|_| ()));
                }
            }
        }
        // Long polls of the sources that grew, and only those, wake up.
        for source in &grown {
            self.commits.notify(source);
        }
    }

    /// Stages one commit. Its writes are collected apart and merged into
    /// the group's batch only when the whole commit staged, so a failure
    /// part-way leaves nothing of it behind.
    fn stage(
        &mut self,
        commit: &Commit,
        now: u64,
        batch: &mut sled::Batch,
        pending: &mut Pending,
    ) -> Result<CommitOutcome, StoreError> {
        let source = commit.source.as_str();
        let expires = now.saturating_add(commit.dedup_window.as_millis() as u64);
        let idem_key = commit
            .idempotency
            .as_ref()
            .map(|(k, _)| key(b'i', source, k.as_bytes()));
        if let Some(k) = &idem_key {
            if let Some(record) = pending.records.get(k) {
                return Ok(CommitOutcome::Duplicate(record.clone()));
            }
            if let Some(value) = self.tree.get(k).map_err(io)?
                && let Some(record) = decode_idempotency(&value, now)?
            {
                return Ok(CommitOutcome::Duplicate(record));
            }
        }
        let mut next = match self.next_offsets.get(source) {
            Some(n) => *n,
            None => {
                let after_last = last_offset(&self.tree, source)?.map_or(1, |o| o + 1);
                let mark = self
                    .tree
                    .get(key(b'o', source, &[]))
                    .map_err(io)?
                    .map(|v| decode_u64(&v))
                    .transpose()?
                    .unwrap_or(1);
                after_last.max(mark)
            }
        };
        let first_next = next;
        pending
            .floor
            .entry(source.to_string())
            .or_insert(first_next - 1);
        let mut writes: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(commit.events.len() * 2 + 3);
        let mut new_ids: HashSet<Vec<u8>> = HashSet::new();
        let mut record = PushRecord::default();
        let mut dropped = 0;
        for event in &commit.events {
            if let Some(id) = &event.id {
                let k = key(b'd', source, id.as_bytes());
                let seen = pending.keys.contains(&k)
                    || new_ids.contains(&k)
                    || self
                        .tree
                        .get(&k)
                        .map_err(io)?
                        .is_some_and(|v| expiry_of(&v).is_some_and(|e| e > now));
                if seen {
                    dropped += 1;
                    continue;
                }
                writes.push((k.clone(), mark(expires, &[])));
                new_ids.insert(k);
            }
            let mut value = Vec::with_capacity(1 + event.tail.len() + 24);
            value.push(FORMAT_V1);
            value.extend_from_slice(&line(next, &event.tail));
            writes.push((event_key(source, next), value));
            record.first_offset.get_or_insert(next);
            record.last_offset = Some(next);
            record.events += 1;
            next += 1;
        }
        if next != first_next {
            writes.push((key(b'o', source, &[]), next.to_be_bytes().to_vec()));
        }
        let mut new_record = None;
        if let (Some(k), Some((_, original))) = (idem_key, &commit.idempotency) {
            let stored = PushRecord {
                events: record.events,
                first_offset: record.first_offset,
                last_offset: record.last_offset,
                reply: original.reply.clone(),
            };
            let body = serde_json::to_vec(&stored).expect("record serializes");
            writes.push((k.clone(), mark(expires, &body)));
            new_record = Some((k, stored.clone()));
            record = stored;
        }
        if let Some((partition, value)) = &commit.checkpoint {
            writes.push((
                checkpoint_key(source, partition.as_deref()),
                checkpoint_bytes(value, now),
            ));
        }
        // Everything staged: merge.
        for (k, v) in writes {
            batch.insert(k, v);
        }
        pending.keys.extend(new_ids);
        if let Some((k, r)) = new_record {
            pending.records.insert(k, r);
        }
        self.next_offsets.insert(source.to_string(), next);
        if let Some(last) = record.last_offset {
            pending.visible.insert(source.to_string(), last);
        }
        Ok(CommitOutcome::Stored { record, dropped })
    }
}

fn checkpoint_bytes(value: &str, now: u64) -> Vec<u8> {
    serde_json::to_vec(&Checkpoint::V1 {
        value: value.to_string(),
        updated_ms: now,
    })
    .expect("checkpoint serializes")
}

#[cfg(test)]
mod tests {
    use super::super::{Mode, NewEvent};
    use super::*;
    use std::time::Duration;

    fn event(id: Option<&str>) -> super::super::PreparedEvent {
        NewEvent {
            id: id.map(str::to_string),
            payload: b"{\"x\":1}".to_vec(),
            ..Default::default()
        }
        .prepare("s", Mode::Push, "c@1", None, 1)
    }

    fn commit(ids: &[Option<&str>], idem: Option<&str>, cp: Option<&str>) -> Commit {
        Commit {
            source: "s".into(),
            events: ids.iter().map(|id| event(*id)).collect(),
            dedup_window: Duration::from_secs(60),
            idempotency: idem.map(|k| (k.to_string(), PushRecord::default())),
            checkpoint: cp.map(|c| (None, c.to_string())),
            since: None,
        }
    }

    #[tokio::test]
    async fn offsets_dedup_and_checkpoints_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path(), true).unwrap();
            let out = store
                .commit(commit(
                    &[Some("a"), Some("b"), None],
                    Some("k1"),
                    Some("cp1"),
                ))
                .await
                .unwrap();
            let CommitOutcome::Stored { record, dropped } = out else {
                panic!("{out:?}")
            };
            assert_eq!(
                (record.first_offset, record.last_offset, dropped),
                (Some(1), Some(3), 0)
            );
            // Same key: the original answer, nothing written.
            let dup = store
                .commit(commit(&[Some("c")], Some("k1"), None))
                .await
                .unwrap();
            assert_eq!(dup, CommitOutcome::Duplicate(record.clone()));
            // Known ids are dropped in the same commit.
            let out = store
                .commit(commit(&[Some("a"), Some("d"), Some("d")], None, None))
                .await
                .unwrap();
            let CommitOutcome::Stored { record, dropped } = out else {
                panic!()
            };
            assert_eq!(
                (record.first_offset, record.events, dropped),
                (Some(4), 1, 2)
            );
        }
        let store = SledStore::open(dir.path(), true).unwrap();
        let lines = store.read("s", None, 100).await.unwrap();
        assert_eq!(
            lines.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        let v: serde_json::Value = serde_json::from_slice(&lines[3].1).unwrap();
        assert_eq!(v["offset"], 4);
        assert_eq!(
            store.checkpoint("s", None).await.unwrap().unwrap().value(),
            "cp1"
        );
        assert!(store.idempotency("s", "k1").await.unwrap().is_some());
        let out = store.commit(commit(&[None], None, None)).await.unwrap();
        let CommitOutcome::Stored { record, .. } = out else {
            panic!()
        };
        assert_eq!(record.first_offset, Some(5));
        assert_eq!(store.read("s", Some(3), 1).await.unwrap()[0].0, 4);
    }

    #[tokio::test]
    async fn concurrent_commits_get_distinct_increasing_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path(), true).unwrap());
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let key = format!("k{}", i % 10);
                    store
                        .commit(commit(&[None], Some(&key), None))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut stored = 0;
        for t in tasks {
            if let CommitOutcome::Stored { .. } = t.await.unwrap() {
                stored += 1;
            }
        }
        assert_eq!(stored, 10, "one commit per idempotency key");
        let offsets: Vec<u64> = store
            .read("s", None, 100)
            .await
            .unwrap()
            .iter()
            .map(|(o, _)| *o)
            .collect();
        assert_eq!(offsets, (1..=10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_read_page_is_bounded_in_bytes_but_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), false).unwrap();
        let big = NewEvent {
            payload: vec![b'x'; 5 << 20],
            content_type: Some("application/octet-stream".into()),
            ..Default::default()
        }
        .prepare("s", Mode::Push, "c@1", None, 1);
        let commit = Commit {
            source: "s".into(),
            events: vec![big.clone(), big.clone(), big],
            dedup_window: Duration::from_secs(60),
            idempotency: None,
            checkpoint: None,
            since: None,
        };
        store.commit(commit).await.unwrap();
        assert_eq!(store.read("s", None, 10).await.unwrap().len(), 1);
        assert_eq!(store.read("s", Some(1), 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn expired_marks_are_collected() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), true).unwrap();
        store
            .commit(commit(&[Some("a")], Some("k"), None))
            .await
            .unwrap();
        assert_eq!(store.collect_expired(now_ms()).await.unwrap(), 0);
        assert_eq!(store.collect_expired(now_ms() + 61_000).await.unwrap(), 2);
        assert!(store.idempotency("s", "k").await.unwrap().is_none());
    }
}
