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
/// A query string's filter and paging: `class`, `connector`, `since`,
/// `until`, `after`, `limit`, and `force` (replays only).
struct Query {
    filter: DeadLetterFilter,
    after: Option<String>,
    limit: Option<usize>,
    force: bool,
}

fn filter(query: Option<&str>) -> Result<Query, ApiError> {
    let mut f = DeadLetterFilter::default();
    let (mut after, mut limit, mut force) = (None, None, false);
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
            // A label has no spaces: a `+` the client did not escape
            // (`name@1.0.0+sha256:...`) is a `+`.
            "connector" => f.connector = Some(v.replace(' ', "+")),
            "force" => {
                force = match v.as_str() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::BadQuery(format!(
                            "`force` is true or false, not `{v}`"
                        )));
                    }
                }
            }
            "since" => f.since_ms = Some(ms(&k, &v)?),
            "until" => f.until_ms = Some(ms(&k, &v)?),
            "after" => after = Some(v),
            "limit" => {
                limit = Some(v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=PAGE_MAX.max(MAX_REPLAY)).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadQuery(format!(
                            "`limit` is a number from 1 to {PAGE_MAX} (to {MAX_REPLAY} for a replay), not `{v}`"
                        ))
                    })?)
            }
            other => {
                return Err(ApiError::BadQuery(format!(
                    "unknown parameter `{other}`; use class, connector, since, until, after, limit, force"
                )));
            }
        }
    }
    Ok(Query {
        filter: f,
        after,
        limit,
        force,
    })
}

/// A letter id as the API takes it: anything else is no letter (404),
/// never a key the store is asked about.
fn letter_id(id: &str) -> Result<&str, ApiError> {
    crate::store::dead_letters::id_time(id)
        .map(|_| id)
        .ok_or_else(|| ApiError::UnknownDeadLetter(id.to_string()))
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
    let q = filter(query)?;
    let page = api
        .store
        .dead_letters(
            &source,
            &q.filter,
            q.after.as_deref(),
            q.limit.unwrap_or(PAGE).min(PAGE_MAX),
        )
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
    let id = letter_id(id)?;
    let letter = api
        .store
        .dead_letter(&source, id)
        .await
        .map_err(ApiError::Store)?
        .ok_or_else(|| ApiError::UnknownDeadLetter(id.to_string()))?;
    Ok(reply::json(StatusCode::OK, &render(&letter, true)))
}

/// `POST /v1/connectors/{name}/dead-letters/{id}/replay[?force=true]`.
pub async fn replay(
    api: &Api,
    name: &str,
    id: &str,
    query: Option<&str>,
) -> Result<Resp, ApiError> {
    let source = source(api, name)?;
    let id = letter_id(id)?;
    let force = filter(query)?.force;
    let outcome = dead::replay(&api.ingest, &source, id, force)
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
    let q = filter(query)?;
    let summary = dead::replay_matching(
        &api.ingest,
        &source,
        &q.filter,
        q.after,
        q.limit.unwrap_or(MAX_REPLAY),
        q.force,
    )
    .await?;
    Ok(reply::json(
        StatusCode::OK,
        &serde_json::to_value(&summary).expect("summary serializes"),
    ))
}

/// `DELETE /v1/connectors/{name}/dead-letters/{id}`.
pub async fn discard(api: &Api, name: &str, id: &str) -> Result<Resp, ApiError> {
    let source = source(api, name)?;
    let id = letter_id(id)?;
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
    let q = filter(query)?;
    let n = dead::discard_matching(&api.ingest, &source, &q.filter).await?;
    tracing::info!(source = %source, discarded = n, "Dead letters discarded by the operator.");
    Ok(reply::json(
        StatusCode::OK,
        &serde_json::json!({"discarded": n}),
    ))
}
