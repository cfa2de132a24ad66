//! The composition root: the one place that builds the parts of a running
//! host and wires them together (store, runtime, registry, pull scheduler,
//! push ingest, admin API, listener, background tasks), and shuts them
//! down in order. Only `cli.rs` uses it (`Server`, `ServeOptions`).

mod accept;
mod retention;
mod tls;

pub use tls::Tls;

use crate::api::{Api, Surface, tokens};
use crate::config::{HostConfig, StoreKind};
use crate::conns::Admission;
use crate::metrics::Metrics;
use crate::pull::Scheduler;
use crate::push::Ingest;
use crate::registry::Registry;
use crate::runtime::{Runtime, RuntimeOptions};
use crate::store::{JetStreamStore, SledStore, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Options that are not part of `inlet.toml`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Skip the fsync before acknowledging (benchmarks only).
    pub unsafe_no_fsync: bool,
    pub runtime: RuntimeOptions,
}

/// A started host. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    api: Arc<Api>,
    scheduler: Arc<Scheduler>,
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    addr: SocketAddr,
    /// The `admin_listen` address, bound.
    admin_addr: Option<SocketAddr>,
    /// The listeners' TLS, when `[tls]` is set.
    tls: Option<Arc<Tls>>,
    tasks: TaskTracker,
    /// Held for the host's lifetime: one `inlet serve` per data directory.
    _lock: DataDirLock,
}

