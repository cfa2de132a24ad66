//! The wasmtime side: one engine, one linker, a pre-instantiated component
//! per connector, and a fresh sandboxed store for every call.
//!
//! A call instantiates the connector's `PluginPre` into a new [`Store`]
//! whose data is a [`HostState`], with a memory limit, an epoch deadline
//! (the guest yields every tick and traps past its deadline) and the same
//! deadline as a timeout around the whole call, so host calls the guest
//! waits on (outbound HTTP) are covered too. A trap, an overrun or an
//! exhausted memory fails that call only.

mod bindings;
mod cache;
mod call;
mod capability;
mod limits;
mod log;
mod output;
mod sandbox;
mod state;
mod usage;
mod wait;

pub use cache::{ComponentCache, Origin, UNUSED_ENTRY_TTL};
pub use capability::Import;
pub use log::{LOG_BYTES_PER_CALL, LOG_LINE_BYTES};
pub use output::{MAX_CHECKPOINT_BYTES, REPLY_SECURITY_HEADERS, reply_header_allowed};
pub use sandbox::Sandbox;
pub use state::HostState;
pub use usage::Usage;
pub use wait::{MARGIN_FLOOR, MIN_SOURCE_DEADLINE};

use bindings::{CONNECTOR_EXPORT, PluginPre};
pub use call::{
    CallError, ConnectorError, Descriptor, FailureClass, PullResult, PushRequest, PushResult, Reply,
};
use capability::host_api::HostApi;
use capability::sql::Sql;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

/// Bytes of each pooled linear memory reset with memset (kept resident)
/// rather than madvise when its instance is dropped.
const LINEAR_MEMORY_KEEP_RESIDENT: usize = 2 << 20;

/// How often the epoch ticks; guests yield to the scheduler at this pace.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Try the pooling allocator (falls back to on-demand if the machine
    /// cannot reserve the address space).
    pub pooling: bool,
    /// Instances that may exist at once with the pooling allocator.
    pub max_instances: u32,
    /// Epoch interruption: guests yield every tick and trap past their
    /// deadline. Off only to measure its cost: a guest that loops forever
    /// then holds a thread until the call's timeout drops it.
    pub epoch_interruption: bool,
    /// Outbound requests in flight at once across every connector (the
    /// host's `limits.max_outbound_requests`).
    pub max_outbound_requests: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            pooling: true,
            max_instances: 1100,
            epoch_interruption: true,
            max_outbound_requests: 256,
        }
    }
}

/// The wasmtime engine and linker shared by every connector.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    pooling: bool,
    epoch: bool,
    ticker: Arc<AtomicBool>,
    /// Slots for outbound requests, host-wide (capability/outbound.rs).
    outbound_slots: Arc<tokio::sync::Semaphore>,
    /// Epoch ticks of guest CPU a source may use per window (usage.rs).
    cpu_ticks_per_window: u64,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.store(true, Ordering::Relaxed);
    }
}

/// A compiled, linked connector component, ready to instantiate.
#[derive(Clone)]
pub struct Code {
    pre: PluginPre<HostState>,
}

impl Runtime {
    /// Builds the engine (pooling allocator if possible) and the linker
    /// with WASI, wasi:http and the `host` interface.
    pub fn new(options: &RuntimeOptions) -> anyhow::Result<Self> {
        let (engine, pooling) = if options.pooling {
            match Self::probe_pooling(options.max_instances, options.epoch_interruption) {
                Ok(engine) => (engine, true),
                Err(err) => {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        max_instances = options.max_instances,
                        "Pooling allocator unavailable; using on-demand instance allocation."
                    );
                    (
                        Engine::new(&Self::config(None, options.epoch_interruption))?,
                        false,
                    )
                }
            }
        } else {
            (
                Engine::new(&Self::config(None, options.epoch_interruption))?,
                false,
            )
        };
        if !options.epoch_interruption {
            tracing::warn!(
                "Epoch interruption is off: a guest that never returns holds a thread until its call times out. Use this for benchmarks only."
            );
        }
        if pooling {
            tracing::info!(
                max_instances = options.max_instances,
                "Using the pooling instance allocator."
            );
        }
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        // Each host interface is linked through its own part of the store
        // data (capability/*), as wasmtime links WASI through views.
        bindings::types::add_to_linker::<HostState, HasSelf<HostApi>>(&mut linker, |s| {
            &mut s.host_api
        })?;
        bindings::host_api::add_to_linker::<HostState, HasSelf<HostApi>>(&mut linker, |s| {
            &mut s.host_api
        })?;
        bindings::sql::add_to_linker::<HostState, HasSelf<Sql>>(&mut linker, |s| &mut s.sql)?;
        bindings::mac::add_to_linker::<HostState, HasSelf<capability::mac::Macs>>(
            &mut linker,
            |s| &mut s.macs,
        )?;

