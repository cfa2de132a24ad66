//! What a source's calls used, kept per source across calls and versions
//! (a reload does not reset it): read by the metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// A source's use of what its calls share.
#[derive(Debug, Default)]
pub struct Usage {
    log_lines_dropped: AtomicU64,
}

impl Usage {
    /// Log lines dropped because their call's log budget was spent.
    pub fn log_lines_dropped(&self) -> u64 {
        self.log_lines_dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn log_line_dropped(&self) {
        self.log_lines_dropped.fetch_add(1, Ordering::Relaxed);
    }
}
