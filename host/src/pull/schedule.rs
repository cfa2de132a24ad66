//! One loop per pull connector: wait, run, adapt the interval or back off.

use super::{PullError, RunSummary, run_once};
use crate::host::Host;
use crate::registry::{Connector, PullStatus};
use crate::store::now_ms;
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The pull interval when neither the manifest nor `describe()` gives one.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);

/// Starts and tracks the per-connector loops.
#[derive(Default)]
pub struct Scheduler {
    loops: Mutex<HashMap<String, JoinHandle<()>>>,
}

/// The timing rules of one connector, from its manifest and descriptor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Timing {
    pub every: Duration,
    pub min: Duration,
    pub max: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Timing {
    pub(crate) fn of(connector: &Connector) -> Self {
        let pull = &connector.manifest.pull;
        let every = pull
            .every
            .or_else(|| {
                connector
                    .descriptor
                    .schedule
                    .as_deref()
                    .and_then(|s| crate::config::parse_duration(s).ok())
            })
            .unwrap_or(DEFAULT_EVERY)
            .max(Duration::from_millis(10));
        // Adaptive polling is opt-in: without bounds the interval is fixed.
        let min = pull.min_interval.unwrap_or(every).min(every);
        let max = pull.max_interval.unwrap_or(every).max(every);
        Timing {
            every,
            min,
            max,
            retry_initial: pull.retry.initial,
            retry_max: pull.retry.max,
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

impl Scheduler {
    /// Starts a loop for every loaded pull connector that has none, and
    /// stops the loops of connectors that were removed or no longer pull
    /// (a run in progress is dropped; it never moves a checkpoint).
    pub fn sync(&self, host: &Arc<Host>) {
        let mut loops = self.loops.lock().expect("scheduler lock");
        loops.retain(|name, h| {
            let pulls = host.registry.get(name).is_some_and(|c| c.descriptor.pull);
            if !pulls {
                h.abort();
                tracing::info!(connector = %name, "Pull schedule stopped: the connector was unloaded or no longer pulls.");
            }
            pulls && !h.is_finished()
        });
        for connector in host.registry.all() {
            if !connector.descriptor.pull || loops.contains_key(&connector.name) {
                continue;
            }
            let name = connector.name.clone();
            let task = tokio::spawn(run_loop(host.clone(), name.clone()));
            loops.insert(name, task);
        }
    }

    /// Stops every loop (runs in progress are dropped between commits or
    /// before theirs; a dropped run never moves a checkpoint).
    pub async fn stop(&self) {
        let handles: Vec<_> = self.loops.lock().expect("scheduler lock").drain().collect();
        for (_, h) in handles {
            h.abort();
            let _ = h.await;
        }
    }
}

async fn run_loop(host: Arc<Host>, name: String) {
    let state = host.registry.source(&name);
    let mut interval: Option<Duration> = None;
    let mut failures = 0u32;
    // The first pull comes at once, spread by a little jitter.
    let mut delay = Duration::from_millis(rand::rng().random_range(0..50));
    let mut wake_at = Instant::now() + delay;
    // The timing and start of the last run, to reschedule after a reload.
    let mut last: Option<(Timing, Instant)> = None;
    tracing::info!(connector = %name, "Pull schedule started.");
    loop {
        {
            let mut status = state.pull.lock().expect("lock");
            let left = wake_at.saturating_duration_since(Instant::now());
            status.next_pull_ms = Some(now_ms() + left.as_millis() as u64);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = state.version_changed() => {
                // A new version: follow its manifest from the last run, so
                // the connector keeps its place (checkpoints never move here).
                if let (Some(c), Some((old, started)), 0) =
                    (host.registry.get(&name).filter(|c| c.descriptor.pull), last, failures)
                {
                    let timing = Timing::of(&c);
                    if timing != old {
                        interval = None;
                        wake_at = started + timing.every;
                        tracing::info!(connector = %name, every_ms = timing.every.as_millis() as u64, "Pull schedule follows the new manifest.");
                    }
                }
                continue;
            }
            _ = host.shutdown.cancelled() => break,
        }
        let Some(connector) = host.registry.get(&name).filter(|c| c.descriptor.pull) else {
            // Unloaded: `Scheduler::sync` stops this loop; until then, wait
            // for the connector to come back.
            tokio::select! {
                _ = state.version_changed() => {}
                _ = host.shutdown.cancelled() => break,
            }
            wake_at = Instant::now();
            continue;
        };
        if let Some(wait) = state.quarantined(&connector.sandbox) {
            // Skipped, not failed: the quarantine's end is the next try.
            state.pull.lock().expect("lock").state = "quarantined".into();
            wake_at = Instant::now() + wait;
            continue;
        }
        let timing = Timing::of(&connector);
        last = Some((timing, Instant::now()));
        let current = interval
            .unwrap_or(timing.every)
            .clamp(timing.min, timing.max);
        let result = tokio::select! {
            r = run_once(&host, &connector) => r,
            _ = host.shutdown.cancelled() => break,
        };
        let now = now_ms();
        let mut status = state.pull.lock().expect("lock");
        status.last_pull_ms = Some(now);
        match result {
            Ok(summary) => {
                failures = 0;
                let next = adapt(current, &summary, &timing);
                interval = Some(next);
                delay = if summary.budget_exhausted > 0 {
                    timing.min.min(Duration::from_millis(100))
                } else {
                    next
                };
                *status = PullStatus {
                    state: "ok".into(),
                    last_pull_ms: Some(now),
                    next_pull_ms: None,
                    interval_ms: Some(next.as_millis() as u64),
                    consecutive_failures: 0,
                    last_error: None,
                };
                state.set_error(None);
            }
            Err(err) => {
                failures += 1;
                delay = failure_delay(&err, failures, &timing);
                status.state = if err.is_permanent() {
                    "failing"
                } else {
                    "backoff"
                }
                .into();
                status.consecutive_failures = failures;
                status.last_error = Some(err.to_string());
                state.set_error(Some(err.to_string()));
                tracing::warn!(connector = %name, failures, retry_in_ms = delay.as_millis() as u64, error = %err, "Pull failed; the checkpoint did not move.");
            }
        }
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

pub(crate) fn failure_delay(err: &PullError, failures: u32, t: &Timing) -> Duration {
    if err.is_permanent() {
        return t.max.max(t.every);
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
            every: Duration::from_secs(8),
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
}
