//! One loop per pull connector: wait, run, adapt the interval or back off.

use super::{PullError, RunSummary, run_once};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::registry::{Connector, PullState, PullStatus};
use crate::store::Store;
use crate::store::now_ms;
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The pull interval when neither the manifest nor `describe()` gives one.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);

/// The most a regular run is delayed by jitter: a tenth of the interval, at
/// most this much, so that connectors started together spread out.
const MAX_JITTER: Duration = Duration::from_secs(1);

/// How soon a partition whose run budget ran out is pulled again.
const BUDGET_PAUSE: Duration = Duration::from_millis(100);

/// The pull engine: starts and tracks the per-connector loops, follows the
/// registry's reloads, holds each connector's `max_parallel` slots (shared
/// by scheduled and manual runs) and the host-wide worker cap.
pub struct Scheduler {
    pub(super) registry: Arc<Registry>,
    pub(super) store: Arc<dyn Store>,
    pub(super) metrics: Arc<Metrics>,
    /// At most `pull_workers` partitions pulled at once, host-wide.
    pub(super) workers: Semaphore,
    pub(super) shutdown: CancellationToken,
    loops: Mutex<HashMap<String, JoinHandle<()>>>,
    slots: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
}

/// When a connector's regular runs happen.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cadence {
    /// A base interval, adapted within `[min, max]` after each run.
    Every(Duration),
    /// The fire times of a cron expression (UTC); not adapted.
    Cron(Box<cron::Schedule>),
}

/// The timing rules of one connector, from its manifest and descriptor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Timing {
    pub cadence: Cadence,
    /// Fastest adaptive interval (`every` when not adaptive).
    pub min: Duration,
    /// Slowest adaptive interval, and the wait after a permanent failure.
    pub max: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Timing {
    /// The manifest's `every` or `cron`, else the descriptor's schedule (a
    /// duration such as `"1m"` or a cron expression), else [`DEFAULT_EVERY`].
    pub(crate) fn of(connector: &Connector) -> Self {
        let pull = &connector.manifest.pull;
        let cadence = match (pull.every, &pull.cron) {
            (Some(every), _) => Cadence::Every(every),
            (None, Some(expr)) => match crate::config::parse_cron(expr) {
                Ok(s) => Cadence::Cron(Box::new(s)),
                // Checked at load; a cron that has since run out of fire
                // times falls back to the default interval.
                Err(_) => Cadence::Every(DEFAULT_EVERY),
            },
            (None, None) => connector
                .descriptor
                .schedule
                .as_deref()
                .and_then(|s| {
                    crate::config::parse_duration(s)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .map(Cadence::Every)
                        .or_else(|| {
                            crate::config::parse_cron(s)
                                .ok()
                                .map(|c| Cadence::Cron(Box::new(c)))
                        })
                })
                .unwrap_or(Cadence::Every(DEFAULT_EVERY)),
        };
        let (min, max) = match &cadence {
            Cadence::Every(every) => {
                let every = (*every).max(Duration::from_millis(10));
                // Adaptive polling is opt-in: without bounds the interval is fixed.
                (
                    pull.min_interval.unwrap_or(every).min(every),
                    pull.max_interval.unwrap_or(every).max(every),
                )
            }
            Cadence::Cron(_) => (
                pull.min_interval.unwrap_or(BUDGET_PAUSE),
                pull.max_interval.unwrap_or(Duration::ZERO),
            ),
        };
        Timing {
            cadence,
            min,
            max,
            retry_initial: pull.retry.initial,
            retry_max: pull.retry.max,
        }
    }

    /// The base interval, for `every` schedules.
    pub(crate) fn every(&self) -> Option<Duration> {
        match self.cadence {
            Cadence::Every(every) => Some(every.clamp(self.min, self.max)),
            Cadence::Cron(_) => None,
        }
    }

    /// How the schedule reads in status.
    pub(crate) fn describe(&self) -> String {
        match &self.cadence {
            Cadence::Every(every) => format!("every {}", humantime::format_duration(*every)),
            Cadence::Cron(s) => format!("cron {} (UTC)", s.source()),
        }
    }

    /// The wait before the next regular run after a good one: the (adapted)
    /// `interval`, or the time to the next cron fire, plus a little jitter.
    pub(crate) fn next_run(&self, interval: Duration) -> Duration {
        match &self.cadence {
            Cadence::Every(_) => interval + jitter(interval),
            Cadence::Cron(s) => {
                let (wait, gap) = until_fire(s);
                wait + jitter(gap)
            }
        }
    }

    /// Full-jitter exponential backoff after `failures` consecutive failures.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let exp = self
            .retry_initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let cap = exp.min(self.retry_max);
        let jitter = rand::rng().random_range(0.0..=1.0);
        cap.mul_f64(jitter).max(Duration::from_millis(10))
    }
}

