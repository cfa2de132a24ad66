//! The per-call store data: WASI (no files, no env, no sockets), the
//! per-call state of each host capability (`capability/`), and resource
//! limits.

use super::capability::host_api::HostApi;
use super::capability::outbound::Outbound;
use super::capability::sql::Sql;
use super::sandbox::Sandbox;
use super::wait::SourceWaits;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Store data for one call into a connector.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    /// wasi:http's hooks: the outbound grant (capability/outbound.rs).
    outbound: Outbound,
    pub(crate) limits: MemoryLimit,
    /// The `host` interface (capability/host_api.rs).
    pub(crate) host_api: HostApi,
    /// The `sql` interface (capability/sql.rs).
    pub(crate) sql: Sql,
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
                connector: sandbox.name.clone(),
                grant: sandbox.outbound.clone(),
                deadline,
                waits: waits.clone(),
            },
            limits: MemoryLimit {
                max_bytes: sandbox.memory_bytes,
                exhausted: Arc::new(AtomicBool::new(false)),
            },
            host_api: HostApi {
                connector: sandbox.name.clone(),
                config: sandbox.config.clone(),
            },
            sql: Sql {
                connector: sandbox.name.clone(),
                grants: sandbox.sql.clone(),
                deadline,
                waits: waits.clone(),
            },
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
