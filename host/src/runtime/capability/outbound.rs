//! The outbound HTTP capability (wasi:http): the hosts a connector may
//! call (`allowed_hosts`), the headers the host adds for them
//! (`[[sandbox.inject]]`, secrets the guest never sees), and the per-call
//! hooks that refuse everything else, clamp timeouts to what is left of
//! the call and record the call's waits on its source.

use crate::config::{ConfigError, SandboxSection, SecretRef};
use crate::runtime::Sandbox;
use crate::runtime::wait::{SourceWaits, WaitGuard, source_budget};
use http::{HeaderName, HeaderValue};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::Semaphore;
use tracing::Instrument as _;
use wasmtime_wasi_http::WasiHttpHooks;

/// What a manifest grants: hosts, and the headers injected for them.
#[derive(Debug, Default)]
pub(crate) struct OutboundGrant {
    allowed: Vec<HostPattern>,
    inject: Vec<(HostPattern, HeaderName, HeaderValue)>,
}

impl OutboundGrant {
    /// Resolves `allowed_hosts` and `[[sandbox.inject]]`, reading injected
    /// secrets now so a missing one fails the load.
    pub(crate) fn resolve(s: &SandboxSection, manifest_path: &Path) -> Result<Self, ConfigError> {
        let allowed = s
            .allowed_hosts
            .iter()
            .map(|h| HostPattern::parse(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| ConfigError::invalid(manifest_path, "sandbox.allowed_hosts", m))?;
        let mut inject = Vec::new();
        for (i, spec) in s.inject.iter().enumerate() {
            let key = format!("sandbox.inject[{i}]");
            let pattern = HostPattern::parse(&spec.host)
                .map_err(|m| ConfigError::invalid(manifest_path, &format!("{key}.host"), m))?;
            if !allowed.iter().any(|a| a == &pattern) {
                return Err(ConfigError::invalid(
                    manifest_path,
                    &format!("{key}.host"),
                    format!(
                        "`{}` is not in `sandbox.allowed_hosts`; add it there too",
                        spec.host
                    ),
                ));
            }
            let (field, source) = match (&spec.value_env, &spec.value_file) {
                (Some(var), _) => ("value_env", SecretRef::Env(var.clone())),
                (None, Some(file)) => ("value_file", SecretRef::File(file.clone())),
                (None, None) => {
                    return Err(ConfigError::invalid(
                        manifest_path,
                        &key,
                        "needs `value_env` or `value_file`",
                    ));
                }
            };
            let secret = source
                .read(manifest_path.parent().unwrap_or(Path::new(".")))
                .map_err(|e| {
                    ConfigError::invalid(manifest_path, &format!("{key}.{field}"), e.to_string())
                })?;
            let secret = secret.expose();
            let value =
                HeaderValue::from_str(&spec.format.replace("{}", secret)).map_err(|_| {
                    ConfigError::invalid(
                        manifest_path,
                        &key,
                        "the secret makes an invalid header value (control characters?)",
                    )
                })?;
            let mut value = value;
            value.set_sensitive(true);
            let header = HeaderName::from_bytes(spec.header.as_bytes()).map_err(|_| {
                ConfigError::invalid(
                    manifest_path,
                    &format!("{key}.header"),
                    format!("`{}` is not a header name", spec.header),
                )
            })?;
            inject.push((pattern, header, value));
        }
        Ok(OutboundGrant { allowed, inject })
    }

    /// Whether the connector may call no host at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    pub(crate) fn allows(&self, host: &str, port: u16) -> bool {
        self.allowed.iter().any(|p| p.matches(host, port))
    }

    pub(crate) fn injections_for(
        &self,
        host: &str,
        port: u16,
    ) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.inject
            .iter()
            .filter(move |(p, _, _)| p.matches(host, port))
            .map(|(_, n, v)| (n, v))
    }
}

/// `host`, `host:port` or `host:*`. A bare host allows the default ports
/// (80 and 443) only, so that granting `api.example.com` does not grant
/// every service on that machine.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    host: String,
    port: PortPattern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    Default,
    Exact(u16),
    Any,
}

