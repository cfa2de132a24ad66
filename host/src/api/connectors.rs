//! `/v1/connectors[/{name}[/pull|/checkpoint]]` and `/metrics`.

use super::Api;
use crate::metrics::{PullSample, Scrape, SourceSample};
use crate::registry::{Connector, PullState};
use crate::reply::{self, ApiError, Resp};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;

/// Checkpoints shown per page of a connector's status.
pub const CHECKPOINTS_PER_PAGE: usize = 100;

/// Characters of a checkpoint value shown in a status (the whole value is
/// at `GET /v1/connectors/{name}/checkpoint?partition=`).
pub const STATUS_VALUE_CHARS: usize = 256;

/// One page of a source's checkpoints in partition order (the unnamed
/// partition first), starting after partition `after`: the page, the
/// total, and the partition to pass as `checkpoints_after` for the next
/// page.
async fn checkpoint_page(
    api: &Api,
    name: &str,
    after: Option<&str>,
) -> (Vec<serde_json::Value>, usize, Option<String>) {
    let mut all = api.store.checkpoints(name).await.unwrap_or_default();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let total = all.len();
    let start = match after {
        Some(after) => all.partition_point(|(p, _)| p.as_deref().is_none_or(|p| p <= after)),
        None => 0,
    };
    let page: Vec<_> = all[start..]
        .iter()
        .take(CHECKPOINTS_PER_PAGE)
        .map(|(p, c)| {
            let value = c.value();
            let cut = value.chars().count() > STATUS_VALUE_CHARS;
            let shown: String = value.chars().take(STATUS_VALUE_CHARS).collect();
            serde_json::json!({
                "partition": p,
                "value": shown,
                "value_truncated": cut,
                "updated_ms": c.updated_ms(),
            })
        })
        .collect();
    let next = (start + page.len() < total)
        .then(|| all[start + page.len() - 1].0.clone())
        .flatten();
    (page, total, next)
}

