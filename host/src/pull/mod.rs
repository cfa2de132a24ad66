//! The pull path: a scheduler loop per pull connector, and the run that
//! pulls each partition from its checkpoint, committing every batch with
//! its checkpoint in one durable write.
//!
//! Guarantees: a partition is never pulled twice at once (a lock per
//! partition, shared with manual triggers and checkpoint edits); at most
//! `max_parallel` partitions of a connector are pulled at once (slots
//! shared by scheduled and manual runs), and at most `pull_workers` pulls
//! host-wide; a failed pull never moves the checkpoint; `has-more` pulls
//! again at once within a per-run budget of batches and time; failures back
//! off exponentially with full jitter; adaptive polling halves the interval
//! after data and doubles it after an empty run, within
//! `[min_interval, max_interval]`; a `cron` schedule fires at its times
//! (UTC) instead. Regular runs get a little jitter so connectors spread out.
//!
//! A partition the connector stops listing keeps its checkpoint for a
//! while (a source may leave one out for a run or two), and is forgotten
//! after [`FORGET_ABSENT_AFTER`], or at once past the
//! [`MIN_ABSENT_KEPT`]-or-as-many-as-listed most recently moved absent
//! ones (by age only while the listing is empty, which may be a source's
//! hiccup): a connector that lists new random partitions every run cannot
//! grow the store and the status without bound. A partition that comes
//! back after that starts from no checkpoint (its events deduplicated by
//! id within the dedup window).

mod schedule;

pub use schedule::Scheduler;

use crate::registry::{Connector, Counters};
use crate::runtime::{CallError, ConnectorError};
use crate::store::{Commit, CommitOutcome, Mode, StoreError, now_ms};
use crate::telemetry;
use futures::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument as _;

/// How long the checkpoint of a partition that is no longer listed is kept.
pub const FORGET_ABSENT_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Absent partitions' checkpoints kept at least (more if more are listed).
pub const MIN_ABSENT_KEPT: usize = 64;

/// What one run pulled.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// Partitions pulled (1 for a connector without partitions).
    pub partitions: usize,
    /// Batches committed.
    pub batches: u32,
    /// Events stored.
    pub events: u64,
    /// Events dropped because their id was already stored for the source.
    pub duplicates: u64,
    /// Partitions that stopped because the run's budget ran out.
    pub budget_exhausted: u32,
    /// Partitions skipped because another host holds their pull lease
    /// (shared JetStream store only).
    pub leased_elsewhere: u32,
}

/// Why a run failed. Batches committed before the failure stay committed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// `partitions` or `pull` failed (a connector error, trap or overrun).
    #[error("connector {name}: pull failed: {source}")]
    Call {
        /// The source name.
        name: String,
        /// What the call returned.
        source: CallError,
    },
    /// The batch could not be committed; nothing of it was stored.
    #[error("connector {name}: commit failed: {source}")]
    Store {
        /// The source name.
        name: String,
        /// The store's error.
        source: StoreError,
    },
}

impl PullError {
    /// Whether retrying soon can help (`invalid`/`unauthorized` cannot).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            PullError::Call {
                source: CallError::Connector(
                    ConnectorError::Invalid(_) | ConnectorError::Unauthorized(_)
                ),
                ..
            }
        )
    }

    /// The wait the source asked for, if it rate-limited us.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            PullError::Call {
                source: CallError::Connector(ConnectorError::RateLimited(s)),
                ..
            } => Some(std::time::Duration::from_secs(s.unwrap_or(1).into())),
            _ => None,
        }
    }
}

/// Pulls every partition of `connector` once (each until it has no more or
/// its budget runs out), at most `max_parallel` partitions at a time.
pub async fn run_once(
    engine: &Arc<Scheduler>,
    connector: &Arc<Connector>,
) -> Result<RunSummary, PullError> {
    let started = Instant::now();
    let span = telemetry::span!(
        "pull",
        inlet.source = %connector.name,
        inlet.events = tracing::field::Empty,
    );
    let result = run_once_inner(engine, connector)
        .instrument(span.clone())
        .await;
    match &result {
        Ok(summary) => {
            span.record("inlet.events", summary.events);
        }
        Err(err) => telemetry::failed(&span, err),
    }
    let events = result.as_ref().map_or(0, |s| s.events);
    engine
        .metrics
        .pull(&connector.name, result.is_ok(), events, started.elapsed());
    result
}

