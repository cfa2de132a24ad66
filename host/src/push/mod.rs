//! The push path: `ANY /ingest/{source}[/{rest}]`, as the [`Ingest`]
//! service (any `http` request body; nothing here knows the server).
//!
//! In order: find the connector (404/405, 503 while quarantined), check
//! `Content-Length` (413), check a bearer token before the body or reserve
//! the unauthenticated-bytes budget (503), read the body within its limit
//! and timeout (413/408), authenticate (401), take a global and a
//! per-source in-flight slot (503) and a rate-limit token (429), claim the
//! idempotency key (409 while another request holds it) and answer a known
//! one with its original answer (200), call `on-push` in a fresh sandbox,
//! commit events + dedup marks + idempotency mark in one durable write, and
//! only then answer 202. Every refusal is an [`ApiError`].

use crate::config::{Limits, SourceName};
use crate::conns::Admission;
use crate::metrics::Metrics;
use crate::registry::{Connector, Counters, Registry, SourceState};
use crate::reply::{self, ApiError, Body, Resp};
use crate::runtime::{
    CallError, ConnectorError, PushRequest, REPLY_SECURITY_HEADERS, reply_header_allowed,
};
use crate::store::{Commit, CommitOutcome, Mode, PushRecord, Store, StoredReply, now_ms};
use crate::telemetry;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

pub(crate) mod dead;

/// The push path's service: what a push request needs, and nothing else.
pub struct Ingest {
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Arc<dyn Store>,
    /// Push requests in flight, host-wide (`limits.max_in_flight`).
    pub(crate) slots: Arc<Semaphore>,
    /// The unauthenticated-bytes budget (shared with the listener).
    pub(crate) admission: Arc<Admission>,
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<Metrics>,
    /// `trusted_proxies`: whose `X-Forwarded-For` names the sender.
    pub(crate) trusted_proxies: Arc<Vec<ipnet::IpNet>>,
}

/// Handles one push request for `source`; `rest` is the path after it.
/// Counts its outcome and latency (not for unknown sources, whose names
/// are the sender's to choose).
pub async fn handle<B>(
    ingest: &Ingest,
    source: &SourceName,
    rest: &str,
    req: http::Request<B>,
) -> Resp
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = std::time::Instant::now();
    let known = ingest.registry.get(source).is_some();
    let span = telemetry::span!(
        "push",
        otel.kind = "server",
        inlet.source = %source,
        inlet.request_id = tracing::field::Empty,
        inlet.outcome = tracing::field::Empty,
        http.request.method = %req.method(),
        http.response.status_code = tracing::field::Empty,
    );
    if !span.is_disabled() {
        telemetry::continue_from(&span, req.headers());
        if let Some(id) = req.extensions().get::<crate::conns::RequestId>() {
            span.record("inlet.request_id", id.0.as_str());
        }
    }
    let (outcome, resp) = match handle_inner(ingest, source, rest, req)
        .instrument(span.clone())
        .await
    {
        Ok(Pushed::Stored(resp)) => ("accepted", resp),
        Ok(Pushed::Duplicate(resp)) => ("duplicate", resp),
        Ok(Pushed::DeadLetter { error, id }) => {
            let outcome = error.outcome();
            let mut resp = error.into_response();
            if let Ok(v) = http::HeaderValue::from_str(&id) {
                resp.headers_mut().insert(dead::HEADER, v);
            }
            (outcome, resp)
        }
        Err(err) => (err.outcome(), err.into_response()),
    };
    if known {
        ingest.metrics.push(source, outcome, started.elapsed());
    }
    if !span.is_disabled() {
        span.record("inlet.outcome", outcome);
        span.record("http.response.status_code", resp.status().as_u16());
        if resp.status().is_server_error() || resp.status() == StatusCode::BAD_REQUEST {
            telemetry::failed(&span, &outcome);
        }
    }
    resp
}

/// A push answered: stored now, or stored by an earlier request with the
/// same idempotency key, or failed in the connector and kept as a dead
/// letter (answered with the failure and the letter's id).
enum Pushed {
    Stored(Resp),
    Duplicate(Resp),
    DeadLetter { error: ApiError, id: String },
}

