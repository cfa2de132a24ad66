//! An in-process HTTP "source" on 127.0.0.1 for pull tests: a handler
//! closure decides every answer, and the server records what it saw.

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// One request as the source saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    /// When the request arrived.
    pub at: std::time::Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A canned answer.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(status: u16, v: serde_json::Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
        }
    }
}

type Handler = dyn Fn(Seen) -> futures::future::BoxFuture<'static, Answer> + Send + Sync;

/// A running source server; stops when dropped.
pub struct SourceServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SourceServer {
    pub async fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> SourceServer {
        Self::start_async(move |seen| {
            let answer = handler(&seen);
            Box::pin(async move { answer })
        })
        .await
    }

    /// Like [`SourceServer::start`], with a handler that may wait (hold a
    /// request open, block until the test says so). The request is recorded
    /// when it arrives, before the handler answers.
    pub async fn start_async(
        handler: impl Fn(Seen) -> futures::future::BoxFuture<'static, Answer> + Send + Sync + 'static,
    ) -> SourceServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(
            listener,
            Arc::new(handler),
            Arc::new(Mutex::new(Vec::new())),
        )
    }

    /// Stops this server, so that connections to its port are refused, and
    /// returns its address for [`SourceServer::start_async_on`].
    pub fn halt(self) -> SocketAddr {
        self.addr
    }

    /// Starts a server again on `addr` (after [`SourceServer::halt`] or a
    /// drop), retrying while the old listener is being closed.
    pub async fn start_async_on(
        addr: SocketAddr,
        handler: impl Fn(Seen) -> futures::future::BoxFuture<'static, Answer> + Send + Sync + 'static,
    ) -> SourceServer {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                // The old listener closes when its aborted task is dropped.
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) => panic!("cannot listen on {addr} again: {e}"),
            }
        };
        Self::serve(
            listener,
            Arc::new(handler),
            Arc::new(Mutex::new(Vec::new())),
        )
    }

    fn serve(
        listener: TcpListener,
        handler: Arc<Handler>,
        seen: Arc<Mutex<Vec<Seen>>>,
    ) -> SourceServer {
        let addr = listener.local_addr().unwrap();
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        let seen = seen.clone();
                        async move {
                            let s = Seen {
                                method: req.method().to_string(),
                                path: req.uri().path().to_string(),
                                query: req.uri().query().map(str::to_string),
                                headers: req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or("").to_string())
                                    })
                                    .collect(),
                                at: std::time::Instant::now(),
                            };
                            seen.lock().unwrap().push(s.clone());
                            let answer = handler(s).await;
                            let mut resp =
                                hyper::Response::new(Full::new(Bytes::from(answer.body)));
                            *resp.status_mut() =
                                hyper::StatusCode::from_u16(answer.status).unwrap();
                            for (k, v) in answer.headers {
                                resp.headers_mut().insert(
                                    hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                    v.parse().unwrap(),
                                );
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        SourceServer { addr, seen, task }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for SourceServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
