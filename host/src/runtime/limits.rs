//! What one instance may hold, and what all of a source's instances may
//! hold together.
//!
//! - `memory_mb` bounds the sum of every linear memory of one instance (a
//!   component may have several core modules, each with its own memory),
//!   and an instance may have at most [`MAX_MEMORIES`] memories,
//!   [`MAX_TABLES`] tables of [`MAX_TABLE_ELEMENTS`] elements in all, and
//!   [`MAX_INSTANCES`] core instances.
//! - `memory_budget_mb` (8 × `memory_mb` by default) bounds the memory of
//!   all of a source's live instances together: a source that runs many
//!   calls at once (48 pushes each filling its 64 MiB) has its calls past
//!   it refused as overloaded (503 with `Retry-After`, no quarantine)
//!   rather than taking the host's memory.

use super::{Sandbox, Usage};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Most linear memories of one instance.
pub const MAX_MEMORIES: usize = 16;
/// Most tables of one instance.
pub const MAX_TABLES: usize = 64;
/// Most table elements of one instance, over all its tables.
pub const MAX_TABLE_ELEMENTS: usize = 1_000_000;
/// Most core instances of one component instance.
pub const MAX_INSTANCES: usize = 256;

/// The limiter of one call's store. Remembers whether a limit was hit, so
/// a failed call can say "memory limit" rather than a bare trap.
pub(crate) struct MemoryLimit {
    max_bytes: usize,
    /// Bytes of every memory of this instance.
    bytes: usize,
    table_elements: usize,
    usage: Arc<Usage>,
    budget: usize,
    pub(crate) exhausted: Arc<AtomicBool>,
    /// Set when the source's budget (not this instance's limit) was hit.
    pub(crate) source_exhausted: bool,
}

impl MemoryLimit {
    pub(crate) fn new(sandbox: &Sandbox) -> Self {
        MemoryLimit {
            max_bytes: sandbox.memory_bytes,
            bytes: 0,
            table_elements: 0,
            usage: sandbox.usage.clone(),
            budget: sandbox.memory_budget_bytes,
            exhausted: Arc::new(AtomicBool::new(false)),
            source_exhausted: false,
        }
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        self.usage.release_memory(self.bytes);
    }
}

impl wasmtime::ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        if self.bytes.saturating_add(more) > self.max_bytes {
            self.exhausted.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        if !self.usage.reserve_memory(more, self.budget) {
            self.source_exhausted = true;
            self.exhausted.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        self.bytes += more;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        if self.table_elements.saturating_add(more) > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements += more;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Manifest, SandboxDefaults};
    use wasmtime::ResourceLimiter as _;

    fn sandbox(memory_mb: u64, budget_mb: u64, usage: &Arc<Usage>) -> Sandbox {
        let mut manifest = Manifest::default();
        manifest.sandbox.memory_mb = Some(memory_mb);
        manifest.sandbox.memory_budget_mb = Some(budget_mb);
        Sandbox::resolve(
            "s",
            &manifest,
            &SandboxDefaults::default(),
            std::path::Path::new("-"),
            usage.clone(),
        )
        .unwrap()
    }

    #[test]
    fn every_memory_of_an_instance_counts_toward_memory_mb() {
        let usage = Arc::new(Usage::default());
        let mut limit = MemoryLimit::new(&sandbox(64, 1024, &usage));
        for _ in 0..3 {
            assert!(limit.memory_growing(0, 20 << 20, None).unwrap());
        }
        assert!(
            !limit.memory_growing(0, 20 << 20, None).unwrap(),
            "a fourth 20 MiB memory"
        );
        assert!(limit.exhausted.load(Ordering::Relaxed));
        assert_eq!(usage.memory_bytes(), 60 << 20);
        drop(limit);
        assert_eq!(usage.memory_bytes(), 0, "given back when the call ends");
    }

    #[test]
    fn a_sources_instances_share_its_budget() {
        let usage = Arc::new(Usage::default());
        let sandbox = sandbox(64, 128, &usage);
        let mut a = MemoryLimit::new(&sandbox);
        let mut b = MemoryLimit::new(&sandbox);
        let mut c = MemoryLimit::new(&sandbox);
        assert!(a.memory_growing(0, 60 << 20, None).unwrap());
        assert!(b.memory_growing(0, 60 << 20, None).unwrap());
        assert!(!c.memory_growing(0, 60 << 20, None).unwrap());
        assert!(c.source_exhausted);
        drop(a);
        assert!(c.memory_growing(0, 60 << 20, None).unwrap());
    }
}