async fn status(
    api: &Api,
    name: &str,
    connector: Option<&Arc<Connector>>,
    checkpoints_after: Option<&str>,
) -> serde_json::Value {
    let state = api.registry.source(name);
    let last_error = state.last_error();
    let (checkpoints, checkpoints_total, checkpoints_next) =
        checkpoint_page(api, name, checkpoints_after).await;
    let last_offset = api.store.last_offset(name).await.ok().flatten();
    let pull = state.pull.lock().expect("lock").clone();
    let dead_letters = api.store.dead_letter_stats(name).await.ok();
    if let Some(d) = dead_letters {
        api.metrics.dead_letters_now(name, d.count);
    }
    let mut v = serde_json::json!({
        "name": name,
        "last_error": last_error,
        "checkpoints": checkpoints,
        "checkpoints_total": checkpoints_total,
        "checkpoints_next": checkpoints_next,
        "counters": state.counters.snapshot(),
        "reloads": state.counters.reloads.load(std::sync::atomic::Ordering::Relaxed),
        "last_offset": last_offset,
        "dead_letters": dead_letters,
        "history": state.history.snapshot(crate::store::now_ms()),
    });
    match connector {
        Some(c) => {
            let mut modes = Vec::new();
            if c.descriptor.push {
                modes.push("push");
            }
            if c.descriptor.pull {
                modes.push("pull");
            }
            let quarantine = state.quarantine_status(&c.sandbox);
            let reload_error = state.reload_error();
            let st = if quarantine.is_some() {
                "quarantined"
            } else if reload_error.is_some() {
                // The files on disk failed to load: the previous version
                // serves, and the operator should know it is not theirs.
                "stale"
            } else if pull.state == Some(PullState::Failing)
                || state.push_failing()
                || (last_error.is_some() && pull.state != Some(PullState::Ok))
            {
                "failing"
            } else {
                "loaded"
            };
            let extra = serde_json::json!({
                "state": st,
                "reload_error": reload_error,
                "quarantine": quarantine,
                "version": c.descriptor.version,
                "description": c.descriptor.description,
                "hash": format!("sha256:{}", c.hash),
                "label": c.label,
                "modes": modes,
                "schedule": c.descriptor.schedule,
                "loaded_at_ms": c.loaded_at_ms,
                "wasm": c.wasm_path,
                "manifest": c.manifest_path,
                "pull": if c.descriptor.pull { serde_json::to_value(&pull).expect("status serializes") } else { serde_json::Value::Null },
            });
            merge(&mut v, extra);
        }
        None => merge(
            &mut v,
            serde_json::json!({"state": if last_error.is_some() { "failed" } else { "removed" }}),
        ),
    }
    v
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

pub async fn list(api: &Api) -> Resp {
    let loaded: std::collections::HashMap<String, Arc<Connector>> = api
        .registry
        .all()
        .into_iter()
        .map(|c| (c.name.to_string(), c))
        .collect();
    let names = api.registry.listed_sources();
    let mut items = Vec::with_capacity(names.len());
    for n in &names {
        items.push(status(api, n, loaded.get(n.as_str()), None).await);
    }
    reply::json(StatusCode::OK, &serde_json::json!({ "connectors": items }))
}

/// `GET /v1/connectors/{name}[?checkpoints_after=P]`.
pub async fn show(api: &Api, name: &str, query: Option<&str>) -> Result<Resp, ApiError> {
    let connector = api.registry.get(name);
    if connector.is_none() && !api.registry.known_sources().iter().any(|n| n == name) {
        return Err(ApiError::UnknownSource(name.to_string()));
    }
    let after = super::query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "checkpoints_after")
        .map(|(_, v)| v);
    let mut v = status(api, name, connector.as_ref(), after.as_deref()).await;
    // The serving version's manifest as written: settings and the names
    // of secrets (a manifest holds names, never values).
    if connector.is_some() {
        merge(
            &mut v,
            serde_json::json!({"manifest_text": api.registry.source(name).manifest_text()}),
        );
    }
    Ok(reply::json(StatusCode::OK, &v))
}

/// `POST /v1/connectors/{name}/resume`: lifts a quarantine.
pub fn resume(api: &Api, name: &str) -> Result<Resp, ApiError> {
    if api.registry.get(name).is_none() {
        return Err(ApiError::UnknownSource(name.to_string()));
    }
    let was = api.registry.source(name).resume();
    tracing::info!(connector = %name, was_quarantined = was, "Connector resumed by the operator.");
    Ok(reply::json(
        StatusCode::OK,
        &serde_json::json!({"status": "resumed", "was_quarantined": was}),
    ))
}

pub async fn pull_now(api: &Api, name: &str) -> Result<Resp, ApiError> {
    let Some(connector) = api.registry.get(name) else {
        return Err(ApiError::UnknownSource(name.to_string()));
    };
    if !connector.descriptor.pull {
        return Err(ApiError::PullDisabled(name.to_string()));
    }
    match crate::pull::run_once(&api.scheduler, &connector).await {
        Ok(summary) => {
            // A manual run tells the truth in the pull status like a
            // scheduled one (the schedule's own next run overwrites it).
            let state = api.registry.source(name);
            {
                let mut pull = state.pull.lock().expect("lock");
                pull.state = Some(PullState::Ok);
                pull.last_pull_ms = Some(crate::store::now_ms());
                pull.consecutive_failures = 0;
                pull.last_error = None;
            }
            state.set_error(None);
            Ok(reply::json(
                StatusCode::OK,
                &serde_json::json!({"status": "ok", "run": summary}),
            ))
        }
        Err(err) => {
            let state = api.registry.source(name);
            {
                let mut pull = state.pull.lock().expect("lock");
                pull.state = Some(if err.is_permanent() {
                    PullState::Failing
                } else {
                    PullState::Backoff
                });
                pull.last_pull_ms = Some(crate::store::now_ms());
                pull.last_error = Some(err.to_string());
            }
            state.set_error(Some(err.to_string()));
            Err(ApiError::PullFailed(err.to_string()))
        }
    }
}

