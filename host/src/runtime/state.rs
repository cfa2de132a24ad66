//! The per-call store data: WASI (no files, no env, no sockets), wasi:http
//! filtered by the manifest, the `host` imports, and resource limits.

use super::bindings::{host_api, types};
use super::sandbox::Sandbox;
use super::wait::{SourceWaits, source_budget};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Store data for one call into a connector.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: Outbound,
    pub(crate) limits: MemoryLimit,
    pub(crate) sandbox: Arc<Sandbox>,
    /// When the current call must end; host calls (`sql`) fit inside it.
    pub(crate) deadline: std::time::Instant,
    /// The host calls waiting on the source right now.
    pub(crate) waits: Arc<SourceWaits>,
}

impl HostState {
    pub(crate) fn new(
        sandbox: Arc<Sandbox>,
        deadline: std::time::Instant,
        waits: Arc<SourceWaits>,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestOutput::new(sandbox.name.clone(), "stdout"))
            .stderr(GuestOutput::new(sandbox.name.clone(), "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: Outbound {
                sandbox: sandbox.clone(),
                deadline,
                waits: waits.clone(),
            },
            limits: MemoryLimit {
                max_bytes: sandbox.memory_bytes,
                exhausted: Arc::new(AtomicBool::new(false)),
            },
            sandbox,
            deadline,
            waits,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl types::Host for HostState {}

impl host_api::Host for HostState {
    fn log(&mut self, level: host_api::Level, message: String) {
        let connector = &*self.sandbox.name;
        let message = truncate(&message, 8 * 1024);
        match level {
            host_api::Level::Trace => {
                tracing::trace!(target: "inlet::guest", connector, "{message}")
            }
            host_api::Level::Debug => {
                tracing::debug!(target: "inlet::guest", connector, "{message}")
            }
            host_api::Level::Info => tracing::info!(target: "inlet::guest", connector, "{message}"),
            host_api::Level::Warn => tracing::warn!(target: "inlet::guest", connector, "{message}"),
            host_api::Level::Error => {
                tracing::error!(target: "inlet::guest", connector, "{message}")
            }
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.sandbox.config.get(&key).cloned()
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Linear-memory limit that remembers whether it was hit, so a failed
/// call can say "memory limit" rather than a bare trap.
pub(crate) struct MemoryLimit {
    max_bytes: usize,
    pub(crate) exhausted: Arc<AtomicBool>,
}

impl wasmtime::ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exhausted.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The wasi:http hooks: `allowed_hosts`, `[[sandbox.inject]]`, and
/// timeouts that end a request before the call's deadline.
struct Outbound {
    sandbox: Arc<Sandbox>,
    deadline: std::time::Instant,
    waits: Arc<SourceWaits>,
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
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or("").to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.sandbox.outbound_allowed(&host, port) {
            tracing::warn!(
                connector = %self.sandbox.name,
                host = %host,
                port,
                "Outbound request denied: the host is not in the manifest's `allowed_hosts`."
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        for (name, value) in self.sandbox.injections_for(&host, port) {
            request.headers_mut().insert(name.clone(), value.clone());
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
        Box::new(async move {
            use http_body_util::BodyExt;
            let head = waits.enter(what.clone());
            let (res, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            drop(head);
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
    waiting: Option<super::wait::WaitGuard>,
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

/// Guest stdout/stderr, forwarded to tracing line by line under the
/// connector's name, with a byte budget per call.
struct GuestOutput {
    name: Arc<str>,
    stream: &'static str,
}

impl GuestOutput {
    fn new(name: Arc<str>, stream: &'static str) -> Self {
        GuestOutput { name, stream }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            name: self.name.clone(),
            stream: self.stream,
            buf: Vec::new(),
            budget: 64 * 1024,
        })
    }
}

struct LineWriter {
    name: Arc<str>,
    stream: &'static str,
    buf: Vec<u8>,
    budget: usize,
}

impl LineWriter {
    fn emit(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        tracing::info!(target: "inlet::guest", connector = %self.name, stream = self.stream, "{text}");
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // Output past the budget is dropped, never an error for the guest.
        let take = data.len().min(self.budget);
        self.budget -= take;
        self.buf.extend_from_slice(&data[..take]);
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            self.emit(&line[..line.len() - 1]);
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.emit(&rest);
        }
    }
}
