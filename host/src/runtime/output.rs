//! What a call may return. Everything a guest hands back is untrusted:
//! it is checked here, before the host copies it into events, the store or
//! an HTTP response.
//!
//! - Every byte of an event counts toward `max_bytes_per_call` (payload,
//!   id, key, content type, attributes), and the fields the host copies
//!   into each envelope and index have caps of their own.
//! - A checkpoint is at most [`MAX_CHECKPOINT_BYTES`] (as the admin API's
//!   `PUT` allows).
//! - A push reply has a status in 200–599, at most [`MAX_REPLY_HEADERS`]
//!   headers of [`MAX_REPLY_HEADER_BYTES`] in all and a body of at most
//!   [`MAX_REPLY_BODY_BYTES`] (sizes past these are the request's doing as
//!   often as not: 422, no quarantine); headers that frame or route the response, or
//!   set state in a browser, are dropped ([`reply_header_allowed`]), and the
//!   host adds its own `X-Content-Type-Options: nosniff` and a sandboxing
//!   `Content-Security-Policy`, so a reply can neither split the response
//!   nor run script in the sender's origin.

use super::bindings::types;
use super::{CallError, Descriptor, Reply, Sandbox};
use crate::event::Event;

/// Most bytes of an event id or key (both index the store).
pub const MAX_ID_BYTES: usize = 1024;
/// Most bytes of an event's content type.
pub const MAX_CONTENT_TYPE_BYTES: usize = 256;
/// Most attributes on one event.
pub const MAX_ATTRIBUTES: usize = 64;
/// Most bytes of one attribute's name.
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 256;
/// Most bytes of a checkpoint.
pub const MAX_CHECKPOINT_BYTES: usize = 64 * 1024;
/// Most headers on a push reply.
pub const MAX_REPLY_HEADERS: usize = 32;
/// Most bytes of a push reply's header names and values together.
pub const MAX_REPLY_HEADER_BYTES: usize = 8 * 1024;
/// Most bytes of a push reply's body (kept with the idempotency key as
/// base64: this fits a JetStream message of NATS's default 1 MB).
pub const MAX_REPLY_BODY_BYTES: usize = 512 * 1024;

