//! The per-call store data: WASI (no files, no env, no sockets), the
//! per-call state of each host capability (`capability/`), and resource
//! limits.

use super::capability::host_api::HostApi;
use super::capability::mac::Macs;
use super::capability::outbound::Outbound;
use super::capability::sql::Sql;
use super::limits::MemoryLimit;
use super::log::{CallLog, GuestOutput};
use super::sandbox::Sandbox;
use super::wait::SourceWaits;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
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
    /// The `mac` interface (capability/mac.rs).
    pub(crate) macs: Macs,
    /// The host calls waiting on the source right now.
    pub(crate) waits: Arc<SourceWaits>,
}

impl HostState {
    pub(crate) fn new(
        sandbox: Arc<Sandbox>,
        deadline: std::time::Instant,
        waits: Arc<SourceWaits>,
        outbound_slots: Arc<tokio::sync::Semaphore>,
    ) -> Self {
        let log = CallLog::new(sandbox.name.clone(), sandbox.usage.clone());
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestOutput::new(log.clone(), "stdout"))
            .stderr(GuestOutput::new(log.clone(), "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: Outbound::new(&sandbox, deadline, waits.clone(), outbound_slots),
            limits: MemoryLimit::new(&sandbox),
            host_api: HostApi {
                log,
                config: sandbox.config.clone(),
            },
            sql: Sql {
                connector: sandbox.name.clone(),
                grants: sandbox.sql.clone(),
                deadline,
                waits: waits.clone(),
            },
            macs: Macs {
                secrets: sandbox.secrets.clone(),
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
