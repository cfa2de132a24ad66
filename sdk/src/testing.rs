//! Run a connector in a native `cargo test`, without a host: set its
//! `[config]`, script the source's HTTP answers, call its hooks, and
//! inspect the events, checkpoint and reply it returns, the log lines it
//! wrote and the requests it sent.
//!
//! In a native build (`cargo test`) the host functions ([`config`](crate::config),
//! [`log`](crate::log), [`http`](crate::http), [`sql`](crate::sql),
//! [`mac`](crate::mac)) are
//! served by the [`Env`] a hook runs in; in the `wasm32-wasip2` build they
//! are the host's, and this module is unused. A host function called
//! natively outside an `Env` panics with a message naming the function and
//! this module.
//!
//! ```
//! use inlet_sdk::testing::{Env, Route};
//! use inlet_sdk::{Connector, Descriptor, Error, Event, PullBatch, config_required, http};
//!
//! struct Items;
//!
//! impl Connector for Items {
//!     fn describe() -> Descriptor {
//!         Descriptor::new("items", "0.1.0").pull()
//!     }
//!
//!     fn pull(since: Option<String>, _: Option<String>) -> Result<PullBatch, Error> {
//!         let url = config_required("url")?;
//!         let page: Vec<serde_json::Value> = http::Request::get(url)
//!             .with_query("since", &since.unwrap_or_default())
//!             .send()?
//!             .error_for_status()?
//!             .json()?;
//!         let events = page
//!             .iter()
//!             .map(|item| Ok(Event::json(item)?.id(item["id"].to_string())))
//!             .collect::<Result<Vec<_>, Error>>()?;
//!         Ok(PullBatch::new(events).checkpoint("2"))
//!     }
//! }
//!
//! let env = Env::new()
//!     .config("url", "https://api.example.com/items")
//!     // What `[[sandbox.inject]]` adds: the connector never sees it.
//!     .inject("api.example.com", "Authorization", "Bearer test-token")
//!     .route(Route::get("https://api.example.com/items?since=").json(200, &serde_json::json!([{"id": 1}, {"id": 2}])));
//! let batch = env.pull::<Items>(None, None).unwrap();
//! assert_eq!(batch.events().len(), 2);
//! assert_eq!(batch.get_checkpoint(), Some("2"));
//! let sent = env.sent();
//! assert_eq!(sent[0].header("authorization"), Some("Bearer test-token"));
//! assert_eq!(sent[0].connector_header("authorization"), None, "the token is the host's");
//! ```

use crate::{Connector, Error, PullBatch, PushOutcome, Request};
use std::cell::RefCell;
use std::rc::Rc;

/// A log line a connector wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    pub message: String,
}

/// An outbound request the connector sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub method: String,
    pub url: String,
    /// The headers the connector set.
    pub headers: Vec<(String, String)>,
    /// The headers the host added (`[[sandbox.inject]]`, set with
    /// [`Env::inject`]), replacing any of the same name.
    pub injected: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Sent {
    /// A header as the source received it (injected ones win), by name,
    /// case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.injected, name).or_else(|| self.connector_header(name))
    }

    /// A header as the connector set it.
    pub fn connector_header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A scripted answer of the source: a method and URL, and the response.
#[derive(Debug, Clone)]
pub struct Route {
    method: String,
    url: String,
    any_query: bool,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    fail: Option<crate::http::HttpErrorKind>,
}

impl Route {
    /// Answers `method url` (the whole URL, query included, exactly as the
    /// connector sends it) with `200` and an empty body until changed.
    pub fn new(method: &str, url: impl Into<String>) -> Route {
        Route {
            method: method.to_ascii_uppercase(),
            url: url.into(),
            any_query: false,
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
            fail: None,
        }
    }

    pub fn get(url: impl Into<String>) -> Route {
        Route::new("GET", url)
    }

    pub fn post(url: impl Into<String>) -> Route {
        Route::new("POST", url)
    }

    /// Matches the URL whatever its query string.
    pub fn any_query(mut self) -> Route {
        self.any_query = true;
        self
    }

