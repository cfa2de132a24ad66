//! The journal on JetStream: publishing a commit (with its msg-ids and
//! the idempotency answer), reading a source's stream, retention.

use super::buckets::{claim, read_record, set_checkpoint_cas};
use super::msg_id::{content_digest, replay_base, sha};
use super::*;

#[async_trait]
impl Journal for JetStreamStore {
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
                    out.push((
                        seq,
                        Bytes::from(crate::store::envelope::line(seq, &m.payload)),
                    ));
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

    async fn collect_expired(&self, _now_ms: u64) -> Result<usize, StoreError> {
        // JetStream expires msg-ids (duplicate window) and idempotency
        // records (bucket max age) itself.
        Ok(0)
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
            let expired = cutoff.is_some_and(|c| {
                crate::store::envelope::received_ms(&m.payload).is_some_and(|r| r < c)
            });
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
}

/// What a commit's publish acks added up to.
#[derive(Default)]
pub(super) struct Settled {
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

/// The wire size of a message's headers (`NATS/1.0` line, one
/// `Name: value` line each, blank line), as the file store counts them.
pub(super) fn header_len(headers: &async_nats::HeaderMap) -> u64 {
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
