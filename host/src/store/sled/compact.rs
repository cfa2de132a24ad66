//! Compaction: expired dedup and idempotency marks, and retention. Both
//! walk whole key ranges, so the store runs them on the blocking pool.

use super::keys::{decode_u64, event_key, expiry_of, io, key, last_offset};
use crate::store::envelope::received_ms;
use crate::store::{Retention, StoreError, TrimOutcome};
use std::sync::OnceLock;

/// Removes dedup and idempotency marks that expired before `now`.
pub(super) fn collect_expired(tree: &sled::Tree, now: u64) -> Result<usize, StoreError> {
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
pub(super) fn trim(
    tree: &sled::Tree,
    failed: &OnceLock<String>,
    source: &str,
    policy: &Retention,
    lowest_cursor: Option<u64>,
    now: u64,
) -> Result<TrimOutcome, StoreError> {
    let start = event_key(source, 0);
    let Some(last) = last_offset(tree, source)? else {
        return Ok(TrimOutcome::default());
    };
    let end = event_key(source, last);
    let mut total: u64 = 0;
    for item in tree.range(start.clone()..=event_key(source, u64::MAX)) {
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
        if out.removed == 0 {
            mark_end(tree, failed, source, last)?;
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

/// Commits do not write the next-offset mark (`o`): the last event says
/// where the journal ends. Before trimming removes any event, the mark
/// says so instead, and it is on disk before the first removal, so a crash
/// after trimming everything never hands those offsets out again. `trim`
/// removes events up to `last` only, so an event committed while it runs
/// is never removed without the mark covering it.
///
/// The mark only moves up (compare-and-swap), so two trims of one source
/// could not lower it; and nothing is written or flushed once the writer
/// has failed (the tree may then hold a group its clients were told
/// failed, which a flush here would put on disk).
pub(super) fn mark_end(
    tree: &sled::Tree,
    failed: &OnceLock<String>,
    source: &str,
    last: u64,
) -> Result<(), StoreError> {
    let mark_key = key(b'o', source, &[]);
    let next = (last + 1).to_be_bytes();
    loop {
        let old = tree.get(&mark_key).map_err(io)?;
        let marked = old.as_deref().map(decode_u64).transpose()?.unwrap_or(1);
        if marked > last {
            return Ok(());
        }
        if let Some(reason) = failed.get() {
            return Err(StoreError::Io(reason.clone()));
        }
        if tree
            .compare_and_swap(&mark_key, old, Some(&next[..]))
            .map_err(io)?
            .is_ok()
        {
            break;
        }
    }
    if let Some(reason) = failed.get() {
        return Err(StoreError::Io(reason.clone()));
    }
    tree.flush().map_err(io)?;
    Ok(())
}
