//! Push end to end: the real host, the real `webhook-json` component, HTTP.

use inlet_tests::{TestHost, plugins};

async fn host() -> TestHost {
    TestHost::start(&[("hooks", plugins::WEBHOOK_JSON, None)]).await
}

#[tokio::test]
async fn push_is_acknowledged_and_readable_as_an_envelope() {
    let host = host().await;
    let (status, body, _) = host
        .post_json(
            "/ingest/hooks",
            r#"{"id":"evt-1","type":"order.created","total":42}"#,
            &[],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["events"], 1);
    assert_eq!(body["first_offset"], body["last_offset"]);

    let events = host.events("hooks").await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["offset"], body["first_offset"]);
    assert_eq!(e["source"], "hooks");
    assert_eq!(e["mode"], "push");
    assert_eq!(e["id"], "evt-1");
    assert_eq!(e["attributes"]["type"], "order.created");
    assert_eq!(e["payload"]["total"], 42);
    assert_eq!(e["content_type"], "application/json");
    assert!(e["received_ms"].as_u64().unwrap() > 1_600_000_000_000);
    let label = e["connector"].as_str().unwrap();
    assert!(label.starts_with("hooks@0.1.0+sha256:"), "{label}");
    assert!(e["partition"].is_null() && e["key"].is_null());
}

#[tokio::test]
async fn repeated_idempotency_key_is_stored_once() {
    let host = host().await;
    let body = r#"{"type":"ping"}"#;
    let (s1, b1, _) = host
        .post_json("/ingest/hooks", body, &[("Idempotency-Key", "key-1")])
        .await;
    assert_eq!(s1, 202, "{b1}");
    let (s2, b2, h2) = host
        .post_json("/ingest/hooks", body, &[("Idempotency-Key", "key-1")])
        .await;
    assert_eq!(s2, 200, "{b2}");
    assert_eq!(b2["status"], "duplicate");
    assert_eq!(
        b2["first_offset"], b1["first_offset"],
        "the original answer"
    );
    assert_eq!(h2["idempotent-replayed"], "true");
    // webhook-id is the fallback key.
    let (s3, _, _) = host
        .post_json("/ingest/hooks", body, &[("webhook-id", "msg-1")])
        .await;
    let (s4, b4, _) = host
        .post_json("/ingest/hooks", body, &[("webhook-id", "msg-1")])
        .await;
    assert_eq!((s3, s4), (202, 200), "{b4}");
    assert_eq!(host.events("hooks").await.len(), 2);
}

#[tokio::test]
async fn array_becomes_consecutive_events_and_known_ids_are_dropped() {
    let host = host().await;
    let (status, body, _) = host
        .post_json(
            "/ingest/hooks",
            r#"[{"id":"a"},{"id":"b"},{"id":"c"}]"#,
            &[],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["events"], 3);
    let first = body["first_offset"].as_u64().unwrap();
    assert_eq!(body["last_offset"].as_u64().unwrap(), first + 2);
    let offsets: Vec<u64> = host
        .events("hooks")
        .await
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![first, first + 1, first + 2]);

    // The same ids again, plus one new: only the new one is stored.
    let (status, body, _) = host
        .post_json("/ingest/hooks", r#"[{"id":"b"},{"id":"d"}]"#, &[])
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["events"], 1);
    assert_eq!(body["duplicate_events"], 1);
    assert_eq!(host.events("hooks").await.len(), 4);
}

#[tokio::test]
async fn invalid_json_is_refused_and_nothing_is_stored() {
    let host = host().await;
    host.post_json("/ingest/hooks", r#"{"id":"ok"}"#, &[]).await;
    for bad in ["{not json", "42", r#"[{"id":1}, 7]"#] {
        let (status, body, _) = host.post_json("/ingest/hooks", bad, &[]).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid", "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(host.events("hooks").await.len(), 1, "only the good event");
}

#[tokio::test]
async fn unknown_source_is_404_with_the_error_shape() {
    let host = host().await;
    let (status, body, _) = host.post_json("/ingest/nope", "{}", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "unknown_source");
    // One code for an unknown source on every route that names one.
    for path in ["/v1/streams/nope/events", "/v1/connectors/nope"] {
        let (status, body) = host.get_json(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unknown_source", "{path}: {body}");
    }
}

#[tokio::test]
async fn oversized_body_is_413() {
    let host = TestHost::start_with(&[("hooks", plugins::WEBHOOK_JSON, None)], |c| {
        c.limits.max_body_bytes = 1024
    })
    .await;
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4096));
    let (status, body, _) = host.post_json("/ingest/hooks", &big, &[]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large");
    assert!(host.events("hooks").await.is_empty());
}

#[tokio::test]
async fn long_poll_wakes_on_a_new_event() {
    let host = host().await;
    let url = host.url("/v1/streams/hooks/events?wait=20");
    let client = host.client.clone();
    let reader =
        tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() });
    // The long poll may start before or after this push; both must work.
    let (status, _, _) = host
        .post_json("/ingest/hooks", r#"{"id":"late"}"#, &[])
        .await;
    assert_eq!(status, 202);
    let text = tokio::time::timeout(std::time::Duration::from_secs(15), reader)
        .await
        .expect("the long poll returns once the event is stored")
        .unwrap();
    let line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("one line")).unwrap();
    assert_eq!(line["id"], "late");
}
