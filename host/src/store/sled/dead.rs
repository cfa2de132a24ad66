//! Dead letters on sled: key `x` 0 source 0 id, written through the writer
//! thread (so a letter is flushed with the next group before `put`
//! returns).

use super::keys::{io, key};
use super::writer::Op;
use super::{SledStore, blocking};
use crate::store::dead_letters::{SCAN_MAX, decode, encode, id_time};
use crate::store::{
    DeadLetter, DeadLetterFilter, DeadLetterPage, DeadLetterStats, DeadLetters, Journal as _,
    StoreError,
};
use async_trait::async_trait;
use std::collections::HashMap;
use tokio::sync::oneshot;

fn letter_key(source: &str, id: &str) -> Vec<u8> {
    key(b'x', source, id.as_bytes())
}

impl SledStore {
    /// Applies raw writes durably, through the writer.
    async fn write(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        self.available()?;
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(Op::Write { writes, reply: tx })
            .map_err(|_| StoreError::Closed)?;
        self.answer(rx).await
    }

    /// The source's letters, oldest first: (key, stored size).
    pub(super) async fn letter_sizes(
        &self,
        source: &str,
    ) -> Result<Vec<(Vec<u8>, u64)>, StoreError> {
        self.oldest(source, |_, _| true).await
    }

    /// The source's oldest letters, (key, stored size), for as long as
    /// `take` says so: the scan stops at the first it refuses.
    async fn oldest(
        &self,
        source: &str,
        mut take: impl FnMut(&[u8], u64) -> bool + Send + 'static,
    ) -> Result<Vec<(Vec<u8>, u64)>, StoreError> {
        let (tree, prefix) = (self.tree.clone(), key(b'x', source, &[]));
        blocking(move || {
            let mut out = Vec::new();
            for item in tree.scan_prefix(&prefix) {
                let (k, v) = item.map_err(io)?;
                let size = v.len() as u64;
                if !take(&k[prefix.len()..], size) {
                    break;
                }
                out.push((k.to_vec(), size));
            }
            Ok(out)
        })
        .await
    }

    /// The source's stats, counted from the tree the first time.
    async fn stats_locked(
        &self,
        dead: &mut HashMap<String, DeadLetterStats>,
        source: &str,
    ) -> Result<DeadLetterStats, StoreError> {
        if let Some(s) = dead.get(source) {
            return Ok(*s);
        }
        let sizes = self.letter_sizes(source).await?;
        let stats = DeadLetterStats {
            count: sizes.len() as u64,
            bytes: sizes.iter().map(|(_, n)| n).sum(),
        };
        dead.insert(source.to_string(), stats);
        Ok(stats)
    }

    /// Removes `keys` durably and takes them off the source's stats.
    async fn remove_letters(
        &self,
        dead: &mut HashMap<String, DeadLetterStats>,
        source: &str,
        keys: Vec<(Vec<u8>, u64)>,
    ) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut stats = self.stats_locked(dead, source).await?;
        let n = keys.len() as u64;
        stats.count = stats.count.saturating_sub(n);
        stats.bytes = stats
            .bytes
            .saturating_sub(keys.iter().map(|(_, size)| size).sum());
        self.write(keys.into_iter().map(|(k, _)| (k, None)).collect())
            .await?;
        dead.insert(source.to_string(), stats);
        Ok(n)
    }
}

#[async_trait]
impl DeadLetters for SledStore {
    async fn put_dead_letter(
        &self,
        source: &str,
        letter: &DeadLetter,
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        let value = encode(letter);
        let size = value.len() as u64;
        let mut dead = self.dead.lock().await;
        let mut stats = self.stats_locked(&mut dead, source).await?;
        // The oldest letters that must go for this one to fit, dropped in
        // the same durable write.
        let mut writes = vec![(letter_key(source, &letter.id), Some(value))];
        let over = (stats.bytes + size).saturating_sub(max_bytes);
        let mut dropped = 0;
        if over > 0 {
            // Only as many of the oldest as must go are read.
            let mut freed = 0;
            let victims = self
                .oldest(source, move |_, n| {
                    let more = freed < over;
                    freed += n;
                    more
                })
                .await?;
            for (k, n) in victims {
                stats.bytes = stats.bytes.saturating_sub(n);
                stats.count = stats.count.saturating_sub(1);
                writes.push((k, None));
                dropped += 1;
            }
        }
        self.write(writes).await?;
        stats.count += 1;
        stats.bytes += size;
        dead.insert(source.to_string(), stats);
        Ok(dropped)
    }

