//! Prometheus metrics. Labelled counters and histograms live in one
//! `prometheus-client` registry owned by the host; per-source counters that
//! status also shows are kept as atomics in
//! [`SourceState`](crate::registry::SourceState) and written beside them at
//! scrape time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// `{source="..."}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

/// `{source="...",outcome="..."}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceOutcome {
    pub source: String,
    pub outcome: String,
}

type Histograms = Family<SourceLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

fn count_histogram() -> Histogram {
    // 1 .. 65536 events.
    Histogram::new(exponential_buckets(1.0, 4.0, 9))
}

/// The host's metrics.
pub struct Metrics {
    registry: Registry,
    /// Push requests by outcome: accepted, duplicate, invalid, unauthorized,
    /// rate_limited, overloaded, too_large, failed, ...
    pub push_requests: Family<SourceOutcome, Counter>,
    /// Push latency from the first byte of the handler to the answer.
    pub push_duration: Histograms,
    /// Pull runs by outcome: ok, failed.
    pub pull_runs: Family<SourceOutcome, Counter>,
    /// Duration of a pull run (all partitions, all batches).
    pub pull_duration: Histograms,
    /// Events stored per pull run.
    pub pull_events: Histograms,
    /// Connector loads by outcome: loaded, failed.
    pub reloads: Family<SourceOutcome, Counter>,
    /// Duration of one store flush (fsync of a commit group).
    pub store_flush: Histogram,
    /// Long polls woken by a commit to their source.
    pub long_poll_wakeups: Family<SourceLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let push_requests = Family::<SourceOutcome, Counter>::default();
        let push_duration =
            Histograms::new_with_constructor(latency_histogram as fn() -> Histogram);
        let pull_runs = Family::<SourceOutcome, Counter>::default();
        let pull_duration =
            Histograms::new_with_constructor(latency_histogram as fn() -> Histogram);
        let pull_events = Histograms::new_with_constructor(count_histogram as fn() -> Histogram);
        let reloads = Family::<SourceOutcome, Counter>::default();
        let store_flush = latency_histogram();
        let long_poll_wakeups = Family::<SourceLabel, Counter>::default();
        registry.register(
            "inlet_long_poll_wakeups",
            "Long polls woken by a commit to their source.",
            long_poll_wakeups.clone(),
        );
        registry.register(
            "inlet_push_requests",
            "Push requests by outcome.",
            push_requests.clone(),
        );
        registry.register(
            "inlet_push_duration_seconds",
            "Push request latency.",
            push_duration.clone(),
        );
        registry.register(
            "inlet_pull_runs_by_outcome",
            "Pull runs by outcome.",
            pull_runs.clone(),
        );
        registry.register(
            "inlet_pull_duration_seconds",
            "Pull run duration.",
            pull_duration.clone(),
        );
        registry.register(
            "inlet_pull_events",
            "Events stored per pull run.",
            pull_events.clone(),
        );
        registry.register(
            "inlet_connector_loads",
            "Connector loads by outcome.",
            reloads.clone(),
        );
        registry.register(
            "inlet_store_flush_duration_seconds",
            "Store flush (fsync) duration per commit group.",
            store_flush.clone(),
        );
        Metrics {
            registry,
            push_requests,
            push_duration,
            pull_runs,
            pull_duration,
            pull_events,
            reloads,
            store_flush,
            long_poll_wakeups,
        }
    }

    /// Counts one push with its outcome (`accepted`, `duplicate`, or the
    /// refusal's [`crate::reply::ApiError::outcome`]) after `elapsed`.
    pub fn push(&self, source: &str, outcome: &str, elapsed: Duration) {
        self.push_requests
            .get_or_create(&SourceOutcome {
                source: source.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.push_duration
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one pull run.
    pub fn pull(&self, source: &str, ok: bool, events: u64, elapsed: Duration) {
        self.pull_runs
            .get_or_create(&SourceOutcome {
                source: source.to_string(),
                outcome: if ok { "ok" } else { "failed" }.to_string(),
            })
            .inc();
        let label = SourceLabel {
            source: source.to_string(),
        };
        self.pull_duration
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
        if ok {
            self.pull_events
                .get_or_create(&label)
                .observe(events as f64);
        }
    }

    /// Counts one long poll woken by a commit to `source`.
    pub fn long_poll_woken(&self, source: &str) {
        self.long_poll_wakeups
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .inc();
    }

    /// Counts one connector load attempt.
    pub fn load(&self, source: &str, ok: bool) {
        self.reloads
            .get_or_create(&SourceOutcome {
                source: source.to_string(),
                outcome: if ok { "loaded" } else { "failed" }.to_string(),
            })
            .inc();
    }

    /// Appends the registry in text format (without the OpenMetrics `# EOF`
    /// marker, so it can follow other Prometheus text).
    pub fn encode(&self, out: &mut String) {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_ok() {
            out.push_str(text.trim_end().trim_end_matches("# EOF").trim_end());
            out.push('\n');
        }
    }
}
