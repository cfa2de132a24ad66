//! The running host: shared state, the listener, background tasks, and an
//! orderly shutdown.

use crate::config::HostConfig;
use crate::pull::Scheduler;
use crate::registry::Registry;
use crate::runtime::{Runtime, RuntimeOptions};
use crate::store::{SledStore, Store};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
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
/// How often expired dedup marks are collected.
const GC_EVERY: Duration = Duration::from_secs(60);

/// Everything a request handler or a pull needs.
pub struct Host {
    pub config: Arc<HostConfig>,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub scheduler: Scheduler,
    pub push_slots: Arc<Semaphore>,
    pub pull_workers: Arc<Semaphore>,
    pub admin_token: Option<String>,
    pub shutdown: CancellationToken,
    ready: AtomicBool,
}

impl Host {
    /// Ready once the store is open and the first plugin scan finished.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Options that are not part of `inlet.toml`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Skip the fsync before acknowledging (benchmarks only).
    pub unsafe_no_fsync: bool,
    pub runtime: RuntimeOptions,
}

/// A started host. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    host: Arc<Host>,
    addr: SocketAddr,
    tasks: TaskTracker,
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
        let config = Arc::new(config);
        let store = SledStore::open(&config.data_dir, !options.unsafe_no_fsync)
            .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
        let store: Arc<dyn Store> = Arc::new(store);
        let mut runtime_options = options.runtime.clone();
        runtime_options.max_instances = runtime_options
            .max_instances
            .max(config.limits.max_in_flight + config.limits.pull_workers + 64);
        let runtime = Arc::new(Runtime::new(&runtime_options)?);
        let registry = Arc::new(Registry::new(runtime, config.clone()));
        let admin_token = config
            .admin_token_env
            .as_deref()
            .and_then(|var| std::env::var(var).ok())
            .filter(|t| !t.is_empty());
        let host = Arc::new(Host {
            store,
            registry,
            scheduler: Scheduler::default(),
            push_slots: Arc::new(Semaphore::new(config.limits.max_in_flight as usize)),
            pull_workers: Arc::new(Semaphore::new(config.limits.pull_workers as usize)),
            admin_token,
            shutdown: CancellationToken::new(),
            ready: AtomicBool::new(false),
            config: config.clone(),
        });
        if !config.plugins_dir.is_dir() {
            tracing::warn!(dir = %config.plugins_dir.display(), "The plugins directory does not exist; no connector is loaded.");
        }
        host.registry.scan().await;
        host.ready.store(true, Ordering::Release);

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let tasks = TaskTracker::new();
        tasks.spawn(accept_loop(host.clone(), listener, tasks.clone()));
        tasks.spawn(gc_loop(host.clone()));
        tasks.spawn(crate::registry::watch(host.clone()));
        host.scheduler.sync(&host);
        tracing::info!(%addr, connectors = host.registry.all().len(), "Inlet is listening.");
        Ok(Server { host, addr, tasks })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// Stops accepting, lets requests in flight finish (bounded), stops the
    /// scheduler and flushes the store.
    pub async fn shutdown(self) {
        tracing::info!("Shutting down: draining requests in flight.");
        self.host.shutdown.cancel();
        self.host.scheduler.stop().await;
        self.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("Drain timeout: some requests were cut off.");
        }
        tracing::info!("Shutdown complete.");
    }
}

async fn accept_loop(host: Arc<Host>, listener: TcpListener, tasks: TaskTracker) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    tracing::warn!(error = %err, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = host.shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let h = host.clone();
        let service = service_fn(move |req| {
            let h = h.clone();
            async move { Ok::<_, std::convert::Infallible>(crate::api::route(h, req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(host.config.limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tasks.spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%peer, error = %err, "Connection ended with an error.");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn gc_loop(host: Arc<Host>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(GC_EVERY) => {}
            _ = host.shutdown.cancelled() => return,
        }
        let store = host.store.clone();
        match tokio::task::spawn_blocking(move || store.collect_expired(crate::store::now_ms()))
            .await
        {
            Ok(Ok(n)) if n > 0 => tracing::debug!(removed = n, "Expired dedup marks collected."),
            Ok(Err(err)) => tracing::warn!(error = %err, "Collecting expired dedup marks failed."),
            _ => {}
        }
    }
}
