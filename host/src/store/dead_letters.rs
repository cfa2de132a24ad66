//! Dead letters: push requests the connector could not turn into events,
//! kept so that they can be replayed once the connector is fixed.
//!
//! A letter is the request as the connector saw it (credentials never
//! included), the failure and the answer the sender got. Its id is
//! `{received ms, 13 digits}-{16 hex}`: unique across hosts without
//! coordination, and sorted by time, so listing in id order is listing
//! oldest first and retention by age needs no value read.
//!
//! Stored value: a format byte, the length of the JSON header (u32 BE),
//! the JSON header (everything but the body), then the raw body bytes (no
//! base64, so a letter of a 1 MiB body takes about 1 MiB).

use super::StoreError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

const FORMAT_V1: u8 = 1;

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: String,
    /// When the request arrived (ms since the Unix epoch).
    pub received_ms: u64,
    /// The connector that failed on it (`name@version+sha256:…`); after a
    /// failed replay, the one that failed last.
    pub connector: String,
    /// The failure class (see `config::DeadLetterClass`).
    pub class: String,
    /// The failure, as the log has it (cut to 1 KiB by the runtime).
    pub error: String,
    /// The HTTP status the sender was answered.
    pub status: u16,
    /// Calls that failed on it: 1 for the original, plus failed replays.
    pub attempts: u32,
    /// When the last attempt failed (ms since the Unix epoch).
    pub last_attempt_ms: u64,
    /// The request's idempotency key, if it had one: a replay is stored
    /// under it, so the sender's own retry and the replay store it once.
    pub idempotency_key: Option<String>,
    pub request: DeadRequest,
}

/// The request of a dead letter, as the connector received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadRequest {
    pub method: String,
    /// The path after `/ingest/{source}`.
    pub path: String,
    pub query: String,
    /// Without credentials (see `push::dead`).
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// Which letters a listing, replay or discard applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    pub class: Option<String>,
    /// A connector label, or its prefix (`name@1.2.0` matches every build
    /// of that version).
    pub connector: Option<String>,
    /// Received at or after (ms).
    pub since_ms: Option<u64>,
    /// Received before (ms).
    pub until_ms: Option<u64>,
}

impl DeadLetterFilter {
    /// Whether a letter received at `received_ms` may match (what the id
    /// alone tells).
    pub fn time_matches(&self, received_ms: u64) -> bool {
        self.since_ms.is_none_or(|s| received_ms >= s)
            && self.until_ms.is_none_or(|u| received_ms < u)
    }

    pub fn matches(&self, letter: &DeadLetter) -> bool {
        self.time_matches(letter.received_ms)
            && self.class.as_deref().is_none_or(|c| letter.class == c)
            && self
                .connector
                .as_deref()
                .is_none_or(|c| letter.connector.starts_with(c))
    }
}

/// A page of letters, oldest first.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterPage {
    pub letters: Vec<DeadLetter>,
    /// The id to list after for the next page, when the scan stopped
    /// before the end.
    pub next: Option<String>,
}

/// How many letters a source has, and their bytes as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeadLetterStats {
    pub count: u64,
    pub bytes: u64,
}

/// Most letters one page looks at (matching or not): a filtered listing
/// of a large store is paged, never one long scan.
pub const SCAN_MAX: usize = 2_000;

