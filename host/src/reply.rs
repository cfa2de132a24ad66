//! Building HTTP responses. Every error a client sees is an [`ApiError`],
//! rendered here in one shape, `{"error":{"code":"...","message":"..."}}`,
//! with its status, `Retry-After` and (for pushes) the metrics outcome.

use crate::store::StoreError;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use std::time::Duration;

pub type Body = http_body_util::Full<Bytes>;
pub type Resp = http::Response<Body>;

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

fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    json(
        status,
        &serde_json::json!({ "error": { "code": code, "message": message } }),
    )
}

/// A wait as `Retry-After` seconds: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Why a push request was not stored: every refusal and failure of the
/// push path, rendered by [`ApiError::into_response`] and counted by
/// [`ApiError::outcome`].
#[derive(Debug)]
pub enum ApiError {
    /// No connector is loaded for the source (404).
    UnknownSource(String),
    /// The connector has no push mode (405).
    PushDisabled(String),
    /// The connector sits out a quarantine until `wait` has passed (503).
    Quarantined { source: String, wait: Duration },
    /// The body is over `max_body_bytes` (413).
    BodyTooLarge { max: u64 },
    /// The body could not be read (400).
    BodyUnreadable(String),
    /// The body did not arrive within `body_read_timeout` (408).
    BodyTimeout,
    /// The request did not authenticate (401, no detail).
    Unauthorized,
    /// A slot or budget is exhausted; retry in a second (503).
    Overloaded(String),
    /// The source's rate limit; retry after `wait` (429).
    RateLimited(Duration),
    /// A request with the same idempotency key is in flight (409).
    InFlight,
    /// The store failed; nothing was acknowledged (503).
    Store(StoreError),
    /// The connector refused the request as invalid (400).
    Invalid(String),
    /// The connector refused the request's credentials (401).
    ConnectorUnauthorized(String),
    /// The connector's source is unavailable, or it waited on its source
    /// past the deadline (503, `Retry-After: 1`); `timeout` tells which.
    Unavailable { message: String, timeout: bool },
    /// The connector reported an error of its own (500).
    ConnectorError(String),
    /// One request made more events than a push may store (422).
    TooManyEvents(String),
    /// The connector failed: trap, deadline, limit (500).
    ConnectorFailed {
        class: &'static str,
        message: String,
    },
    /// The connector's own reply is not valid HTTP (500).
    BadReply,
    // The admin API, streams, health and routing:
    /// No route for this method and path (404).
    NoRoute { method: String, path: String },
    /// The path exists, with other methods (405, `Allow`).
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: Vec<&'static str>,
    },
    /// The admin, metrics or consumer token is missing or wrong (401);
    /// names what needs it.
    TokenRequired(&'static str),
    /// A query parameter that cannot be used (400).
    BadQuery(String),
    /// A request body that is not the documented shape (400 `invalid`).
    BadBody(&'static str),
    /// A cursor name that is not letters, digits, `-` and `_` (400).
    BadCursorName,
    /// A source with no connector and no stored events (404).
    UnknownStream(String),
    /// No such consumer cursor (404).
    UnknownCursor { source: String, name: String },
    /// The partition has no checkpoint (404).
    NoCheckpoint,
    /// The connector has no pull mode (405).
    PullDisabled(String),
    /// A manual pull failed (502).
    PullFailed(String),
    /// Too many long polls wait already (503).
    TooManyWaits,
    /// The host is shutting down (503).
    ShuttingDown,
    /// The first plugin scan has not finished (503).
    NotReady,
    /// The store cannot take writes: `/readyz` says why (503).
    StoreDown(StoreError),
    /// The connector failed on a push and the request could not be kept as
    /// a dead letter either: nothing was kept, the sender retries (503).
    NotKept { failure: String, error: StoreError },
    /// No dead letter with this id (404).
    UnknownDeadLetter(String),
    /// The sender's address is not in the source's `allowed_ips` (403).
    AddressNotAllowed(std::net::IpAddr),
    /// A browser sent an admin request from another site's page (403).
    CrossSite,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownSource(_) => StatusCode::NOT_FOUND,
            ApiError::PushDisabled(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyUnreadable(_) | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unauthorized | ApiError::ConnectorUnauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InFlight => StatusCode::CONFLICT,
            ApiError::TooManyEvents(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Quarantined { .. }
            | ApiError::Overloaded(_)
            | ApiError::Store(_)
            | ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ConnectorError(_) | ApiError::ConnectorFailed { .. } | ApiError::BadReply => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::NoRoute { .. }
            | ApiError::UnknownStream(_)
            | ApiError::UnknownCursor { .. }
            | ApiError::NoCheckpoint => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } | ApiError::PullDisabled(_) => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            ApiError::TokenRequired(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadQuery(_) | ApiError::BadBody(_) | ApiError::BadCursorName => {
                StatusCode::BAD_REQUEST
            }
            ApiError::PullFailed(_) => StatusCode::BAD_GATEWAY,
            ApiError::TooManyWaits
            | ApiError::ShuttingDown
            | ApiError::NotReady
            | ApiError::StoreDown(_)
            | ApiError::NotKept { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UnknownDeadLetter(_) => StatusCode::NOT_FOUND,
            ApiError::AddressNotAllowed(_) | ApiError::CrossSite => StatusCode::FORBIDDEN,
        }
    }

    /// The `error.code` of the response body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownSource(_) => "unknown_source",
            ApiError::PushDisabled(_) => "push_disabled",
            ApiError::Quarantined { .. } => "quarantined",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::BodyUnreadable(_) => "bad_request",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::Unauthorized | ApiError::ConnectorUnauthorized(_) => "unauthorized",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::InFlight => "in_flight",
            ApiError::Store(_) => "store_unavailable",
            ApiError::Invalid(_) => "invalid",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::ConnectorError(_) => "connector_error",
            ApiError::TooManyEvents(_) => "too_many_events",
            ApiError::ConnectorFailed { .. } => "connector_failed",
            ApiError::BadReply => "bad_reply",
            ApiError::NoRoute { .. } => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::TokenRequired(_) => "unauthorized",
            ApiError::BadQuery(_) => "bad_query",
            ApiError::BadBody(_) => "invalid",
            ApiError::BadCursorName => "bad_cursor_name",
            ApiError::UnknownStream(_) => "unknown_source",
            ApiError::UnknownCursor { .. } => "unknown_cursor",
            ApiError::NoCheckpoint => "no_checkpoint",
            ApiError::PullDisabled(_) => "pull_disabled",
            ApiError::PullFailed(_) => "pull_failed",
            ApiError::TooManyWaits => "too_many_waits",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::NotReady => "not_ready",
            ApiError::StoreDown(_) | ApiError::NotKept { .. } => "store_unavailable",
            ApiError::UnknownDeadLetter(_) => "unknown_dead_letter",
            ApiError::AddressNotAllowed(_) | ApiError::CrossSite => "forbidden",
        }
    }

    /// The `outcome` label of `inlet_push_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            ApiError::BodyTooLarge { .. } => "too_large",
            ApiError::BodyTimeout => "timeout",
            ApiError::Unavailable { timeout: true, .. } => "source_timeout",
            ApiError::ConnectorError(_) | ApiError::ConnectorFailed { .. } | ApiError::BadReply => {
                "failed"
            }
            other => other.code(),
        }
    }

    /// How long the client should wait before retrying, if it should.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Quarantined { wait, .. } | ApiError::RateLimited(wait) => Some(*wait),
            ApiError::Overloaded(_)
            | ApiError::Store(_)
            | ApiError::NotKept { .. }
            | ApiError::Unavailable { .. }
            | ApiError::TooManyWaits => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::UnknownSource(s) => format!("no connector is loaded for source `{s}`"),
            ApiError::PushDisabled(s) => format!("connector `{s}` does not accept push requests"),
            ApiError::Quarantined { source, wait } => format!(
                "connector `{source}` is quarantined after repeated failures; retry in {} s",
                retry_after_secs(*wait)
            ),
            ApiError::BodyTooLarge { max } => {
                format!("the request body is larger than the limit of {max} bytes")
            }
            ApiError::BodyUnreadable(e) => format!("could not read the request body: {e}"),
            ApiError::BodyTimeout => "the request body did not arrive in time".into(),
            ApiError::Unauthorized => "the request could not be authenticated".into(),
            ApiError::RateLimited(wait) => format!(
                "rate limit exceeded; retry in {} s",
                retry_after_secs(*wait)
            ),
            ApiError::InFlight => {
                "a request with the same idempotency key is being processed; retry later".into()
            }
            ApiError::Store(_) => "the event store could not complete the write; nothing was acknowledged (retry with the same Idempotency-Key: a retry is stored once)".into(),
            ApiError::Overloaded(m)
            | ApiError::Invalid(m)
            | ApiError::ConnectorUnauthorized(m)
            | ApiError::Unavailable { message: m, .. }
            | ApiError::ConnectorError(m)
            | ApiError::TooManyEvents(m) => m.clone(),
            ApiError::ConnectorFailed { class, message } => {
                format!("the connector failed ({class}): {message}")
            }
            ApiError::BadReply => "the connector's reply is not valid HTTP".into(),
            ApiError::NoRoute { method, path } => format!("no route for {method} {path}"),
            ApiError::MethodNotAllowed {
                method,
                path,
                allowed,
            } => format!(
                "{method} is not allowed on {path}; use {}",
                allowed.join(", ")
            ),
            ApiError::TokenRequired(what) => {
                format!("{what} needs `Authorization: Bearer <token>`")
            }
            ApiError::BadQuery(m) | ApiError::PullFailed(m) => m.clone(),
            ApiError::BadBody(shape) => format!("the body is `{shape}`"),
            ApiError::BadCursorName => {
                "a cursor name is letters, digits, `-` and `_`, at most 64".into()
            }
            ApiError::UnknownStream(s) => {
                format!("no connector is loaded for source `{s}` and it has no events")
            }
            ApiError::UnknownCursor { source, name } => {
                format!("no cursor `{name}` on `{source}`")
            }
            ApiError::NoCheckpoint => "this partition has no checkpoint yet".into(),
            ApiError::PullDisabled(s) => format!("connector `{s}` does not support pull"),
            ApiError::TooManyWaits => {
                "too many long polls are waiting; retry, or poll without `wait`".into()
            }
            ApiError::ShuttingDown => "the host is shutting down".into(),
            ApiError::NotReady => "the first plugin scan has not finished".into(),
            ApiError::StoreDown(err) => err.to_string(),
            ApiError::NotKept { failure, .. } => format!(
                "the connector failed on this request ({failure}) and it could not be kept as a dead letter (the store failed); nothing was stored: retry"
            ),
            ApiError::UnknownDeadLetter(id) => format!("no dead letter `{id}`"),
            ApiError::AddressNotAllowed(ip) => {
                format!("pushes from {ip} are not allowed for this source")
            }
            ApiError::CrossSite => {
                "the admin API and the console answer only their own pages and non-browser clients (Sec-Fetch-Site)".into()
            }
        }
    }

    /// The response: the one error shape, with `Retry-After` when the
    /// client should come back.
    pub fn into_response(self) -> Resp {
        if let ApiError::Store(err) | ApiError::NotKept { error: err, .. } = &self {
            tracing::error!(error = %err, "Store operation failed.");
        }
        let mut r = error(self.status(), self.code(), &self.message());
        if let Some(wait) = self.retry_after() {
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(wait)),
            );
        }
        if let ApiError::MethodNotAllowed { allowed, .. } = &self
            && let Ok(v) = HeaderValue::from_str(&allowed.join(", "))
        {
            r.headers_mut().insert(header::ALLOW, v);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_own_outcome_and_retry_after() {
        let cases = [
            (ApiError::Overloaded("x".into()), 503, "overloaded", Some(1)),
            (
                ApiError::Quarantined {
                    source: "s".into(),
                    wait: Duration::from_millis(2_100),
                },
                503,
                "quarantined",
                Some(3),
            ),
            (
                ApiError::Store(StoreError::Closed),
                503,
                "store_unavailable",
                Some(1),
            ),
            (
                ApiError::Unavailable {
                    message: "db down".into(),
                    timeout: false,
                },
                503,
                "unavailable",
                Some(1),
            ),
            (
                ApiError::Unavailable {
                    message: "slow".into(),
                    timeout: true,
                },
                503,
                "source_timeout",
                Some(1),
            ),
            (
                ApiError::RateLimited(Duration::from_millis(10)),
                429,
                "rate_limited",
                Some(1),
            ),
            (ApiError::BodyTooLarge { max: 1 }, 413, "too_large", None),
            (ApiError::Invalid("bad".into()), 400, "invalid", None),
        ];
        for (err, status, outcome, retry) in cases {
            assert_eq!(err.outcome(), outcome, "{err:?}");
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), status, "{outcome}");
            let got = resp
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            assert_eq!(got, retry, "{outcome}");
        }
    }
}
