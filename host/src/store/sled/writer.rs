//! The writer thread: every commit, checkpoint and cursor write goes
//! through it, and it folds whatever is waiting into one batch and one
//! flush (group commit).

use super::keys::{
    FORMAT_V1, checkpoint_bytes, checkpoint_key, decode_idempotency, decode_u64, event_key,
    expiry_of, io, key, last_offset, mark,
};
use crate::store::envelope::line;
use crate::store::{Commit, CommitOutcome, CommitSignals, PushRecord, StoreError, now_ms};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

/// Most requests folded into one group commit.
const MAX_GROUP: usize = 512;

pub(super) enum Op {
    Commit(Commit, oneshot::Sender<Result<CommitOutcome, StoreError>>),
    SetCheckpoint {
        source: String,
        partition: Option<String>,
        value: Option<String>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Raw key writes (`Some`) and removals (`None`) (cursors, dead
    /// letters), applied together with the next group.
    Write {
        writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

pub(super) struct Writer {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
    pub(super) durable: bool,
    pub(super) flush_histogram: Option<prometheus_client::metrics::histogram::Histogram>,
    /// Set after a failed write or flush: every later write is refused,
    /// and the store answers nothing from memory (shared with it).
    pub(super) failed: Arc<OnceLock<String>>,
    /// The highest durable offset per source, shared with readers.
    pub(super) visible: Arc<std::sync::Mutex<HashMap<String, u64>>>,
    /// Next offset per source, loaded lazily from the journal.
    pub(super) next_offsets: HashMap<String, u64>,
    pub(super) commits: Arc<CommitSignals>,
    /// When the current group started (ms on `clock`, plus one), 0 while
    /// idle (the store's stall watchdog reads it).
    pub(super) busy_since_ms: Arc<std::sync::atomic::AtomicU64>,
    pub(super) clock: std::time::Instant,
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
    pub(super) fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(op) => group.push(op),
                    Err(_) => break,
                }
            }
            self.busy_since_ms.store(
                self.clock.elapsed().as_millis() as u64 + 1,
                std::sync::atomic::Ordering::Relaxed,
            );
            self.apply_group(group);
            self.busy_since_ms
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn apply_group(&mut self, mut group: Vec<Op>) {
        let now = now_ms();
        let mut batch = sled::Batch::default();
        let mut pending = Pending::default();
        let mut results = Vec::with_capacity(group.len());
        for op in &mut group {
            let result = match op {
                Op::Commit(commit, _) => {
                    self.stage(commit, now, &mut batch, &mut pending).map(Some)
                }
                Op::Write { writes, .. } => {
                    // Moved, not copied: a dead letter may be a megabyte.
                    for (key, value) in std::mem::take(writes) {
                        match value {
                            Some(v) => batch.insert(key, v),
                            None => batch.remove(key),
                        }
                    }
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
        // The next offsets before this group, of the sources it touched
        // (`floor` + 1), restored if it fails: only those, not a copy of
        // every source's per group.
        let offsets_before: Vec<(String, u64)> = pending
            .floor
            .iter()
            .map(|(source, floor)| (source.clone(), floor + 1))
            .collect();
        {
            // Hide what this group writes until its flush returns.
            let mut visible = self.visible.lock().expect("visible lock");
            for (source, floor) in pending.floor.drain() {
                visible.entry(source).or_insert(floor);
            }
        }
        // A read that failed while staging (sled could not read a page: a
        // disk error, no descriptors left) leaves the tree in doubt like a
        // failed write does.
        let staging_failed = results.iter().find_map(|r| match r {
            Err(StoreError::Io(err)) => Some(err.clone()),
            _ => None,
        });
        let applied = if let Some(reason) = self.failed.get() {
            Err(StoreError::Io(reason.clone()))
        } else if let Some(err) = staging_failed {
            tracing::error!(error = %err, "Store read failed while staging a write; refusing further writes and lookups until restart.");
            let _ = self.failed.set(format!(
                "the store stopped accepting writes after a failed read ({err}); restart inlet"
            ));
            self.next_offsets.extend(offsets_before);
            Err(StoreError::Io(err))
        } else {
            let written = self.tree.apply_batch(batch).map_err(io).and_then(|()| {
                // The group is in sled's memory and not on disk yet.
                #[cfg(feature = "failpoints")]
                fail::fail_point!("sled-before-flush", |_| Err(StoreError::Io(
                    "fail point sled-before-flush: the flush failed".into()
                )));
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
                self.next_offsets.extend(offsets_before);
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
                Op::SetCheckpoint { reply, .. } | Op::Write { reply, .. } => {
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
        // No `o` mark here: the events themselves say where the journal
        // ends, and `trim` writes the mark before it removes any (see
        // `compact::trim`). One key less per commit, and a group spread
        // over many sources rewrites that many fewer leaves.
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
