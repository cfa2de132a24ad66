//! The HTTP surface: routing, the admin API (`/v1/*`), health and metrics.
//! The push path itself lives in [`crate::push`].

mod connectors;
pub mod reply;
mod streams;

use crate::host::Host;
use http::{Method, StatusCode};
use hyper::body::Incoming;
use reply::Resp;
use std::sync::Arc;

/// Routes one request.
pub async fn route(host: Arc<Host>, req: http::Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    if let ["ingest", source, rest @ ..] = segments.as_slice() {
        let rest = if rest.is_empty() {
            String::new()
        } else {
            format!("/{}", rest.join("/"))
        };
        return crate::push::handle(&host, source, &rest, req).await;
    }
    if segments.first() == Some(&"v1")
        && let Some(denied) = check_admin(&host, req.headers())
    {
        return denied;
    }
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => {
            reply::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
        }
        (&Method::GET, ["readyz"]) => {
            if host.ready() {
                reply::json(StatusCode::OK, &serde_json::json!({"status": "ready"}))
            } else {
                reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    "the first plugin scan has not finished",
                )
            }
        }
        (&Method::GET, ["metrics"]) => connectors::metrics(&host),
        (&Method::GET, ["v1", "streams", source, "events"]) => {
            streams::events(&host, source, req.uri().query()).await
        }
        (&Method::GET, ["v1", "connectors"]) => connectors::list(&host),
        (&Method::GET, ["v1", "connectors", name]) => connectors::show(&host, name),
        (&Method::POST, ["v1", "connectors", name, "resume"]) => connectors::resume(&host, name),
        (&Method::POST, ["v1", "connectors", name, "pull"]) => {
            connectors::pull_now(&host, name).await
        }
        (_, ["v1", "connectors", name, "checkpoint"]) => {
            connectors::checkpoint(&host, name, req).await
        }
        (&Method::POST, ["v1", "reload"]) => {
            let changed = crate::registry::rescan(&host).await;
            reply::json(StatusCode::OK, &serde_json::json!({"changed": changed}))
        }
        _ => reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no route for {method} {path}"),
        ),
    }
}

/// `None` when the request may use the admin API.
fn check_admin(host: &Host, headers: &http::HeaderMap) -> Option<Resp> {
    let token = host.admin_token.as_deref()?;
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    use subtle::ConstantTimeEq;
    if given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        None
    } else {
        Some(reply::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API needs `Authorization: Bearer <admin token>`",
        ))
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