        let ticker = Arc::new(AtomicBool::new(false));
        let stop = ticker.clone();
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("inlet-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Runtime {
            engine,
            linker,
            pooling,
            epoch: options.epoch_interruption,
            ticker,
            outbound_slots: Arc::new(tokio::sync::Semaphore::new(options.max_outbound_requests)),
            cpu_ticks_per_window: usage::default_ticks_per_window(),
        })
    }

    /// Builds a pooling engine and proves it works. `Engine::new` reserves
    /// the whole pool's address space (memories, tables, stacks) up front,
    /// which is what fails on machines with a small `ulimit -v` or strict
    /// overcommit; instantiating a one-page memory then commits a slot, so
    /// a pool that reserves but cannot be used is caught here too, not on
    /// the first request.
    fn probe_pooling(max_instances: u32, epoch: bool) -> anyhow::Result<Engine> {
        use anyhow::Context as _;
        let engine = Engine::new(&Self::config(Some(max_instances), epoch))
            .map_err(anyhow::Error::from)
            .context("reserving the instance pool")?;
        let probe = Component::new(
            &engine,
            "(component (core module $m (memory 1)) (core instance (instantiate $m)))",
        )
        .map_err(anyhow::Error::from)
        .context("compiling the pool probe")?;
        let mut store = Store::new(&engine, ());
        Linker::<()>::new(&engine)
            .instantiate(&mut store, &probe)
            .map_err(anyhow::Error::from)
            .context("instantiating the pool probe")?;
        Ok(engine)
    }

    fn config(pool: Option<u32>, epoch: bool) -> Config {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(epoch);
        if let Some(n) = pool {
            let mut p = PoolingAllocationConfig::default();
            p.total_component_instances(n)
                .total_core_instances(n * 4)
                .total_memories(n * 2)
                .total_tables(n * 2)
                .total_stacks(n)
                .max_memory_size(4 << 30)
                // A fresh instance per call means a slot is freed per call.
                // Resetting small memories with memset instead of madvise,
                // and batching the decommits that remain, avoids a TLB
                // shootdown (an IPI to every core) per call: it was a third
                // of the CPU under push load (BENCHMARKS.md).
                .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
                .table_keep_resident(64 << 10)
                .async_stack_keep_resident(64 << 10)
                .decommit_batch_size(64)
                .pagemap_scan(wasmtime::Enabled::Auto);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
        }
        config
    }

    /// The engine, for compiling components.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Compiles component bytes (CPU-heavy: call from a blocking thread).
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        match WasmKind::of(bytes) {
            WasmKind::Component => {}
            WasmKind::CoreModule => anyhow::bail!(
                "this is a core WebAssembly module, not a component (built for wasm32-unknown-unknown or wasm32-wasip1?); build the connector with `cargo build --target wasm32-wasip2 --release` (see sdk/README.md)"
            ),
            WasmKind::NotWasm if bytes.starts_with(b"!<arch>\n") => anyhow::bail!(
                "not a WebAssembly component but a Rust library archive (an .rlib): set `crate-type = [\"cdylib\"]` under `[lib]` in the connector's Cargo.toml and build with `cargo build --target wasm32-wasip2 --release`; the component is target/wasm32-wasip2/release/NAME.wasm"
            ),
            WasmKind::NotWasm
                if bytes.starts_with(b"\x7fELF")
                    || bytes.starts_with(b"MZ")
                    || bytes.starts_with(&[0xcf, 0xfa, 0xed, 0xfe]) =>
            {
                anyhow::bail!(
                    "not a WebAssembly component but a native binary or library: build the connector with `cargo build --target wasm32-wasip2 --release` (and `crate-type = [\"cdylib\"]` under `[lib]`)"
                )
            }
            WasmKind::NotWasm => anyhow::bail!(
                "not a WebAssembly component (the file does not start with the wasm magic bytes); did you set `crate-type = [\"cdylib\"]` and build for wasm32-wasip2?"
            ),
        }
        Ok(Component::new(&self.engine, bytes)?)
    }

    /// Every import of `component` and whether the host grants it (what
    /// `inlet check` prints).
    pub fn imports(&self, component: &Component) -> Vec<Import> {
        capability::imports(&self.engine, component)
    }

    /// Links a compiled component against the host: fails when it imports
    /// something the host does not grant (listing the imports), or when it
    /// is not an `inlet:connector` plugin (naming what it exports instead).
    pub fn link(&self, component: &Component) -> anyhow::Result<Code> {
        capability::check(&self.engine, component)?;
        if component.get_export_index(None, CONNECTOR_EXPORT).is_none() {
            let exports = capability::exports(&self.engine, component);
            let exports = if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            };
            anyhow::bail!(
                "the component is of another world: it does not export `{CONNECTOR_EXPORT}` \
                 (it exports {exports}); build connectors with inlet-sdk's `export_connector!`"
            );
        }
        let pre = self.linker.instantiate_pre(component).map_err(|e| {
            anyhow::anyhow!("the component needs imports the host does not provide: {e:#}")
        })?;
        let pre = PluginPre::new(pre).map_err(|e| {
            anyhow::anyhow!(
                "the component's `{CONNECTOR_EXPORT}` export does not match the host's version of the interface: {e:#}"
            )
        })?;
        Ok(Code { pre })
    }
}

/// What a file's header says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    Component,
    CoreModule,
    NotWasm,
}

impl WasmKind {
    /// Reads the 8-byte header: `\0asm`, then the version and layer.
    pub fn of(bytes: &[u8]) -> Self {
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', _, _, 1, 0]) => WasmKind::Component,
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => WasmKind::CoreModule,
            _ => WasmKind::NotWasm,
        }
    }
}