async fn handle_inner<B>(
    ingest: &Ingest,
    source: &str,
    rest: &str,
    req: http::Request<B>,
) -> Result<Pushed, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(connector) = ingest.registry.get(source) else {
        return Err(ApiError::UnknownSource(source.to_string()));
    };
    let state = ingest.registry.source(source);
    let rejected = |e: ApiError| {
        Counters::add(&state.counters.push_rejected, 1);
        Err(e)
    };
    if !connector.descriptor.push {
        return rejected(ApiError::PushDisabled(source.to_string()));
    }
    if let Some(wait) = state.quarantined(&connector.sandbox) {
        return rejected(ApiError::Quarantined {
            source: source.to_string(),
            wait,
        });
    }
    let peer = req
        .extensions()
        .get::<crate::conns::Peer>()
        .map(|p| p.0.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let (parts, body) = req.into_parts();
    // Who may push at all, before anything is read.
    if let Some(allowed) = &connector.push.allowed_ips {
        let forwarded: Vec<&str> = if ingest.trusted_proxies.is_empty() {
            Vec::new()
        } else {
            parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect()
        };
        let client = crate::config::client_ip(peer, &forwarded, &ingest.trusted_proxies);
        if !allowed.iter().any(|n| n.contains(&client)) {
            return rejected(ApiError::AddressNotAllowed(client));
        }
    }
    let max = ingest.limits.max_body_bytes;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return rejected(ApiError::BodyTooLarge { max });
    }
    let verifier = &connector.push.verifier;
    // A bearer token is checked before the body is read. Any other body is
    // buffered, until its signature is checked, only within the sender
    // address's share of the unauthenticated-bytes budget: slow anonymous
    // bodies exhaust their own address's share, nobody else's.
    let by_headers = verifier.authenticates_by_headers();
    let unauthenticated = if by_headers {
        if !authenticate(verifier, &parts, rest, &[]) {
            return rejected(ApiError::Unauthorized);
        }
        None
    } else {
        match ingest
            .admission
            .unauthenticated(peer, declared.unwrap_or(max).max(1))
        {
            Ok(grant) => Some(grant),
            Err(why) => {
                return rejected(ApiError::Overloaded(
                    match why {
                        crate::conns::Refused::Peer => {
                            "too many unauthenticated request bytes in flight from this address"
                        }
                        crate::conns::Refused::Total => {
                            "too many unauthenticated request bytes in flight"
                        }
                    }
                    .into(),
                ));
            }
        }
    };
    let body = match tokio::time::timeout(
        ingest.limits.body_read_timeout,
        http_body_util::Limited::new(body, max as usize).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            return rejected(ApiError::BodyTooLarge { max });
        }
        Ok(Err(err)) => return rejected(ApiError::BodyUnreadable(err.to_string())),
        Err(_) => return rejected(ApiError::BodyTimeout),
    };

    if !by_headers && !authenticate(verifier, &parts, rest, &body) {
        return rejected(ApiError::Unauthorized);
    }
    drop(unauthenticated);
    // Push slots (host-wide and the source's own) and rate tokens are spent
    // only on authentic requests whose body has arrived, so anonymous or
    // slow traffic cannot starve the real sender.
    let Ok(_global) = ingest.slots.clone().try_acquire_owned() else {
        return rejected(ApiError::Overloaded(
            "the host has too many push requests in flight".into(),
        ));
    };
    let Some(_local) = connector.push.try_slot() else {
        return rejected(ApiError::Overloaded(format!(
            "source `{source}` has too many push requests in flight"
        )));
    };
    if let Err(wait) = connector.push.check_rate() {
        return rejected(ApiError::RateLimited(wait));
    }

    let key = connector
        .push
        .idempotency_key(&parts.headers)
        .or_else(|| verifier.body_key(&parts.headers, &body));
    // The key is claimed before it is looked up: a retry that arrives while
    // the original is still being stored (its group not yet flushed) gets
    // 409, never an answer from a write that is not durable yet.
    let _claim = match &key {
        Some(key) => {
            let Some(claim) = state.claim_key(key) else {
                return rejected(ApiError::InFlight);
            };
            match ingest
                .store
                .idempotency(source, key)
                .instrument(telemetry::span!("idempotency"))
                .await
            {
                Ok(Some(record)) => {
                    Counters::add(&state.counters.push_duplicate, 1);
                    return duplicate(&record);
                }
                Ok(None) => {}
                Err(err) => return Err(ApiError::Store(err)),
            }
            Some(claim)
        }
        None => None,
    };

    let request = push_request(&connector, &parts, rest, &body);
    let received_ms = now_ms();
    match call_and_commit(
        ingest,
        &connector,
        &state,
        request,
        key.clone(),
        received_ms,
        false,
    )
    .await
    {
        Ok(Committed::Stored {
            record,
            dropped,
            reply,
        }) => {
            tracing::debug!(source, events = record.events, duplicates = dropped, first_offset = ?record.first_offset, "Push accepted.");
            Counters::add(&state.counters.push_accepted, 1);
            Ok(Pushed::Stored(match reply {
                Some(r) => connector_reply(&r, false)?,
                None => reply::json(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({
                        "status": "accepted",
                        "events": record.events,
                        "first_offset": record.first_offset,
                        "last_offset": record.last_offset,
                        "duplicate_events": dropped,
                    }),
                ),
            }))
        }
        Ok(Committed::Duplicate(record)) => {
            Counters::add(&state.counters.push_duplicate, 1);
            duplicate(&record)
        }
        Err(Failed::Store(err)) => Err(ApiError::Store(err)),
        Err(Failed::Call(err)) => {
            let class = dead::class_of(&err);
            let error = call_failed(source, &state, err);
            let Some(class) = class.filter(|c| connector.manifest.push.dead_letters.keeps(*c))
            else {
                return Err(error);
            };
            let id = dead::keep(
                ingest,
                source,
                &connector,
                dead::Failure {
                    class,
                    message: error.message(),
                    status: error.status().as_u16(),
                },
                push_request(&connector, &parts, rest, &body).into(),
                key,
                received_ms,
            )
            .instrument(telemetry::span!("dead_letter", inlet.class = ?class))
            .await
            .map_err(|err| ApiError::NotKept {
                failure: error.message(),
                error: err,
            })?;
            Ok(Pushed::DeadLetter { error, id })
        }
    }
}