    async fn dead_letter(&self, source: &str, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        self.tree
            .get(letter_key(source, id))
            .map_err(io)?
            .map(|v| decode(&v))
            .transpose()
    }

    async fn dead_letters(
        &self,
        source: &str,
        filter: &DeadLetterFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DeadLetterPage, StoreError> {
        let prefix = key(b'x', source, &[]);
        let start = match after {
            Some(a) => {
                // Strictly after `a`: the smallest key greater than it.
                let mut k = letter_key(source, a);
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let (tree, filter) = (self.tree.clone(), filter.clone());
        blocking(move || {
            let mut page = DeadLetterPage::default();
            let mut last: Option<String> = None;
            for (scanned, item) in tree.range(start..).enumerate() {
                let (k, v) = item.map_err(io)?;
                if !k.starts_with(&prefix) {
                    break;
                }
                if page.letters.len() >= limit || scanned >= SCAN_MAX {
                    // More to look at: the next page starts after the
                    // last one looked at.
                    page.next = last;
                    break;
                }
                let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                let may_match = id_time(&id).is_some_and(|t| filter.time_matches(t));
                last = Some(id);
                if !may_match {
                    continue;
                }
                let letter = decode(&v)?;
                if filter.matches(&letter) {
                    page.letters.push(letter);
                }
            }
            Ok(page)
        })
        .await
    }

    async fn update_dead_letter(
        &self,
        source: &str,
        letter: &DeadLetter,
    ) -> Result<bool, StoreError> {
        let mut dead = self.dead.lock().await;
        let k = letter_key(source, &letter.id);
        let Some(old) = self.tree.get(&k).map_err(io)? else {
            return Ok(false);
        };
        let value = encode(letter);
        let mut stats = self.stats_locked(&mut dead, source).await?;
        stats.bytes = (stats.bytes + value.len() as u64).saturating_sub(old.len() as u64);
        self.write(vec![(k, Some(value))]).await?;
        dead.insert(source.to_string(), stats);
        Ok(true)
    }

    async fn remove_dead_letter(&self, source: &str, id: &str) -> Result<bool, StoreError> {
        let mut dead = self.dead.lock().await;
        let k = letter_key(source, id);
        let Some(old) = self.tree.get(&k).map_err(io)? else {
            return Ok(false);
        };
        self.remove_letters(&mut dead, source, vec![(k, old.len() as u64)])
            .await?;
        Ok(true)
    }

    async fn expire_dead_letters(&self, source: &str, before_ms: u64) -> Result<u64, StoreError> {
        let mut dead = self.dead.lock().await;
        // Ids sort by time: the scan stops at the first letter to keep.
        let old = self
            .oldest(source, move |id, _| {
                id_time(&String::from_utf8_lossy(id)).is_none_or(|t| t < before_ms)
            })
            .await?;
        self.remove_letters(&mut dead, source, old).await
    }

    async fn dead_letter_stats(&self, source: &str) -> Result<DeadLetterStats, StoreError> {
        let mut dead = self.dead.lock().await;
        self.stats_locked(&mut dead, source).await
    }

    async fn claim_dead_letter(&self, source: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .replaying
            .lock()
            .expect("replaying lock")
            .insert((source.to_string(), id.to_string())))
    }

    async fn release_dead_letter(&self, source: &str, id: &str) {
        self.replaying
            .lock()
            .expect("replaying lock")
            .remove(&(source.to_string(), id.to_string()));
    }
}
