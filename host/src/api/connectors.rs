//! `/v1/connectors[/{name}[/pull|/checkpoint]]` and `/metrics`.

use super::Api;
use crate::registry::Connector;
use crate::reply::{self, Resp};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::fmt::Write as _;
use std::sync::Arc;

async fn status(api: &Api, name: &str, connector: Option<&Arc<Connector>>) -> serde_json::Value {
    let state = api.registry.source(name);
    let last_error = state.last_error();
    let checkpoints: Vec<_> = api
        .store
        .checkpoints(name)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(p, c)| serde_json::json!({"partition": p, "value": c.value(), "updated_ms": c.updated_ms()}))
        .collect();
    let last_offset = api.store.last_offset(name).await.ok().flatten();
    let pull = state.pull.lock().expect("lock").clone();
    let mut v = serde_json::json!({
        "name": name,
        "last_error": last_error,
        "checkpoints": checkpoints,
        "counters": state.counters.snapshot(),
        "reloads": state.counters.reloads.load(std::sync::atomic::Ordering::Relaxed),
        "last_offset": last_offset,
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
            let st = if quarantine.is_some() {
                "quarantined"
            } else if pull.state == "failing" || (last_error.is_some() && pull.state != "ok") {
                "failing"
            } else {
                "loaded"
            };
            let extra = serde_json::json!({
                "state": st,
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
    let loaded = api.registry.all();
    let mut names: Vec<String> = loaded.iter().map(|c| c.name.clone()).collect();
    for n in api.registry.known_sources() {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names.sort();
    let mut items = Vec::with_capacity(names.len());
    for n in &names {
        items.push(status(api, n, loaded.iter().find(|c| &c.name == n)).await);
    }
    reply::json(StatusCode::OK, &serde_json::json!({ "connectors": items }))
}

pub async fn show(api: &Api, name: &str) -> Resp {
    let connector = api.registry.get(name);
    if connector.is_none() && !api.registry.known_sources().iter().any(|n| n == name) {
        return reply::unknown_source(name);
    }
    reply::json(StatusCode::OK, &status(api, name, connector.as_ref()).await)
}

/// `POST /v1/connectors/{name}/resume`: lifts a quarantine.
pub fn resume(api: &Api, name: &str) -> Resp {
    if api.registry.get(name).is_none() {
        return reply::unknown_source(name);
    }
    let was = api.registry.source(name).resume();
    tracing::info!(connector = %name, was_quarantined = was, "Connector resumed by the operator.");
    reply::json(
        StatusCode::OK,
        &serde_json::json!({"status": "resumed", "was_quarantined": was}),
    )
}

pub async fn pull_now(api: &Api, name: &str) -> Resp {
    let Some(connector) = api.registry.get(name) else {
        return reply::unknown_source(name);
    };
    if !connector.descriptor.pull {
        return reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "pull_disabled",
            &format!("connector `{name}` does not support pull"),
        );
    }
    match crate::pull::run_once(&api.scheduler, &connector).await {
        Ok(summary) => reply::json(
            StatusCode::OK,
            &serde_json::json!({"status": "ok", "run": summary}),
        ),
        Err(err) => {
            api.registry.source(name).set_error(Some(err.to_string()));
            reply::error(StatusCode::BAD_GATEWAY, "pull_failed", &err.to_string())
        }
    }
}

pub async fn checkpoint(api: &Api, name: &str, req: http::Request<Incoming>) -> Resp {
    if api.registry.get(name).is_none() && !api.registry.known_sources().iter().any(|n| n == name) {
        return reply::unknown_source(name);
    }
    let partition = super::query_pairs(req.uri().query())
        .into_iter()
        .find(|(k, _)| k == "partition")
        .map(|(_, v)| v);
    let p = partition.as_deref();
    match *req.method() {
        Method::GET => match api.store.checkpoint(name, p).await {
            Ok(Some(c)) => reply::json(
                StatusCode::OK,
                &serde_json::json!({"partition": p, "value": c.value(), "updated_ms": c.updated_ms()}),
            ),
            Ok(None) => reply::error(
                StatusCode::NOT_FOUND,
                "no_checkpoint",
                "this partition has no checkpoint yet",
            ),
            Err(err) => reply::store_failed(&err),
        },
        Method::PUT => {
            let body = match http_body_util::Limited::new(req.into_body(), 64 * 1024)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return reply::error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "a checkpoint body is at most 64 KiB",
                    );
                }
            };
            let value = match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(serde_json::Value::Object(o)) => match o.get("value") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    _ => {
                        return reply::error(
                            StatusCode::BAD_REQUEST,
                            "invalid",
                            "the body is `{\"value\": \"<checkpoint>\"}`",
                        );
                    }
                },
                _ => {
                    return reply::error(
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        "the body is `{\"value\": \"<checkpoint>\"}`",
                    );
                }
            };
            let lock = api.registry.source(name).partition_lock(p);
            let _g = lock.lock().await;
            match api.store.set_checkpoint(name, p, Some(value.clone())).await {
                Ok(()) => reply::json(
                    StatusCode::OK,
                    &serde_json::json!({"partition": p, "value": value}),
                ),
                Err(err) => reply::store_failed(&err),
            }
        }
        Method::DELETE => {
            let lock = api.registry.source(name).partition_lock(p);
            let _g = lock.lock().await;
            match api.store.set_checkpoint(name, p, None).await {
                Ok(()) => reply::json(
                    StatusCode::OK,
                    &serde_json::json!({"partition": p, "value": null}),
                ),
                Err(err) => reply::store_failed(&err),
            }
        }
        _ => reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET, PUT or DELETE",
        ),
    }
}

