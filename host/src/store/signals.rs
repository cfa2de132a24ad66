//! Commit signals for long polls, one per source: a commit wakes only the
//! waiters of its own source, so thousands of idle long polls on one
//! source cost nothing to pushes on another.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// Signals are dropped once nobody waits and the map is this large.
const PRUNE_AT: usize = 1024;

/// Per-source commit counters that long polls wait on.
#[derive(Debug, Default)]
pub struct CommitSignals {
    senders: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl CommitSignals {
    /// A receiver that changes after every commit to `source`.
    pub fn subscribe(&self, source: &str) -> watch::Receiver<u64> {
        let mut senders = self.senders.lock().expect("signals lock");
        if senders.len() >= PRUNE_AT {
            senders.retain(|_, tx| tx.receiver_count() > 0);
        }
        senders
            .entry(source.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes the waiters of `source`, if any.
    pub fn notify(&self, source: &str) {
        if let Some(tx) = self.senders.lock().expect("signals lock").get(source)
            && tx.receiver_count() > 0
        {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes every waiter (a store that cannot see other hosts' commits
    /// polls this way).
    pub fn notify_waiting(&self) {
        for tx in self.senders.lock().expect("signals lock").values() {
            if tx.receiver_count() > 0 {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_wakes_only_its_own_source() {
        let signals = CommitSignals::default();
        let mut a = signals.subscribe("a");
        let b = signals.subscribe("b");
        signals.notify("a");
        assert!(a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());
        a.borrow_and_update();
        signals.notify_waiting();
        assert!(a.has_changed().unwrap() && b.has_changed().unwrap());
    }
}
