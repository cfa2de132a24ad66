//! State kept per source across versions of its connector.

use crate::runtime::{CallError, FailureClass, Sandbox, Usage};
use crate::store::now_ms;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The longest quarantine cool-down, however often a connector relapses
/// (unless `quarantine_cooldown` itself is longer).
const MAX_QUARANTINE: Duration = Duration::from_secs(3600);

/// Counters shown in status and metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub push_accepted: AtomicU64,
    pub push_duplicate: AtomicU64,
    pub push_rejected: AtomicU64,
    pub push_failed: AtomicU64,
    pub events_push: AtomicU64,
    pub events_pull: AtomicU64,
    pub events_deduplicated: AtomicU64,
    pub pull_runs: AtomicU64,
    pub pull_failures: AtomicU64,
    pub reloads: AtomicU64,
    pub events_trimmed: AtomicU64,
    pub events_trimmed_forced: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "push_accepted": g(&self.push_accepted),
            "push_duplicate": g(&self.push_duplicate),
            "push_rejected": g(&self.push_rejected),
            "push_failed": g(&self.push_failed),
            "events_push": g(&self.events_push),
            "events_pull": g(&self.events_pull),
            "events_deduplicated": g(&self.events_deduplicated),
            "pull_runs": g(&self.pull_runs),
            "pull_failures": g(&self.pull_failures),
            "reloads": g(&self.reloads),
            "events_trimmed": g(&self.events_trimmed),
            "events_trimmed_forced": g(&self.events_trimmed_forced),
        })
    }
}

/// Where a connector's pull schedule stands after its last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PullState {
    /// The last run succeeded.
    Ok,
    /// The last run failed in a way retrying can fix; retried with backoff.
    Backoff,
    /// The last run failed for good (`invalid`, `unauthorized`); retried at
    /// `max_interval`.
    Failing,
    /// Skipped while the connector sits out a quarantine.
    Quarantined,
}

/// What the scheduler shows about a connector's pulls.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PullStatus {
    /// Where the schedule stands; `None` (JSON `null`) before the first run.
    pub state: Option<PullState>,
    /// The schedule in force, such as `every 30s` or `cron 0 */5 * * * * (UTC)`.
    pub schedule: Option<String>,
    pub last_pull_ms: Option<u64>,
    pub next_pull_ms: Option<u64>,
    pub interval_ms: Option<u64>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Partitions the last run left to other hosts, which hold their pull
    /// leases (JetStream store only).
    pub leased_elsewhere: u32,
}

/// Per-source state that outlives any one loaded version.
#[derive(Debug, Default)]
pub struct SourceState {
    pub counters: Counters,
    /// Events stored per minute over the last hour.
    pub history: super::history::History,
    /// What the source's calls used (log lines dropped), across versions.
    pub usage: Arc<Usage>,
    /// The component hash and manifest text whose load last failed in the
    /// component itself: not tried again until one of them changes.
    pub(crate) failed_component: Mutex<Option<(String, Option<String>)>>,
    last_error: Mutex<Option<String>>,
    /// Why the files on disk are not the version serving (a failed
    /// reload): status shows `stale` while it is set.
    reload_error: Mutex<Option<String>>,
    /// Set when a push failed in the connector; the next push it completes
    /// clears the push's error (so `failing` does not stick).
    push_failing: std::sync::atomic::AtomicBool,
    manifest_text: Mutex<String>,
    pub pull: Mutex<PullStatus>,
    in_flight_keys: Mutex<HashSet<String>>,
    partition_locks: Mutex<HashMap<Option<String>, Arc<tokio::sync::Mutex<()>>>>,
    /// Sandbox failures by class, in [`FailureClass::COUNTED`] order.
    failures: [AtomicU64; 5],
    quarantines: AtomicU64,
    quarantine: Mutex<Quarantine>,
    version_changed: tokio::sync::Notify,
}

/// Sandbox failures and the quarantine they led to.
#[derive(Debug, Default)]
struct Quarantine {
    /// Sandbox failures net of completed calls: each failure adds one, each
    /// completed call takes one off. A streak of failures reaches the limit
    /// as before; so does a pattern of several failures and an occasional
    /// good call, which a count reset by every good call never did.
    net_failures: u32,
    /// Quarantines since failures were last paid off; sets the cool-down.
    strikes: u32,
    /// End of the current (or last) quarantine.
    until_ms: u64,
    /// The version that was quarantined: a reload lifts the quarantine.
    version: Weak<Sandbox>,
    /// The failure that started it.
    reason: String,
}

