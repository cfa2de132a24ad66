//! A keep-alive load generator over hyper: N clients, each sending
//! requests back to back for a fixed time after a warm-up, over plain
//! HTTP/1.1 or TLS (HTTP/1.1 or HTTP/2, a connection per client or one
//! HTTP/2 connection shared by all).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Latencies in microseconds, sorted.
    pub latencies: Vec<u64>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i] as f64 / 1000.0
    }
}

/// How the clients reach the server.
#[derive(Clone)]
pub enum Transport {
    /// HTTP/1.1 over TCP.
    Plain,
    /// TLS with this client config; `h2` picks HTTP/2 (by ALPN), `shared`
    /// puts every client on one HTTP/2 connection as streams.
    Tls {
        connector: tokio_rustls::TlsConnector,
        h2: bool,
        shared: bool,
    },
}

/// One client's way to send a request.
#[derive(Clone)]
enum Sender {
    H1(Arc<tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn connect(addr: &str, transport: &Transport) -> Sender {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).ok();
        match transport {
            Transport::Plain => Self::h1(TokioIo::new(stream)).await,
            Transport::Tls { connector, h2, .. } => {
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                let tls = connector
                    .connect(name, stream)
                    .await
                    .expect("TLS handshake");
                let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                if *h2 {
                    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "the server chose h2");
                    let (sender, conn) = hyper::client::conn::http2::handshake(
                        hyper_util::rt::TokioExecutor::new(),
                        TokioIo::new(tls),
                    )
                    .await
                    .expect("h2 handshake");
                    tokio::spawn(conn);
                    Sender::H2(sender)
                } else {
                    Self::h1(TokioIo::new(tls)).await
                }
            }
        }
    }

    async fn h1<T>(io: TokioIo<T>) -> Sender
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Sender::H1(Arc::new(tokio::sync::Mutex::new(sender)))
    }

    /// Sends `req`; whether it got a 2xx, and whether the connection is
    /// still usable.
    async fn send(&mut self, req: hyper::Request<Full<Bytes>>) -> (bool, bool) {
        let resp = match self {
            Sender::H1(s) => {
                let mut s = s.lock().await;
                let r = s.send_request(req).await;
                match r {
                    Ok(r) => Ok(r),
                    Err(_) => return (false, s.ready().await.is_ok()),
                }
            }
            Sender::H2(s) => s.send_request(req).await,
        };
        match resp {
            Ok(resp) => {
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                (ok, true)
            }
            Err(_) => (false, false),
        }
    }
}

/// Runs `connections` clients against `addr` posting to `path`.
pub async fn run(
    addr: &str,
    path: &str,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    let addrs = [addr.to_string()];
    run_over(
        &addrs,
        path,
        connections,
        warmup,
        duration,
        &Transport::Plain,
    )
    .await
}

/// Like [`run`], over `transport`, with the connections spread
/// round-robin over `addrs` (a load balancer in front of several hosts);
/// keys and ids stay unique.
pub async fn run_over(
    addrs: &[String],
    path: &str,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    transport: &Transport,
) -> LoadResult {
    run_spread(
        addrs,
        &[path.to_string()],
        connections,
        warmup,
        duration,
        transport,
    )
    .await
}

/// Like [`run`], each request to the next of `paths` in turn (a load
/// spread over many sources of one host).
pub async fn run_paths(
    addr: &str,
    paths: &[String],
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    let addrs = [addr.to_string()];
    run_spread(
        &addrs,
        paths,
        connections,
        warmup,
        duration,
        &Transport::Plain,
    )
    .await
}

async fn run_spread(
    addrs: &[String],
    paths: &[String],
    connections: usize,
    warmup: Duration,
    duration: Duration,
    transport: &Transport,
) -> LoadResult {
    let paths: Arc<[String]> = paths.into();
    let shared = match transport {
        Transport::Tls { shared: true, .. } => Some(Sender::connect(&addrs[0], transport).await),
        _ => None,
    };
    // Every run in this process has its own number in the keys and ids: a
    // host loaded twice (rounds of a benchmark) would otherwise see a
    // key again and answer it from its idempotency record, or drop an
    // event id it already stored, doing less work than a new request.
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let addr = addrs[c % addrs.len()].clone();
        let paths = paths.clone();
        let counter = counter.clone();
        let shared = shared.clone();
        let transport = transport.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut sender = match shared {
                Some(s) => s,
                None => Sender::connect(&addr, &transport).await,
            };
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let path = &paths[n as usize % paths.len()];
                let body = format!(
                    r#"{{"id":"bench-{run}-{c}-{n}","type":"bench.event","customer":"cus_0000000001","amount":4200,"currency":"eur","note":"a typical small webhook payload of about two hundred bytes....."}}"#
                );
                // HTTP/2 names the authority in the URI, HTTP/1.1 in `Host`.
                let req = match sender {
                    Sender::H2(_) => hyper::Request::post(format!("https://localhost{path}")),
                    Sender::H1(_) => hyper::Request::post(path).header("host", &addr),
                };
                let req = req
                    .header("content-type", "application/json")
                    .header("idempotency-key", format!("k-{run}-{c}-{n}"))
                    .body(Full::new(Bytes::from(body)))
                    .expect("request");
                let sent = Instant::now();
                let (ok, usable) = sender.send(req).await;
                if sent >= measure_from {
                    if ok {
                        latencies.push(sent.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
                if !usable {
                    break;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    LoadResult {
        requests: all.len() as u64,
        errors,
        seconds: duration.as_secs_f64(),
        latencies: all,
    }
}

/// The ceiling: a minimal hyper server that reads the body and answers 202.
pub async fn ceiling_server() -> String {
    static_server(
        hyper::StatusCode::ACCEPTED,
        br#"{"status":"accepted","events":1}"#,
    )
    .await
}

/// A minimal hyper server on a free loopback port that reads each
/// request's body and answers `status` with the JSON `body`; its address.
pub async fn static_server(status: hyper::StatusCode, body: &'static [u8]) -> String {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            stream.set_nodelay(true).ok();
            tokio::spawn(async move {
                let svc = service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        let mut resp = hyper::Response::new(Full::new(Bytes::from_static(body)));
                        *resp.status_mut() = status;
                        resp.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}
