//! OpenTelemetry traces (`[telemetry] otlp_endpoint`).
//!
//! The host's spans are ordinary `tracing` spans with the target
//! [`TARGET`], which the log's filter always turns off: without
//! `[telemetry]` no layer enables them, so they cost a disabled callsite
//! each. With it, a
//! `tracing-opentelemetry` layer that sees only that target turns them into
//! OpenTelemetry spans, exported over OTLP/HTTP (protobuf) in batches from
//! the SDK's own thread. The log keeps its own filter and format: the spans
//! never appear in it, and the request id stays the key that joins a log
//! line to a request (it is an attribute of the `push` span too).
//!
//! The tree: `push` (the sender's `traceparent`, when valid, is its parent)
//! → `auth`, `idempotency`, `connector.call` → `outbound`, `store.commit`,
//! `dead_letter`; `pull` (one run) → `connector.call` (`partitions`),
//! `partition` → `connector.call` (`pull`) → `outbound`, `store.commit`.
//! Outbound requests carry a `traceparent` naming their `outbound` span.

use crate::config::TelemetryConfig;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The `tracing` target of every span exported as a trace.
pub const TARGET: &str = "inlet::trace";

/// A span of the trace tree: target [`TARGET`] (which the log's filter
/// turns off), and the status fields [`failed`] records.
macro_rules! span {
    ($name:literal $(, $($fields:tt)*)?) => {
        tracing::info_span!(
            target: "inlet::trace",
            $name,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty
            $(, $($fields)*)?
        )
    };
}
pub(crate) use span;

/// The running exporter; [`Telemetry::shutdown`] sends what is buffered.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Builds the exporter for `config` and the layer that feeds it.
    pub fn start<S>(config: &TelemetryConfig) -> anyhow::Result<(impl Layer<S>, Telemetry)>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        use opentelemetry_otlp::WithExportConfig as _;
        // The exporter's client uses the process's rustls provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(config.traces_url())
            // Also the longest an exit waits for the last batch.
            .with_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| anyhow::anyhow!("[telemetry] otlp_endpoint: {e}"))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            // The trace id decides (the same way on every host), not a
            // sender's sampled flag: an anonymous sender cannot make the
            // host record more than `sample_ratio`.
            .with_sampler(Sampler::TraceIdRatioBased(config.sample_ratio))
            .with_resource(resource)
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("inlet"))
            .with_location(false)
            .with_threads(false)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(TARGET, tracing::Level::INFO),
            );
        Ok((layer, Telemetry { provider }))
    }

    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            eprintln!("warning: telemetry: the last spans were not exported: {err}");
        }
    }
}

/// Makes `span` a child of the W3C `traceparent` in `headers`, when there
/// is a valid one (an invalid one is ignored: the span starts a trace).
pub(crate) fn continue_from(span: &tracing::Span, headers: &http::HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceState};
    let remote = TraceContextPropagator::new().extract(&HeaderReader(headers));
    let given = remote.span().span_context().clone();
    if !given.is_valid() {
        return;
    }
    // The sender's ids only: its `tracestate` is not carried on to the
    // sources the connector calls.
    let parent = SpanContext::new(
        given.trace_id(),
        given.span_id(),
        given.trace_flags(),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

/// Writes `span`'s W3C trace context into `headers` (replacing any the
/// connector set): the source sees the outbound request as its parent.
pub(crate) fn propagate(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderWriter(headers));
}

/// Marks `span` failed with `message` (the span's status).
pub(crate) fn failed(span: &tracing::Span, message: &dyn std::fmt::Display) {
    if !span.is_disabled() {
        span.record("otel.status_code", "error");
        span.record("otel.status_description", tracing::field::display(message));
    }
}

struct HeaderReader<'a>(&'a http::HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderWriter<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderWriter<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
