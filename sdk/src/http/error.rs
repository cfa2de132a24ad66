//! Why an outbound request failed.

use std::fmt;

use wasi::http::types::ErrorCode;

use crate::Error;

/// What kind of failure an [`HttpError`] is.
///
/// ```no_run
/// use inlet_sdk::http::{self, HttpErrorKind};
///
/// match http::get("http://127.0.0.1:9000/items") {
///     Err(e) if e.kind() == HttpErrorKind::Denied => inlet_sdk::log::error(e.to_string()),
///     _ => {}
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpErrorKind {
    /// The request could not be built: a bad URL, method or header.
    InvalidRequest,
    /// The host refused the request: its authority is not in the manifest's
    /// `[sandbox] allowed_hosts`.
    Denied,
    /// A DNS, connect or response timeout.
    Timeout,
    /// The connection could not be made or broke (DNS error, refused, reset,
    /// TLS failure).
    Connection,
    /// The server's answer was not valid HTTP, or anything else went wrong.
    Protocol,
}

/// An outbound request failed before a response arrived. Its message names
/// the method, the URL and the cause, e.g.
/// `GET http://127.0.0.1:9/x: connection refused`.
///
/// An HTTP error status is not an `HttpError`: [`send`](super::Request::send)
/// returns the response; see
/// [`Response::error_for_status`](super::Response::error_for_status).
///
/// With `?` in a hook it becomes an [`Error`]: [`Error::Invalid`] for
/// [`InvalidRequest`](HttpErrorKind::InvalidRequest) and
/// [`Denied`](HttpErrorKind::Denied) (retrying cannot help, the configuration
/// must change), [`Error::Unavailable`] otherwise (retried with backoff).
///
/// ```no_run
/// fn fetch() -> Result<Vec<u8>, inlet_sdk::Error> {
///     let response = inlet_sdk::http::get("https://api.example.com/items")?;
///     Ok(response.body().to_vec())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    method: String,
    url: String,
    kind: HttpErrorKind,
    message: String,
}

impl HttpError {
    pub(crate) fn new(
        method: impl Into<String>,
        url: impl Into<String>,
        kind: HttpErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            kind,
            message: message.into(),
        }
    }

    #[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
    pub(crate) fn from_code(method: &str, url: &str, code: &ErrorCode) -> Self {
        let (kind, message) = describe(code);
        Self::new(method, url, kind, message)
    }

    /// The kind of failure.
    ///
    /// ```no_run
    /// # fn f(e: &inlet_sdk::http::HttpError) {
    /// let denied = e.kind() == inlet_sdk::http::HttpErrorKind::Denied;
    /// # }
    /// ```
    pub fn kind(&self) -> HttpErrorKind {
        self.kind
    }

    /// The request method.
    ///
    /// ```no_run
    /// # fn f(e: &inlet_sdk::http::HttpError) {
    /// assert_eq!(e.method(), "GET");
    /// # }
    /// ```
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request URL, as given.
    ///
    /// ```no_run
    /// # fn f(e: &inlet_sdk::http::HttpError) {
    /// inlet_sdk::log::warn(format!("Request to {} failed.", e.url()));
    /// # }
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The cause alone, without method and URL (e.g. `connection refused`).
    ///
    /// ```no_run
    /// # fn f(e: &inlet_sdk::http::HttpError) {
    /// let cause = e.message();
    /// # }
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.method, self.url, self.message)
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        match e.kind {
            HttpErrorKind::InvalidRequest | HttpErrorKind::Denied => Error::Invalid(e.to_string()),
            HttpErrorKind::Timeout | HttpErrorKind::Connection | HttpErrorKind::Protocol => {
                Error::Unavailable(e.to_string())
            }
        }
    }
}

