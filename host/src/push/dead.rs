//! Dead letters on the push path: a request that passed authentication and
//! the rate limit but that the connector failed on is kept (durably,
//! before the sender is answered), and replayed later through the
//! connector loaded then.
//!
//! A replay runs the stored request with its original idempotency key (or,
//! for a request without one, `dead-letter:{id}`), so a sender's own retry
//! and the replay store the events once: the key is claimed on this host
//! like a push claims it, and the commit answers a key already stored as a
//! duplicate on any host. Two replays of one letter never run at once: the
//! store hands out one claim per letter (across hosts on JetStream).

use super::{Committed, Failed, Ingest, call_and_commit, call_failed};
use crate::config::{DeadLetterClass, SourceName};
use crate::registry::{Connector, Counters};
use crate::reply::ApiError;
use crate::runtime::{CallError, ConnectorError, PushRequest};
use crate::store::{DeadLetter, DeadLetterFilter, DeadRequest, StoreError, now_ms};
use serde::Serialize;

/// The response header naming the dead letter a failed push became.
pub const HEADER: &str = "inlet-dead-letter";

/// Letters one replay-all request replays at most (the answer says when
/// more match; the next request goes on).
pub const MAX_REPLAY: usize = 1_000;

/// The dead-letter class of a failed call; `None` when the connector did
/// not run (no instance slot, no memory budget: the host's condition, and
/// the sender retries the 503).
pub fn class_of(err: &CallError) -> Option<DeadLetterClass> {
    Some(match err {
        CallError::Connector(e) => match e {
            ConnectorError::Invalid(_) => DeadLetterClass::Invalid,
            ConnectorError::Unauthorized(_) => DeadLetterClass::Unauthorized,
            ConnectorError::Unavailable(_) => DeadLetterClass::Unavailable,
            ConnectorError::RateLimited(_) => DeadLetterClass::RateLimited,
            ConnectorError::Other(_) => DeadLetterClass::Error,
        },
        CallError::Trap(_) => DeadLetterClass::Trap,
        CallError::Deadline(_) => DeadLetterClass::Deadline,
        CallError::SourceTimeout { .. } => DeadLetterClass::SourceTimeout,
        CallError::Memory(_) => DeadLetterClass::Memory,
        CallError::Limit(_) => DeadLetterClass::Limit,
        CallError::Output(_) => DeadLetterClass::Output,
        CallError::Overloaded => return None,
    })
}

/// A failure, as a letter records it.
pub struct Failure {
    pub class: DeadLetterClass,
    pub message: String,
    pub status: u16,
}

/// Whether a header or query parameter name looks like it carries a
/// secret the connector checks itself (`X-Api-Key`, `X-Gitlab-Token`,
/// `?access_token=`): such values are not kept in a letter, whatever the
/// scheme. (The host's own credential headers never reach this far.)
pub fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "signature",
        "hmac",
        "api-key",
        "api_key",
        "apikey",
        "auth",
        "cookie",
        "session",
    ]
    .iter()
    .any(|s| n.contains(s))
        || n == "sig"
        || n == "key"
}

/// `%XX` and `+` decoded, enough to read a query parameter's name.
fn unescape(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl From<PushRequest> for DeadRequest {
    /// The request as a letter keeps it: without headers or query
    /// parameters whose names look secret ([`secret_name`]).
    fn from(r: PushRequest) -> Self {
        let query = r
            .query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let name = p.split('=').next().unwrap_or("");
                !secret_name(&unescape(name))
            })
            .collect::<Vec<_>>()
            .join("&");
        DeadRequest {
            method: r.method,
            path: r.path,
            query,
            headers: r
                .headers
                .into_iter()
                .filter(|(k, _)| !secret_name(k))
                .collect(),
            body: r.body,
        }
    }
}

impl From<DeadRequest> for PushRequest {
    fn from(r: DeadRequest) -> Self {
        PushRequest {
            method: r.method,
            path: r.path,
            query: r.query,
            headers: r.headers,
            body: r.body,
        }
    }
}

/// Keeps a failed push as a dead letter, durably; returns its id.
#[allow(clippy::too_many_arguments)]
pub async fn keep(
    ingest: &Ingest,
    source: &str,
    connector: &Connector,
    failure: Failure,
    request: DeadRequest,
    idempotency_key: Option<String>,
    received_ms: u64,
) -> Result<String, StoreError> {
    let now = now_ms();
    let letter = DeadLetter {
        id: crate::store::dead_letters::new_id(received_ms),
        received_ms,
        connector: connector.label.clone(),
        class: failure.class.as_str().to_string(),
        error: failure.message,
        status: failure.status,
        attempts: 1,
        last_attempt_ms: now,
        idempotency_key,
        request,
    };
    let policy = &connector.manifest.push.dead_letters;
    let dropped = ingest
        .store
        .put_dead_letter(source, &letter, policy.max_bytes)
        .await?;
    let metrics = &ingest.metrics;
    metrics.dead_letter_kept(source, &letter.class);
    if dropped > 0 {
        metrics.dead_letters_dropped(source, "max_bytes", dropped);
        tracing::warn!(
            source,
            dropped,
            max_bytes = policy.max_bytes,
            "Dead letters dropped, oldest first, to stay under [push] dead_letters.max_bytes."
        );
    }
    tracing::warn!(source, id = %letter.id, class = %letter.class, status = letter.status, "Push kept as a dead letter.");
    refresh_count(ingest, source).await;
    Ok(letter.id)
}