impl HostPattern {
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        let (host, port) = match text.rsplit_once(':') {
            // An IPv6 literal without a port, such as `[::1]`.
            Some((h, _)) if h.ends_with(':') || (text.starts_with('[') && text.ends_with(']')) => {
                (text.clone(), PortPattern::Default)
            }
            Some((h, "*")) => (h.to_string(), PortPattern::Any),
            Some((h, p)) => (
                h.to_string(),
                PortPattern::Exact(
                    p.parse()
                        .map_err(|_| format!("`{text}`: `{p}` is not a port"))?,
                ),
            ),
            None => (text.clone(), PortPattern::Default),
        };
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        Ok(HostPattern {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.host.eq_ignore_ascii_case(host)
            && match self.port {
                PortPattern::Default => port == 80 || port == 443,
                PortPattern::Exact(p) => p == port,
                PortPattern::Any => true,
            }
    }
}

/// The wasi:http hooks: `allowed_hosts`, `[[sandbox.inject]]`, timeouts
/// that end a request before the call's deadline, and slots: at most
/// `max_outbound_requests` of the call's requests in flight (one more fails
/// at once with `connection-limit-reached`) and a host-wide cap on all
/// connectors' requests (a request waits for a slot, as a wait on its
/// source). A slot is held until the response is dropped or its connection
/// ends, so requests cannot exhaust the host's file descriptors.
pub(crate) struct Outbound {
    connector: Arc<str>,
    grant: Arc<OutboundGrant>,
    deadline: std::time::Instant,
    waits: Arc<SourceWaits>,
    call_slots: Arc<Semaphore>,
    call_limit: u32,
    host_slots: Arc<Semaphore>,
    refused: bool,
    /// Numbers the call's requests in the `inlet::outbound` trace events,
    /// so a response is matched to its request.
    next_seq: u32,
}

impl Outbound {
    pub(crate) fn new(
        sandbox: &Sandbox,
        deadline: std::time::Instant,
        waits: Arc<SourceWaits>,
        host_slots: Arc<Semaphore>,
    ) -> Self {
        Outbound {
            connector: sandbox.name.clone(),
            grant: sandbox.outbound.clone(),
            deadline,
            waits,
            call_slots: Arc::new(Semaphore::new(sandbox.max_outbound_requests as usize)),
            call_limit: sandbox.max_outbound_requests,
            host_slots,
            refused: false,
            next_seq: 0,
        }
    }
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        drop(fut);
        self.next_seq += 1;
        let seq = self.next_seq;
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or("").to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        // A child of the connector call. Host and port only: paths and
        // queries carry keys often enough (`/bot<token>/`, webhook URLs).
        let span = crate::telemetry::span!(
            "outbound",
            otel.kind = "client",
            http.request.method = %request.method(),
            server.address = %host,
            server.port = port,
            http.response.status_code = tracing::field::Empty,
        );
        if !self.grant.allows(&host, port) {
            crate::telemetry::failed(&span, &"denied: not in allowed_hosts");
            tracing::debug!(target: "inlet::outbound", seq, method = %request.method(), uri = %uri, outcome = "denied", "Outbound request.");
            tracing::warn!(
                connector = %self.connector,
                host = %host,
                port,
                "Outbound request denied: the host is not in the manifest's `allowed_hosts`."
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let Ok(call_slot) = self.call_slots.clone().try_acquire_owned() else {
            tracing::debug!(target: "inlet::outbound", seq, method = %request.method(), uri = %uri, outcome = "refused", "Outbound request.");
            if !std::mem::replace(&mut self.refused, true) {
                tracing::warn!(
                    connector = %self.connector,
                    limit = self.call_limit,
                    "Outbound request refused: the call has `max_outbound_requests` in flight."
                );
            }
            crate::telemetry::failed(&span, &"refused: max_outbound_requests in flight");
            return Box::new(async { Err(wasmtime_wasi_http::Error::ConnectionLimitReached) });
        };
        crate::telemetry::propagate(&span, request.headers_mut());
        for (name, value) in self.grant.injections_for(&host, port) {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        // Names only: an injected value is a secret. (`inlet invoke`
        // prints these events; the host logs them at debug.)
        if tracing::enabled!(target: "inlet::outbound", tracing::Level::DEBUG) {
            let injected: Vec<&str> = self
                .grant
                .injections_for(&host, port)
                .map(|(n, _)| n.as_str())
                .collect();
            tracing::debug!(target: "inlet::outbound", seq, method = %request.method(), uri = %request.uri(), injected = %injected.join(","), outcome = "sent", "Outbound request.");
        }
        // The source gets what is left of the call less a margin, so that a
        // slow source ends as a timeout the guest sees (and returns as
        // `unavailable`) before the call's own deadline.
        let budget = source_budget(self.deadline);
        let mut options = options.unwrap_or_default();
        for timeout in [
            &mut options.connect_timeout,
            &mut options.first_byte_timeout,
            &mut options.between_bytes_timeout,
        ] {
            *timeout = Some(timeout.map_or(budget, |t| t.min(budget)));
        }
        let what = format!("{} {}", request.method(), request.uri());
        let waits = self.waits.clone();
        let host_slots = self.host_slots.clone();
        Box::new(async move {
            use http_body_util::BodyExt;
            let head = waits.enter(what.clone());
            let host_slot = host_slots
                .acquire_owned()
                .await
                .map_err(|_| wasmtime_wasi_http::Error::ConnectionLimitReached)?;
            let sent = wasmtime_wasi_http::default_send_request(request, Some(options))
                .instrument(span.clone())
                .await;
            let (res, io) = match sent {
                Ok(sent) => sent,
                Err(err) => {
                    crate::telemetry::failed(&span, &err);
                    tracing::debug!(target: "inlet::outbound", seq, error = %err, outcome = "failed", "Outbound response.");
                    return Err(err);
                }
            };
            if !span.is_disabled() {
                span.record("http.response.status_code", res.status().as_u16());
                if res.status().is_server_error() {
                    crate::telemetry::failed(&span, &res.status());
                }
            }
            tracing::debug!(target: "inlet::outbound", seq, status = res.status().as_u16(), outcome = "answered", "Outbound response.");
            drop(head);
            // The connection task holds both slots until it ends.
            let io = async move {
                let _slots = (call_slot, host_slot);
                io.await
            };
            Ok((
                res.map(|body| WatchedBody::new(body, waits, what).boxed_unsync()),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// A response body that counts as a wait on the source while the guest is
/// blocked reading it (its last poll was `Pending`).
struct WatchedBody<B> {
    inner: B,
    waits: Arc<SourceWaits>,
    what: String,
    waiting: Option<WaitGuard>,
}

impl<B> WatchedBody<B> {
    fn new(inner: B, waits: Arc<SourceWaits>, what: String) -> Self {
        WatchedBody {
            inner,
            waits,
            what,
            waiting: None,
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match polled {
            Poll::Pending => {
                if this.waiting.is_none() {
                    this.waiting = Some(this.waits.enter(this.what.clone()));
                }
            }
            Poll::Ready(_) => this.waiting = None,
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let p = HostPattern::parse("API.example.com").unwrap();
        assert!(p.matches("api.example.com", 443));
        assert!(!p.matches("api.example.com", 8443));
        let p = HostPattern::parse("127.0.0.1:9000").unwrap();
        assert!(p.matches("127.0.0.1", 9000));
        assert!(!p.matches("127.0.0.1", 9001));
        assert!(
            HostPattern::parse("localhost:*")
                .unwrap()
                .matches("localhost", 1)
        );
        assert!(HostPattern::parse("[::1]:80").unwrap().matches("[::1]", 80));
        assert!(HostPattern::parse("x:port").is_err());
    }
}
