//! State kept per source across versions of its connector.

use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
        })
    }
}

/// What the scheduler shows about a connector's pulls.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PullStatus {
    /// `ok`, `backoff` or `failing`.
    pub state: String,
    pub last_pull_ms: Option<u64>,
    pub next_pull_ms: Option<u64>,
    pub interval_ms: Option<u64>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

/// Per-source state that outlives any one loaded version.
#[derive(Debug, Default)]
pub struct SourceState {
    pub counters: Counters,
    last_error: Mutex<Option<String>>,
    manifest_text: Mutex<String>,
    pub pull: Mutex<PullStatus>,
    in_flight_keys: Mutex<HashSet<String>>,
    partition_locks: Mutex<HashMap<Option<String>, Arc<tokio::sync::Mutex<()>>>>,
    version_changed: tokio::sync::Notify,
}

impl SourceState {
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("lock").clone()
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
