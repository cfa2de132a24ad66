//! OpenTelemetry traces end to end: the real binary with `[telemetry]`
//! exports OTLP/HTTP (protobuf) to a receiver in this test, which decodes
//! the spans and checks the tree of one push (continuing the sender's
//! `traceparent`) and one pull run with an outbound request (whose
//! `traceparent` the source receives).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use inlet_tests::source::{Answer, SourceServer};
use inlet_tests::{ChildHost, eventually, host_dir, plugins};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_inlet");

/// The sender's trace context (the W3C specification's example).
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP receiver: every span posted to `/v1/traces`, and the
/// `service.name` of the batches.
struct Receiver {
    addr: std::net::SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    services: Arc<Mutex<Vec<String>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let services = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (spans.clone(), services.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, v) = (s.clone(), v.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: http::Request<_>| {
                        let (s, v) = (s.clone(), v.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let kind = req
                                .headers()
                                .get("content-type")
                                .and_then(|c| c.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let body: Bytes = BodyExt::collect(req.into_body()).await?.to_bytes();
                            let status = if path == "/v1/traces" && kind == "application/x-protobuf"
                            {
                                let export = ExportTraceServiceRequest::decode(body)
                                    .expect("an OTLP protobuf export");
                                for resource in export.resource_spans {
                                    if let Some(r) = &resource.resource {
                                        for a in &r.attributes {
                                            if a.key == "service.name" {
                                                v.lock().unwrap().push(text(a.value.as_ref()));
                                            }
                                        }
                                    }
                                    for scope in resource.scope_spans {
                                        s.lock().unwrap().extend(scope.spans);
                                    }
                                }
                                200
                            } else {
                                404
                            };
                            Ok::<_, hyper::Error>(
                                http::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            spans,
            services,
            _task: task,
        }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| text(a.value.as_ref()))
}

/// The children of `parent` named `name`.
fn children<'a>(spans: &'a [Span], parent: &Span, name: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id && s.name == name)
        .filter(|s| s.trace_id == parent.trace_id)
        .collect()
}

fn one<'a>(spans: &'a [Span], parent: &Span, name: &str) -> &'a Span {
    let found = children(spans, parent, name);
    assert_eq!(
        found.len(),
        1,
        "one `{name}` under `{}`: {:#?}",
        parent.name,
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    found[0]
}

