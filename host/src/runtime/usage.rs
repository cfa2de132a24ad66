//! What a source's calls used, kept per source across calls and versions
//! (a reload does not reset it): log lines dropped, and guest CPU time with
//! the throttle that holds a source to its share of the cores.
//!
//! CPU time is counted in epoch ticks: the epoch callback runs once per
//! tick (10 ms) only while a guest executes wasm, so a tick is 10 ms of
//! one core spent in the connector's own code (host calls it waits on do
//! not count). Before each further tick a guest reserves it within its
//! source's share per 100 ms window (half the cores); a guest that finds
//! the share spent sleeps until the window ends and tries again. Other
//! sources get the cores back, and a source that spins in many calls at
//! once gets no more CPU than one that spins in one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The window a source's share of CPU is counted over.
pub(crate) const WINDOW: Duration = Duration::from_millis(100);

/// A source's use of what its calls share.
#[derive(Debug, Default)]
pub struct Usage {
    log_lines_dropped: AtomicU64,
    cpu_ticks: AtomicU64,
    throttled_ms: AtomicU64,
    /// Bytes of linear memory of the source's live instances.
    memory_bytes: AtomicU64,
    /// (window index since the epoch, ticks reserved in it).
    window: Mutex<(u64, u64)>,
}

impl Usage {
    /// Log lines dropped because their call's log budget was spent.
    pub fn log_lines_dropped(&self) -> u64 {
        self.log_lines_dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn log_line_dropped(&self) {
        self.log_lines_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Epoch ticks its guests ran (each 10 ms of one core).
    pub fn cpu_ticks(&self) -> u64 {
        self.cpu_ticks.load(Ordering::Relaxed)
    }

    /// Milliseconds its guests slept because the source was over its CPU
    /// share.
    pub fn throttled_ms(&self) -> u64 {
        self.throttled_ms.load(Ordering::Relaxed)
    }

    /// Counts a throttled guest's sleep.
    pub(crate) fn throttled(&self, slept: Duration) {
        self.throttled_ms
            .fetch_add(slept.as_millis() as u64, Ordering::Relaxed);
    }

    /// Bytes of memory its live instances hold.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    /// Takes `bytes` more for one of its instances, unless that would put
    /// the source over `budget`.
    pub(crate) fn reserve_memory(&self, bytes: usize, budget: usize) -> bool {
        let (bytes, budget) = (bytes as u64, budget as u64);
        self.memory_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|total| *total <= budget)
            })
            .is_ok()
    }

    /// Gives back what an instance held.
    pub(crate) fn release_memory(&self, bytes: usize) {
        self.memory_bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
    }

    /// Counts one tick its guests ran.
    pub(crate) fn ran_tick(&self) {
        self.cpu_ticks.fetch_add(1, Ordering::Relaxed);
    }

    /// Reserves the next tick for one of its guests at `now_ms`, within a
    /// share of `ticks_per_window` per [`WINDOW`]: zero when the guest may
    /// run on, else how long to wait before trying again (until the window
    /// ends). A guest runs a tick only once it has reserved it, so however
    /// many guests a source runs at once, together they get no more than
    /// its share.
    pub(crate) fn reserve(&self, now_ms: u64, ticks_per_window: u64) -> Duration {
        let window_ms = WINDOW.as_millis() as u64;
        let index = now_ms / window_ms;
        let mut window = self.window.lock().expect("usage lock");
        if window.0 != index {
            *window = (index, 0);
        }
        if window.1 < ticks_per_window {
            window.1 += 1;
            return Duration::ZERO;
        }
        drop(window);
        Duration::from_millis(window_ms - now_ms % window_ms)
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Ticks per [`WINDOW`] a source may use: half the cores (at least one),
/// at one tick per 10 ms.
pub(crate) fn default_ticks_per_window() -> u64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    (cores / 2).max(1) * (WINDOW.as_millis() as u64 / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_over_its_share_waits_until_the_window_ends() {
        let usage = Usage::default();
        for _ in 0..10 {
            assert_eq!(usage.reserve(5_000, 10), Duration::ZERO);
        }
        assert_eq!(usage.reserve(5_000, 10), Duration::from_millis(100));
        assert_eq!(usage.reserve(5_080, 10), Duration::from_millis(20));
        assert_eq!(usage.reserve(5_100, 10), Duration::ZERO, "a new window");
    }
}
