//! Building HTTP responses. Every error a client sees has one shape,
//! produced here: `{"error":{"code":"...","message":"..."}}`.

use crate::store::StoreError;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use std::time::Duration;

pub type Body = http_body_util::Full<Bytes>;
pub type Resp = http::Response<Body>;

/// 404 for a source (connector file stem) that has no connector loaded:
/// the one answer for `/ingest/{source}` and `/v1/connectors/{name}`.
pub fn unknown_source(name: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "unknown_source",
        &format!("no connector is loaded for source `{name}`"),
    )
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Resp {
    let mut resp = http::Response::new(Body::from(
        serde_json::to_vec(value).expect("JSON value serializes"),
    ));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut resp = http::Response::new(Body::from(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    json(
        status,
        &serde_json::json!({ "error": { "code": code, "message": message } }),
    )
}

/// 503 with `Retry-After: 1`, answered at once.
pub fn overloaded(message: &str) -> Resp {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// 429 with `Retry-After` in whole seconds, rounded up.
pub fn rate_limited(wait: Duration) -> Resp {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        &format!("rate limit exceeded; retry in {secs} s"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

pub fn store_failed(err: &StoreError) -> Resp {
    tracing::error!(error = %err, "Store operation failed.");
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the event store could not complete the write; nothing was acknowledged (retry with the same Idempotency-Key: a retry is stored once)",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}
