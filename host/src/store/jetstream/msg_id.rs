//! Msg-ids: what makes a re-published event a duplicate JetStream drops.

use super::*;

pub(super) fn sha(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// The part of a replay msg-id shared by a pull batch's id-less events:
/// the partition and the checkpoint it was pulled from. Only for batches
/// that move the checkpoint: a replay after a crash is the same pull from
/// the same checkpoint. A batch that leaves the checkpoint where it was
/// cannot be told from new data and gets no msg-ids (as on sled).
pub(super) fn replay_base(commit: &Commit) -> Option<String> {
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
pub(super) fn content_digest(tail: &[u8]) -> String {
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