/// Up to a tenth of `interval`, at most [`MAX_JITTER`].
fn jitter(interval: Duration) -> Duration {
    let cap = (interval / 10).min(MAX_JITTER);
    cap.mul_f64(rand::rng().random_range(0.0..=1.0))
}

/// The wait until `schedule` next fires, and the gap to the fire after it.
/// A schedule with no fire left waits a day (the manifest check refuses
/// those; this only covers one that ran out while loaded).
fn until_fire(schedule: &cron::Schedule) -> (Duration, Duration) {
    let now = chrono::Utc::now();
    let mut fires = schedule.after(&now);
    let day = Duration::from_secs(24 * 3600);
    let Some(next) = fires.next() else {
        return (day, day);
    };
    let wait = (next - now).to_std().unwrap_or_default();
    let gap = fires
        .next()
        .and_then(|after| (after - next).to_std().ok())
        .unwrap_or(day);
    (wait, gap)
}

impl Scheduler {
    pub fn new(
        registry: Arc<Registry>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        pull_workers: usize,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Scheduler {
            registry,
            store,
            metrics,
            workers: Semaphore::new(pull_workers),
            shutdown,
            loops: Mutex::default(),
            slots: Mutex::default(),
        })
    }

    /// Starts the loops of the connectors loaded now, then follows every
    /// reload the registry publishes until shutdown.
    pub fn start(self: &Arc<Self>) -> impl std::future::Future<Output = ()> + Send + 'static {
        // Subscribed before the first sync: a reload published in between
        // is seen by the loop below, never lost.
        let mut reloads = self.registry.reloads();
        self.sync();
        let this = self.clone();
        async move {
            loop {
                tokio::select! {
                    // Shutdown first: no loop starts once it began.
                    biased;
                    _ = this.shutdown.cancelled() => return,
                    changed = reloads.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        this.sync();
                    }
                }
            }
        }
    }

    /// Starts a loop for every loaded pull connector that has none, and
    /// stops the loops of connectors that were removed or no longer pull
    /// (a run in progress is dropped; it never moves a checkpoint).
    fn sync(self: &Arc<Self>) {
        let engine = self;
        let mut loops = self.loops.lock().expect("scheduler lock");
        // `stop` drains the loops under this lock after cancelling: a sync
        // that comes later starts nothing.
        if engine.shutdown.is_cancelled() {
            return;
        }
        loops.retain(|name, h| {
            let pulls = engine.registry.get(name).is_some_and(|c| c.descriptor.pull);
            if !pulls {
                h.abort();
                tracing::info!(connector = %name, "Pull schedule stopped: the connector was unloaded or no longer pulls.");
                let (store, name) = (engine.store.clone(), name.clone());
                tokio::spawn(async move { store.leave(&name).await });
            }
            pulls && !h.is_finished()
        });
        for connector in engine.registry.all() {
            if !connector.descriptor.pull || loops.contains_key(connector.name.as_str()) {
                continue;
            }
            let name = connector.name.to_string();
            let task = tokio::spawn(run_loop(self.clone(), name.clone()));
            loops.insert(name, task);
        }
    }

    /// The slots that keep `connector` to `max_parallel` partitions at
    /// once, across scheduled and manual runs. A new `max_parallel` (after a
    /// reload) starts a new set; runs on the old one finish on it.
    pub(crate) fn slots(&self, connector: &str, max_parallel: u32) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().expect("scheduler lock");
        let entry = slots.entry(connector.to_string()).or_insert_with(|| {
            (
                max_parallel,
                Arc::new(Semaphore::new(max_parallel as usize)),
            )
        });
        if entry.0 != max_parallel {
            *entry = (
                max_parallel,
                Arc::new(Semaphore::new(max_parallel as usize)),
            );
        }
        entry.1.clone()
    }

    /// Stops every loop. A run in progress finishes its current batch and
    /// commits it; one still running after `drain` is dropped (a dropped
    /// run never moves a checkpoint).
    pub async fn stop(&self, drain: Duration) {
        let handles: Vec<_> = self.loops.lock().expect("scheduler lock").drain().collect();
        let deadline = tokio::time::Instant::now() + drain;
        for (name, mut h) in handles {
            if tokio::time::timeout_at(deadline, &mut h).await.is_err() {
                tracing::warn!(connector = %name, "Drain timeout: a pull run was cut off before its next commit.");
                h.abort();
                let _ = h.await;
            }
        }
    }
}