    pub fn status(mut self, status: u16) -> Route {
        self.status = status;
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Route {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Route {
        self.body = body.into();
        self
    }

    /// Answers `status` with `value` as JSON (and its content type).
    pub fn json<T: serde::Serialize + ?Sized>(self, status: u16, value: &T) -> Route {
        self.status(status)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(value).expect("a JSON value"))
    }

    /// No response: the request fails like a timeout, a refused
    /// connection, or the host's `allowed_hosts` refusing it.
    pub fn fail(mut self, kind: crate::http::HttpErrorKind) -> Route {
        self.fail = Some(kind);
        self
    }

    fn matches(&self, method: &str, url: &str) -> bool {
        if !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        if self.any_query {
            let path = |u: &str| u.split(['?', '#']).next().unwrap_or("").to_string();
            path(&self.url) == path(url)
        } else {
            self.url == url
        }
    }
}

#[derive(Default)]
struct State {
    config: Vec<(String, String)>,
    routes: Vec<Route>,
    allowed: Vec<String>,
    inject: Vec<(String, String, String)>,
    logs: Vec<LogLine>,
    sent: Vec<Sent>,
    secrets: Vec<(String, String)>,
}

/// The host, as a test sees it: `[config]`, scripted sources, injected
/// headers, and what the connector did. Cheap to clone (clones share
/// state).
#[derive(Clone, Default)]
pub struct Env {
    state: Rc<RefCell<State>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Env>> = const { RefCell::new(None) };
}

impl Env {
    pub fn new() -> Env {
        Env::default()
    }

    /// A `[config]` value.
    pub fn config(self, key: impl Into<String>, value: impl Into<String>) -> Env {
        self.state
            .borrow_mut()
            .config
            .push((key.into(), value.into()));
        self
    }

    /// A scripted answer; the first route that matches a request answers it
    /// (every time). A request no route matches fails as
    /// [`Denied`](crate::http::HttpErrorKind::Denied), as a host not in
    /// `allowed_hosts` would.
    pub fn route(self, route: Route) -> Env {
        self.state.borrow_mut().routes.push(route);
        self
    }

    /// An `allowed_hosts` entry (`host` for ports 80 and 443, `host:port`,
    /// `host:*`), as in the manifest. With none, every host may be called
    /// (routes decide); with some, a request to any other host fails as
    /// [`Denied`](crate::http::HttpErrorKind::Denied), as on the host.
    pub fn allow(self, pattern: impl Into<String>) -> Env {
        self.state.borrow_mut().allowed.push(pattern.into());
        self
    }

    /// A header the host adds to every request to `host`
    /// (`[[sandbox.inject]]`; `host` is a pattern as in
    /// [`allow`](Env::allow)). A later injection of the same header wins,
    /// as on the host.
    pub fn inject(
        self,
        host: impl Into<String>,
        header: impl Into<String>,
        value: impl Into<String>,
    ) -> Env {
        self.state
            .borrow_mut()
            .inject
            .push((host.into(), header.into(), value.into()));
        self
    }

    /// A `[sandbox.secrets]` grant for [`mac`](crate::mac): `name` may be
    /// given several times (rotation: the first signs, any verifies). The
    /// connector never reads it; the test kit computes the MACs as the
    /// host does.
    pub fn secret(self, name: impl Into<String>, value: impl Into<String>) -> Env {
        self.state
            .borrow_mut()
            .secrets
            .push((name.into(), value.into()));
        self
    }

    /// Runs `f` with this environment serving the host functions.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore(Option<Env>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| *c.borrow_mut() = self.0.take());
            }
        }
        let _restore = Restore(CURRENT.with(|c| c.borrow_mut().replace(self.clone())));
        f()
    }

    /// Calls `C::on_push(request)` in this environment.
    pub fn push<C: Connector>(&self, request: Request) -> Result<PushOutcome, Error> {
        self.run(|| C::on_push(request))
    }

    /// Calls `C::pull(since, partition)` in this environment.
    pub fn pull<C: Connector>(
        &self,
        since: Option<&str>,
        partition: Option<&str>,
    ) -> Result<PullBatch, Error> {
        self.run(|| C::pull(since.map(str::to_string), partition.map(str::to_string)))
    }

    /// Calls `C::partitions()` in this environment.
    pub fn partitions<C: Connector>(&self) -> Result<Vec<String>, Error> {
        self.run(C::partitions)
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<LogLine> {
        self.state.borrow().logs.clone()
    }

    /// The outbound requests sent so far, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.state.borrow().sent.clone()
    }
}

/// The environment a native host call is served by; panics outside one.
#[cfg_attr(target_family = "wasm", allow(dead_code))]
fn current(function: &str) -> Env {
    CURRENT.with(|c| c.borrow().clone()).unwrap_or_else(|| {
        panic!(
            "inlet_sdk: `{function}` is a host function: it runs inside the Inlet host \
             (build for wasm32-wasip2), and in a native test only inside \
             `inlet_sdk::testing::Env` (e.g. `Env::new().config(\"key\", \"value\").pull::<MyConnector>(None, None)`, \
             or `env.run(|| ...)`)"
        )
    })
}

