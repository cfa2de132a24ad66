//! The push side: the request the host hands to `on_push`, the optional reply,
//! and what the hook returns.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wit::inlet::connector::types as wit;
use crate::{Error, Event, percent};

/// An HTTP request received on `/ingest/{source}[/{rest}]`.
///
/// The host has already authenticated it, checked its size and read the whole
/// body. [`path`](Request::path) is the part after `/ingest/{source}` (empty or
/// starting with `/`), [`query`](Request::query) is the raw query string
/// without `?`.
///
/// ```no_run
/// use inlet_sdk::{Error, Request};
///
/// #[derive(serde::Deserialize)]
/// struct Hook { id: String }
///
/// fn parse(req: &Request) -> Result<Hook, Error> {
///     if req.header("content-type").is_some_and(|ct| !ct.starts_with("application/json")) {
///         return Err(Error::invalid("expected a JSON body"));
///     }
///     req.json::<Hook>()
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// Builds a request by hand, for a connector's own unit tests.
    ///
    /// ```no_run
    /// let req = inlet_sdk::Request::new("POST", "", br#"{"id":1}"#.to_vec())
    ///     .with_header("Content-Type", "application/json")
    ///     .with_query("dry_run=1");
    /// ```
    pub fn new(method: impl Into<String>, path: impl Into<String>, body: Vec<u8>) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
            body,
        }
    }

    /// Adds a header (for tests; see [`Request::new`]).
    ///
    /// ```no_run
    /// let req = inlet_sdk::Request::new("POST", "", vec![]).with_header("X-Event", "ping");
    /// ```
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the raw query string, without `?` (for tests; see [`Request::new`]).
    ///
    /// ```no_run
    /// let req = inlet_sdk::Request::new("GET", "", vec![]).with_query("a=1&b=2");
    /// ```
    #[must_use]
    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = query.into();
        self
    }

    /// The HTTP method, upper case as sent (`POST`, `PUT`, ...).
    ///
    /// ```no_run
    /// # let req = inlet_sdk::Request::new("POST", "", vec![]);
    /// if req.method() != "POST" { /* ... */ }
    /// ```
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path after `/ingest/{source}`: empty or starting with `/`.
    ///
    /// ```no_run
    /// # let req = inlet_sdk::Request::new("POST", "/orders", vec![]);
    /// let topic = req.path().trim_start_matches('/');
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query string, without `?` (empty when there is none).
    ///
    /// ```no_run
    /// # let req = inlet_sdk::Request::new("POST", "", vec![]);
    /// let raw = req.query();
    /// ```
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The first value of query parameter `name`, percent-decoded (`+` is a
    /// space).
    ///
    /// ```no_run
    /// # let req = inlet_sdk::Request::new("POST", "", vec![]).with_query("tenant=acme");
    /// assert_eq!(req.query_param("tenant").as_deref(), Some("acme"));
    /// ```
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(k, _)| percent::decode_query_component(k) == name)
            .map(|(_, v)| percent::decode_query_component(v))
    }

    /// The first value of header `name`, compared case-insensitively.
    ///
    /// ```no_run
    /// # let req = inlet_sdk::Request::new("POST", "", vec![]);
    /// let delivery = req.header("X-GitHub-Delivery");
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All headers in the order received (names as sent).
    ///
    /// ```no_run
    /// # let req = inlet_sdk::Request::new("POST", "", vec![]);
    /// for (name, value) in req.headers() { inlet_sdk::log::trace(format!("{name}: {value}")); }
    /// ```
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The whole body.
    ///
    /// ```no_run
    /// # let req = inlet_sdk::Request::new("POST", "", vec![]);
    /// let empty = req.body().is_empty();
    /// ```
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Deserializes the body as JSON. A body that does not parse, or does not
    /// fit `T`, gives [`Error::Invalid`] (a 400 to the sender).
    ///
    /// ```no_run
    /// # fn f(req: inlet_sdk::Request) -> Result<(), inlet_sdk::Error> {
    /// let value: serde_json::Value = req.json()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::invalid(format!("request body is not valid JSON: {e}")))
    }

    pub(crate) fn from_wit(req: wit::HttpRequest) -> Self {
        Self {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers,
            body: req.body,
        }
    }
}

/// A reply that replaces the host's default `202 accepted` body. The sender
/// sees it only once the events are durably stored.
///
/// ```no_run
/// use inlet_sdk::Response;
///
/// // Slack-style URL verification: answer the challenge.
/// let reply = Response::new(200)
///     .with_header("Content-Type", "text/plain")
///     .with_body(b"challenge-token".to_vec());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A reply with `status`, no headers and an empty body.
    ///
    /// ```no_run
    /// let reply = inlet_sdk::Response::new(204);
    /// ```
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A reply whose body is `value` as JSON, with `Content-Type:
    /// application/json`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), inlet_sdk::Error> {
    /// let reply = inlet_sdk::Response::json(200, &serde_json::json!({ "ok": true }))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Result<Self, Error> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::other(format!("reply body is not serializable: {e}")))?;
        Ok(Self::new(status)
            .with_header("Content-Type", "application/json")
            .with_body(body))
    }

    /// Adds a header.
    ///
    /// ```no_run
    /// let reply = inlet_sdk::Response::new(200).with_header("X-Handled-By", "inlet");
    /// ```
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    ///
    /// ```no_run
    /// let reply = inlet_sdk::Response::new(200).with_body(b"ok".to_vec());
    /// ```
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    ///
    /// ```no_run
    /// assert_eq!(inlet_sdk::Response::new(204).status(), 204);
    /// ```
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers.
    ///
    /// ```no_run
    /// let headers = inlet_sdk::Response::new(204).headers().len();
    /// ```
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    ///
    /// ```no_run
    /// let reply = inlet_sdk::Response::new(200).with_header("X-A", "1");
    /// assert_eq!(reply.header("x-a"), Some("1"));
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body.
    ///
    /// ```no_run
    /// assert!(inlet_sdk::Response::new(204).body().is_empty());
    /// ```
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub(crate) fn into_wit(self) -> wit::HttpResponse {
        wit::HttpResponse {
            status: self.status,
            headers: self.headers,
            body: self.body,
        }
    }
}

