//! The listener: admission of each connection (caps per peer and in
//! total, refusals answered briefly or dropped), one HTTP/1.1 connection
//! task per client, and the request id on every log line.

use crate::api::{Api, Surface};
use crate::conns::Admission;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

/// HTTP/2 streams one connection may have open (each request still takes
/// the push slots, rate tokens and byte budgets an HTTP/1.1 request does).
const H2_MAX_STREAMS: u32 = 128;
/// HTTP/2 header list bytes per request (hyper's HTTP/1.1 reads at most
/// about 400 KiB of head).
const H2_MAX_HEADER_LIST: u32 = 64 * 1024;

/// What the accept loop needs.
pub(super) struct Listener {
    pub api: Arc<Api>,
    pub surface: Surface,
    /// TLS (HTTP/1.1 and HTTP/2 by ALPN) when `[tls]` is set.
    pub tls: Option<Arc<super::tls::Tls>>,
    pub admission: Arc<Admission>,
    /// Connections being refused at once (each holds a descriptor while it
    /// is answered); past it a connection is closed without an answer.
    pub refusals: Arc<Semaphore>,
    pub header_read_timeout: Duration,
    pub shutdown: CancellationToken,
}

pub(super) async fn accept_loop(listen: Listener, listener: TcpListener, tasks: TaskTracker) {
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
            _ = listen.shutdown.cancelled() => break,
        };
        let grant = match listen.admission.connection(peer.ip()) {
            Ok(grant) => grant,
            Err(why) => {
                tracing::debug!(%peer, ?why, "Connection refused: too many open.");
                // Answering refusals takes descriptors too: only a few at
                // once, briefly; past that the connection is just closed.
                let Ok(refusing) = listen.refusals.clone().try_acquire_owned() else {
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
                            let mut r = crate::reply::ApiError::Overloaded(
                                "too many connections are open; retry in 1 s".into(),
                            )
                            .into_response();
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
        let h = listen.api.clone();
        let surface = listen.surface;
        let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            let h = h.clone();
            req.extensions_mut().insert(crate::conns::Peer(peer));
            req.extensions_mut().insert(surface);
            let id = request_id(req.headers());
            req.extensions_mut()
                .insert(crate::conns::RequestId(id.clone()));
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
        if let Some(tls) = &listen.tls {
            // The handshake off the accept loop, bounded like a header
            // read: a client that never finishes it holds nothing long.
            let acceptor = tls.acceptor.clone();
            let watcher = graceful.watcher();
            let handshake_timeout = listen.header_read_timeout;
            tasks.spawn(async move {
                let _grant = grant;
                let stream =
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed.");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out.");
                            return;
                        }
                    };
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(handshake_timeout);
                // HTTP/2 under the same budgets: streams per connection
                // are capped, headers as large as HTTP/1.1 allows, and
                // every request takes the same slots and budgets.
                builder
                    .http2()
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(H2_MAX_STREAMS)
                    .max_header_list_size(H2_MAX_HEADER_LIST)
                    .keep_alive_interval(Some(Duration::from_secs(30)))
                    .keep_alive_timeout(Duration::from_secs(20));
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                if let Err(err) = watcher.watch(conn).await {
                    tracing::debug!(%peer, error = %err, "Connection ended with an error.");
                }
            });
            continue;
        }
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(listen.header_read_timeout)
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
