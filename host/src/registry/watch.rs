//! Hot reload: watch the plugins directory and rescan when a connector file
//! changes.
//!
//! Operators deploy by copying files into the directory, so the watcher
//! reacts to a `NAME.wasm` or `NAME.toml` being created, written, renamed
//! into place or deleted. Dotfiles and temporary names (`*.tmp`, `*.part`,
//! `*~`) are ignored, so writing `.NAME.wasm.tmp` and renaming it is the
//! atomic way to deploy. Events are debounced ([`DEBOUNCE`]); a file caught
//! half-written fails to compile, keeps the previous version serving, and
//! is loaded by the rescan that follows the end of the write.

use super::Registry;
use notify_debouncer_full::notify::event::{AccessKind, AccessMode};
use notify_debouncer_full::notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long the directory must stay quiet before a rescan. Short, because
/// it is most of the reload latency of a cached component; a file still
/// being written when it fires fails to load (the old version keeps
/// serving) and is loaded on the event its last write raises.
pub const DEBOUNCE: Duration = Duration::from_millis(25);

/// Whether `path` names a connector file: `NAME.wasm` or `NAME.toml`, not
/// a dotfile. Temporary names (`*.tmp`, `*.part`, `*~`) are not.
pub fn is_connector_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.')
        && matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("wasm" | "toml")
        )
}

/// Whether an event can change what a scan loads. Reads (the scan's own)
/// are not; a file closed after writing is.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Watches the plugins directory until shutdown, rescanning after every
/// burst of changes. If the directory cannot be watched, logs why and
/// returns: connectors then change only on `POST /v1/reload` or SIGHUP.
pub async fn watch(registry: Arc<Registry>, shutdown: tokio_util::sync::CancellationToken) {
    let dir = registry.config.plugins_dir.clone();
    let wake = Arc::new(Notify::new());
    let waker = wake.clone();
    let handler = move |result: DebounceEventResult| match result {
        Ok(events) => {
            let relevant = events
                .iter()
                .any(|e| is_change(&e.kind) && e.paths.iter().any(|p| is_connector_file(p)));
            if relevant {
                waker.notify_one();
            }
        }
        Err(errors) => {
            for err in errors {
                tracing::warn!(error = %err, "Watching the plugins directory reported an error; rescanning.");
            }
            waker.notify_one();
        }
    };
    let mut debouncer = match new_debouncer(DEBOUNCE, None, handler) {
        Ok(d) => d,
        Err(err) => {
            tracing::warn!(dir = %dir.display(), error = %err, "Cannot watch the plugins directory; use POST /v1/reload or SIGHUP to reload.");
            return;
        }
    };
    if let Err(err) = debouncer.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %err, "Cannot watch the plugins directory; use POST /v1/reload or SIGHUP to reload.");
        return;
    }
    tracing::info!(dir = %dir.display(), debounce_ms = DEBOUNCE.as_millis() as u64, "Watching the plugins directory.");
    // Catch what changed between the startup scan and the watch.
    wake.notify_one();
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = shutdown.cancelled() => break,
        }
        let changed = registry.scan().await;
        if !changed.is_empty() {
            tracing::debug!(changed = ?changed, "Plugins directory rescanned.");
        }
    }
    debouncer.stop_nonblocking();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connector_files_count() {
        for yes in ["p/a.wasm", "p/a.toml", "a-b_c.wasm"] {
            assert!(is_connector_file(Path::new(yes)), "{yes}");
        }
        for no in [
            "p/.a.wasm",
            "p/.a.wasm.tmp",
            "p/a.wasm.tmp",
            "p/a.wasm.part",
            "p/a.wasm~",
            "p/a.toml~",
            "p/a.txt",
            "p/wasm",
        ] {
            assert!(!is_connector_file(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn reads_do_not_trigger_a_rescan() {
        use notify_debouncer_full::notify::event::{CreateKind, RemoveKind};
        assert!(!is_change(&EventKind::Access(AccessKind::Read)));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Remove(RemoveKind::File)));
    }
}
