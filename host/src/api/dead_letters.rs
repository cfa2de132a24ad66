//! `/v1/connectors/{name}/dead-letters[/{id}[/replay]|/replay]`: list,
//! show, replay and discard a source's dead letters (see `push::dead`).

use super::{Api, query_pairs};
use crate::config::DeadLetterClass;
use crate::config::SourceName;
use crate::push::dead::{self, MAX_REPLAY};
use crate::reply::{self, ApiError, Resp};
use crate::store::{DeadLetter, DeadLetterFilter};
use base64::Engine as _;
use http::StatusCode;

/// Letters per page by default, and at most.
const PAGE: usize = 100;
const PAGE_MAX: usize = 500;

/// A source name that may have letters: loaded now, or known to the
/// registry (its file went, its letters stay until discarded).
fn source(api: &Api, name: &str) -> Result<SourceName, ApiError> {
    let known =
        api.registry.get(name).is_some() || api.registry.known_sources().iter().any(|n| n == name);
    SourceName::parse(name)
        .filter(|_| known)
        .ok_or_else(|| ApiError::UnknownSource(name.to_string()))
}

/// The filter, `after` and `limit` of a query string.
fn filter(query: Option<&str>) -> Result<(DeadLetterFilter, Option<String>, usize), ApiError> {
    let mut f = DeadLetterFilter::default();
    let (mut after, mut limit) = (None, PAGE);
    let ms = |k: &str, v: &str| {
        v.parse::<u64>().map_err(|_| {
            ApiError::BadQuery(format!(
                "`{k}` is a time in milliseconds since the Unix epoch, not `{v}`"
            ))
        })
    };
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "class" => {
                if DeadLetterClass::parse(&v).is_none() && v != "overloaded" {
                    return Err(ApiError::BadQuery(format!(
                        "`class` is one of {}, not `{v}`",
                        DeadLetterClass::ALL.map(|c| c.as_str()).join(", ")
                    )));
                }
                f.class = Some(v);
            }
            "connector" => f.connector = Some(v),
            "since" => f.since_ms = Some(ms(&k, &v)?),
            "until" => f.until_ms = Some(ms(&k, &v)?),
            "after" => after = Some(v),
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=PAGE_MAX.max(MAX_REPLAY)).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadQuery(format!(
                            "`limit` is a number from 1 to {PAGE_MAX} (to {MAX_REPLAY} for a replay), not `{v}`"
                        ))
                    })?
            }
            other => {
                return Err(ApiError::BadQuery(format!(
                    "unknown parameter `{other}`; use class, connector, since, until, after, limit"
                )));
            }
        }
    }
    Ok((f, after, limit))
}

/// A letter as the API shows it; the body only when `with_body`, as text
/// when it is UTF-8, else base64.
fn render(letter: &DeadLetter, with_body: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(letter).expect("letter serializes");
    let body = &letter.request.body;
    v["request"]["body_bytes"] = body.len().into();
    if with_body {
        match std::str::from_utf8(body) {
            Ok(text) => v["request"]["body"] = text.into(),
            Err(_) => {
                v["request"]["body_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(body)
                    .into()
            }
        }
    }
    v
}

/// `GET /v1/connectors/{name}/dead-letters`.
pub async fn list(api: &Api, name: &str, query: Option<&str>) -> Result<Resp, ApiError> {
    let source = source(api, name)?;
    let (filter, after, limit) = filter(query)?;
    let page = api
        .store
        .dead_letters(&source, &filter, after.as_deref(), limit.min(PAGE_MAX))
        .await
        .map_err(ApiError::Store)?;
    let stats = api
        .store
        .dead_letter_stats(&source)
        .await
        .map_err(ApiError::Store)?;
    api.metrics.dead_letters_now(&source, stats.count);
    let letters: Vec<_> = page.letters.iter().map(|l| render(l, false)).collect();
    Ok(reply::json(
        StatusCode::OK,
        &serde_json::json!({
            "dead_letters": letters,
            "next": page.next,
            "total": stats.count,
            "bytes": stats.bytes,
        }),
    ))
}

/// `GET /v1/connectors/{name}/dead-letters/{id}`.
pub async fn show(api: &Api, name: &str, id: &str) -> Result<Resp, ApiError> {
    let source = source(api, name)?;
    let letter = api
        .store
        .dead_letter(&source, id)
        .await
        .map_err(ApiError::Store)?
        .ok_or_else(|| ApiError::UnknownDeadLetter(id.to_string()))?;
    Ok(reply::json(StatusCode::OK, &render(&letter, true)))
}

/// `POST /v1/connectors/{name}/dead-letters/{id}/replay`.
pub async fn replay(api: &Api, name: &str, id: &str) -> Result<Resp, ApiError> {
    let source = source(api, name)?;
    let outcome = dead::replay(&api.ingest, &source, id)
        .await?
        .ok_or_else(|| ApiError::UnknownDeadLetter(id.to_string()))?;
    Ok(reply::json(
        StatusCode::OK,
        &serde_json::to_value(&outcome).expect("outcome serializes"),
    ))
}

/// `POST /v1/connectors/{name}/dead-letters/replay[?filter]`.
pub async fn replay_all(api: &Api, name: &str, query: Option<&str>) -> Result<Resp, ApiError> {
    let source = source(api, name)?;
    let (filter, _, limit) = filter(query)?;
    let limit = if query_pairs(query).iter().any(|(k, _)| k == "limit") {
        limit
    } else {
        MAX_REPLAY
    };
    let summary = dead::replay_matching(&api.ingest, &source, &filter, limit).await?;
    Ok(reply::json(
        StatusCode::OK,
        &serde_json::to_value(&summary).expect("summary serializes"),
    ))
}

/// `DELETE /v1/connectors/{name}/dead-letters/{id}`.
pub async fn discard(api: &Api, name: &str, id: &str) -> Result<Resp, ApiError> {
    let source = source(api, name)?;
    if !api
        .store
        .remove_dead_letter(&source, id)
        .await
        .map_err(ApiError::Store)?
    {
        return Err(ApiError::UnknownDeadLetter(id.to_string()));
    }
    dead::refresh_count(&api.ingest, &source).await;
    tracing::info!(source = %source, id, "Dead letter discarded by the operator.");
    Ok(reply::json(
        StatusCode::OK,
        &serde_json::json!({"discarded": 1}),
    ))
}

/// `DELETE /v1/connectors/{name}/dead-letters[?filter]`.
pub async fn discard_all(api: &Api, name: &str, query: Option<&str>) -> Result<Resp, ApiError> {
    let source = source(api, name)?;
    let (filter, _, _) = filter(query)?;
    let n = dead::discard_matching(&api.ingest, &source, &filter).await?;
    tracing::info!(source = %source, discarded = n, "Dead letters discarded by the operator.");
    Ok(reply::json(
        StatusCode::OK,
        &serde_json::json!({"discarded": n}),
    ))
}