/// Updates the dead-letter gauge of `source` from the store.
pub async fn refresh_count(ingest: &Ingest, source: &str) {
    if let Ok(stats) = ingest.store.dead_letter_stats(source).await {
        ingest.metrics.dead_letters_now(source, stats.count);
    }
}

/// What one replay did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Replayed {
    /// The connector stored its events; the letter is gone.
    Stored { events: u32 },
    /// The key was stored already (the sender's retry, or another replay);
    /// the letter is gone.
    Duplicate,
    /// The connector failed again; the letter stays, its attempts counted.
    Failed {
        class: String,
        status: u16,
        error: String,
    },
    /// Another replay of it, or a push with its idempotency key, is in
    /// flight, or no instance could start (overloaded); nothing was done.
    Busy,
    /// Received longer ago than the source's dedup window: its key and
    /// event ids may be forgotten, so a replay could store it twice. Kept;
    /// replay with `force=true` to run it anyway.
    Expired,
}

impl Replayed {
    pub fn name(&self) -> &'static str {
        match self {
            Replayed::Stored { .. } => "stored",
            Replayed::Duplicate => "duplicate",
            Replayed::Failed { .. } => "failed",
            Replayed::Busy => "busy",
            Replayed::Expired => "expired",
        }
    }
}

/// A replay's claim on one letter, given back when dropped: also when the
/// replay's request is cancelled (its client went away) mid-call.
struct Claim {
    store: std::sync::Arc<dyn crate::store::Store>,
    source: String,
    id: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let (store, source, id) = (
            self.store.clone(),
            std::mem::take(&mut self.source),
            std::mem::take(&mut self.id),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { store.release_dead_letter(&source, &id).await });
        }
    }
}

/// Replays one letter through the connector loaded now. `Ok(None)` when
/// the letter does not exist. `force` replays a letter older than the
/// dedup window too.
pub async fn replay(
    ingest: &Ingest,
    source: &SourceName,
    id: &str,
    force: bool,
) -> Result<Option<Replayed>, ApiError> {
    let store = &ingest.store;
    if crate::store::dead_letters::id_time(id).is_none() {
        return Ok(None);
    }
    if !store
        .claim_dead_letter(source, id)
        .await
        .map_err(ApiError::Store)?
    {
        ingest.metrics.dead_letter_replayed(source, "busy");
        return Ok(Some(Replayed::Busy));
    }
    let claim = Claim {
        store: store.clone(),
        source: source.to_string(),
        id: id.to_string(),
    };
    let result = replay_claimed(ingest, source, id, force).await;
    drop(claim);
    if let Ok(Some(outcome)) = &result {
        ingest.metrics.dead_letter_replayed(source, outcome.name());
        refresh_count(ingest, source).await;
    }
    result
}

async fn replay_claimed(
    ingest: &Ingest,
    source: &SourceName,
    id: &str,
    force: bool,
) -> Result<Option<Replayed>, ApiError> {
    let store = &ingest.store;
    let Some(mut letter) = store
        .dead_letter(source, id)
        .await
        .map_err(ApiError::Store)?
    else {
        return Ok(None);
    };
    let Some(connector) = ingest.registry.get(source) else {
        return Err(ApiError::UnknownSource(source.to_string()));
    };
    if !connector.descriptor.push {
        return Err(ApiError::PushDisabled(source.to_string()));
    }
    let state = ingest.registry.source(source);
    if let Some(wait) = state.quarantined(&connector.sandbox) {
        return Err(ApiError::Quarantined {
            source: source.to_string(),
            wait,
        });
    }
    let window = connector.push.dedup_window.as_millis() as u64;
    if !force && now_ms().saturating_sub(letter.received_ms) > window {
        return Ok(Some(Replayed::Expired));
    }
    // A request without a key is stored under one no sender can send (a
    // header value cannot hold NUL).
    let key = letter
        .idempotency_key
        .clone()
        .unwrap_or_else(|| format!("\0dead-letter:{id}"));
    // Like a push with this key: a sender's retry in flight here wins.
    let Some(_claim) = state.claim_key(&key) else {
        return Ok(Some(Replayed::Busy));
    };
    let gone = |outcome| async move {
        store
            .remove_dead_letter(source, id)
            .await
            .map_err(ApiError::Store)?;
        Ok(Some(outcome))
    };
    if store
        .idempotency(source, &key)
        .await
        .map_err(ApiError::Store)?
        .is_some()
    {
        Counters::add(&state.counters.push_duplicate, 1);
        return gone(Replayed::Duplicate).await;
    }
    let request = PushRequest::from(letter.request.clone());
    match call_and_commit(
        ingest,
        &connector,
        &state,
        request,
        Some(key),
        letter.received_ms,
        true,
    )
    .await
    {
        Ok(Committed::Stored { record, .. }) => {
            Counters::add(&state.counters.push_accepted, 1);
            tracing::info!(source = %source, id, events = record.events, "Dead letter replayed.");
            gone(Replayed::Stored {
                events: record.events,
            })
            .await
        }
        Ok(Committed::Duplicate(_)) => {
            Counters::add(&state.counters.push_duplicate, 1);
            gone(Replayed::Duplicate).await
        }
        Err(Failed::Store(err)) => Err(ApiError::Store(err)),
        // The connector never ran: the letter is left as it was.
        Err(Failed::Call(CallError::Overloaded)) => Ok(Some(Replayed::Busy)),
        Err(Failed::Call(err)) => {
            let class = class_of(&err);
            let error = call_failed(source, &state, err);
            letter.attempts = letter.attempts.saturating_add(1);
            letter.last_attempt_ms = now_ms();
            letter.connector = connector.label.clone();
            letter.class = class.map_or("overloaded", |c| c.as_str()).to_string();
            letter.error = error.message();
            letter.status = error.status().as_u16();
            store
                .update_dead_letter(source, &letter)
                .await
                .map_err(ApiError::Store)?;
            Ok(Some(Replayed::Failed {
                class: letter.class,
                status: letter.status,
                error: letter.error,
            }))
        }
    }
}

