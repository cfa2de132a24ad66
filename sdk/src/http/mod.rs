//! A small, blocking HTTP client over `wasi:http/outgoing-handler`, for pull
//! connectors.
//!
//! The host only lets a connector reach the hosts listed in its manifest's
//! `[sandbox] allowed_hosts`; any other request fails with
//! [`HttpErrorKind::Denied`]. Credentials configured with
//! `[[sandbox.inject]]` are added by the host on the way out, so the
//! connector never sees them: do not put secrets in `[config]`.
//!
//! ```no_run
//! use inlet_sdk::{Error, http};
//!
//! #[derive(serde::Deserialize)]
//! struct Page { items: Vec<serde_json::Value>, next: Option<String> }
//!
//! fn fetch(since: Option<&str>) -> Result<Page, Error> {
//!     let mut request = http::Request::get("https://api.example.com/items")
//!         .with_header("Accept", "application/json");
//!     if let Some(since) = since {
//!         request = request.with_query("since", since);
//!     }
//!     request.send()?.error_for_status()?.json()
//! }
//! ```

mod error;
pub(crate) mod url;
#[cfg(target_family = "wasm")]
mod wasi_client;

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::error::{HttpError, HttpErrorKind};
use crate::{Error, percent};

/// Sends `GET url` and returns the response, whatever its status.
///
/// ```no_run
/// # fn f() -> Result<(), inlet_sdk::Error> {
/// let body = inlet_sdk::http::get("http://127.0.0.1:9000/items")?.error_for_status()?;
/// # Ok(())
/// # }
/// ```
pub fn get(url: impl Into<String>) -> Result<Response, HttpError> {
    Request::get(url).send()
}

/// Appends `name=value` to `url`'s query (with `?` or `&` as needed, before
/// any `#fragment`), percent-encoding both.
///
/// ```no_run
/// use inlet_sdk::http::append_query;
///
/// assert_eq!(append_query("http://h/items", "since", "a b"), "http://h/items?since=a%20b");
/// assert_eq!(append_query("http://h/items?x=1", "since", "3"), "http://h/items?x=1&since=3");
/// ```
pub fn append_query(url: &str, name: &str, value: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let separator = match base.find('?') {
        None => "?",
        Some(i) if i + 1 == base.len() || base.ends_with('&') => "",
        Some(_) => "&",
    };
    let mut out = format!(
        "{base}{separator}{}={}",
        percent::encode(name),
        percent::encode(value)
    );
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// An HTTP method.
///
/// ```no_run
/// let request = inlet_sdk::http::Request::new(inlet_sdk::http::Method::Put, "https://api.example.com/x");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
    /// Any other method, spelled as it should be sent.
    Other(String),
}

impl Method {
    /// The method as sent on the wire.
    ///
    /// ```no_run
    /// assert_eq!(inlet_sdk::http::Method::Get.as_str(), "GET");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Patch => "PATCH",
            Self::Options => "OPTIONS",
            Self::Other(m) => m,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An outbound request, built then [`send`](Request::send)-ed.
///
/// ```no_run
/// use inlet_sdk::http::Request;
///
/// # fn f() -> Result<(), inlet_sdk::Error> {
/// let response = Request::post("https://api.example.com/search")
///     .with_json(&serde_json::json!({ "q": "open" }))?
///     .with_timeout(std::time::Duration::from_secs(10))
///     .send()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    timeout: Option<Duration>,
}

impl Request {
    /// A request with `method` to the absolute `http`/`https` `url`. The URL is
    /// checked by [`send`](Request::send).
    ///
    /// ```no_run
    /// use inlet_sdk::http::{Method, Request};
    /// let request = Request::new(Method::Delete, "https://api.example.com/items/7");
    /// ```
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// A `GET` request.
    ///
    /// ```no_run
    /// let request = inlet_sdk::http::Request::get("https://api.example.com/items");
    /// ```
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A `POST` request.
    ///
    /// ```no_run
    /// let request = inlet_sdk::http::Request::post("https://api.example.com/items");
    /// ```
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// Adds a header. Hop-by-hop headers such as `Host` or `Connection` are
    /// refused by `wasi:http` when the request is sent.
    ///
    /// ```no_run
    /// let request = inlet_sdk::http::Request::get("https://api.example.com/items")
    ///     .with_header("Accept", "application/json");
    /// ```
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Appends a percent-encoded query parameter to the URL (see
    /// [`append_query`]).
    ///
    /// ```no_run
    /// let request = inlet_sdk::http::Request::get("https://api.example.com/items")
    ///     .with_query("since", "2024-05-01T00:00:00Z");
    /// ```
    #[must_use]
    pub fn with_query(mut self, name: &str, value: &str) -> Self {
        self.url = append_query(&self.url, name, value);
        self
    }

    /// Sets the body.
    ///
    /// ```no_run
    /// let request = inlet_sdk::http::Request::post("https://api.example.com/items")
    ///     .with_header("Content-Type", "text/plain")
    ///     .with_body(b"hello".to_vec());
    /// ```
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON, with `Content-Type: application/json`.
    /// A value that cannot be serialized gives [`Error::Invalid`].
    ///
    /// ```no_run
    /// # fn f() -> Result<(), inlet_sdk::Error> {
    /// let request = inlet_sdk::http::Request::post("https://api.example.com/search")
    ///     .with_json(&serde_json::json!({ "q": "open" }))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::invalid(format!("request body is not serializable: {e}")))?;
        Ok(self
            .with_header("Content-Type", "application/json")
            .with_body(body))
    }