#[cfg_attr(target_family = "wasm", allow(dead_code))]
pub(crate) fn config(key: &str) -> Option<String> {
    let env = current(&format!("config(\"{key}\")"));
    let state = env.state.borrow();
    state
        .config
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// The HMACs of `data` under each value of the secret `name`, as the
/// host's `mac` interface computes them.
#[cfg(not(target_family = "wasm"))]
pub(crate) fn mac(
    name: &str,
    algorithm: crate::mac::Algorithm,
    data: &[u8],
) -> Result<Vec<Vec<u8>>, Error> {
    use crate::mac::Algorithm;
    use hmac::Hmac;
    fn run<M: hmac::Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    let env = current(&format!("mac(\"{name}\")"));
    let state = env.state.borrow();
    let macs: Vec<Vec<u8>> = state
        .secrets
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| match algorithm {
            Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(v.as_bytes(), data),
            Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(v.as_bytes(), data),
            Algorithm::Sha512 => run::<Hmac<sha2::Sha512>>(v.as_bytes(), data),
        })
        .collect();
    if macs.is_empty() {
        return Err(Error::invalid(format!(
            "no secret `{name}` in [sandbox.secrets] (in a test: Env::secret)"
        )));
    }
    Ok(macs)
}

#[cfg_attr(target_family = "wasm", allow(dead_code))]
pub(crate) fn log(level: &'static str, message: &str) {
    let env = current(&format!("log::{level}"));
    env.state.borrow_mut().logs.push(LogLine {
        level,
        message: message.to_string(),
    });
}

#[cfg_attr(target_family = "wasm", allow(dead_code))]
pub(crate) fn send(
    req: &crate::http::Request,
    url: &crate::http::url::Url,
) -> Result<crate::http::Response, crate::http::HttpError> {
    let method = req.method.as_str();
    let env = current(&format!("http::send ({method} {})", req.url));
    let mut state = env.state.borrow_mut();
    let (host, port) = host_port(url);
    if !state.allowed.is_empty()
        && !state
            .allowed
            .iter()
            .any(|p| pattern_matches(p, &host, port))
    {
        drop(state);
        return Err(crate::http::HttpError::new(
            method,
            &req.url,
            crate::http::HttpErrorKind::Denied,
            "the host is not in the test's allowed hosts (inlet_sdk::testing::Env::allow)",
        ));
    }
    // Later injections of a header replace earlier ones, as on the host.
    let mut injected: Vec<(String, String)> = Vec::new();
    for (pattern, k, v) in &state.inject {
        if pattern_matches(pattern, &host, port) {
            injected.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            injected.push((k.clone(), v.clone()));
        }
    }
    state.sent.push(Sent {
        method: method.to_string(),
        url: req.url.clone(),
        headers: req.headers.clone(),
        injected,
        body: req.body.clone(),
    });
    let route = state
        .routes
        .iter()
        .find(|r| r.matches(method, &req.url))
        .cloned();
    drop(state);
    let Some(route) = route else {
        return Err(crate::http::HttpError::new(
            method,
            &req.url,
            crate::http::HttpErrorKind::Denied,
            "no route scripted for this request (inlet_sdk::testing::Env::route)",
        ));
    };
    if let Some(kind) = route.fail {
        return Err(crate::http::HttpError::new(
            method,
            &req.url,
            kind,
            "failed by the test's route",
        ));
    }
    Ok(crate::http::Response::scripted(
        method,
        &req.url,
        route.status,
        route.headers,
        route.body,
    ))
}

/// The URL's host (lowercase, no brackets) and port (the scheme's when
/// none is written).
#[cfg_attr(target_family = "wasm", allow(dead_code))]
fn host_port(url: &crate::http::url::Url) -> (String, u16) {
    let default = match url.scheme {
        crate::http::url::Scheme::Http => 80,
        crate::http::url::Scheme::Https => 443,
    };
    split_host_port(&url.authority, default)
}

#[cfg_attr(target_family = "wasm", allow(dead_code))]
fn split_host_port(authority: &str, default: u16) -> (String, u16) {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => (v6, None),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    (
        host.to_ascii_lowercase(),
        port.and_then(|p| p.parse().ok()).unwrap_or(default),
    )
}