impl Server {
    /// Opens the store, loads every connector, binds the listener and starts
    /// serving and scheduling.
    pub async fn start(config: HostConfig, options: ServeOptions) -> anyhow::Result<Server> {
        use anyhow::Context as _;
        if options.unsafe_no_fsync {
            tracing::warn!(
                "--unsafe-no-fsync: acknowledged events are NOT flushed to disk and can be lost on a crash. Use this for benchmarks only."
            );
        }
        let tokens = tokens(&config)?;
        crate::conns::raise_file_limit();
        let admission = Arc::new(Admission::new(&config.limits));
        let config = Arc::new(config);
        let lock = DataDirLock::acquire(&config.data_dir)?;
        let metrics = Arc::new(Metrics::new());
        let store: Arc<dyn Store> = match config.store.kind {
            StoreKind::Sled => Arc::new(
                SledStore::open_with(
                    &config.data_dir,
                    !options.unsafe_no_fsync,
                    Some(metrics.store_flush.clone()),
                )
                .with_context(|| {
                    format!("cannot open the store in {}", config.data_dir.display())
                })?,
            ),
            StoreKind::Jetstream => Arc::new(
                JetStreamStore::connect(&config.store)
                    .await
                    .context("cannot open the JetStream store ([store] in inlet.toml)")?,
            ),
        };
        let mut runtime_options = options.runtime.clone();
        runtime_options.max_instances = runtime_options
            .max_instances
            .max(config.limits.max_in_flight + config.limits.pull_workers + 64);
        runtime_options.max_outbound_requests = admission.outbound_requests;
        let runtime = Arc::new(Runtime::new(&runtime_options)?);
        let registry = Arc::new(Registry::new(runtime, config.clone(), metrics.clone()));
        let shutdown = CancellationToken::new();
        let scheduler = Scheduler::new(
            registry.clone(),
            store.clone(),
            metrics.clone(),
            config.limits.pull_workers as usize,
            shutdown.clone(),
        );
        let api = Arc::new(Api {
            ingest: Ingest {
                registry: registry.clone(),
                store: store.clone(),
                slots: Arc::new(Semaphore::new(config.limits.max_in_flight as usize)),
                admission: admission.clone(),
                limits: config.limits.clone(),
                metrics: metrics.clone(),
                trusted_proxies: Arc::new(
                    crate::config::parse_ip_ranges(&config.trusted_proxies)
                        .map_err(|e| anyhow::anyhow!("inlet.toml: trusted_proxies: {e}"))?,
                ),
            },
            scheduler: scheduler.clone(),
            registry: registry.clone(),
            store: store.clone(),
            tokens,
            long_polls: Arc::new(Semaphore::new(config.limits.max_long_polls as usize)),
            ready: AtomicBool::new(false),
            metrics,
            shutdown: shutdown.clone(),
        });
        if !config.plugins_dir.is_dir() {
            tracing::warn!(dir = %config.plugins_dir.display(), "The plugins directory does not exist; no connector is loaded.");
        }
        registry.scan().await;
        api.ready.store(true, Ordering::Release);

        // TLS first: a bad certificate refuses the start before any port
        // is bound.
        let tls = match &config.tls {
            Some(t) => Some(Tls::load(t)?),
            None => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let tasks = TaskTracker::new();
        let refusals = Arc::new(Semaphore::new(crate::conns::MAX_REFUSING));
        let mut admin_addr = None;
        if let Some(admin_listen) = config.admin_listen {
            let admin = TcpListener::bind(admin_listen)
                .await
                .with_context(|| format!("cannot listen on {admin_listen} (admin_listen)"))?;
            admin_addr = Some(admin.local_addr()?);
            tasks.spawn(accept::accept_loop(
                accept::Listener {
                    api: api.clone(),
                    surface: Surface::Admin,
                    tls: tls.clone(),
                    admission: admission.clone(),
                    refusals: refusals.clone(),
                    header_read_timeout: config.limits.header_read_timeout,
                    shutdown: shutdown.clone(),
                },
                admin,
                tasks.clone(),
            ));
        }
        tasks.spawn(accept::accept_loop(
            accept::Listener {
                api: api.clone(),
                tls: tls.clone(),
                surface: if admin_addr.is_some() {
                    Surface::Ingest
                } else {
                    Surface::All
                },
                admission,
                refusals,
                header_read_timeout: config.limits.header_read_timeout,
                shutdown: shutdown.clone(),
            },
            listener,
            tasks.clone(),
        ));
        tasks.spawn(retention::gc_loop(
            registry.clone(),
            store.clone(),
            api.metrics.clone(),
            config.compaction_interval,
            shutdown.clone(),
        ));
        tasks.spawn(crate::registry::watch(registry.clone(), shutdown.clone()));
        if let Some(tls) = &tls {
            tasks.spawn(tls::watch(tls.clone(), shutdown.clone()));
        }
        tasks.spawn(scheduler.start());
        tracing::info!(%addr, admin = ?admin_addr, connectors = registry.all().len(), "Inlet is listening.");
        Ok(Server {
            api,
            scheduler,
            store,
            registry,
            shutdown,
            addr,
            admin_addr,
            tls,
            tasks,
            _lock: lock,
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listeners' TLS (to reload its certificate on SIGHUP).
    pub fn tls(&self) -> Option<Arc<Tls>> {
        self.tls.clone()
    }

    /// The bound `admin_listen` address, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Whether the host is ready (`/readyz` answers 200 when the store is
    /// available too).
    pub fn ready(&self) -> bool {
        self.api.ready()
    }

    /// The connector registry: `scan()` reloads the plugins directory
    /// (SIGHUP, like `POST /v1/reload`); the pull scheduler follows.
    pub(crate) fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// A handle that stops the host when cancelled, without waiting (the
    /// drain happens in [`Server::shutdown`]).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, lets requests in flight finish (bounded), stops the
    /// scheduler and flushes the store.
    pub async fn shutdown(self) {
        tracing::info!("Shutting down: draining requests in flight.");
        self.shutdown.cancel();
        self.scheduler.stop(DRAIN_TIMEOUT).await;
        self.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("Drain timeout: some requests were cut off.");
        }
        self.store.release_leases().await;
        if let Err(err) = self.store.flush().await {
            tracing::error!(error = %err, "Final store flush failed.");
        }
        tracing::info!("Shutdown complete.");
    }
}

/// An exclusive lock on `data_dir/LOCK`, holding the owner's pid.
struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    fn acquire(dir: &std::path::Path) -> anyhow::Result<Self> {
        use std::io::{Read, Seek, Write};
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!("cannot create the data directory {}: {e}", dir.display())
        })?;
        let path = dir.join("LOCK");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                anyhow::bail!(
                    "the data directory {} is in use by another inlet process (pid {}); stop it or use another --data directory",
                    dir.display(),
                    holder.trim()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                anyhow::bail!("cannot lock {}: {e}", path.display())
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(DataDirLock { _file: file })
    }
}
