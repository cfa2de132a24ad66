//! Key layout and value encodings of the sled store (see the table in
//! `mod.rs`).

use crate::store::{Checkpoint, PushRecord, StoreError};

/// The format byte every value starts with.
pub(super) const FORMAT_V1: u8 = 1;

pub(super) fn key(kind: u8, source: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + source.len() + rest.len());
    k.push(kind);
    k.push(0);
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(rest);
    k
}

pub(super) fn event_key(source: &str, offset: u64) -> Vec<u8> {
    key(b'e', source, &offset.to_be_bytes())
}

pub(super) fn checkpoint_key(source: &str, partition: Option<&str>) -> Vec<u8> {
    match partition {
        None => key(b'c', source, &[0]),
        Some(p) => {
            let mut rest = vec![1];
            rest.extend_from_slice(p.as_bytes());
            key(b'c', source, &rest)
        }
    }
}

pub(super) fn io(err: sled::Error) -> StoreError {
    match err {
        sled::Error::Corruption { .. } => StoreError::Corrupt(err.to_string()),
        other => StoreError::Io(other.to_string()),
    }
}

pub(super) fn expiry_of(value: &[u8]) -> Option<u64> {
    if value.first() != Some(&FORMAT_V1) || value.len() < 9 {
        return None;
    }
    Some(u64::from_be_bytes(value[1..9].try_into().ok()?))
}

pub(super) fn mark(expires_ms: u64, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + body.len());
    v.push(FORMAT_V1);
    v.extend_from_slice(&expires_ms.to_be_bytes());
    v.extend_from_slice(body);
    v
}

pub(super) fn last_offset(tree: &sled::Tree, source: &str) -> Result<Option<u64>, StoreError> {
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

pub(super) fn decode_idempotency(value: &[u8], now: u64) -> Result<Option<PushRecord>, StoreError> {
    let expires = expiry_of(value)
        .ok_or_else(|| StoreError::Corrupt("idempotency mark has an unknown format".into()))?;
    if expires <= now {
        return Ok(None);
    }
    serde_json::from_slice(&value[9..])
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("idempotency mark: {e}")))
}

pub(super) fn decode_u64(value: &[u8]) -> Result<u64, StoreError> {
    value
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("expected an 8-byte number".into()))
}

/// `received_ms` from a stored envelope, without parsing all of it.
pub(super) fn decode_checkpoint(value: &[u8]) -> Result<Checkpoint, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt(format!("checkpoint: {e}")))
}

pub(super) fn checkpoint_bytes(value: &str, now: u64) -> Vec<u8> {
    serde_json::to_vec(&Checkpoint::V1 {
        value: value.to_string(),
        updated_ms: now,
    })
    .expect("checkpoint serializes")
}