#[tokio::test]
async fn push_and_pull_export_their_span_trees_and_carry_traceparent() {
    let receiver = Receiver::start().await;
    let source = SourceServer::start(|_| {
        Answer::json(
            200,
            serde_json::json!({"items": [{"id": "a-1"}], "next_cursor": "1", "has_more": false}),
        )
    })
    .await;
    let poll = format!(
        "[pull]\nevery = \"1h\"\n[sandbox]\nallowed_hosts = [\"127.0.0.1:{p}\"]\n[config]\nurl = \"http://127.0.0.1:{p}/items\"\n",
        p = source.addr.port()
    );
    let dir = host_dir(&[
        ("hook", plugins::WEBHOOK_JSON, None),
        ("feed", plugins::HTTP_POLL, Some(&poll)),
    ]);
    let config = dir.path().join("inlet.toml");
    std::fs::write(
        &config,
        format!(
            "[telemetry]\notlp_endpoint = \"http://{}\"\nservice_name = \"inlet-under-test\"\n",
            receiver.addr
        ),
    )
    .unwrap();
    let host = ChildHost::spawn(
        BIN,
        dir.path(),
        &["--config", config.to_str().unwrap()],
        // Export every 100 ms instead of every 5 s.
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .expect("starts");
    let client = reqwest::Client::new();

    // A push continuing the sender's trace.
    let resp = client
        .post(host.url("/ingest/hook"))
        .header("traceparent", format!("00-{TRACE_ID}-{SENDER_SPAN}-01"))
        .header("x-request-id", "req-traced-1")
        .header("idempotency-key", "k-1")
        .body(r#"{"id":"e-1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // A malformed traceparent starts a trace of its own.
    let resp = client
        .post(host.url("/ingest/hook"))
        .header("traceparent", "00-not-a-trace-01")
        .body(r#"{"id":"e-2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);

    let spans = eventually(
        Duration::from_secs(30),
        "both pushes and the pull exported",
        || {
            let spans = receiver.spans();
            async move {
                let pushes = spans.iter().filter(|s| s.name == "push").count();
                let pull_done = spans.iter().any(|s| s.name == "pull");
                (pushes >= 2 && pull_done).then_some(spans)
            }
        },
    )
    .await;
    assert!(
        receiver
            .services
            .lock()
            .unwrap()
            .iter()
            .all(|s| s == "inlet-under-test")
    );

    // The push: a child of the sender's span, in the sender's trace.
    let push = spans
        .iter()
        .find(|s| s.name == "push" && hex::encode(&s.trace_id) == TRACE_ID)
        .expect("the push continues the sender's trace");
    assert_eq!(hex::encode(&push.parent_span_id), SENDER_SPAN);
    assert_eq!(attr(push, "inlet.source").as_deref(), Some("hook"));
    assert_eq!(
        attr(push, "inlet.request_id").as_deref(),
        Some("req-traced-1")
    );
    assert_eq!(attr(push, "inlet.outcome").as_deref(), Some("accepted"));
    assert_eq!(
        attr(push, "http.response.status_code").as_deref(),
        Some("202")
    );
    let auth = one(&spans, push, "auth");
    assert_eq!(attr(auth, "inlet.scheme").as_deref(), Some("none"));
    one(&spans, push, "idempotency");
    let call = one(&spans, push, "connector.call");
    assert_eq!(attr(call, "inlet.export").as_deref(), Some("on-push"));
    let commit = one(&spans, push, "store.commit");
    assert_eq!(attr(commit, "inlet.events").as_deref(), Some("1"));
    // Each child within its parent's time.
    for child in [auth, call, commit] {
        assert!(child.start_time_unix_nano >= push.start_time_unix_nano);
        assert!(child.end_time_unix_nano <= push.end_time_unix_nano);
    }

    // The push with a malformed traceparent is a root of another trace.
    let other = spans
        .iter()
        .find(|s| s.name == "push" && hex::encode(&s.trace_id) != TRACE_ID)
        .expect("the second push");
    assert!(other.parent_span_id.is_empty(), "{other:?}");

    // The pull run: partition → connector.call (pull) → outbound, and the
    // batch's commit.
    let pull = spans.iter().find(|s| s.name == "pull").unwrap();
    assert!(pull.parent_span_id.is_empty());
    assert_eq!(attr(pull, "inlet.source").as_deref(), Some("feed"));
    let listing = one(&spans, pull, "connector.call");
    assert_eq!(attr(listing, "inlet.export").as_deref(), Some("partitions"));
    let partition = one(&spans, pull, "partition");
    let call = one(&spans, partition, "connector.call");
    assert_eq!(attr(call, "inlet.export").as_deref(), Some("pull"));
    let outbound = one(&spans, call, "outbound");
    assert_eq!(
        attr(outbound, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attr(outbound, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(attr(outbound, "url.path"), None, "paths may hold keys");
    assert_eq!(
        attr(outbound, "http.response.status_code").as_deref(),
        Some("200")
    );
    let commit = one(&spans, partition, "store.commit");
    assert_eq!(attr(commit, "inlet.events").as_deref(), Some("1"));

    // The source saw the outbound span as its parent.
    let seen = source.requests();
    let traceparent = seen[0].header("traceparent").expect("traceparent sent");
    assert_eq!(
        traceparent,
        format!(
            "00-{}-{}-01",
            hex::encode(&outbound.trace_id),
            hex::encode(&outbound.span_id)
        )
    );
    drop(host);
}

#[tokio::test]
async fn a_bad_otlp_endpoint_refuses_the_start_naming_the_key() {
    let dir = host_dir(&[("hook", plugins::WEBHOOK_JSON, None)]);
    let config = dir.path().join("inlet.toml");
    for (endpoint, ratio) in [
        ("ftp://collector:4318", "1"),
        ("http://127.0.0.1:4318", "2"),
    ] {
        std::fs::write(
            &config,
            format!("[telemetry]\notlp_endpoint = \"{endpoint}\"\nsample_ratio = {ratio}\n"),
        )
        .unwrap();
        let Err((status, log)) = ChildHost::spawn(
            BIN,
            dir.path(),
            &["--config", config.to_str().unwrap()],
            &[],
        ) else {
            panic!("{endpoint} with ratio {ratio} must refuse the start");
        };
        assert!(!status.success());
        let key = if ratio == "2" {
            "telemetry.sample_ratio"
        } else {
            "telemetry.otlp_endpoint"
        };
        assert!(log.contains(key), "{log}");
    }
}
