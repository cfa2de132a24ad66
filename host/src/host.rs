//! The running host: shared state, the listener, background tasks, and an
//! orderly shutdown.

use crate::config::HostConfig;
use crate::pull::Scheduler;
use crate::registry::Registry;
use crate::runtime::{Runtime, RuntimeOptions};
use crate::store::{JetStreamStore, SledStore, Store};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a request handler or a pull needs.
pub struct Host {
    pub config: Arc<HostConfig>,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub scheduler: Scheduler,
    pub push_slots: Arc<Semaphore>,
    pub pull_workers: Arc<Semaphore>,
    pub admin_token: Option<String>,
    pub metrics_token: Option<String>,
    /// Reads streams and moves cursors, nothing else.
    pub consumer_token: Option<String>,
    /// Connection and unauthenticated-byte caps (`conns.rs`).
    pub admission: crate::conns::Admission,
    /// Long polls waiting at once.
    pub long_polls: Arc<Semaphore>,
    /// Connections being refused at once (each holds a descriptor while it
    /// is answered); past it a connection is closed without an answer.
    refusals: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    ready: AtomicBool,
    /// Held for the host's lifetime: one `inlet serve` per data directory.
    _lock: DataDirLock,
    pub metrics: Arc<crate::metrics::Metrics>,
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

/// The admin and metrics tokens. A token setting whose variable is unset or
/// empty refuses the start (it never means "no token"); an admin API
/// without a token on a listener that is not loopback needs
/// `admin_open = true`, and is logged as a warning.
#[derive(Debug, PartialEq, Eq)]
struct Tokens {
    admin: Option<String>,
    metrics: Option<String>,
    consumer: Option<String>,
}

fn tokens(config: &HostConfig) -> anyhow::Result<Tokens> {
    let read = |key: &str, var: &Option<String>| -> anyhow::Result<Option<String>> {
        var.as_ref()
            .map(|var| {
                crate::config::SecretRef::Env(var.clone())
                    .read(std::path::Path::new("."))
                    .map(|s| s.expose().to_string())
                    .map_err(|e| anyhow::anyhow!("inlet.toml: `{key}`: {e}"))
            })
            .transpose()
    };
    let admin = read("admin_token_env", &config.admin_token_env)?;
    let metrics = read("metrics_token_env", &config.metrics_token_env)?;
    let consumer = read("consumer_token_env", &config.consumer_token_env)?;
    if consumer.is_some() && admin.is_none() {
        anyhow::bail!(
            "inlet.toml: `consumer_token_env` is set but `admin_token_env` is not: without an admin \
             token every /v1 route is open and the consumer token restricts nothing; set both"
        );
    }
    if admin.is_none() && !config.listen.ip().is_loopback() {
        if !config.admin_open {
            anyhow::bail!(
                "inlet.toml: `listen = \"{}\"` is not a loopback address and no `admin_token_env` is set: \
                 anyone who reaches the port could move checkpoints, reset cursors and read every stream \
                 through /v1. Set `admin_token_env` (and export the token), or `admin_open = true` to serve \
                 the admin API without a token on purpose",
                config.listen
            );
        }
        tracing::warn!(
            listen = %config.listen,
            "admin_open = true: the admin API (/v1) answers anyone who reaches this listener, without a token."
        );
    }
    Ok(Tokens {
        admin,
        metrics,
        consumer,
    })
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
        let Tokens {
            admin: admin_token,
            metrics: metrics_token,
            consumer: consumer_token,
        } = tokens(&config)?;
        crate::conns::raise_file_limit();
        let admission = crate::conns::Admission::new(&config.limits);
        let config = Arc::new(config);
        let lock = DataDirLock::acquire(&config.data_dir)?;
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store: Arc<dyn Store> = match config.store.kind {
            crate::config::StoreKind::Sled => Arc::new(
                SledStore::open_with(
                    &config.data_dir,
                    !options.unsafe_no_fsync,
                    Some(metrics.store_flush.clone()),
                )
                .with_context(|| {
                    format!("cannot open the store in {}", config.data_dir.display())
                })?,
            ),
            crate::config::StoreKind::Jetstream => Arc::new(
                JetStreamStore::connect(&config.store)
                    .await
                    .context("cannot open the JetStream store ([store] in inlet.toml)")?,
            ),
        };
        let mut runtime_options = options.runtime.clone();
        runtime_options.max_instances = runtime_options
            .max_instances
            .max(config.limits.max_in_flight + config.limits.pull_workers + 64);
        let runtime = Arc::new(Runtime::new(&runtime_options)?);
        let registry = Arc::new(Registry::new(runtime, config.clone(), metrics.clone()));
        let host = Arc::new(Host {
            store,
            registry,
            scheduler: Scheduler::default(),
            push_slots: Arc::new(Semaphore::new(config.limits.max_in_flight as usize)),
            pull_workers: Arc::new(Semaphore::new(config.limits.pull_workers as usize)),
            admin_token,
            metrics_token,
            consumer_token,
            admission,
            long_polls: Arc::new(Semaphore::new(config.limits.max_long_polls as usize)),
            refusals: Arc::new(Semaphore::new(crate::conns::MAX_REFUSING)),
            shutdown: CancellationToken::new(),
            ready: AtomicBool::new(false),
            config: config.clone(),
            _lock: lock,
            metrics,
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
        self.host.scheduler.stop(DRAIN_TIMEOUT).await;
        self.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("Drain timeout: some requests were cut off.");
        }
        self.host.store.release_leases().await;
        if let Err(err) = self.host.store.flush().await {
            tracing::error!(error = %err, "Final store flush failed.");
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
        let grant = match host.admission.connection(peer.ip()) {
            Ok(grant) => grant,
            Err(why) => {
                tracing::debug!(%peer, ?why, "Connection refused: too many open.");
                // Answering refusals takes descriptors too: only a few at
                // once, briefly; past that the connection is just closed.
                let Ok(refusing) = host.refusals.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                // Answered (503, Retry-After, Connection: close) off the
                // accept loop and closed, so the host keeps accepting below
                // its descriptor limit.
                let refused = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .keep_alive(false)
                    .header_read_timeout(Duration::from_millis(500))
                    .serve_connection(
                        TokioIo::new(stream),
                        service_fn(|_req: http::Request<hyper::body::Incoming>| async {
                            let mut r = crate::api::reply::overloaded(
                                "too many connections are open; retry in 1 s",
                            );
                            r.headers_mut().insert(
                                http::header::CONNECTION,
                                http::HeaderValue::from_static("close"),
                            );
                            Ok::<_, std::convert::Infallible>(r)
                        }),
                    );
                tasks.spawn(async move {
                    let _refusing = refusing;
                    let _ = tokio::time::timeout(Duration::from_secs(1), refused).await;
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let h = host.clone();
        let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            let h = h.clone();
            req.extensions_mut().insert(Peer(peer));
            let id = request_id(req.headers());
            let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
            async move {
                let mut resp = crate::api::route(h, req).await;
                if let Ok(v) = http::HeaderValue::from_str(&id) {
                    resp.headers_mut().insert("x-request-id", v);
                }
                Ok::<_, std::convert::Infallible>(resp)
            }
            .instrument(span)
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(host.config.limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tasks.spawn(async move {
            let _grant = grant;
            if let Err(err) = conn.await {
                tracing::debug!(%peer, error = %err, "Connection ended with an error.");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The address a request came from (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The caller's `X-Request-Id` when it is short and printable, else a new
/// one; it is on every log line of the request and echoed in the response.
fn request_id(headers: &http::HeaderMap) -> String {
    if let Some(given) = headers.get("x-request-id").and_then(|v| v.to_str().ok())
        && !given.is_empty()
        && given.len() <= 128
        && given.bytes().all(|b| b.is_ascii_graphic())
    {
        return given.to_string();
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(rand::random);
    format!("{prefix:08x}-{:08x}", NEXT.fetch_add(1, Ordering::Relaxed))
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

/// Background compaction: expired dedup marks and per-source retention,
/// off the request path.
async fn gc_loop(host: Arc<Host>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(host.config.compaction_interval) => {}
            _ = host.shutdown.cancelled() => return,
        }
        compact(&host).await;
    }
}

async fn compact(host: &Host) {
    let now = crate::store::now_ms();
    match host.store.collect_expired(now).await {
        Ok(n) if n > 0 => tracing::debug!(removed = n, "Expired dedup marks collected."),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "Collecting expired dedup marks failed."),
    }
    for connector in host.registry.all() {
        let stream = connector.manifest.stream;
        if stream.retention.is_none() && stream.max_bytes.is_none() {
            continue;
        }
        let policy = crate::store::Retention {
            max_age: stream.retention,
            max_bytes: stream.max_bytes,
        };
        match host.store.trim(&connector.name, &policy, now).await {
            Ok(out) if out.removed > 0 => {
                let c = &host.registry.source(&connector.name).counters;
                crate::registry::Counters::add(&c.events_trimmed, out.removed);
                crate::registry::Counters::add(&c.events_trimmed_forced, out.forced);
                if out.forced > 0 {
                    tracing::warn!(source = %connector.name, removed = out.removed, forced = out.forced, "Retention removed events a consumer had not read yet (max_bytes).");
                } else {
                    tracing::info!(source = %connector.name, removed = out.removed, bytes = out.bytes_after, "Retention removed old events.");
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(source = %connector.name, error = %err, "Applying retention failed.")
            }
        }
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn an_admin_api_without_a_token_stays_on_loopback_unless_opened_on_purpose() {
        let mut config = HostConfig {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..HostConfig::default()
        };
        let err = tokens(&config).unwrap_err().to_string();
        assert!(
            err.contains("not a loopback address") && err.contains("admin_open"),
            "{err}"
        );
        config.listen = "[::]:8080".parse().unwrap();
        assert!(tokens(&config).is_err());
        config.admin_open = true;
        let none = Tokens {
            admin: None,
            metrics: None,
            consumer: None,
        };
        assert_eq!(tokens(&config).unwrap(), none);
        config.admin_open = false;
        for loopback in ["127.0.0.1:0", "127.0.0.2:8080", "[::1]:0"] {
            config.listen = loopback.parse().unwrap();
            assert_eq!(tokens(&config).unwrap(), none, "{loopback}");
        }
    }
}