async fn run_loop(engine: Arc<Scheduler>, name: String) {
    let state = engine.registry.source(&name);
    let mut interval: Option<Duration> = None;
    let mut failures = 0u32;
    // The first pull comes at once (a cron schedule waits for its first
    // fire), spread by a little jitter.
    let mut wake_at = Instant::now()
        + match engine.registry.get(&name).map(|c| Timing::of(&c)) {
            Some(
                t @ Timing {
                    cadence: Cadence::Cron(_),
                    ..
                },
            ) => t.next_run(Duration::ZERO),
            _ => Duration::from_millis(rand::rng().random_range(0..50)),
        };
    // The timing and start of the last run, to reschedule after a reload.
    let mut last: Option<(Timing, Instant)> = None;
    engine.store.join(&name).await;
    tracing::info!(connector = %name, "Pull schedule started.");
    loop {
        {
            let mut status = state.pull.lock().expect("lock");
            let left = wake_at.saturating_duration_since(Instant::now());
            status.next_pull_ms = Some(now_ms() + left.as_millis() as u64);
            if status.schedule.is_none()
                && let Some(c) = engine.registry.get(&name)
            {
                status.schedule = Some(Timing::of(&c).describe());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = state.version_changed() => {
                // A new version: follow its manifest from the last run, so
                // the connector keeps its place (checkpoints never move here).
                if let (Some(c), Some((old, started)), 0) =
                    (engine.registry.get(&name).filter(|c| c.descriptor.pull), &last, failures)
                {
                    let timing = Timing::of(&c);
                    if &timing != old {
                        interval = None;
                        wake_at = match timing.every() {
                            Some(every) => *started + every,
                            None => Instant::now() + timing.next_run(Duration::ZERO),
                        };
                        state.pull.lock().expect("lock").schedule = Some(timing.describe());
                        tracing::info!(connector = %name, schedule = %timing.describe(), "Pull schedule follows the new manifest.");
                    }
                }
                continue;
            }
            _ = engine.shutdown.cancelled() => break,
        }
        let Some(connector) = engine.registry.get(&name).filter(|c| c.descriptor.pull) else {
            // Unloaded: `Scheduler::sync` stops this loop; until then, wait
            // for the connector to come back.
            tokio::select! {
                _ = state.version_changed() => {}
                _ = engine.shutdown.cancelled() => break,
            }
            wake_at = Instant::now();
            continue;
        };
        if let Some(wait) = state.quarantined(&connector.sandbox) {
            // Skipped, not failed: the quarantine's end is the next try.
            state.pull.lock().expect("lock").state = Some(PullState::Quarantined);
            wake_at = Instant::now() + wait;
            continue;
        }
        let timing = Timing::of(&connector);
        last = Some((timing.clone(), Instant::now()));
        let current = interval
            .or(timing.every())
            .map(|i| i.clamp(timing.min, timing.max));
        // A run in progress is not cut off by shutdown: it stops after its
        // current batch commits, and `Scheduler::stop` bounds the wait.
        let result = run_once(&engine, &connector).await;
        let now = now_ms();
        let mut status = state.pull.lock().expect("lock");
        status.last_pull_ms = Some(now);
        let delay = match result {
            Ok(summary) => {
                failures = 0;
                interval = current.map(|c| adapt(c, &summary, &timing));
                *status = PullStatus {
                    state: Some(PullState::Ok),
                    schedule: Some(timing.describe()),
                    last_pull_ms: Some(now),
                    next_pull_ms: None,
                    interval_ms: interval.map(|i| i.as_millis() as u64),
                    consecutive_failures: 0,
                    last_error: None,
                    leased_elsewhere: summary.leased_elsewhere,
                };
                state.set_error(None);
                // Partitions leased elsewhere do not bring the next run
                // forward: the schedule is the connector's on every host, and
                // a dead host's partitions are taken at the next run after
                // its leases expire.
                if summary.budget_exhausted > 0 {
                    timing.min.min(BUDGET_PAUSE)
                } else {
                    timing.next_run(interval.unwrap_or_default())
                }
            }
            Err(err) => {
                failures += 1;
                let delay = failure_delay(&err, failures, &timing);
                status.state = Some(if err.is_permanent() {
                    PullState::Failing
                } else {
                    PullState::Backoff
                });
                status.consecutive_failures = failures;
                status.last_error = Some(err.to_string());
                state.set_error(Some(err.to_string()));
                tracing::warn!(connector = %name, failures, retry_in_ms = delay.as_millis() as u64, error = %err, "Pull failed; the checkpoint did not move.");
                delay
            }
        };
        drop(status);
        wake_at = Instant::now() + delay;
    }
    tracing::info!(connector = %name, "Pull schedule stopped.");
}

/// Halve after data, double after an empty run, within the bounds.
pub(crate) fn adapt(current: Duration, summary: &RunSummary, t: &Timing) -> Duration {
    if summary.events > 0 {
        (current / 2).max(t.min)
    } else {
        current.saturating_mul(2).min(t.max)
    }
}

/// The wait after a failed run: `max_interval` (or the next regular run,
/// if later) when retrying cannot help; otherwise exponential backoff with
/// full jitter, and at least the wait a rate-limiting source asked for.
pub(crate) fn failure_delay(err: &PullError, failures: u32, t: &Timing) -> Duration {
    if err.is_permanent() {
        return t.max.max(t.next_run(t.every().unwrap_or_default()));
    }
    let backoff = t.backoff(failures);
    match err.retry_after() {
        Some(wait) => wait.max(backoff),
        None => backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            cadence: Cadence::Every(Duration::from_secs(8)),
            min: Duration::from_secs(2),
            max: Duration::from_secs(32),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }

    #[test]
    fn adaptive_interval_stays_in_bounds() {
        let t = timing();
        let data = RunSummary {
            events: 5,
            ..Default::default()
        };
        let empty = RunSummary::default();
        assert_eq!(
            adapt(Duration::from_secs(8), &data, &t),
            Duration::from_secs(4)
        );
        assert_eq!(
            adapt(Duration::from_secs(3), &data, &t),
            Duration::from_secs(2)
        );
        assert_eq!(
            adapt(Duration::from_secs(8), &empty, &t),
            Duration::from_secs(16)
        );
        assert_eq!(
            adapt(Duration::from_secs(20), &empty, &t),
            Duration::from_secs(32)
        );
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let t = timing();
        for failures in 1..40 {
            let d = t.backoff(failures);
            let cap = Duration::from_secs(1 << (failures - 1).min(20)).min(t.retry_max);
            assert!(d <= cap, "{failures}: {d:?} > {cap:?}");
        }
    }

    #[test]
    fn jitter_is_small() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_secs(5)) <= Duration::from_millis(500));
            assert!(jitter(Duration::from_secs(3600)) <= MAX_JITTER);
        }
    }

    #[test]
    fn cron_waits_for_the_next_fire() {
        let every_second: cron::Schedule = "* * * * * *".parse().unwrap();
        let (wait, gap) = until_fire(&every_second);
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(gap, Duration::from_secs(1));
        let t = Timing {
            cadence: Cadence::Cron(Box::new("0 0 * * * *".parse().unwrap())),
            ..timing()
        };
        assert!(t.next_run(Duration::ZERO) <= Duration::from_secs(3600) + MAX_JITTER);
        assert_eq!(t.every(), None);
        assert_eq!(t.describe(), "cron 0 0 * * * * (UTC)");
    }
}