    /// Limits connecting, waiting for the first byte and waiting between
    /// bytes to `timeout` each. Without it the host's pull deadline applies.
    ///
    /// ```no_run
    /// let request = inlet_sdk::http::Request::get("https://api.example.com/items")
    ///     .with_timeout(std::time::Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The method.
    ///
    /// ```no_run
    /// # let request = inlet_sdk::http::Request::get("https://api.example.com/");
    /// assert_eq!(request.method(), &inlet_sdk::http::Method::Get);
    /// ```
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL, including any query added with [`query`](Request::query).
    ///
    /// ```no_run
    /// # let request = inlet_sdk::http::Request::get("https://api.example.com/");
    /// let url = request.url();
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends the request, blocking until the whole response body has arrived.
    /// Any status is a response; an [`HttpError`] means no response arrived.
    ///
    /// ```no_run
    /// # fn f() -> Result<(), inlet_sdk::Error> {
    /// let response = inlet_sdk::http::Request::get("https://api.example.com/items").send()?;
    /// inlet_sdk::log::debug(format!("Status {}.", response.status()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn send(self) -> Result<Response, HttpError> {
        let url = url::Url::parse(&self.url).map_err(|reason| {
            HttpError::new(
                self.method.as_str(),
                &self.url,
                HttpErrorKind::InvalidRequest,
                reason,
            )
        })?;
        #[cfg(target_family = "wasm")]
        return wasi_client::send(&self, &url);
        #[cfg(not(target_family = "wasm"))]
        return crate::testing::send(&self, &url);
    }
}

/// A response to an outbound request, with the whole body read.
///
/// ```no_run
/// # fn f() -> Result<(), inlet_sdk::Error> {
/// let response = inlet_sdk::http::get("https://api.example.com/items")?;
/// if response.status() == 304 {
///     return Ok(());
/// }
/// let items: Vec<serde_json::Value> = response.error_for_status()?.json()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    method: String,
    url: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A response the native test kit scripted.
    #[cfg_attr(target_family = "wasm", allow(dead_code))]
    pub(crate) fn scripted(
        method: &str,
        url: &str,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Response {
        Response {
            method: method.to_string(),
            url: url.to_string(),
            status,
            headers,
            body,
        }
    }

    /// The status code.
    ///
    /// ```no_run
    /// # fn f(response: inlet_sdk::http::Response) {
    /// let ok = (200..300).contains(&response.status());
    /// # }
    /// ```
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name`, compared case-insensitively.
    ///
    /// ```no_run
    /// # fn f(response: inlet_sdk::http::Response) {
    /// let etag = response.header("etag");
    /// # }
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All headers in the order received (values decoded lossily as UTF-8).
    ///
    /// ```no_run
    /// # fn f(response: inlet_sdk::http::Response) {
    /// for (name, value) in response.headers() { inlet_sdk::log::trace(format!("{name}: {value}")); }
    /// # }
    /// ```
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The whole body.
    ///
    /// ```no_run
    /// # fn f(response: inlet_sdk::http::Response) {
    /// let size = response.body().len();
    /// # }
    /// ```
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text, with invalid UTF-8 replaced.
    ///
    /// ```no_run
    /// # fn f(response: inlet_sdk::http::Response) {
    /// let text = response.text();
    /// # }
    /// ```
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Deserializes the body as JSON; a body that does not parse or fit `T`
    /// gives [`Error::Invalid`] naming the method and URL.
    ///
    /// ```no_run
    /// # fn f(response: inlet_sdk::http::Response) -> Result<(), inlet_sdk::Error> {
    /// let value: serde_json::Value = response.json()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::invalid(format!(
                "{} {}: response body is not valid JSON: {e}",
                self.method, self.url
            ))
        })
    }

    /// Passes a 2xx response through and turns any other status into the
    /// [`Error`] the host should act on:
    ///
    /// | status | error |
    /// |---|---|
    /// | 429 | [`Error::RateLimited`] with `Retry-After` seconds when given as a number |
    /// | 401, 403 | [`Error::Unauthorized`] |
    /// | other 1xx, 3xx, 4xx | [`Error::Invalid`] (redirects are not followed) |
    /// | 5xx | [`Error::Unavailable`] |
    ///
    /// Messages name the method, URL and status and quote the start of the
    /// body, e.g. `GET http://127.0.0.1:9000/items: HTTP 404 Not Found: no such
    /// route`.
    ///
    /// ```no_run
    /// # fn f() -> Result<(), inlet_sdk::Error> {
    /// let response = inlet_sdk::http::get("https://api.example.com/items")?.error_for_status()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn error_for_status(self) -> Result<Self, Error> {
        let status = self.status;
        if (200..300).contains(&status) {
            return Ok(self);
        }
        if status == 429 {
            return Err(Error::RateLimited(
                self.header("retry-after")
                    .and_then(|v| v.trim().parse().ok()),
            ));
        }
        let mut message = format!("{} {}: HTTP {status}", self.method, self.url);
        if let Some(reason) = reason_phrase(status) {
            message.push(' ');
            message.push_str(reason);
        }
        let snippet = body_snippet(&self.body);
        if !snippet.is_empty() {
            message.push_str(": ");
            message.push_str(&snippet);
        }
        Err(match status {
            401 | 403 => Error::Unauthorized(message),
            500..=599 => Error::Unavailable(message),
            _ => Error::Invalid(message),
        })
    }
}

