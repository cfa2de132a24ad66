//! Prometheus metrics, all encoded by `prometheus-client`. Labelled
//! counters and histograms that change on the request path live in the
//! host's [`Metrics`] registry. Values that status also shows (per-source
//! counters, failure classes, pull gauges, checkpoint ages, store size) are
//! kept where status reads them and sampled once per scrape into a
//! [`Scrape`], which a collector encodes beside the registry. A leaf module:
//! it knows nothing of the registry of connectors or the store.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// `{source="..."}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

/// `{source="...",class="..."}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceClass {
    source: String,
    class: String,
}

/// `{source="...",partition="..."}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourcePartition {
    source: String,
    partition: String,
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
    /// Dead letters kept, by failure class.
    dead_letters_kept: Family<SourceClass, Counter>,
    /// Dead letters dropped by retention (`reason`: `max_bytes`, `keep`).
    dead_letters_dropped: Family<SourceReason, Counter>,
    /// Dead-letter replays by outcome: stored, duplicate, failed, busy.
    dead_letter_replays: Family<SourceOutcome, Counter>,
    /// Dead letters a source has now.
    dead_letters: Family<SourceLabel, Gauge>,
}

/// `{source="...",reason="..."}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceReason {
    source: String,
    reason: String,
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
        let dead_letters_kept = Family::<SourceClass, Counter>::default();
        let dead_letters_dropped = Family::<SourceReason, Counter>::default();
        let dead_letter_replays = Family::<SourceOutcome, Counter>::default();
        let dead_letters = Family::<SourceLabel, Gauge>::default();
        registry.register(
            "inlet_dead_letters_kept",
            "Failed push requests kept as dead letters, by failure class.",
            dead_letters_kept.clone(),
        );
        registry.register(
            "inlet_dead_letters_dropped",
            "Dead letters dropped by retention (reason: max_bytes, keep).",
            dead_letters_dropped.clone(),
        );
        registry.register(
            "inlet_dead_letter_replays",
            "Dead-letter replays by outcome (stored, duplicate, failed, busy).",
            dead_letter_replays.clone(),
        );
        registry.register(
            "inlet_dead_letters",
            "Dead letters a source has (as last counted by this host).",
            dead_letters.clone(),
        );
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
            dead_letters_kept,
            dead_letters_dropped,
            dead_letter_replays,
            dead_letters,
        }
    }

    /// Counts one dead letter kept.
    pub fn dead_letter_kept(&self, source: &str, class: &str) {
        self.dead_letters_kept
            .get_or_create(&SourceClass {
                source: source.to_string(),
                class: class.to_string(),
            })
            .inc();
    }

    /// Counts dead letters dropped by retention.
    pub fn dead_letters_dropped(&self, source: &str, reason: &str, n: u64) {
        if n > 0 {
            self.dead_letters_dropped
                .get_or_create(&SourceReason {
                    source: source.to_string(),
                    reason: reason.to_string(),
                })
                .inc_by(n);
        }
    }

    /// Counts one dead-letter replay by outcome.
    pub fn dead_letter_replayed(&self, source: &str, outcome: &str) {
        self.dead_letter_replays
            .get_or_create(&SourceOutcome {
                source: source.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The number of dead letters `source` has now.
    pub fn dead_letters_now(&self, source: &str, count: u64) {
        self.dead_letters
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .set(count as i64);
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

    /// The whole exposition: the registry, then the values sampled for
    /// this scrape, in Prometheus text format.
    pub fn encode(&self, scrape: Scrape) -> String {
        let mut out = String::new();
        let mut sampled = Registry::default();
        sampled.register_collector(Box::new(scrape));
        for registry in [&self.registry, &sampled] {
            let mut text = String::new();
            if prometheus_client::encoding::text::encode(&mut text, registry).is_ok() {
                // Without the OpenMetrics `# EOF` marker between the parts.
                out.push_str(text.trim_end().trim_end_matches("# EOF").trim_end());
                out.push('\n');
            }
        }
        out
    }
}

/// Values sampled at scrape time from where status keeps them.
#[derive(Debug, Default)]
pub struct Scrape {
    pub sources: Vec<SourceSample>,
    pub store_bytes: u64,
    pub connectors_loaded: u64,
    pub push_in_flight: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
}

/// One source's sampled values.
#[derive(Debug, Default)]
pub struct SourceSample {
    pub source: String,
    pub counters: SourceCounters,
    /// Failed calls by class (`trap`, `deadline`, `memory`, `limit`,
    /// `source_timeout`).
    pub failures: Vec<(&'static str, u64)>,
    pub quarantines: u64,
    /// Present for connectors with a pull schedule.
    pub pull: Option<PullSample>,
    /// Seconds since each partition's checkpoint moved (`""` for none).
    pub checkpoint_ages: Vec<(String, f64)>,
}

/// Per-source counters (the atomics of `registry::Counters`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SourceCounters {
    pub push_rejected: u64,
    pub push_failed: u64,
    pub events_push: u64,
    pub events_pull: u64,
    pub events_deduplicated: u64,
    pub events_trimmed: u64,
    pub events_trimmed_forced: u64,
    pub log_lines_dropped: u64,
    /// Epoch ticks (10 ms) of guest CPU.
    pub cpu_ticks: u64,
    /// Milliseconds guests slept, throttled.
    pub throttled_ms: u64,
}

/// A pull schedule's gauges.
#[derive(Debug, Default, Clone, Copy)]
pub struct PullSample {
    pub consecutive_failures: u32,
    pub next_attempt_secs: Option<f64>,
    pub interval_secs: Option<f64>,
}

type CounterOf = fn(&SourceCounters) -> u64;

/// The per-source counters: name (without `_total`), help, value.
const SOURCE_COUNTERS: [(&str, &str, CounterOf); 8] = [
    (
        "inlet_push_rejected",
        "Push requests rejected before storing.",
        |c| c.push_rejected,
    ),
    (
        "inlet_push_failed",
        "Push calls that trapped or overran.",
        |c| c.push_failed,
    ),
    ("inlet_events_push", "Events stored from push.", |c| {
        c.events_push
    }),
    ("inlet_events_pull", "Events stored from pull.", |c| {
        c.events_pull
    }),
    (
        "inlet_events_deduplicated",
        "Events dropped as already stored.",
        |c| c.events_deduplicated,
    ),
    (
        "inlet_events_trimmed",
        "Events removed by retention.",
        |c| c.events_trimmed,
    ),
    (
        "inlet_events_trimmed_forced",
        "Events removed by max_bytes before a consumer cursor reached them.",
        |c| c.events_trimmed_forced,
    ),
    (
        "inlet_connector_log_lines_dropped",
        "Connector log lines (host.log, stdout, stderr) dropped past their call's 64 KiB log budget.",
        |c| c.log_lines_dropped,
    ),
];

/// Guest CPU and throttling: name, help, value, units per second.
const CPU_COUNTERS: [(&str, &str, CounterOf, f64); 2] = [
    (
        "inlet_connector_cpu_seconds",
        "Seconds of one core the source's guests ran their own code (host calls they wait on excluded), in 10 ms ticks.",
        |c| c.cpu_ticks,
        100.0,
    ),
    (
        "inlet_connector_cpu_throttled_seconds",
        "Seconds the source's guests slept because the source was over its CPU share (half the cores).",
        |c| c.throttled_ms,
        1000.0,
    ),
];

type PullGauge = fn(&PullSample) -> Option<f64>;

/// The pull gauges in seconds (the failure count is an integer gauge).
const PULL_GAUGES: [(&str, &str, PullGauge); 2] = [
    (
        "inlet_pull_next_attempt_timestamp_seconds",
        "When the next scheduled pull (or retry) starts, in seconds since the Unix epoch.",
        |p| p.next_attempt_secs,
    ),
    (
        "inlet_pull_interval_seconds",
        "The current adaptive pull interval.",
        |p| p.interval_secs,
    ),
];

/// A label value in the text format's escaping (`\\`, `\"`, `\n`).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn source(name: &str) -> SourceLabel {
    SourceLabel {
        source: name.to_string(),
    }
}

/// An unlabelled integer gauge.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, get) in SOURCE_COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in &self.sources {
                ConstCounter::new(get(&s.counters))
                    .encode(family.encode_family(&source(&s.source))?)?;
            }
        }
        for (name, help, get, per_second) in CPU_COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in &self.sources {
                ConstCounter::new(get(&s.counters) as f64 / per_second)
                    .encode(family.encode_family(&source(&s.source))?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "inlet_connector_failures",
            "Calls that failed, by class: trap, deadline, memory and limit are the connector's own and count toward quarantine (except a push answered 422, output that follows from the request); source_timeout is a source that did not answer in time.",
            None,
            MetricType::Counter,
        )?;
        for s in &self.sources {
            for (class, count) in &s.failures {
                let labels = SourceClass {
                    source: s.source.clone(),
                    class: class.to_string(),
                };
                ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "inlet_connector_quarantines",
            "Times a connector was quarantined.",
            None,
            MetricType::Counter,
        )?;
        for s in &self.sources {
            ConstCounter::new(s.quarantines).encode(family.encode_family(&source(&s.source))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "inlet_pull_consecutive_failures",
            "Pull runs in a row that failed (0 after a good run).",
            None,
            MetricType::Gauge,
        )?;
        for s in &self.sources {
            if let Some(p) = &s.pull {
                ConstGauge::new(i64::from(p.consecutive_failures))
                    .encode(family.encode_family(&source(&s.source))?)?;
            }
        }
        for (name, help, get) in PULL_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in &self.sources {
                if let Some(v) = s.pull.as_ref().and_then(get) {
                    ConstGauge::new(v).encode(family.encode_family(&source(&s.source))?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "inlet_checkpoint_age_seconds",
            "Time since a checkpoint last moved.",
            None,
            MetricType::Gauge,
        )?;
        for s in &self.sources {
            for (partition, age) in &s.checkpoint_ages {
                let labels = SourcePartition {
                    source: s.source.clone(),
                    // Partition names come from the connector: escaped, as
                    // prometheus-client writes label values as they are.
                    partition: escape_label(partition),
                };
                ConstGauge::new(*age).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "inlet_store_bytes",
            "Bytes the store uses on disk.",
            i64::try_from(self.store_bytes).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "inlet_connectors_loaded",
            "Connectors loaded.",
            i64::try_from(self.connectors_loaded).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "inlet_push_in_flight",
            "Push requests being processed.",
            i64::try_from(self.push_in_flight).unwrap_or(i64::MAX),
        )?;
        let hits = ConstCounter::new(self.cache_hits);
        hits.encode(encoder.encode_descriptor(
            "inlet_component_cache_hits",
            "Components loaded from the compiled-component cache.",
            None,
            MetricType::Counter,
        )?)?;
        let misses = ConstCounter::new(self.cache_misses);
        misses.encode(encoder.encode_descriptor(
            "inlet_component_cache_misses",
            "Components compiled because the cache had no valid entry.",
            None,
            MetricType::Counter,
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_partition_name_cannot_break_the_exposition() {
        let scrape = Scrape {
            sources: vec![SourceSample {
                source: "feed".into(),
                checkpoint_ages: vec![("a\"b\\c\nx".into(), 1.5)],
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = Metrics::new().encode(scrape);
        let line = text
            .lines()
            .find(|l| l.starts_with("inlet_checkpoint_age_seconds{"))
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(
            line,
            r#"inlet_checkpoint_age_seconds{source="feed",partition="a\"b\\c\nx"} 1.5"#
        );
        // Counters get their `_total` suffix; every family has HELP and TYPE.
        assert!(
            text.contains("inlet_events_push_total{source=\"feed\"} 0"),
            "{text}"
        );
        assert!(text.contains("# TYPE inlet_store_bytes gauge"), "{text}");
        // Counts are integers, as scrapers and the tests' parsers expect.
        assert!(text.contains("\ninlet_connectors_loaded 0\n"), "{text}");
    }
}