/// What status shows about a quarantine in force.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineStatus {
    /// When calls resume by themselves (ms since the Unix epoch).
    pub until_ms: u64,
    /// Quarantines in a row without a good call in between.
    pub strikes: u32,
    /// The failure that started it.
    pub reason: String,
}

impl SourceState {
    /// Records the outcome of one call into `sandbox`'s connector: counts a
    /// sandbox failure by class and quarantines the connector after
    /// `quarantine_after` of them in a row (or after one, on probation right
    /// after a quarantine); a call that completes (even with a connector
    /// error) ends the streak.
    pub fn record_call<T>(&self, sandbox: &Arc<Sandbox>, result: &Result<T, CallError>) {
        let err = match result {
            Err(e) if e.is_sandbox_failure() => e,
            Err(CallError::Overloaded) => return,
            // A slow source is counted, but neither ends nor extends the
            // connector's failure streak.
            Err(e @ CallError::SourceTimeout { .. }) => {
                self.count_failure(e);
                return;
            }
            _ => {
                let mut q = self.quarantine.lock().expect("lock");
                q.net_failures = q.net_failures.saturating_sub(1);
                if q.net_failures == 0 {
                    q.strikes = 0;
                }
                return;
            }
        };
        self.count_failure(err);
        if sandbox.quarantine_after == 0 {
            return;
        }
        let mut q = self.quarantine.lock().expect("lock");
        if !Weak::ptr_eq(&q.version, &Arc::downgrade(sandbox)) {
            *q = Quarantine {
                version: Arc::downgrade(sandbox),
                ..Quarantine::default()
            };
        }
        let now = now_ms();
        if q.until_ms > now {
            return; // Already quarantined: a call that was in flight.
        }
        q.net_failures += 1;
        let on_probation = q.strikes > 0;
        if !on_probation && q.net_failures < sandbox.quarantine_after {
            return;
        }
        q.strikes += 1;
        let cooldown = sandbox
            .quarantine_cooldown
            .saturating_mul(1 << (q.strikes - 1).min(16))
            .min(MAX_QUARANTINE.max(sandbox.quarantine_cooldown));
        q.until_ms = now + cooldown.as_millis() as u64;
        q.reason = err.to_string();
        let failures = q.net_failures;
        q.net_failures = 0;
        self.quarantines.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            connector = %sandbox.name,
            failures,
            strikes = q.strikes,
            cooldown_ms = cooldown.as_millis() as u64,
            error = %err,
            "Connector quarantined after repeated sandbox failures; calls resume after the cool-down, a reload or POST /v1/connectors/{{name}}/resume."
        );
    }

    /// Counts a failure by class without touching the failure streak.
    pub fn count_failure(&self, err: &CallError) {
        if let Some(i) = FailureClass::COUNTED.iter().position(|c| *c == err.class()) {
            self.failures[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How long `sandbox`'s connector stays quarantined, if it is; a
    /// quarantine of an earlier version does not count.
    pub fn quarantined(&self, sandbox: &Arc<Sandbox>) -> Option<Duration> {
        let q = self.quarantine.lock().expect("lock");
        if !Weak::ptr_eq(&q.version, &Arc::downgrade(sandbox)) {
            return None;
        }
        let now = now_ms();
        (q.until_ms > now).then(|| Duration::from_millis(q.until_ms - now))
    }

    /// The quarantine in force for `sandbox`'s connector, for status.
    pub fn quarantine_status(&self, sandbox: &Arc<Sandbox>) -> Option<QuarantineStatus> {
        self.quarantined(sandbox)?;
        let q = self.quarantine.lock().expect("lock");
        Some(QuarantineStatus {
            until_ms: q.until_ms,
            strikes: q.strikes,
            reason: q.reason.clone(),
        })
    }

    /// Lifts a quarantine and forgets the failure streak; `true` if one was
    /// in force.
    pub fn resume(&self) -> bool {
        let mut q = self.quarantine.lock().expect("lock");
        let was = q.until_ms > now_ms();
        *q = Quarantine::default();
        was
    }

    /// Failed calls by class, for metrics.
    pub fn failure_counts(&self) -> Vec<(&'static str, u64)> {
        FailureClass::COUNTED
            .iter()
            .zip(&self.failures)
            .map(|(class, n)| (class.as_str(), n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Times this source was quarantined.
    pub fn quarantine_count(&self) -> u64 {
        self.quarantines.load(Ordering::Relaxed)
    }

    /// The counters metrics show.
    pub fn metric_counters(&self) -> crate::metrics::SourceCounters {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        crate::metrics::SourceCounters {
            push_rejected: g(&c.push_rejected),
            push_failed: g(&c.push_failed),
            events_push: g(&c.events_push),
            events_pull: g(&c.events_pull),
            events_deduplicated: g(&c.events_deduplicated),
            events_trimmed: g(&c.events_trimmed),
            events_trimmed_forced: g(&c.events_trimmed_forced),
            log_lines_dropped: self.usage.log_lines_dropped(),
            cpu_ticks: self.usage.cpu_ticks(),
            throttled_ms: self.usage.throttled_ms(),
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("lock").clone()
    }

    /// Why the version serving is not the files on disk, if it is not.
    pub fn reload_error(&self) -> Option<String> {
        self.reload_error.lock().expect("lock").clone()
    }

    pub fn set_reload_error(&self, e: Option<String>) {
        *self.reload_error.lock().expect("lock") = e;
    }

    /// A push failed in the connector: its error is the source's last.
    pub fn push_failed(&self, e: String) {
        // The error first: a push completing in between clears the flag
        // only after the error it would clear is there.
        let mut last = self.last_error.lock().expect("lock");
        *last = Some(e);
        self.push_failing.store(true, Ordering::Relaxed);
    }

    /// Whether the last push the connector ran failed.
    pub fn push_failing(&self) -> bool {
        self.push_failing.load(Ordering::Relaxed)
    }

    /// A push completed: an error an earlier push left is cleared (one
    /// atomic load when there is none).
    pub fn push_succeeded(&self) {
        if self.push_failing.load(Ordering::Relaxed)
            && self.push_failing.swap(false, Ordering::Relaxed)
        {
            let mut last = self.last_error.lock().expect("lock");
            if last.as_deref().is_some_and(|e| e.starts_with("on-push ")) {
                *last = None;
            }
        }
    }

    pub fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().expect("lock") = e;
    }

    pub(crate) fn manifest_text(&self) -> String {
        self.manifest_text.lock().expect("lock").clone()
    }

    pub(crate) fn set_manifest_text(&self, t: String) {
        *self.manifest_text.lock().expect("lock") = t;
    }

    /// Tells the pull schedule that the loaded version changed (a reload or
    /// a removal), so it follows the new manifest at once.
    pub(crate) fn notify_version_changed(&self) {
        self.version_changed.notify_one();
    }

    /// Completes after the next version change (or at once if one happened
    /// since the last wait).
    pub async fn version_changed(&self) {
        self.version_changed.notified().await;
    }

    /// Claims an idempotency key for one request; `None` when another
    /// request holds it. The claim ends when the guard drops.
    pub fn claim_key(self: &Arc<Self>, key: &str) -> Option<KeyClaim> {
        let mut keys = self.in_flight_keys.lock().expect("lock");
        if !keys.insert(key.to_string()) {
            return None;
        }
        Some(KeyClaim {
            source: self.clone(),
            key: key.to_string(),
        })
    }

    /// The lock that keeps one partition from being pulled twice at once.
    pub fn partition_lock(&self, partition: Option<&str>) -> Arc<tokio::sync::Mutex<()>> {
        self.partition_locks
            .lock()
            .expect("lock")
            .entry(partition.map(str::to_string))
            .or_default()
            .clone()
    }
}

impl SourceState {
    /// Drops the locks of partitions `keep` says no to, unless held.
    pub fn forget_partition_locks(&self, keep: impl Fn(&Option<String>) -> bool) {
        self.partition_locks
            .lock()
            .expect("lock")
            .retain(|p, lock| keep(p) || Arc::strong_count(lock) > 1);
    }
}

/// An idempotency key being processed; released on drop.
pub struct KeyClaim {
    source: Arc<SourceState>,
    key: String,
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        self.source
            .in_flight_keys
            .lock()
            .expect("lock")
            .remove(&self.key);
    }
}