/// At most 200 characters of the body on one line, for error messages.
fn body_snippet(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > MAX {
            out = out.chars().take(MAX).collect();
            out.push('…');
            break;
        }
    }
    out
}

fn reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            method: "GET".into(),
            url: "http://h/items".into(),
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn append_query_picks_the_separator() {
        assert_eq!(
            append_query("http://h/x", "since", "1"),
            "http://h/x?since=1"
        );
        assert_eq!(
            append_query("http://h/x?a=1", "since", "1"),
            "http://h/x?a=1&since=1"
        );
        assert_eq!(
            append_query("http://h/x?", "since", "1"),
            "http://h/x?since=1"
        );
        assert_eq!(
            append_query("http://h/x?a=1&", "since", "1"),
            "http://h/x?a=1&since=1"
        );
        assert_eq!(
            append_query("http://h/x#top", "c", "a&b=c"),
            "http://h/x?c=a%26b%3Dc#top"
        );
    }

    #[test]
    fn status_mapping() {
        assert!(response(204, &[], "").error_for_status().is_ok());
        assert_eq!(
            response(429, &[("Retry-After", " 7 ")], "").error_for_status(),
            Err(Error::RateLimited(Some(7)))
        );
        assert_eq!(
            response(429, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], "")
                .error_for_status(),
            Err(Error::RateLimited(None))
        );
        assert_eq!(
            response(404, &[], "  no\n such   route ").error_for_status(),
            Err(Error::invalid(
                "GET http://h/items: HTTP 404 Not Found: no such route"
            ))
        );
        assert_eq!(
            response(503, &[], "").error_for_status(),
            Err(Error::unavailable(
                "GET http://h/items: HTTP 503 Service Unavailable"
            ))
        );
        assert!(matches!(
            response(401, &[], "").error_for_status(),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(
            response(302, &[], "").error_for_status(),
            Err(Error::Invalid(_))
        ));
        assert_eq!(
            response(599, &[], "").error_for_status(),
            Err(Error::unavailable("GET http://h/items: HTTP 599"))
        );
    }

    #[test]
    fn snippet_is_bounded() {
        let long = "x".repeat(500);
        let snippet = body_snippet(long.as_bytes());
        assert_eq!(snippet.chars().count(), 201);
        assert!(snippet.ends_with('…'));
    }

    #[test]
    fn json_errors_name_the_url() {
        let err = response(200, &[], "<html>")
            .json::<serde_json::Value>()
            .unwrap_err();
        assert!(
            matches!(&err, Error::Invalid(m) if m.starts_with("GET http://h/items: response body is not valid JSON")),
            "{err:?}"
        );
        assert!(response(200, &[("Content-Type", "x")], "").header("content-type") == Some("x"));
    }
}