/// Prometheus text format.
pub async fn metrics(api: &Api) -> Resp {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = String::new();
    let sources = api.registry.known_sources();
    type Getter = fn(&crate::registry::Counters) -> u64;
    let counters: [(&str, &str, Getter); 12] = [
        (
            "inlet_push_accepted_total",
            "Push requests accepted.",
            |c| c.push_accepted.load(Relaxed),
        ),
        (
            "inlet_push_duplicate_total",
            "Push requests answered as duplicates.",
            |c| c.push_duplicate.load(Relaxed),
        ),
        (
            "inlet_push_rejected_total",
            "Push requests rejected before storing.",
            |c| c.push_rejected.load(Relaxed),
        ),
        (
            "inlet_push_failed_total",
            "Push calls that trapped or overran.",
            |c| c.push_failed.load(Relaxed),
        ),
        ("inlet_events_push_total", "Events stored from push.", |c| {
            c.events_push.load(Relaxed)
        }),
        ("inlet_events_pull_total", "Events stored from pull.", |c| {
            c.events_pull.load(Relaxed)
        }),
        (
            "inlet_events_deduplicated_total",
            "Events dropped as already stored.",
            |c| c.events_deduplicated.load(Relaxed),
        ),
        ("inlet_pull_runs_total", "Pull runs started.", |c| {
            c.pull_runs.load(Relaxed)
        }),
        ("inlet_pull_failures_total", "Pull runs that failed.", |c| {
            c.pull_failures.load(Relaxed)
        }),
        ("inlet_reloads_total", "Connector versions loaded.", |c| {
            c.reloads.load(Relaxed)
        }),
        (
            "inlet_events_trimmed_total",
            "Events removed by retention.",
            |c| c.events_trimmed.load(Relaxed),
        ),
        (
            "inlet_events_trimmed_forced_total",
            "Events removed by max_bytes before a consumer cursor reached them.",
            |c| c.events_trimmed_forced.load(Relaxed),
        ),
    ];
    for (metric, help, get) in counters {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for s in &sources {
            let _ = writeln!(
                out,
                "{metric}{{source=\"{s}\"}} {}",
                get(&api.registry.source(s).counters)
            );
        }
    }
    let states: Vec<_> = sources
        .iter()
        .map(|s| (s.clone(), api.registry.source(s)))
        .collect();
    crate::registry::SourceState::write_sandbox_metrics(&mut out, &states);
    crate::pull::write_metrics(&mut out, &states);
    let _ = writeln!(
        out,
        "# HELP inlet_store_bytes Bytes the store uses on disk.\n# TYPE inlet_store_bytes gauge\ninlet_store_bytes {}",
        api.store.size_on_disk()
    );
    let _ = writeln!(
        out,
        "# HELP inlet_connectors_loaded Connectors loaded.\n# TYPE inlet_connectors_loaded gauge\ninlet_connectors_loaded {}",
        api.registry.all().len()
    );
    let _ = writeln!(
        out,
        "# HELP inlet_push_in_flight Push requests being processed.\n# TYPE inlet_push_in_flight gauge\ninlet_push_in_flight {}",
        api.ingest.limits.max_in_flight as usize - api.ingest.slots.available_permits()
    );
    let cache = api.registry.cache();
    let _ = writeln!(
        out,
        "# HELP inlet_component_cache_hits_total Components loaded from the compiled-component cache.\n# TYPE inlet_component_cache_hits_total counter\ninlet_component_cache_hits_total {}\n# HELP inlet_component_cache_misses_total Components compiled because the cache had no valid entry.\n# TYPE inlet_component_cache_misses_total counter\ninlet_component_cache_misses_total {}",
        cache.hits(),
        cache.misses()
    );
    let _ = writeln!(
        out,
        "# HELP inlet_checkpoint_age_seconds Time since a checkpoint last moved.\n# TYPE inlet_checkpoint_age_seconds gauge"
    );
    let now = crate::store::now_ms();
    for s in &sources {
        for (partition, cp) in api.store.checkpoints(s).await.unwrap_or_default() {
            let _ = writeln!(
                out,
                "inlet_checkpoint_age_seconds{{source=\"{s}\",partition=\"{}\"}} {:.3}",
                partition
                    .unwrap_or_default()
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n"),
                now.saturating_sub(cp.updated_ms()) as f64 / 1000.0
            );
        }
    }
    api.metrics.encode(&mut out);
    reply::text(StatusCode::OK, "text/plain; version=0.0.4", out)
}