/// The kind and a lower-case sentence fragment for a `wasi:http` error code.
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
fn describe(code: &ErrorCode) -> (HttpErrorKind, String) {
    use HttpErrorKind::{Connection, Denied, InvalidRequest, Protocol, Timeout};
    let fixed = |kind, text: &str| (kind, text.to_owned());
    match code {
        ErrorCode::HttpRequestDenied => fixed(
            Denied,
            "request denied by the host: add the host to `[sandbox] allowed_hosts` in the \
             connector's manifest",
        ),
        ErrorCode::DnsTimeout => fixed(Timeout, "DNS timeout"),
        ErrorCode::DnsError(p) => {
            let mut text = "DNS error".to_owned();
            if let Some(rcode) = &p.rcode {
                text.push_str(&format!(" ({rcode})"));
            }
            (Connection, text)
        }
        ErrorCode::DestinationNotFound => fixed(Connection, "destination not found"),
        ErrorCode::DestinationUnavailable => fixed(Connection, "destination unavailable"),
        ErrorCode::DestinationIpProhibited => fixed(Denied, "destination IP prohibited"),
        ErrorCode::DestinationIpUnroutable => fixed(Connection, "destination IP unroutable"),
        ErrorCode::ConnectionRefused => fixed(Connection, "connection refused"),
        ErrorCode::ConnectionTerminated => fixed(Connection, "connection terminated"),
        ErrorCode::ConnectionTimeout => fixed(Timeout, "connection timeout"),
        ErrorCode::ConnectionReadTimeout => fixed(Timeout, "connection read timeout"),
        ErrorCode::ConnectionWriteTimeout => fixed(Timeout, "connection write timeout"),
        ErrorCode::ConnectionLimitReached => fixed(Connection, "connection limit reached"),
        ErrorCode::TlsProtocolError => fixed(Connection, "TLS protocol error"),
        ErrorCode::TlsCertificateError => fixed(Connection, "TLS certificate error"),
        ErrorCode::TlsAlertReceived(p) => {
            let mut text = "TLS alert received".to_owned();
            if let Some(m) = &p.alert_message {
                text.push_str(&format!(": {m}"));
            }
            (Connection, text)
        }
        ErrorCode::HttpRequestMethodInvalid => fixed(InvalidRequest, "invalid request method"),
        ErrorCode::HttpRequestUriInvalid => fixed(InvalidRequest, "invalid request URI"),
        ErrorCode::HttpRequestUriTooLong => fixed(InvalidRequest, "request URI too long"),
        ErrorCode::HttpResponseIncomplete => fixed(Protocol, "response incomplete"),
        ErrorCode::HttpResponseTimeout => fixed(Timeout, "response timeout"),
        ErrorCode::HttpProtocolError => fixed(Protocol, "HTTP protocol error"),
        ErrorCode::InternalError(Some(m)) => (Protocol, format!("internal error: {m}")),
        ErrorCode::InternalError(None) => fixed(Protocol, "internal error"),
        other => (Protocol, kebab(&format!("{other:?}"))),
    }
}

/// `ErrorCode::HttpResponseBodySize(None)` → `http-response-body-size(None)`.
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
fn kebab(debug: &str) -> String {
    let name = debug.strip_prefix("ErrorCode::").unwrap_or(debug);
    let mut out = String::with_capacity(name.len() + 8);
    let mut in_payload = false;
    for (i, c) in name.char_indices() {
        if c == '(' {
            in_payload = true;
        }
        if !in_payload && c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_method_url_and_cause() {
        let e = HttpError::from_code("GET", "http://127.0.0.1:9/x", &ErrorCode::ConnectionRefused);
        assert_eq!(
            e.to_string(),
            "GET http://127.0.0.1:9/x: connection refused"
        );
        assert_eq!(e.kind(), HttpErrorKind::Connection);
        assert_eq!(
            Error::from(e),
            Error::unavailable("GET http://127.0.0.1:9/x: connection refused")
        );
    }

    #[test]
    fn denied_says_so_and_is_invalid() {
        let e = HttpError::from_code("GET", "http://evil.test/", &ErrorCode::HttpRequestDenied);
        assert_eq!(e.kind(), HttpErrorKind::Denied);
        assert!(e.to_string().contains("request denied"), "{e}");
        assert!(matches!(Error::from(e), Error::Invalid(m) if m.contains("allowed_hosts")));
    }

    #[test]
    fn other_codes_are_kebab_case() {
        let e = HttpError::from_code("GET", "u", &ErrorCode::HttpResponseBodySize(Some(3)));
        assert_eq!(e.message(), "http-response-body-size(Some(3))");
        assert_eq!(e.kind(), HttpErrorKind::Protocol);
    }
}
