//! A keep-alive HTTP/1.1 load generator over hyper: N connections, each
//! sending requests back to back for a fixed time after a warm-up.

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

/// Runs `connections` clients against `addr` posting to `path`.
pub async fn run(
    addr: &str,
    path: &str,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    run_over(&[addr.to_string()], path, connections, warmup, duration).await
}

/// Like [`run`], with the connections spread round-robin over `addrs` (a
/// load balancer in front of several hosts); keys and ids stay unique.
pub async fn run_over(
    addrs: &[String],
    path: &str,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let addr = addrs[c % addrs.len()].clone();
        let path = path.to_string();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).ok();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let body = format!(
                    r#"{{"id":"bench-{c}-{n}","type":"bench.event","customer":"cus_0000000001","amount":4200,"currency":"eur","note":"a typical small webhook payload of about two hundred bytes....."}}"#
                );
                let req = hyper::Request::post(&path)
                    .header("host", &addr)
                    .header("content-type", "application/json")
                    .header("idempotency-key", format!("k-{c}-{n}"))
                    .body(Full::new(Bytes::from(body)))
                    .expect("request");
                let sent = Instant::now();
                let ok = match sender.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.into_body().collect().await;
                        ok
                    }
                    Err(_) => false,
                };
                if sent >= measure_from {
                    if ok {
                        latencies.push(sent.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
                if !ok && sender.ready().await.is_err() {
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
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let mut resp = hyper::Response::new(Full::new(Bytes::from_static(
                        br#"{"status":"accepted","events":1}"#,
                    )));
                    *resp.status_mut() = hyper::StatusCode::ACCEPTED;
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}