/// The host's `allowed_hosts` rule: a bare host means ports 80 and 443,
/// `host:port` that port, `host:*` any; hosts compare case-insensitively.
#[cfg_attr(target_family = "wasm", allow(dead_code))]
fn pattern_matches(pattern: &str, host: &str, port: u16) -> bool {
    if let Some(h) = pattern.strip_suffix(":*") {
        return split_host_port(h, 0).0 == host;
    }
    // Port 0: none written.
    let (p_host, p_port) = split_host_port(pattern, 0);
    p_host == host
        && match p_port {
            0 => port == 80 || port == 443,
            p => p == port,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Descriptor, Event, http, log};

    struct Echo;

    impl Connector for Echo {
        fn describe() -> Descriptor {
            Descriptor::new("echo", "0.1.0").push().pull()
        }

        fn on_push(req: Request) -> Result<PushOutcome, Error> {
            log::info(format!("got {} bytes", req.body().len()));
            let prefix = crate::config_or("prefix", "e-");
            Ok(PushOutcome::events(vec![
                Event::bytes(req.body().to_vec(), "text/plain").id(format!("{prefix}1")),
            ]))
        }

        fn pull(since: Option<String>, _: Option<String>) -> Result<PullBatch, Error> {
            let response = http::Request::get("http://127.0.0.1:9/items")
                .with_query("since", &since.unwrap_or_default())
                .with_header("x-mine", "1")
                .send()?;
            if response.status() == 429 {
                return Err(Error::RateLimited(Some(3)));
            }
            Ok(PullBatch::new(vec![Event::bytes(
                response.body().to_vec(),
                "application/octet-stream",
            )])
            .checkpoint("next"))
        }
    }

    #[test]
    fn push_reads_config_and_logs() {
        let env = Env::new().config("prefix", "p-");
        let out = env
            .push::<Echo>(Request::new("POST", "", b"hello".to_vec()))
            .unwrap();
        assert_eq!(out.get_events()[0].get_id(), Some("p-1"));
        assert_eq!(
            env.logs(),
            vec![LogLine {
                level: "info",
                message: "got 5 bytes".into()
            }]
        );
    }

    #[test]
    fn pull_gets_scripted_answers_and_records_what_was_sent() {
        let env = Env::new()
            .inject("127.0.0.1:9", "Authorization", "Bearer t")
            .route(Route::get("http://127.0.0.1:9/items?since=5").body("page"))
            .route(
                Route::get("http://127.0.0.1:9/items")
                    .any_query()
                    .status(429),
            );
        let batch = env.pull::<Echo>(Some("5"), None).unwrap();
        assert_eq!(batch.events()[0].payload(), b"page");
        assert!(matches!(
            env.pull::<Echo>(Some("6"), None),
            Err(Error::RateLimited(Some(3)))
        ));
        let sent = env.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].header("authorization"), Some("Bearer t"));
        assert_eq!(sent[0].connector_header("authorization"), None);
        assert_eq!(sent[0].header("x-mine"), Some("1"));
    }

    #[test]
    fn hosts_match_like_the_hosts_allowed_hosts() {
        assert!(pattern_matches("api.example.com", "api.example.com", 443));
        assert!(pattern_matches("API.example.com", "api.example.com", 80));
        assert!(!pattern_matches("api.example.com", "api.example.com", 8443));
        assert!(pattern_matches(
            "api.example.com:8443",
            "api.example.com",
            8443
        ));
        assert!(pattern_matches("127.0.0.1:*", "127.0.0.1", 9));
        assert!(pattern_matches("[::1]:9", "::1", 9));
        assert!(!pattern_matches("a.example.com", "b.example.com", 443));
        // Injection follows the same rule, and `allow` denies the rest.
        let env = Env::new()
            .allow("127.0.0.1:9")
            .inject("127.0.0.1", "authorization", "Bearer default-ports-only")
            .inject("127.0.0.1:9", "x-key", "k1")
            .inject("127.0.0.1:*", "x-key", "k2")
            .route(Route::get("http://127.0.0.1:9/items").any_query());
        env.pull::<Echo>(None, None).unwrap();
        let sent = &env.sent()[0];
        assert_eq!(sent.header("authorization"), None, "a bare host is 80/443");
        assert_eq!(sent.header("x-key"), Some("k2"), "the later injection wins");
        let denied = Env::new().allow("api.example.com");
        let err = denied.pull::<Echo>(None, None).unwrap_err();
        assert!(err.to_string().contains("allowed hosts"), "{err}");
    }

    #[test]
    fn an_unscripted_request_is_denied_like_an_unlisted_host() {
        let err = Env::new().pull::<Echo>(None, None).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("no route scripted"), "{err}");
    }

    #[test]
    fn a_host_function_outside_an_env_names_itself_and_the_kit() {
        let panic = std::panic::catch_unwind(|| crate::config("url")).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("config(\"url\")"), "{message}");
        assert!(message.contains("inlet_sdk::testing::Env"), "{message}");
    }
}
