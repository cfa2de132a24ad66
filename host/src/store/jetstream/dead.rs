//! Dead letters on JetStream: one KV bucket per source,
//! `{bucket_prefix}dl_{source}`, keyed by letter id (ids are valid KV
//! keys). A letter is removed by purging its subject from the bucket's
//! stream, which leaves no delete marker behind. Replays are claimed in
//! the leases bucket (`dl.{source}.{id}`), so two hosts never replay one
//! letter at once, and a claim of a host that died expires with the
//! lease TTL.

use super::buckets::{claim, kv_bucket};
use super::{Inner, JetStreamStore, unavailable};
use crate::store::dead_letters::{SCAN_MAX, decode, encode, id_time};
use crate::store::{
    DeadLetter, DeadLetterFilter, DeadLetterPage, DeadLetterStats, DeadLetters, StoreError,
};
use async_nats::jetstream::{kv, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use std::sync::Arc;
use std::time::Duration;

/// A source's dead-letter bucket and its stream.
pub(super) struct Bucket {
    kv: kv::Store,
    stream: stream::Stream,
    name: String,
}

impl Inner {
    fn dead_bucket_name(&self, source: &str) -> String {
        format!("{}dl_{source}", self.config.bucket_prefix)
    }

    /// The source's bucket; created when `create`, else `None` while it
    /// does not exist.
    async fn dead_bucket(
        &self,
        source: &str,
        create: bool,
    ) -> Result<Option<Arc<Bucket>>, StoreError> {
        if let Some(b) = self.dead.lock().expect("lock").get(source) {
            return Ok(Some(b.clone()));
        }
        let name = self.dead_bucket_name(source);
        let stream_name = format!("KV_{name}");
        if !create {
            match self.js.get_stream(&stream_name).await {
                Ok(_) => {}
                Err(e) => {
                    if let async_nats::jetstream::context::GetStreamErrorKind::JetStream(j) =
                        e.kind()
                        && j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
                    {
                        return Ok(None);
                    }
                    return Err(unavailable(&format!("stream {stream_name}"), e));
                }
            }
        }
        let kv = kv_bucket(&self.js, &name, 1, Duration::ZERO, self.config.replicas).await?;
        let stream = self
            .js
            .get_stream(&stream_name)
            .await
            .map_err(|e| unavailable(&format!("stream {stream_name}"), e))?;
        let bucket = Arc::new(Bucket { kv, stream, name });
        self.dead
            .lock()
            .expect("lock")
            .insert(source.to_string(), bucket.clone());
        Ok(Some(bucket))
    }
}

impl Bucket {
    /// Removes one letter with its history; `false` when there was none.
    async fn purge(&self, id: &str) -> Result<bool, StoreError> {
        self.stream
            .purge()
            .filter(format!("$KV.{}.{id}", self.name))
            .await
            .map(|r| r.purged > 0)
            .map_err(|e| unavailable(&format!("purge dead letter {id}"), e))
    }

    /// Every letter id, oldest first.
    async fn ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = self
            .kv
            .keys()
            .await
            .map_err(|e| unavailable("dead-letter keys", e))?
            .try_collect()
            .await
            .map_err(|e| unavailable("dead-letter keys", e))?;
        ids.sort();
        Ok(ids)
    }

    async fn stats(&self) -> Result<DeadLetterStats, StoreError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| unavailable("dead-letter stream info", e))?;
        Ok(DeadLetterStats {
            count: info.state.messages,
            bytes: info.state.bytes,
        })
    }

    async fn get(&self, id: &str) -> Result<Option<kv::Entry>, StoreError> {
        let entry = self
            .kv
            .entry(id)
            .await
            .map_err(|e| unavailable(&format!("dead letter {id}"), e))?;
        Ok(entry.filter(|e| e.operation == kv::Operation::Put))
    }
}

/// Over the source's bytes: the oldest letters but `keep` go, one at a
/// time (another host may be trimming too; a letter it purged first is
/// not counted here).
async fn trim(bucket: &Bucket, keep: &str, max_bytes: u64) -> Result<u64, StoreError> {
    let mut dropped = 0;
    let mut stats = bucket.stats().await?;
    if stats.bytes <= max_bytes {
        return Ok(0);
    }
    for id in bucket.ids().await? {
        if stats.bytes <= max_bytes {
            break;
        }
        if id == keep {
            continue;
        }
        if bucket.purge(&id).await? {
            dropped += 1;
        }
        stats = bucket.stats().await?;
    }
    Ok(dropped)
}

fn claim_key(source: &str, id: &str) -> String {
    format!("dl.{source}.{id}")
}