/// What [`Connector::on_push`](crate::Connector::on_push) returns: the events
/// to store and optionally the reply the sender sees once they are durably
/// stored. Without a reply the host answers `202` with the offsets.
///
/// ```no_run
/// use inlet_sdk::{Event, PushOutcome, Response};
///
/// # fn main() -> Result<(), inlet_sdk::Error> {
/// let event = Event::json(&serde_json::json!({ "id": 1 }))?.id("1");
/// let outcome = PushOutcome::events(vec![event]);
/// let acked = PushOutcome::events(vec![]).with_reply(Response::new(200));
/// let pong = PushOutcome::reply_only(Response::new(200).with_body(b"pong".to_vec()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    events: Vec<Event>,
    reply: Option<Response>,
}

impl PushOutcome {
    /// Store `events` (possibly none) and answer with the host's default.
    ///
    /// ```no_run
    /// let outcome = inlet_sdk::PushOutcome::events(Vec::new());
    /// ```
    pub fn events(events: Vec<Event>) -> Self {
        Self {
            events,
            reply: None,
        }
    }

    /// Store nothing and answer with `reply` (a ping or a handshake).
    ///
    /// ```no_run
    /// let outcome = inlet_sdk::PushOutcome::reply_only(inlet_sdk::Response::new(200));
    /// ```
    pub fn reply_only(reply: Response) -> Self {
        Self {
            events: Vec::new(),
            reply: Some(reply),
        }
    }

    /// Replaces the host's default reply with `reply`.
    ///
    /// ```no_run
    /// let outcome = inlet_sdk::PushOutcome::events(vec![])
    ///     .with_reply(inlet_sdk::Response::new(200));
    /// ```
    #[must_use]
    pub fn with_reply(mut self, reply: Response) -> Self {
        self.reply = Some(reply);
        self
    }

    /// The events to store (spelled `get_events` because
    /// [`events`](PushOutcome::events) is the constructor).
    ///
    /// ```no_run
    /// # let outcome = inlet_sdk::PushOutcome::events(vec![]);
    /// assert!(outcome.get_events().is_empty());
    /// ```
    pub fn get_events(&self) -> &[Event] {
        &self.events
    }

    /// The reply, if any.
    ///
    /// ```no_run
    /// # let outcome = inlet_sdk::PushOutcome::events(vec![]);
    /// assert!(outcome.reply().is_none());
    /// ```
    pub fn reply(&self) -> Option<&Response> {
        self.reply.as_ref()
    }

    pub(crate) fn into_wit(self) -> wit::PushOutcome {
        wit::PushOutcome {
            events: self.events.into_iter().map(Event::into_wit).collect(),
            reply: self.reply.map(Response::into_wit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request::new("POST", "/x", br#"{"a":1}"#.to_vec())
            .with_header("Content-Type", "application/json")
            .with_query("a=1&b=x+y%21&flag&a=2")
    }

    #[test]
    fn headers_are_case_insensitive() {
        let req = request();
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(req.header("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(req.header("x-missing"), None);
    }

    #[test]
    fn query_params_are_decoded() {
        let req = request();
        assert_eq!(req.query_param("a").as_deref(), Some("1"));
        assert_eq!(req.query_param("b").as_deref(), Some("x y!"));
        assert_eq!(req.query_param("flag").as_deref(), Some(""));
        assert_eq!(req.query_param("c"), None);
    }

    #[test]
    fn json_errors_are_invalid() {
        let req = Request::new("POST", "", b"nope".to_vec());
        let err = req.json::<serde_json::Value>().unwrap_err();
        assert!(
            matches!(&err, Error::Invalid(m) if m.starts_with("request body is not valid JSON: ")),
            "{err:?}"
        );
        let ok: serde_json::Value = request().json().unwrap();
        assert_eq!(ok["a"], 1);
    }

    #[test]
    fn outcome_converts_with_reply() {
        let reply = Response::json(201, &serde_json::json!({"ok": true})).unwrap();
        let wit = PushOutcome::events(vec![Event::bytes(vec![1], "x").id("i")])
            .with_reply(reply)
            .into_wit();
        assert_eq!(wit.events.len(), 1);
        assert_eq!(wit.events[0].id.as_deref(), Some("i"));
        let reply = wit.reply.unwrap();
        assert_eq!(reply.status, 201);
        assert_eq!(reply.body, br#"{"ok":true}"#);
        assert_eq!(
            reply.headers,
            vec![("Content-Type".to_owned(), "application/json".to_owned())]
        );
    }
}
