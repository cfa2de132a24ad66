//! Who holds a call when its deadline expires: the guest's own code, or the
//! source it waits on.
//!
//! A call has one deadline (`push_deadline` or `pull_deadline`). When it
//! expires while the guest is blocked in a host call that waits on the
//! source — a SQL query, an outbound request whose response has not arrived
//! or whose body is still coming — the source was slow: the call fails as
//! [`CallError::SourceTimeout`](super::CallError::SourceTimeout) (pull:
//! backoff; push: 503 with Retry-After), never toward quarantine. When it
//! expires while the guest is computing, the epoch interrupt traps it: that
//! is the connector's failure (class `deadline`, counted toward
//! quarantine), unless the source's answer came so late that the guest had
//! less than the call's margin left to use it (the last source wait ended
//! within the margin before the interrupt, on a slow machine). Waiting on
//! anything else (a timer) is the guest's own time.
//!
//! So that this is rare, host calls that wait on a source end on their own
//! before the deadline: [`source_budget`] leaves a [`margin`] of at least
//! [`MARGIN_FLOOR`] for the reply's round trip and the guest's own work, and
//! a connector that may wait on a source needs a deadline of at least
//! [`MIN_SOURCE_DEADLINE`] (checked at load).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The least time a source wait leaves before the call's deadline.
pub const MARGIN_FLOOR: Duration = Duration::from_millis(250);

/// The shortest deadline of a connector that may wait on a source (one
/// with `allowed_hosts` or `[sandbox.sql]`): the margin, and as much again
/// for the source.
pub const MIN_SOURCE_DEADLINE: Duration = Duration::from_millis(500);

/// What is kept back from `left` (the time to the deadline): a tenth of it,
/// and never less than [`MARGIN_FLOOR`].
pub fn margin(left: Duration) -> Duration {
    (left / 10).max(MARGIN_FLOOR)
}

/// How long a source wait starting now may take so that the call still
/// has its [`margin`] when it ends; zero when there is no time for one.
pub fn source_budget(deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    left.saturating_sub(margin(left))
}

/// The host calls of one guest call that wait on its source: how many do
/// now, and how long the call has spent waiting on it in all.
#[derive(Debug, Default)]
pub struct SourceWaits {
    inner: Mutex<Waits>,
}

#[derive(Debug, Default)]
struct Waits {
    active: usize,
    /// When the last wait ended (`active` went to 0).
    last_end: Option<Instant>,
    /// What the latest wait was for (for the error message).
    latest: String,
}

impl SourceWaits {
    /// Marks a wait on `what` (such as ``sql connection `main` `` or
    /// `GET http://127.0.0.1:9000/x`) until the guard drops.
    pub fn enter(self: &std::sync::Arc<Self>, what: impl Into<String>) -> WaitGuard {
        let mut w = self.inner.lock().expect("lock");
        w.latest = what.into();
        w.active += 1;
        WaitGuard {
            waits: self.clone(),
        }
    }

    /// What the call is waiting on now, if anything.
    pub fn waiting_on(&self) -> Option<String> {
        let w = self.inner.lock().expect("lock");
        (w.active > 0).then(|| w.latest.clone())
    }

    /// What the source answered late, if its last wait ended less than
    /// `within` ago (and none is running now).
    pub fn ended_within(&self, within: Duration) -> Option<String> {
        let w = self.inner.lock().expect("lock");
        (w.active == 0 && w.last_end.is_some_and(|t| t.elapsed() < within))
            .then(|| w.latest.clone())
    }
}

/// One wait on the source; ends when dropped.
#[derive(Debug)]
pub struct WaitGuard {
    waits: std::sync::Arc<SourceWaits>,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut w = self.waits.inner.lock().expect("lock");
        w.active -= 1;
        if w.active == 0 {
            w.last_end = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_margin_has_a_floor_and_a_fraction() {
        assert_eq!(margin(Duration::from_secs(1)), MARGIN_FLOOR);
        assert_eq!(margin(Duration::from_secs(60)), Duration::from_secs(6));
        assert_eq!(margin(Duration::ZERO), MARGIN_FLOOR);
        let started = Instant::now();
        let budget = source_budget(started + Duration::from_secs(1));
        assert!(budget <= Duration::from_millis(750), "{budget:?}");
        assert!(
            budget + started.elapsed() >= Duration::from_millis(750),
            "{budget:?}"
        );
        assert_eq!(
            source_budget(Instant::now() + Duration::from_millis(200)),
            Duration::ZERO
        );
    }

    #[test]
    fn waits_are_counted_until_their_guards_drop() {
        let waits = Arc::new(SourceWaits::default());
        assert_eq!(waits.waiting_on(), None);
        let a = waits.enter("sql connection `main`");
        let b = waits.enter("GET http://127.0.0.1/x");
        drop(a);
        assert_eq!(
            waits.waiting_on().as_deref(),
            Some("GET http://127.0.0.1/x")
        );
        drop(b);
        assert_eq!(waits.waiting_on(), None);
        assert_eq!(
            waits.ended_within(Duration::from_secs(60)).as_deref(),
            Some("GET http://127.0.0.1/x")
        );
        assert_eq!(waits.ended_within(Duration::ZERO), None);
    }
}
