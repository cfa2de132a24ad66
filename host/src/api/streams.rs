//! `GET /v1/streams/{source}/events?after=OFFSET&limit=N&wait=SECONDS`.

use super::Api;
use crate::reply::{self, ApiError, Resp};
use http::StatusCode;
use std::time::Duration;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;
const MAX_WAIT: Duration = Duration::from_secs(60);

pub async fn events(api: &Api, source: &str, query: Option<&str>) -> Result<Resp, ApiError> {
    let mut after = None;
    let mut limit = DEFAULT_LIMIT;
    let mut wait = Duration::ZERO;
    for (k, v) in super::query_pairs(query) {
        let bad = |what: &str| Err(ApiError::BadQuery(format!("`{k}={v}`: {what}")));
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
    let known = api.registry.get(source).is_some()
        || matches!(api.store.last_offset(source).await, Ok(Some(_)));
    if !known {
        return Err(ApiError::UnknownStream(source.to_string()));
    }
    // A long poll holds a connection and a waiter: their number is capped.
    let _waiting = if wait.is_zero() {
        None
    } else {
        match api.long_polls.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => return Err(ApiError::TooManyWaits),
        }
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut commits = api.store.subscribe(source);
    loop {
        // Mark the current commit as seen before reading, so a commit that
        // lands between the read and the wait still wakes us.
        commits.borrow_and_update();
        let lines = api
            .store
            .read(source, after, limit)
            .await
            .map_err(ApiError::Store)?;
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
            return Ok(resp);
        }
        tokio::select! {
            changed = commits.changed() => {
                if changed.is_err() {
                    return Err(ApiError::ShuttingDown);
                }
                api.metrics.long_poll_woken(source);
            }
            _ = tokio::time::sleep_until(deadline) => {}
            // Shutting down: answer what there is (nothing) now.
            _ = api.shutdown.cancelled() => return Ok(reply::text(StatusCode::OK, "application/x-ndjson", Vec::new())),
        }
    }
}

/// `GET`/`PUT /v1/streams/{source}/cursors/{name}`.
pub async fn cursor(
    api: &Api,
    source: &str,
    name: &str,
    req: http::Request<hyper::body::Incoming>,
) -> Result<Resp, ApiError> {
    use http_body_util::BodyExt;
    if !crate::config::valid_source_name(name) {
        return Err(ApiError::BadCursorName);
    }
    let known = api.registry.get(source).is_some()
        || matches!(api.store.last_offset(source).await, Ok(Some(_)));
    if !known {
        return Err(ApiError::UnknownStream(source.to_string()));
    }
    if req.method() == http::Method::GET {
        let offset = api
            .store
            .cursor(source, name)
            .await
            .map_err(ApiError::Store)?
            .ok_or_else(|| ApiError::UnknownCursor {
                source: source.to_string(),
                name: name.to_string(),
            })?;
        return Ok(reply::json(
            StatusCode::OK,
            &serde_json::json!({"name": name, "offset": offset}),
        ));
    }
    let body = http_body_util::Limited::new(req.into_body(), 4096)
        .collect()
        .await
        .map_err(|_| ApiError::BodyTooLarge { max: 4096 })?
        .to_bytes();
    let offset = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("offset").and_then(|o| o.as_u64()))
        .ok_or(ApiError::BadBody("{\"offset\": <whole number>}"))?;
    api.store
        .set_cursor(source, name, offset)
        .await
        .map_err(ApiError::Store)?;
    Ok(reply::json(
        StatusCode::OK,
        &serde_json::json!({"name": name, "offset": offset}),
    ))
}