/// Most bytes of a connector's error message (longer ones are cut).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// A guest's error message, cut and with control characters escaped.
pub(super) fn error_message(message: String) -> String {
    let mut end = message.len().min(MAX_ERROR_MESSAGE_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    super::log::escape_controls(&message[..end]).into_owned()
}

/// Most partitions one `partitions` call may list.
pub const MAX_PARTITIONS: usize = 10_000;
/// Most bytes of a partition name.
pub const MAX_PARTITION_NAME_BYTES: usize = 256;
/// Most bytes of a connector's name, version and schedule.
pub const MAX_DESCRIPTOR_FIELD_BYTES: usize = 64;
/// Most bytes of a connector's description.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

/// Headers a connector's reply may not set: framing and hop-by-hop headers
/// (the host frames the response), what sets state in a browser or client
/// (cookies, CORS, HSTS, `Clear-Site-Data`, `Alt-Svc`, `Refresh`: a webhook
/// endpoint has no business with them), and the two security headers the
/// host sets itself.
const DROPPED_REPLY_HEADERS: &[&str] = &[
    "alt-svc",
    "clear-site-data",
    "connection",
    "content-length",
    "content-security-policy",
    "keep-alive",
    "refresh",
    "set-cookie",
    "set-cookie2",
    "strict-transport-security",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-content-type-options",
];

/// Whether a connector's reply may carry header `name` (any case).
pub fn reply_header_allowed(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !(DROPPED_REPLY_HEADERS.contains(&name.as_str())
        || name.starts_with("proxy-")
        || name.starts_with("access-control-"))
}

/// The security headers the host puts on every connector reply.
pub const REPLY_SECURITY_HEADERS: [(&str, &str); 2] = [
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", "default-src 'none'; sandbox"),
];

/// Checks a call's events against the sandbox's caps and converts them.
/// Returns them with the bytes they count for.
pub(super) fn events(
    events: Vec<types::Event>,
    sandbox: &Sandbox,
) -> Result<(Vec<Event>, u64), CallError> {
    if events.len() > sandbox.max_events_per_call as usize {
        return Err(CallError::Output(format!(
            "{} events in one call; the limit is {}",
            events.len(),
            sandbox.max_events_per_call
        )));
    }
    let mut bytes = 0u64;
    for (i, e) in events.iter().enumerate() {
        check_event(i, e)?;
        bytes = bytes.saturating_add(event_bytes(e));
    }
    if bytes > sandbox.max_bytes_per_call {
        return Err(CallError::Output(format!(
            "{bytes} bytes of events in one call (payloads, ids, keys, content types and \
             attributes); the limit is {}",
            sandbox.max_bytes_per_call
        )));
    }
    let events = events
        .into_iter()
        .map(|e| Event {
            id: e.id,
            key: e.key,
            time_ms: e.time_ms,
            payload: e.payload,
            content_type: e.content_type,
            attributes: e.attributes,
        })
        .collect();
    Ok((events, bytes))
}

/// Every byte of an event the host keeps.
fn event_bytes(e: &types::Event) -> u64 {
    let fields = e.id.as_ref().map_or(0, String::len)
        + e.key.as_ref().map_or(0, String::len)
        + e.content_type.as_ref().map_or(0, String::len)
        + e.attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    e.payload.len() as u64 + fields as u64
}

fn check_event(index: usize, e: &types::Event) -> Result<(), CallError> {
    // `Output`: on push these follow from the request as often as not (an
    // id or content type copied from it), so the sender gets 422 and the
    // connector no strike; on pull they are the connector's failure.
    let over = |what: &str, len: usize, max: usize| {
        CallError::Output(format!(
            "event {index}: its {what} is {len} bytes; the limit is {max}"
        ))
    };
    for (what, value) in [("id", &e.id), ("key", &e.key)] {
        if let Some(v) = value
            && v.len() > MAX_ID_BYTES
        {
            return Err(over(what, v.len(), MAX_ID_BYTES));
        }
    }
    if let Some(ct) = &e.content_type {
        if ct.len() > MAX_CONTENT_TYPE_BYTES {
            return Err(over("content type", ct.len(), MAX_CONTENT_TYPE_BYTES));
        }
        if ct.chars().any(|c| c.is_control() && c != '\t') {
            return Err(CallError::Output(format!(
                "event {index}: its content type has control characters"
            )));
        }
    }
    if e.attributes.len() > MAX_ATTRIBUTES {
        return Err(CallError::Output(format!(
            "event {index}: {} attributes; the limit is {MAX_ATTRIBUTES}",
            e.attributes.len()
        )));
    }
    if let Some((name, _)) = e
        .attributes
        .iter()
        .find(|(name, _)| name.len() > MAX_ATTRIBUTE_NAME_BYTES)
    {
        return Err(over("attribute name", name.len(), MAX_ATTRIBUTE_NAME_BYTES));
    }
    Ok(())
}

/// Checks a checkpoint's size; `spent` is what the call's events counted.
pub(super) fn checkpoint(
    checkpoint: Option<String>,
    spent: u64,
    sandbox: &Sandbox,
) -> Result<Option<String>, CallError> {
    if let Some(c) = &checkpoint {
        if c.len() > MAX_CHECKPOINT_BYTES {
            return Err(CallError::Limit(format!(
                "a checkpoint of {} bytes; the limit is {MAX_CHECKPOINT_BYTES}",
                c.len()
            )));
        }
        within_call_bytes(spent + c.len() as u64, sandbox)?;
    }
    Ok(checkpoint)
}

/// Checks and filters a push reply; `spent` is what the call's events
/// counted.
pub(super) fn reply(
    reply: types::HttpResponse,
    spent: u64,
    sandbox: &Sandbox,
) -> Result<Reply, CallError> {
    if !(200..=599).contains(&reply.status) {
        return Err(CallError::Limit(format!(
            "a reply with status {}; a connector may answer 200 to 599",
            reply.status
        )));
    }
    // Sizes may follow from the request (a challenge echoed back): 422,
    // no strike. A status outside 200-599 is the connector's own doing.
    if reply.headers.len() > MAX_REPLY_HEADERS {
        return Err(CallError::Output(format!(
            "a reply with {} headers; the limit is {MAX_REPLY_HEADERS}",
            reply.headers.len()
        )));
    }
    let header_bytes: usize = reply.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    if header_bytes > MAX_REPLY_HEADER_BYTES {
        return Err(CallError::Output(format!(
            "a reply with {header_bytes} bytes of headers; the limit is {MAX_REPLY_HEADER_BYTES}"
        )));
    }
    if reply.body.len() > MAX_REPLY_BODY_BYTES {
        return Err(CallError::Output(format!(
            "a reply body of {} bytes; the limit is {MAX_REPLY_BODY_BYTES}",
            reply.body.len()
        )));
    }
    within_call_bytes(spent + (header_bytes + reply.body.len()) as u64, sandbox)?;
    let headers = reply
        .headers
        .into_iter()
        .filter(|(name, value)| {
            let keep = reply_header_allowed(name)
                && http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && http::HeaderValue::from_str(value).is_ok();
            if !keep {
                tracing::debug!(connector = %sandbox.name, header = %name.escape_debug(), "Reply header dropped.");
            }
            keep
        })
        .collect();
    Ok(Reply {
        status: reply.status,
        headers,
        body: reply.body,
    })
}

/// Checks what `describe` returned: short, printable fields (they appear
/// in every event's `connector` label, logs and status).
pub(super) fn descriptor(d: &Descriptor) -> Result<(), CallError> {
    let fields = [
        ("name", d.name.as_str(), MAX_DESCRIPTOR_FIELD_BYTES),
        ("version", d.version.as_str(), MAX_DESCRIPTOR_FIELD_BYTES),
        (
            "schedule",
            d.schedule.as_deref().unwrap_or(""),
            MAX_DESCRIPTOR_FIELD_BYTES,
        ),
        ("description", d.description.as_str(), MAX_DESCRIPTION_BYTES),
    ];
    for (what, value, max) in fields {
        if value.len() > max {
            return Err(CallError::Limit(format!(
                "describe(): its {what} is {} bytes; the limit is {max}",
                value.len()
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(CallError::Limit(format!(
                "describe(): its {what} has control characters"
            )));
        }
    }
    for (what, value) in [("name", &d.name), ("version", &d.version)] {
        if value.is_empty() || value.chars().any(char::is_whitespace) {
            return Err(CallError::Limit(format!(
                "describe(): its {what} {value:?} is empty or has spaces"
            )));
        }
    }
    Ok(())
}

/// Checks what `partitions` returned: at most [`MAX_PARTITIONS`] distinct
/// names of at most [`MAX_PARTITION_NAME_BYTES`], printable.
pub(super) fn partitions(list: &[String]) -> Result<(), CallError> {
    if list.len() > MAX_PARTITIONS {
        return Err(CallError::Limit(format!(
            "partitions(): {} partitions; the limit is {MAX_PARTITIONS}",
            list.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(list.len());
    for name in list {
        if name.is_empty()
            || name.len() > MAX_PARTITION_NAME_BYTES
            || name.chars().any(char::is_control)
        {
            return Err(CallError::Limit(format!(
                "partitions(): a partition name must be 1 to {MAX_PARTITION_NAME_BYTES} bytes \
                 without control characters (got {} bytes starting {:?})",
                name.len(),
                name.chars().take(32).collect::<String>()
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(CallError::Limit(format!(
                "partitions(): {name:?} is listed twice"
            )));
        }
    }
    Ok(())
}

fn within_call_bytes(total: u64, sandbox: &Sandbox) -> Result<(), CallError> {
    if total > sandbox.max_bytes_per_call {
        return Err(CallError::Limit(format!(
            "{total} bytes in one call's output; the limit is {}",
            sandbox.max_bytes_per_call
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_cookie_and_cors_headers_are_not_a_connectors_to_set() {
        for name in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "Set-Cookie",
            "Proxy-Authenticate",
            "Access-Control-Allow-Origin",
            "Upgrade",
            "X-Content-Type-Options",
        ] {
            assert!(!reply_header_allowed(name), "{name}");
        }
        for name in ["Content-Type", "X-Request-Id", "Location", "Cache-Control"] {
            assert!(reply_header_allowed(name), "{name}");
        }
    }
}