pub async fn checkpoint(
    api: &Api,
    name: &str,
    req: http::Request<Incoming>,
) -> Result<Resp, ApiError> {
    if api.registry.get(name).is_none() && !api.registry.known_sources().iter().any(|n| n == name) {
        return Err(ApiError::UnknownSource(name.to_string()));
    }
    let partition = super::query_pairs(req.uri().query())
        .into_iter()
        .find(|(k, _)| k == "partition")
        .map(|(_, v)| v);
    let p = partition.as_deref();
    const SHAPE: &str = "{\"value\": \"<checkpoint>\"}";
    let value = match *req.method() {
        Method::GET => {
            let c = api
                .store
                .checkpoint(name, p)
                .await
                .map_err(ApiError::Store)?
                .ok_or(ApiError::NoCheckpoint)?;
            return Ok(reply::json(
                StatusCode::OK,
                &serde_json::json!({"partition": p, "value": c.value(), "updated_ms": c.updated_ms()}),
            ));
        }
        Method::PUT => {
            let body = http_body_util::Limited::new(req.into_body(), 64 * 1024)
                .collect()
                .await
                .map_err(|_| ApiError::BodyTooLarge { max: 64 * 1024 })?
                .to_bytes();
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(serde_json::Value::Object(o)) => match o.get("value") {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    _ => return Err(ApiError::BadBody(SHAPE)),
                },
                _ => return Err(ApiError::BadBody(SHAPE)),
            }
        }
        Method::DELETE => None,
        _ => {
            return Err(ApiError::MethodNotAllowed {
                method: req.method().to_string(),
                path: req.uri().path().to_string(),
                allowed: vec!["GET", "PUT", "DELETE"],
            });
        }
    };
    let lock = api.registry.source(name).partition_lock(p);
    let _g = lock.lock().await;
    api.store
        .set_checkpoint(name, p, value.clone())
        .await
        .map_err(ApiError::Store)?;
    Ok(reply::json(
        StatusCode::OK,
        &serde_json::json!({"partition": p, "value": value}),
    ))
}

/// Prometheus text format: the host's metrics registry and the values
/// sampled for this scrape (`metrics.rs`).
pub async fn metrics(api: &Api) -> Resp {
    let now = crate::store::now_ms();
    let mut sources = Vec::new();
    for name in api.registry.known_sources() {
        let state = api.registry.source(&name);
        let pull = {
            let status = state.pull.lock().expect("lock");
            (status.state.is_some() || status.next_pull_ms.is_some()).then(|| PullSample {
                consecutive_failures: status.consecutive_failures,
                next_attempt_secs: status.next_pull_ms.map(|ms| ms as f64 / 1000.0),
                interval_secs: status.interval_ms.map(|ms| ms as f64 / 1000.0),
            })
        };
        let checkpoint_ages = api
            .store
            .checkpoints(&name)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(partition, cp)| {
                (
                    partition.unwrap_or_default(),
                    now.saturating_sub(cp.updated_ms()) as f64 / 1000.0,
                )
            })
            .collect();
        sources.push(SourceSample {
            counters: state.metric_counters(),
            failures: state.failure_counts(),
            quarantines: state.quarantine_count(),
            pull,
            checkpoint_ages,
            source: name,
        });
    }
    let cache = api.registry.cache();
    let scrape = Scrape {
        sources,
        store_bytes: api.store.size_on_disk(),
        connectors_loaded: api.registry.all().len() as u64,
        push_in_flight: (api.ingest.limits.max_in_flight as usize
            - api.ingest.slots.available_permits()) as u64,
        cache_hits: cache.hits(),
        cache_misses: cache.misses(),
    };
    reply::text(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        api.metrics.encode(scrape),
    )
}
