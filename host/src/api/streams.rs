//! `GET /v1/streams/{source}/events?after=OFFSET&limit=N&wait=SECONDS`.

use super::reply::{self, Resp};
use crate::host::Host;
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;
const MAX_WAIT: Duration = Duration::from_secs(60);

pub async fn events(host: &Arc<Host>, source: &str, query: Option<&str>) -> Resp {
    let mut after = None;
    let mut limit = DEFAULT_LIMIT;
    let mut wait = Duration::ZERO;
    for (k, v) in super::query_pairs(query) {
        let bad = |what: &str| {
            reply::error(
                StatusCode::BAD_REQUEST,
                "bad_query",
                &format!("`{k}={v}`: {what}"),
            )
        };
        match k.as_str() {
            "after" => match v.parse::<u64>() {
                Ok(o) => after = Some(o),
                Err(_) => return bad("`after` is an offset, a whole number"),
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => return bad(&format!("`limit` is a number from 1 to {MAX_LIMIT}")),
            },
            "wait" => match v.parse::<f64>() {
                Ok(s) if (0.0..=MAX_WAIT.as_secs_f64()).contains(&s) => {
                    wait = Duration::from_secs_f64(s)
                }
                _ => {
                    return bad(&format!(
                        "`wait` is a number of seconds from 0 to {}",
                        MAX_WAIT.as_secs()
                    ));
                }
            },
            _ => return bad("unknown parameter; use `after`, `limit` and `wait`"),
        }
    }
    let known = host.registry.get(source).is_some()
        || matches!(host.store.last_offset(source), Ok(Some(_)));
    if !known {
        return reply::error(
            StatusCode::NOT_FOUND,
            "unknown_source",
            &format!("no connector is loaded for source `{source}` and it has no events"),
        );
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut commits = host.store.subscribe();
    loop {
        // Mark the current commit as seen before reading, so a commit that
        // lands between the read and the wait still wakes us.
        commits.borrow_and_update();
        let lines = match host.store.read(source, after, limit) {
            Ok(l) => l,
            Err(err) => return reply::store_failed(&err),
        };
        if !lines.is_empty() || tokio::time::Instant::now() >= deadline {
            let mut body = Vec::with_capacity(lines.iter().map(|(_, l)| l.len() + 1).sum());
            for (_, line) in &lines {
                body.extend_from_slice(line);
                body.push(b'\n');
            }
            let mut resp = reply::text(StatusCode::OK, "application/x-ndjson", body);
            if let Some((last, _)) = lines.last() {
                resp.headers_mut()
                    .insert("inlet-last-offset", http::HeaderValue::from(*last));
            }
            return resp;
        }
        tokio::select! {
            changed = commits.changed() => if changed.is_err() { return reply::error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the host is shutting down") },
            _ = tokio::time::sleep_until(deadline) => {}
            _ = host.shutdown.cancelled() => {}
        }
    }
}
