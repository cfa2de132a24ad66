//! Unit tests of the JetStream store's key and msg-id encodings.

use super::buckets::{key_token, parse_token};
use super::msg_id::sha;

#[test]
fn key_tokens_round_trip_and_stay_kv_safe() {
    for p in [None, Some("eu-1"), Some("a.b/c d"), Some(""), Some("ü")] {
        let t = key_token(p);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{t}"
        );
        assert_eq!(parse_token(&t), Some(p.map(str::to_string)), "{t}");
    }
    assert_ne!(key_token(Some("default")), key_token(None));
}

#[test]
fn hashes_separate_their_parts() {
    assert_ne!(sha(&[b"ab", b"c"]), sha(&[b"a", b"bc"]));
}