async fn run_once_inner(
    engine: &Arc<Scheduler>,
    connector: &Arc<Connector>,
) -> Result<RunSummary, PullError> {
    let name = connector.name.to_string();
    let call_err = |source| PullError::Call {
        name: name.clone(),
        source,
    };
    let listed = engine
        .registry
        .runtime()
        .partitions(&connector.code, &connector.sandbox)
        .await;
    // Only a failure counts: the run is judged by its pulls.
    if listed.is_err() {
        engine
            .registry
            .source(&name)
            .record_call(&connector.sandbox, &listed);
    }
    let listed = listed.map_err(call_err)?;
    let partitions: Vec<Option<String>> = if listed.is_empty() {
        vec![None]
    } else {
        listed.into_iter().map(Some).collect()
    };
    let state = engine.registry.source(&name);
    forget_absent(engine, &name, &partitions).await;
    Counters::add(&state.counters.pull_runs, 1);
    let max_parallel = connector.manifest.pull.max_parallel as usize;
    let mut summary = RunSummary {
        partitions: partitions.len(),
        ..Default::default()
    };
    let mut first_error = None;
    let of = partitions.len();
    let mut results = futures::stream::iter(partitions)
        .map(|p| async move {
            let span = telemetry::span!("partition", inlet.partition = p.as_deref());
            let result = pull_partition(engine, connector, p.clone(), of)
                .instrument(span.clone())
                .await;
            if let Err(err) = &result {
                telemetry::failed(&span, err);
            }
            if result.is_err() {
                // Let a healthy host take the partition over; this one
                // competes for it again at its next run.
                engine.store.drop_lease(&connector.name, p.as_deref()).await;
            }
            result
        })
        .buffer_unordered(max_parallel);
    while let Some(result) = results.next().await {
        match result {
            Ok(part) => {
                summary.batches += part.batches;
                summary.events += part.events;
                summary.duplicates += part.duplicates;
                summary.budget_exhausted += part.budget_exhausted;
                summary.leased_elsewhere += part.leased_elsewhere;
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        Some(err) => {
            Counters::add(&state.counters.pull_failures, 1);
            Err(err)
        }
        None => Ok(summary),
    }
}

/// Forgets the checkpoints (and partition locks) of partitions that are
/// not in `listed` (see the module docs for which and when).
async fn forget_absent(engine: &Arc<Scheduler>, name: &str, listed: &[Option<String>]) {
    let listed: std::collections::HashSet<&Option<String>> = listed.iter().collect();
    engine
        .registry
        .source(name)
        .forget_partition_locks(|p| listed.contains(p));
    let Ok(stored) = engine.store.checkpoints(name).await else {
        return;
    };
    let mut absent: Vec<_> = stored
        .into_iter()
        .filter(|(p, _)| !listed.contains(p))
        .collect();
    // Most recently moved first: those are kept.
    absent.sort_by_key(|(_, c)| std::cmp::Reverse(c.updated_ms()));
    // A listing that is empty now (one unnamed partition) may be a source's
    // hiccup: named partitions are then forgotten by age only.
    let unpartitioned = listed.len() == 1 && listed.contains(&None);
    let keep = if unpartitioned {
        usize::MAX
    } else {
        MIN_ABSENT_KEPT.max(listed.len())
    };
    let stale_before = now_ms().saturating_sub(FORGET_ABSENT_AFTER.as_millis() as u64);
    let mut forgotten = 0;
    for (i, (partition, checkpoint)) in absent.into_iter().enumerate() {
        if i < keep && checkpoint.updated_ms() >= stale_before {
            continue;
        }
        match engine
            .store
            .set_checkpoint(name, partition.as_deref(), None)
            .await
        {
            Ok(()) => forgotten += 1,
            Err(err) => {
                tracing::warn!(connector = %name, error = %err, "Cannot forget an absent partition's checkpoint.");
                return;
            }
        }
    }
    if forgotten > 0 {
        tracing::info!(connector = %name, forgotten, "Forgot the checkpoints of partitions the connector no longer lists.");
    }
}

async fn pull_partition(
    engine: &Arc<Scheduler>,
    connector: &Arc<Connector>,
    partition: Option<String>,
    of: usize,
) -> Result<RunSummary, PullError> {
    let name = connector.name.as_str();
    let state = engine.registry.source(name);
    let lock = state.partition_lock(partition.as_deref());
    let _partition = lock.lock().await;

    let _slot = engine
        .slots(name, connector.manifest.pull.max_parallel)
        .acquire_owned()
        .await
        .expect("the slot semaphore is never closed");
    let _worker = engine
        .workers
        .acquire()
        .await
        .expect("the worker semaphore is never closed");
    let budget = &connector.manifest.pull;
    let started = Instant::now();
    let mut summary = RunSummary::default();
    loop {
        let store_err = |source| PullError::Store {
            name: name.to_string(),
            source,
        };
        // Hosts sharing a store pull a partition from one host at a time;
        // the lease is checked (and renewed) before every batch, so a host
        // that lost it stops after the batch in hand.
        let leased = if summary.batches == 0 {
            engine.store.lease(name, partition.as_deref(), of).await
        } else {
            engine.store.keep_lease(name, partition.as_deref()).await
        };
        if !leased.map_err(store_err)? {
            if summary.batches == 0 {
                tracing::debug!(connector = %name, partition = ?partition, "Partition leased by another host; skipped.");
                summary.leased_elsewhere = 1;
            } else {
                tracing::warn!(connector = %name, partition = ?partition, "Pull lease lost during the run; another host goes on from the checkpoint.");
            }
            break;
        }
        let read = engine
            .store
            .checkpoint_for_pull(name, partition.as_deref())
            .await
            .map_err(store_err)?;
        let since = read.value.clone();
        let batch = engine
            .registry
            .runtime()
            .pull(
                &connector.code,
                &connector.sandbox,
                since.clone(),
                partition.clone(),
            )
            .await;
        state.record_call(&connector.sandbox, &batch);
        let batch = batch.map_err(|source| PullError::Call {
            name: name.to_string(),
            source,
        })?;
        let received_ms = now_ms();
        let commit = Commit {
            source: name.to_string(),
            events: batch
                .events
                .iter()
                .map(|e| {
                    e.prepare(
                        name,
                        Mode::Pull,
                        &connector.label,
                        partition.as_deref(),
                        received_ms,
                    )
                })
                .collect(),
            dedup_window: connector.manifest.dedup_window(),
            idempotency: None,
            checkpoint: batch.checkpoint.clone().map(|c| (partition.clone(), c)),
            since: Some(read),
        };
        // `has-more` without a new checkpoint would pull the same page again
        // and again: stop the run and say so.
        let stalled = batch.has_more
            && (batch.checkpoint.is_none() || batch.checkpoint.as_deref() == since.as_deref());
        let span = telemetry::span!("store.commit", inlet.events = commit.events.len());
        let committed = engine.store.commit(commit).instrument(span.clone()).await;
        if let Err(err) = &committed {
            telemetry::failed(&span, err);
        }
        match committed.map_err(store_err)? {
            CommitOutcome::Stored { record, dropped } => {
                summary.events += record.events as u64;
                summary.duplicates += dropped as u64;
                Counters::add(&state.counters.events_pull, record.events as u64);
                state.history.record(
                    crate::registry::history::Path::Pull,
                    record.events as u64,
                    now_ms(),
                );
                Counters::add(&state.counters.events_deduplicated, dropped as u64);
            }
            CommitOutcome::Duplicate(_) => unreachable!("pull commits carry no idempotency key"),
        }
        summary.batches += 1;
        // On shutdown, stop after the batch just committed; the rest comes
        // after the restart, from this checkpoint.
        if stalled {
            tracing::warn!(connector = %name, partition = ?partition, "The connector said has-more without moving its checkpoint; the run stops here and the next one pulls again.");
            state.set_error(Some(format!(
                "pull{}: has-more without a new checkpoint; the run stopped to avoid re-reading the same page",
                partition.as_deref().map(|p| format!(" of partition `{p}`")).unwrap_or_default()
            )));
            break;
        }
        if !batch.has_more || engine.shutdown.is_cancelled() {
            break;
        }
        if summary.batches >= budget.max_batches_per_run || started.elapsed() >= budget.max_run_time
        {
            summary.budget_exhausted += 1;
            tracing::info!(connector = %name, partition = ?partition, batches = summary.batches, "Pull run budget used up; the rest comes on the next run.");
            break;
        }
    }
    tracing::debug!(connector = %name, partition = ?partition, batches = summary.batches, events = summary.events, "Partition pulled.");
    Ok(summary)
}
