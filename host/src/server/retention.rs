//! Background compaction: expired dedup marks, each source's retention
//! (`[stream] retention`, `max_bytes`) and its dead letters past
//! `[push] dead_letters.keep`, off the request path.

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Compacts every `interval` until shutdown.
pub(super) async fn gc_loop(
    registry: Arc<Registry>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        compact(&registry, store.as_ref()).await;
        expire_dead_letters(&registry, store.as_ref(), &metrics).await;
    }
}

/// Removes each loaded source's dead letters older than its `keep`, and
/// refreshes the dead-letter gauges. (A source whose connector is gone
/// keeps its letters until they are discarded through the API.)
async fn expire_dead_letters(registry: &Registry, store: &dyn Store, metrics: &Metrics) {
    let now = crate::store::now_ms();
    for connector in registry.all() {
        let policy = &connector.manifest.push.dead_letters;
        let keep = policy.keep(connector.manifest.dedup_window());
        let before = now.saturating_sub(keep.as_millis() as u64);
        match store.expire_dead_letters(&connector.name, before).await {
            Ok(n) if n > 0 => {
                metrics.dead_letters_dropped(&connector.name, "keep", n);
                tracing::info!(source = %connector.name, removed = n, keep = ?keep, "Dead letters past [push] dead_letters.keep removed.");
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(source = %connector.name, error = %err, "Expiring dead letters failed.")
            }
        }
        if let Ok(stats) = store.dead_letter_stats(&connector.name).await {
            metrics.dead_letters_now(&connector.name, stats.count);
        }
    }
}

async fn compact(registry: &Registry, store: &dyn Store) {
    let now = crate::store::now_ms();
    match store.collect_expired(now).await {
        Ok(n) if n > 0 => tracing::debug!(removed = n, "Expired dedup marks collected."),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "Collecting expired dedup marks failed."),
    }
    for connector in registry.all() {
        let stream = connector.manifest.stream;
        if stream.retention.is_none() && stream.max_bytes.is_none() {
            continue;
        }
        let policy = crate::store::Retention {
            max_age: stream.retention,
            max_bytes: stream.max_bytes,
        };
        match store.trim(&connector.name, &policy, now).await {
            Ok(out) if out.removed > 0 => {
                let c = &registry.source(&connector.name).counters;
                crate::registry::Counters::add(&c.events_trimmed, out.removed);
                crate::registry::Counters::add(&c.events_trimmed_forced, out.forced);
                if out.forced > 0 {
                    tracing::warn!(source = %connector.name, removed = out.removed, forced = out.forced, "Retention removed events a consumer had not read yet (max_bytes).");
                } else {
                    tracing::info!(source = %connector.name, removed = out.removed, bytes = out.bytes_after, "Retention removed old events.");
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(source = %connector.name, error = %err, "Applying retention failed.")
            }
        }
    }
}