/// Checks the request's credentials (the `auth` span).
fn authenticate(
    verifier: &crate::registry::Verifier,
    parts: &http::request::Parts,
    rest: &str,
    body: &[u8],
) -> bool {
    let span = telemetry::span!("auth", inlet.scheme = verifier.scheme_name());
    let _entered = span.enter();
    let signed = crate::registry::Signed {
        body,
        rest,
        query: parts.uri.query(),
    };
    let ok = verifier.verify(&parts.headers, signed);
    if !ok {
        telemetry::failed(&span, &"unauthorized");
    }
    ok
}

/// The request as the connector gets it. Credentials (`Authorization`,
/// `Cookie`, the scheme's signature header) stay with the host that
/// checked them.
pub(crate) fn push_request(
    connector: &Connector,
    parts: &http::request::Parts,
    rest: &str,
    body: &Bytes,
) -> PushRequest {
    PushRequest {
        method: parts.method.to_string(),
        path: rest.to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: header_pairs(&parts.headers, |name| {
            !connector.push.verifier.is_credential(name)
        }),
        body: body.to_vec(),
    }
}

/// What one connector call and its commit gave.
pub(crate) enum Committed {
    Stored {
        record: PushRecord,
        dropped: u32,
        reply: Option<StoredReply>,
    },
    Duplicate(PushRecord),
}

/// Why a call and commit stored nothing.
pub(crate) enum Failed {
    Call(CallError),
    Store(crate::store::StoreError),
}

/// Calls `on-push` with `request` in a fresh sandbox of `connector` and
/// commits its events, dedup marks and the idempotency answer in one
/// durable write (the push path, and a dead letter's replay).
pub(crate) async fn call_and_commit(
    ingest: &Ingest,
    connector: &Connector,
    state: &SourceState,
    request: PushRequest,
    key: Option<String>,
    received_ms: u64,
    replay: bool,
) -> Result<Committed, Failed> {
    let source = connector.name.as_str();
    let outcome = ingest
        .registry
        .runtime()
        .on_push(&connector.code, &connector.sandbox, request)
        .await;
    match &outcome {
        // Too much output from one request is the request's doing (10,001
        // objects in one array): the sender gets 422, and the connector's
        // failure streak is not touched. Neither is it by a replay: an
        // operator replaying letters on a version that still fails must
        // not quarantine the source for its live senders.
        Err(err @ CallError::Output(_)) => state.count_failure(err),
        Err(err) if replay => state.count_failure(err),
        _ => state.record_call(&connector.sandbox, &outcome),
    }
    let result = outcome.map_err(Failed::Call)?;
    let events = result
        .events
        .iter()
        .map(|e| e.prepare(source, Mode::Push, &connector.label, None, received_ms))
        .collect();
    let stored_reply = result.reply.map(|r| StoredReply {
        status: r.status,
        headers: r.headers,
        body: r.body,
    });
    let commit = Commit {
        source: source.to_string(),
        events,
        dedup_window: connector.push.dedup_window,
        idempotency: key.map(|k| {
            (
                k,
                PushRecord {
                    reply: stored_reply.clone(),
                    ..Default::default()
                },
            )
        }),
        checkpoint: None,
        since: None,
    };
    let span = telemetry::span!("store.commit", inlet.events = commit.events.len());
    let outcome = ingest
        .store
        .commit(commit)
        .instrument(span.clone())
        .await
        .map_err(|err| {
            telemetry::failed(&span, &err);
            Failed::Store(err)
        })?;
    // The connector handled it: an error an earlier push left is over.
    state.push_succeeded();
    match outcome {
        CommitOutcome::Stored { record, dropped } => {
            Counters::add(&state.counters.events_push, record.events as u64);
            state.history.record(
                crate::registry::history::Path::Push,
                record.events as u64,
                now_ms(),
            );
            Counters::add(&state.counters.events_deduplicated, dropped as u64);
            Ok(Committed::Stored {
                record,
                dropped,
                reply: stored_reply,
            })
        }
        CommitOutcome::Duplicate(record) => Ok(Committed::Duplicate(record)),
    }
}

