//! The NDJSON envelope a stream read returns (README.md shows one in "A
//! session with curl"), rendered once when an event is accepted so that
//! reads stream stored bytes without re-encoding.

use super::PreparedEvent;
use crate::event::Event;
use base64::Engine as _;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// How an event reached the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Push,
    Pull,
}

#[derive(Serialize)]
struct Tail<'a> {
    source: &'a str,
    mode: Mode,
    id: Option<&'a str>,
    key: Option<&'a str>,
    time_ms: Option<u64>,
    received_ms: u64,
    connector: &'a str,
    partition: Option<&'a str>,
    content_type: &'a str,
    attributes: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

/// Deepest nesting of arrays and objects embedded as JSON (serde_json's
/// default limit is 128, Python's recursion limit about 1,000).
pub(crate) const MAX_JSON_DEPTH: usize = 100;

/// Whether valid JSON `text` is read by common parsers with their default
/// settings: nesting at most [`MAX_JSON_DEPTH`] deep, and every number
/// within a 64-bit float's range (`1e999999` fails serde_json, and becomes
/// infinity elsewhere). One pass over the bytes, no allocation.
fn portable(text: &str) -> bool {
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i + 1 < bytes.len()
                    && matches!(bytes[i + 1], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let number = &text[start..=i];
                if number.contains(['e', 'E']) && !number.parse::<f64>().is_ok_and(f64::is_finite) {
                    return false;
                }
                // Integers past a float's range (hundreds of digits).
                if number.len() > 300 && !number.parse::<f64>().is_ok_and(f64::is_finite) {
                    return false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    true
}

/// Whether a MIME type is JSON (`application/json`, `application/*+json`).
pub(crate) fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl Event {
    /// Renders everything of the envelope but the offset.
    pub fn prepare(
        &self,
        source: &str,
        mode: Mode,
        connector: &str,
        partition: Option<&str>,
        received_ms: u64,
    ) -> PreparedEvent {
        let content_type = self.content_type.as_deref().unwrap_or("application/json");
        let mut compact = None;
        let raw = if is_json(content_type) {
            match serde_json::from_slice::<&RawValue>(&self.payload) {
                // Embedded only if every common parser reads it with its
                // default limits; otherwise base64, like bytes that are not
                // JSON at all.
                Ok(raw) if !portable(raw.get()) => None,
                // NDJSON needs one line. In valid JSON a raw CR or LF can
                // only be whitespace between tokens (inside strings they
                // must be escaped), so blanking them keeps the value
                // exactly.
                Ok(raw) if raw.get().contains(['\n', '\r']) => {
                    let one_line = raw.get().replace(['\n', '\r'], " ");
                    compact = RawValue::from_string(one_line).ok();
                    compact.as_deref()
                }
                Ok(raw) => Some(raw),
                Err(_) => None,
            }
        } else {
            None
        };
        let tail = Tail {
            source,
            mode,
            id: self.id.as_deref(),
            key: self.key.as_deref(),
            time_ms: self.time_ms,
            received_ms,
            connector,
            partition,
            content_type,
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            payload: raw,
            payload_base64: raw
                .is_none()
                .then(|| base64::engine::general_purpose::STANDARD.encode(&self.payload)),
        };
        let tail = serde_json::to_vec(&tail).expect("envelope serializes");
        drop(compact);
        PreparedEvent {
            id: self.id.clone(),
            tail,
        }
    }
}

/// The full NDJSON line for an event stored at `offset`.
pub(crate) fn line(offset: u64, tail: &[u8]) -> Vec<u8> {
    debug_assert!(tail.first() == Some(&b'{'));
    let mut out = Vec::with_capacity(tail.len() + 24);
    out.extend_from_slice(b"{\"offset\":");
    out.extend_from_slice(offset.to_string().as_bytes());
    out.push(b',');
    out.extend_from_slice(&tail[1..]);
    out
}

/// The `received_ms` of a stored envelope tail, without parsing all of it.
pub(crate) fn received_ms(value: &[u8]) -> Option<u64> {
    const FIELD: &[u8] = b"\"received_ms\":";
    let at = value.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let digits = value[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&value[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(ev: Event) -> serde_json::Value {
        let p = ev.prepare("github", Mode::Push, "github@1.0.0+sha256:ab", None, 7);
        serde_json::from_slice(&line(42, &p.tail)).unwrap()
    }

    #[test]
    fn json_payload_is_embedded() {
        let v = render(Event {
            id: Some("d1".into()),
            payload: b"{\n  \"a\": 1\n}".to_vec(),
            attributes: vec![("event".into(), "push".into())],
            ..Default::default()
        });
        assert_eq!(v["offset"], 42);
        assert_eq!(v["payload"]["a"], 1);
        assert_eq!(v["attributes"]["event"], "push");
        assert_eq!(v["content_type"], "application/json");
        assert!(v.get("payload_base64").is_none());
    }

    #[test]
    fn rendered_line_has_no_newline() {
        let p = Event {
            payload: b"[1,\n2]".to_vec(),
            ..Default::default()
        }
        .prepare("s", Mode::Pull, "c", Some("p1"), 1);
        assert!(!line(1, &p.tail).contains(&b'\n'));
    }

    #[test]
    fn deep_or_out_of_range_json_over_several_lines_does_not_panic() {
        let deep = format!("{}\n{}", "[".repeat(200), "]".repeat(200));
        for payload in [deep.as_str(), "{\"a\":\n1e400}"] {
            let p = Event {
                payload: payload.as_bytes().to_vec(),
                ..Default::default()
            }
            .prepare("s", Mode::Push, "c", None, 1);
            let line = line(1, &p.tail);
            assert!(!line.contains(&b'\n'));
        }
    }

    #[test]
    fn other_payloads_are_base64() {
        let v = render(Event {
            payload: b"not json".to_vec(),
            ..Default::default()
        });
        assert_eq!(v["payload_base64"], "bm90IGpzb24=");
        assert!(v.get("payload").is_none());
        let v = render(Event {
            payload: b"{}".to_vec(),
            content_type: Some("text/plain".into()),
            ..Default::default()
        });
        assert_eq!(v["payload_base64"], "e30=");
    }

    #[test]
    fn json_that_default_parsers_refuse_is_base64() {
        let deep = format!("{}{}", "[".repeat(101), "]".repeat(101));
        let long = format!("1{}", "0".repeat(400));
        for payload in [
            deep.as_str(),
            "1e999999",
            r#"{"a":[-1E+400]}"#,
            long.as_str(),
        ] {
            let v = render(Event {
                payload: payload.as_bytes().to_vec(),
                ..Default::default()
            });
            assert!(v.get("payload").is_none(), "{payload}");
            assert!(v["payload_base64"].is_string(), "{payload}");
        }
        let fine = format!(
            r#"{{"s":"[[[[ 1e999999 \" ]]","n":[1.5e300,-2,0.1,{}],"d":{}{}}}"#,
            "9".repeat(30),
            "[".repeat(99),
            "]".repeat(99)
        );
        let v = render(Event {
            payload: fine.as_bytes().to_vec(),
            ..Default::default()
        });
        assert!(v.get("payload_base64").is_none(), "{v}");
        assert_eq!(v["payload"]["s"], "[[[[ 1e999999 \" ]]");
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/cloudevents+json"));
        assert!(!is_json("text/json-ish"));
    }
}