#[async_trait]
impl DeadLetters for JetStreamStore {
    async fn put_dead_letter(
        &self,
        source: &str,
        letter: &DeadLetter,
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        let inner = &self.inner;
        inner.connected()?;
        let bucket = inner
            .dead_bucket(source, true)
            .await?
            .expect("created on demand");
        bucket
            .kv
            .put(&letter.id, Bytes::from(encode(letter)))
            .await
            .map_err(|e| unavailable(&format!("cannot store dead letter of {source}"), e))?;
        // The letter is durable: from here on a failure only leaves the
        // source over its bytes until the next letter trims it, and is
        // never the sender's error (a 503 would make it send a second
        // letter of the same request).
        match trim(&bucket, &letter.id, max_bytes).await {
            Ok(dropped) => Ok(dropped),
            Err(err) => {
                tracing::warn!(source, error = %err, "Trimming dead letters to [push] dead_letters.max_bytes failed; the next letter tries again.");
                Ok(0)
            }
        }
    }

    async fn dead_letter(&self, source: &str, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        if id_time(id).is_none() {
            return Ok(None);
        }
        let Some(bucket) = self.inner.dead_bucket(source, false).await? else {
            return Ok(None);
        };
        bucket.get(id).await?.map(|e| decode(&e.value)).transpose()
    }

    async fn dead_letters(
        &self,
        source: &str,
        filter: &DeadLetterFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DeadLetterPage, StoreError> {
        let mut page = DeadLetterPage::default();
        let Some(bucket) = self.inner.dead_bucket(source, false).await? else {
            return Ok(page);
        };
        let mut scanned = 0;
        let mut last: Option<String> = None;
        for id in bucket.ids().await? {
            if after.is_some_and(|a| id.as_str() <= a) {
                continue;
            }
            if page.letters.len() >= limit || scanned >= SCAN_MAX {
                page.next = last;
                break;
            }
            scanned += 1;
            let may_match = id_time(&id).is_some_and(|t| filter.time_matches(t));
            last = Some(id.clone());
            if !may_match {
                continue;
            }
            // Gone since the listing (replayed, discarded): skipped.
            if let Some(entry) = bucket.get(&id).await? {
                let letter = decode(&entry.value)?;
                if filter.matches(&letter) {
                    page.letters.push(letter);
                }
            }
        }
        Ok(page)
    }

    async fn update_dead_letter(
        &self,
        source: &str,
        letter: &DeadLetter,
    ) -> Result<bool, StoreError> {
        let Some(bucket) = self.inner.dead_bucket(source, false).await? else {
            return Ok(false);
        };
        let Some(entry) = bucket.get(&letter.id).await? else {
            return Ok(false);
        };
        // On the revision read: a letter removed meanwhile stays removed.
        match bucket
            .kv
            .update(&letter.id, Bytes::from(encode(letter)), entry.revision)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(unavailable("update dead letter", e)),
        }
    }

    async fn remove_dead_letter(&self, source: &str, id: &str) -> Result<bool, StoreError> {
        if id_time(id).is_none() {
            return Ok(false);
        }
        match self.inner.dead_bucket(source, false).await? {
            Some(bucket) => bucket.purge(id).await,
            None => Ok(false),
        }
    }

    async fn expire_dead_letters(&self, source: &str, before_ms: u64) -> Result<u64, StoreError> {
        let Some(bucket) = self.inner.dead_bucket(source, false).await? else {
            return Ok(0);
        };
        let mut removed = 0;
        for id in bucket.ids().await? {
            if id_time(&id).is_some_and(|t| t >= before_ms) {
                break;
            }
            if bucket.purge(&id).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn dead_letter_stats(&self, source: &str) -> Result<DeadLetterStats, StoreError> {
        match self.inner.dead_bucket(source, false).await? {
            Some(bucket) => bucket.stats().await,
            None => Ok(DeadLetterStats::default()),
        }
    }

    async fn claim_dead_letter(&self, source: &str, id: &str) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let key = claim_key(source, id);
        let revision = claim(&inner.leases, &key, Bytes::from(inner.host_id.clone()))
            .await
            .map_err(|e| unavailable("dead-letter replay claim", e))?;
        if let Some(revision) = revision {
            inner
                .dead_claims
                .lock()
                .expect("lock")
                .insert(key, revision);
        }
        Ok(revision.is_some())
    }

    async fn release_dead_letter(&self, source: &str, id: &str) {
        let key = claim_key(source, id);
        let Some(revision) = self.inner.dead_claims.lock().expect("lock").remove(&key) else {
            return;
        };
        // Only our own claim: one that expired and was taken by another
        // host since stays theirs.
        if let Err(err) = self
            .inner
            .leases
            .purge_expect_revision(&key, Some(revision))
            .await
        {
            tracing::debug!(source, id, error = %err, "Releasing a dead-letter replay claim failed; it expires with the lease TTL.");
        }
    }
}
