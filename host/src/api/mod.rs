//! The HTTP surface: routing, the admin API (`/v1/*`), health and metrics.
//! The push path itself lives in [`crate::push`].

mod connectors;
mod console;
mod dead_letters;
pub mod routes;
mod streams;
mod tokens;

pub(crate) use tokens::{Tokens, tokens};

use crate::metrics::Metrics;
use crate::pull::Scheduler;
use crate::push::Ingest;
use crate::registry::Registry;
use crate::reply::{self, ApiError, Resp};
use crate::store::Store;
use http::StatusCode;
use hyper::body::Incoming;
use routes::RouteId;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokens::check_bearer;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// What the HTTP surface needs: the push path, the pull engine (manual
/// pulls), the registry and store (status, checkpoints, streams), the
/// tokens, and the caps and signals of the admin routes.
pub struct Api {
    pub(crate) ingest: Ingest,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tokens: Tokens,
    /// Long polls waiting at once (`limits.max_long_polls`).
    pub(crate) long_polls: Arc<Semaphore>,
    /// Set once the store is open and the first plugin scan finished.
    pub(crate) ready: AtomicBool,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: CancellationToken,
}

impl Api {
    /// Ready once the store is open and the first plugin scan finished.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Which routes a listener serves (a request carries its listener's as an
/// extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Everything (no `admin_listen`).
    All,
    /// `/ingest` and the health checks (`listen` beside an `admin_listen`).
    Ingest,
    /// `/v1`, `/metrics`, `/console` and the health checks (`admin_listen`).
    Admin,
}

/// Routes one request through the [`routes::ROUTES`] table; every error
/// is an [`ApiError`], rendered in `reply.rs`.
pub async fn route(api: Arc<Api>, req: http::Request<Incoming>) -> Resp {
    dispatch(&api, req)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn dispatch(api: &Api, req: http::Request<Incoming>) -> Result<Resp, ApiError> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    // A listener beside an `admin_listen` serves no admin route, and the
    // admin listener no ingest: a route of the other surface is no route.
    let surface = req
        .extensions()
        .get::<Surface>()
        .copied()
        .unwrap_or(Surface::All);
    let admin_route = path.starts_with("/v1/")
        || path == "/metrics"
        || path == "/console"
        || path.starts_with("/console/");
    let ingest_route = path.starts_with("/ingest/");
    if (surface == Surface::Ingest && admin_route) || (surface == Surface::Admin && ingest_route) {
        return Err(ApiError::NoRoute {
            method: method.to_string(),
            path,
        });
    }
    // A browser says where a request comes from: another site's page
    // may not drive the admin API or the console (cross-site request
    // forgery against a token-less loopback host, or a page in the
    // operator's browser). Clients that are not browsers send no such
    // header.
    if admin_route
        && req
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|site| !matches!(site, "same-origin" | "none"))
    {
        return Err(ApiError::CrossSite);
    }
    let (id, params) = match routes::find(&method, &path) {
        routes::Match::Found(id, params) => (
            id,
            params.into_iter().map(str::to_string).collect::<Vec<_>>(),
        ),
        routes::Match::MethodNotAllowed(allowed) => {
            return Err(ApiError::MethodNotAllowed {
                method: method.to_string(),
                path,
                allowed,
            });
        }
        routes::Match::NotFound => {
            return Err(ApiError::NoRoute {
                method: method.to_string(),
                path,
            });
        }
    };
    if path.starts_with("/v1/") {
        // Consumers (stream reads and their cursors) may use the consumer
        // token instead of the admin token; everything else needs the
        // admin token.
        let consumer_route = matches!(id, RouteId::StreamEvents | RouteId::Cursor);
        let admin = check_bearer(api.tokens.admin.as_deref(), req.headers(), "the admin API");
        let consumer_ok = consumer_route
            && api.tokens.consumer.is_some()
            && check_bearer(api.tokens.consumer.as_deref(), req.headers(), "").is_ok();
        if !consumer_ok {
            admin?;
        }
    }
    if id == RouteId::Metrics {
        check_bearer(api.tokens.metrics.as_deref(), req.headers(), "/metrics")?;
    }
    let p = |i: usize| params[i].as_str();
    match id {
        RouteId::Ingest => {
            let rest = params.get(1).map(|r| format!("/{r}")).unwrap_or_default();
            // A name that cannot be a source has no connector: the same
            // 404 as an unknown one.
            let source = crate::config::SourceName::parse(p(0))
                .ok_or_else(|| ApiError::UnknownSource(p(0).to_string()))?;
            Ok(crate::push::handle(&api.ingest, &source, &rest, req).await)
        }
        RouteId::Healthz => Ok(reply::json(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
        )),
        RouteId::Readyz => {
            if !api.ready() {
                return Err(ApiError::NotReady);
            }
            // A load balancer sends pushes to hosts whose store works.
            api.store.available().map_err(ApiError::StoreDown)?;
            Ok(reply::json(
                StatusCode::OK,
                &serde_json::json!({"status": "ready"}),
            ))
        }
        RouteId::Metrics => Ok(connectors::metrics(api).await),
        RouteId::OpenApi => Ok(reply::text(
            StatusCode::OK,
            "application/json",
            routes::OPENAPI,
        )),
        RouteId::StreamEvents => streams::events(api, p(0), req.uri().query()).await,
        RouteId::Cursor => streams::cursor(api, p(0), p(1), req).await,
        RouteId::Connectors => Ok(connectors::list(api).await),
        RouteId::Connector => connectors::show(api, p(0), req.uri().query()).await,
        RouteId::Resume => connectors::resume(api, p(0)),
        RouteId::Pull => connectors::pull_now(api, p(0)).await,
        RouteId::Checkpoint => connectors::checkpoint(api, p(0), req).await,
        RouteId::DeadLetters if method == http::Method::DELETE => {
            dead_letters::discard_all(api, p(0), req.uri().query()).await
        }
        RouteId::DeadLetters => dead_letters::list(api, p(0), req.uri().query()).await,
        RouteId::DeadLettersReplay => dead_letters::replay_all(api, p(0), req.uri().query()).await,
        RouteId::DeadLetter if method == http::Method::DELETE => {
            dead_letters::discard(api, p(0), p(1)).await
        }
        RouteId::DeadLetter => dead_letters::show(api, p(0), p(1)).await,
        RouteId::DeadLetterReplay => dead_letters::replay(api, p(0), p(1), req.uri().query()).await,
        RouteId::Console => Ok(console::page()),
        RouteId::ConsoleAsset => console::asset(p(0)),
        RouteId::Reload => {
            let changed = api.registry.scan().await;
            Ok(reply::json(
                StatusCode::OK,
                &serde_json::json!({"changed": changed}),
            ))
        }
    }
}

/// Parses a query string into pairs (percent-decoded).
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = query_pairs(Some("after=3&partition=a%2Fb&x=1+2&bad=%zz&end=%4"));
        assert_eq!(q[0], ("after".into(), "3".into()));
        assert_eq!(q[1].1, "a/b");
        assert_eq!(q[2].1, "1 2");
        assert_eq!(q[3].1, "%zz");
        assert_eq!(q[4].1, "%4");
    }
}