/// The original answer to a repeated idempotency key.
fn duplicate(record: &PushRecord) -> Result<Pushed, ApiError> {
    if let Some(r) = &record.reply {
        return connector_reply(r, true).map(Pushed::Duplicate);
    }
    let mut resp = reply::json(
        StatusCode::OK,
        &serde_json::json!({
            "status": "duplicate",
            "events": record.events,
            "first_offset": record.first_offset,
            "last_offset": record.last_offset,
        }),
    );
    resp.headers_mut().insert(
        "idempotent-replayed",
        http::HeaderValue::from_static("true"),
    );
    Ok(Pushed::Duplicate(resp))
}

/// A connector's reply as the sender gets it. The runtime filtered it when
/// the connector returned it; a remembered reply passes the same filter
/// again (it may have been stored by an older host).
fn connector_reply(r: &StoredReply, replayed: bool) -> Result<Resp, ApiError> {
    let status = StatusCode::from_u16(r.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or(ApiError::BadReply)?;
    let mut builder = http::Response::builder().status(status);
    for (k, v) in r.headers.iter().filter(|(k, _)| reply_header_allowed(k)) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            builder = builder.header(k, v);
        }
    }
    for (k, v) in REPLY_SECURITY_HEADERS {
        builder = builder.header(k, v);
    }
    if replayed {
        builder = builder.header("idempotent-replayed", "true");
    }
    builder
        .body(Body::from(Bytes::from(r.body.clone())))
        .map_err(|_| ApiError::BadReply)
}

pub(crate) fn call_failed(source: &str, state: &SourceState, err: CallError) -> ApiError {
    let counters = &state.counters;
    match err {
        CallError::Connector(e) => {
            Counters::add(&counters.push_rejected, 1);
            match e {
                ConnectorError::Invalid(m) => ApiError::Invalid(m),
                ConnectorError::Unauthorized(m) => ApiError::ConnectorUnauthorized(m),
                ConnectorError::Unavailable(m) => ApiError::Unavailable {
                    message: m,
                    timeout: false,
                },
                ConnectorError::RateLimited(s) => {
                    ApiError::RateLimited(Duration::from_secs(s.unwrap_or(1).into()))
                }
                ConnectorError::Other(m) => ApiError::ConnectorError(m),
            }
        }
        CallError::Overloaded => {
            Counters::add(&counters.push_rejected, 1);
            ApiError::Overloaded(
                "no connector instance can start now (no slot free, or the source's memory budget in use)"
                    .into(),
            )
        }
        CallError::Output(limit) => {
            Counters::add(&counters.push_rejected, 1);
            ApiError::TooManyEvents(format!(
                "the request makes more than one push may store ({limit}); send fewer or smaller items per request"
            ))
        }
        err @ CallError::SourceTimeout { .. } => {
            Counters::add(&counters.push_rejected, 1);
            tracing::warn!(connector = %source, class = %err.class(), error = %err, "Push call timed out waiting on its source.");
            state.push_failed(format!("on-push {err}"));
            ApiError::Unavailable {
                message: err.public_message(),
                timeout: true,
            }
        }
        other => {
            Counters::add(&counters.push_failed, 1);
            tracing::warn!(connector = %source, class = %other.class(), error = %other, "Push call failed.");
            state.push_failed(format!("on-push {other}"));
            ApiError::ConnectorFailed {
                class: other.class().as_str(),
                message: other.public_message(),
            }
        }
    }
}

fn header_pairs(
    headers: &HeaderMap,
    keep: impl Fn(&http::HeaderName) -> bool,
) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| keep(k))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}