/// Dead-letter storage, per source.
#[async_trait]
pub trait DeadLetters: Send + Sync + 'static {
    /// Stores `letter` durably, then drops the oldest letters of the
    /// source (never this one) until they take at most `max_bytes`;
    /// returns how many it dropped.
    async fn put_dead_letter(
        &self,
        source: &str,
        letter: &DeadLetter,
        max_bytes: u64,
    ) -> Result<u64, StoreError>;

    async fn dead_letter(&self, source: &str, id: &str) -> Result<Option<DeadLetter>, StoreError>;

    /// Letters matching `filter` with ids after `after`, at most `limit`.
    async fn dead_letters(
        &self,
        source: &str,
        filter: &DeadLetterFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DeadLetterPage, StoreError>;

    /// Rewrites a letter after a failed replay; `false` when it is gone
    /// (discarded or replayed meanwhile), and then nothing is written.
    async fn update_dead_letter(
        &self,
        source: &str,
        letter: &DeadLetter,
    ) -> Result<bool, StoreError>;

    /// Removes a letter durably; `false` when there was none.
    async fn remove_dead_letter(&self, source: &str, id: &str) -> Result<bool, StoreError>;

    /// Removes the letters received before `before_ms`; returns how many.
    async fn expire_dead_letters(&self, source: &str, before_ms: u64) -> Result<u64, StoreError>;

    async fn dead_letter_stats(&self, source: &str) -> Result<DeadLetterStats, StoreError>;

    /// Takes the right to replay one letter (`false` when another replay,
    /// here or on another host, holds it). Released by
    /// [`DeadLetters::release_dead_letter`], or when its holder dies.
    async fn claim_dead_letter(&self, source: &str, id: &str) -> Result<bool, StoreError>;

    async fn release_dead_letter(&self, source: &str, id: &str);
}

/// A new letter id for a request received at `received_ms`.
pub fn new_id(received_ms: u64) -> String {
    format!("{received_ms:013}-{:016x}", rand::random::<u64>())
}

/// The receive time an id carries; `None` for a string that is no id.
pub fn id_time(id: &str) -> Option<u64> {
    let (ms, rand) = id.split_once('-')?;
    (ms.len() == 13
        && rand.len() == 16
        && ms.bytes().all(|b| b.is_ascii_digit())
        && rand.bytes().all(|b| b.is_ascii_hexdigit()))
    .then(|| ms.parse().ok())
    .flatten()
}

pub(crate) fn encode(letter: &DeadLetter) -> Vec<u8> {
    let header = serde_json::to_vec(letter).expect("dead letter serializes");
    let mut out = Vec::with_capacity(5 + header.len() + letter.request.body.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&letter.request.body);
    out
}

pub(crate) fn decode(value: &[u8]) -> Result<DeadLetter, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("dead letter: {why}"));
    if value.first() != Some(&FORMAT_V1) || value.len() < 5 {
        return Err(corrupt("unknown format"));
    }
    let len = u32::from_be_bytes(value[1..5].try_into().expect("4 bytes")) as usize;
    let header = value
        .get(5..5 + len)
        .ok_or_else(|| corrupt("short header"))?;
    let mut letter: DeadLetter =
        serde_json::from_slice(header).map_err(|e| corrupt(&e.to_string()))?;
    letter.request.body = value[5 + len..].to_vec();
    Ok(letter)
}

/// A letter for store tests.
#[cfg(test)]
pub(crate) fn test_letter(id: &str, class: &str, body: &[u8]) -> DeadLetter {
    let mut l = tests::letter(id, body);
    l.class = class.into();
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn letter(id: &str, body: &[u8]) -> DeadLetter {
        DeadLetter {
            id: id.into(),
            received_ms: id_time(id).unwrap_or(0),
            connector: "x@1.0.0+sha256:abc".into(),
            class: "invalid".into(),
            error: "bad".into(),
            status: 400,
            attempts: 1,
            last_attempt_ms: 1,
            idempotency_key: Some("k".into()),
            request: DeadRequest {
                method: "POST".into(),
                path: "/a".into(),
                query: "q=1".into(),
                headers: vec![("content-type".into(), "text/plain".into())],
                body: body.to_vec(),
            },
        }
    }

    #[test]
    fn a_letter_round_trips_with_a_raw_body() {
        let l = letter(&new_id(1_733_455_200_123), &[0, 0xff, b'{']);
        let bytes = encode(&l);
        assert!(bytes.ends_with(&[0, 0xff, b'{']));
        assert_eq!(decode(&bytes).unwrap(), l);
        assert!(decode(&bytes[..3]).is_err());
        assert!(decode(b"\x02rest").is_err());
    }

    #[test]
    fn ids_sort_by_time_and_carry_it() {
        let (a, b) = (new_id(999), new_id(1_000));
        assert!(a < b, "{a} < {b}");
        assert_eq!(id_time(&a), Some(999));
        assert_eq!(id_time("123-abc"), None);
        assert_eq!(id_time("../etc/passwd"), None);
    }
}