/// What a replay of every matching letter did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplaySummary {
    pub stored: u64,
    pub duplicate: u64,
    pub failed: u64,
    pub busy: u64,
    /// Older than the dedup window, not replayed (`force=true` replays
    /// them).
    pub expired: u64,
    /// Set when `limit` letters were replayed and more may match: pass it
    /// as `after` to go on.
    pub next: Option<String>,
    /// Why the replay stopped before the end (the connector was
    /// quarantined by live traffic, the store failed); what it did before
    /// is counted above.
    pub stopped: Option<String>,
}

/// Replays the letters matching `filter`, oldest first, one at a time (a
/// replay is the connector's work like a push, and it should not crowd
/// out live senders), at most `limit`.
pub async fn replay_matching(
    ingest: &Ingest,
    source: &SourceName,
    filter: &DeadLetterFilter,
    after: Option<String>,
    limit: usize,
    force: bool,
) -> Result<ReplaySummary, ApiError> {
    let mut summary = ReplaySummary::default();
    let mut after = after;
    let mut done = 0;
    loop {
        let page = match ingest
            .store
            .dead_letters(source, filter, after.as_deref(), 500)
            .await
        {
            Ok(page) => page,
            Err(err) if done > 0 => {
                summary.stopped = Some(ApiError::Store(err).message());
                summary.next = after;
                return Ok(summary);
            }
            Err(err) => return Err(ApiError::Store(err)),
        };
        for letter in &page.letters {
            if done >= limit {
                summary.next = after;
                return Ok(summary);
            }
            done += 1;
            let outcome = match replay(ingest, source, &letter.id, force).await {
                Ok(outcome) => outcome,
                Err(err) if done > 1 => {
                    summary.stopped = Some(err.message());
                    summary.next = after;
                    return Ok(summary);
                }
                Err(err) => return Err(err),
            };
            match outcome {
                None => {}
                Some(Replayed::Stored { .. }) => summary.stored += 1,
                Some(Replayed::Duplicate) => summary.duplicate += 1,
                Some(Replayed::Failed { .. }) => summary.failed += 1,
                Some(Replayed::Busy) => summary.busy += 1,
                Some(Replayed::Expired) => summary.expired += 1,
            }
            after = Some(letter.id.clone());
        }
        match page.next {
            // The last id the page looked at: at or past every letter in it.
            Some(next) => after = Some(next),
            None => return Ok(summary),
        }
    }
}

/// Discards the letters matching `filter` that were received before the
/// call (letters arriving meanwhile are not chased); returns how many.
pub async fn discard_matching(
    ingest: &Ingest,
    source: &SourceName,
    filter: &DeadLetterFilter,
) -> Result<u64, ApiError> {
    let mut filter = filter.clone();
    let now = now_ms() + 1;
    filter.until_ms = Some(filter.until_ms.map_or(now, |u| u.min(now)));
    let filter = &filter;
    let mut removed = 0;
    let mut after: Option<String> = None;
    loop {
        let page = ingest
            .store
            .dead_letters(source, filter, after.as_deref(), 500)
            .await
            .map_err(ApiError::Store)?;
        for letter in &page.letters {
            if ingest
                .store
                .remove_dead_letter(source, &letter.id)
                .await
                .map_err(ApiError::Store)?
            {
                removed += 1;
            }
        }
        match page.next {
            // The last id the page looked at: at or past every letter in it.
            Some(next) => after = Some(next),
            None => break,
        }
    }
    refresh_count(ingest, source).await;
    Ok(removed)
}
