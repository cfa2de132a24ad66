//! Pull end to end: the real host, the real `http-poll` component, and an
//! in-process source on 127.0.0.1.

use inlet_tests::source::{Answer, SourceServer};
use inlet_tests::{TestHost, eventually, plugins};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A source of `total` items paged `page` at a time; the cursor is the
/// index of the next item. `available` items exist right now.
async fn paging_source(total: usize, page: usize, available: Arc<AtomicUsize>) -> SourceServer {
    let _ = total;
    SourceServer::start(move |seen| {
        let start: usize = seen.param("since").map(|s| s.parse().unwrap()).unwrap_or(0);
        let avail = available.load(Ordering::SeqCst);
        let end = (start + page).min(avail);
        let items: Vec<_> = (start..end)
            .map(|i| serde_json::json!({"id": format!("item-{i}"), "n": i}))
            .collect();
        Answer::json(
            200,
            serde_json::json!({"items": items, "next_cursor": end.to_string(), "has_more": end < avail}),
        )
    })
    .await
}

fn manifest(addr: std::net::SocketAddr) -> String {
    format!(
        r#"
[pull]
every = "1h"

[sandbox]
allowed_hosts = ["127.0.0.1:{port}"]

[config]
url = "http://127.0.0.1:{port}/items"
"#,
        port = addr.port()
    )
}

#[tokio::test]
async fn pull_stores_every_item_once_and_resumes_after_restart() {
    let available = Arc::new(AtomicUsize::new(25));
    let source = paging_source(40, 10, available.clone()).await;
    let m = manifest(source.addr);
    let mut host = TestHost::start(&[("feed", plugins::HTTP_POLL, Some(&m))]).await;

    // The schedule pulls at start; has-more pages through all 25.
    let events = eventually(Duration::from_secs(20), "25 pulled events", || async {
        let e = host.events("feed").await;
        (e.len() == 25).then_some(e)
    })
    .await;
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..25).map(|i| format!("item-{i}")).collect();
    assert_eq!(ids, expected);
    assert!(events.iter().all(|e| e["mode"] == "pull"));
    let (status, cp) = host.get_json("/v1/connectors/feed/checkpoint").await;
    assert_eq!(status, 200, "{cp}");
    assert_eq!(cp["value"], "25");

    // A manual pull with nothing new stores nothing and keeps the checkpoint.
    let resp = host
        .client
        .post(host.url("/v1/connectors/feed/pull"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let run: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(run["run"]["events"], 0, "{run}");
    assert_eq!(host.events("feed").await.len(), 25);
    let metrics = host.metrics().await;
    for expected in [
        "inlet_pull_runs_by_outcome_total{source=\"feed\",outcome=\"ok\"}",
        "inlet_pull_duration_seconds_count{source=\"feed\"}",
        "inlet_pull_events_sum{source=\"feed\"}",
        "inlet_events_pull_total{source=\"feed\"} 25",
        "inlet_checkpoint_age_seconds{source=\"feed\",partition=\"\"}",
    ] {
        assert!(
            metrics.contains(expected),
            "missing `{expected}` in:\n{metrics}"
        );
    }

    // Restart on the same data dir; 10 more items appear at the source.
    host.restart().await;
    available.store(35, Ordering::SeqCst);
    let events = eventually(
        Duration::from_secs(20),
        "35 events after restart",
        || async {
            let e = host.events("feed").await;
            (e.len() >= 35).then_some(e)
        },
    )
    .await;
    assert_eq!(events.len(), 35, "no duplicate after restart");
    let mut ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 35);
    // The first pull after restart asked from the saved checkpoint.
    assert!(
        source
            .requests()
            .iter()
            .any(|r| r.param("since").as_deref() == Some("25")),
        "resumed from checkpoint 25"
    );
    let offsets: Vec<u64> = events
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets strictly increase"
    );
    host.stop().await;
}

#[tokio::test]
async fn checkpoint_can_be_inspected_set_and_reset() {
    let available = Arc::new(AtomicUsize::new(5));
    let source = paging_source(5, 10, available).await;
    let m = manifest(source.addr);
    let host = TestHost::start(&[("feed", plugins::HTTP_POLL, Some(&m))]).await;
    eventually(Duration::from_secs(20), "5 events", || async {
        (host.events("feed").await.len() == 5).then_some(())
    })
    .await;
    // Reset: a full re-read, whose events dedup drops.
    let r = host
        .client
        .delete(host.url("/v1/connectors/feed/checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = host.get_json("/v1/connectors/feed/checkpoint").await;
    assert_eq!(status, 404);
    let r = host
        .client
        .post(host.url("/v1/connectors/feed/pull"))
        .send()
        .await
        .unwrap();
    let run: serde_json::Value = r.json().await.unwrap();
    assert_eq!(run["run"]["events"], 0, "{run}");
    assert_eq!(run["run"]["duplicates"], 5, "{run}");
    // Set: skip ahead.
    let r = host
        .client
        .put(host.url("/v1/connectors/feed/checkpoint"))
        .body(r#"{"value":"3"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, cp) = host.get_json("/v1/connectors/feed/checkpoint").await;
    assert_eq!(cp["value"], "3");
    let r = host
        .client
        .put(host.url("/v1/connectors/feed/checkpoint"))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn source_errors_never_move_the_checkpoint() {
    let fail = Arc::new(AtomicUsize::new(1));
    let f = fail.clone();
    let source = SourceServer::start(move |seen| {
        if f.load(Ordering::SeqCst) == 1 {
            return Answer::json(503, serde_json::json!({"error": "down"}));
        }
        let since = seen.param("since");
        if since.is_some() {
            return Answer::json(
                200,
                serde_json::json!({"items": [], "next_cursor": "1", "has_more": false}),
            );
        }
        Answer::json(
            200,
            serde_json::json!({"items": [{"id": "x"}], "next_cursor": "1", "has_more": false}),
        )
    })
    .await;
    let m = manifest(source.addr);
    let host = TestHost::start(&[("feed", plugins::HTTP_POLL, Some(&m))]).await;
    let r = host
        .client
        .post(host.url("/v1/connectors/feed/pull"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("unavailable") && msg.contains("503"), "{msg}");
    let (status, _) = host.get_json("/v1/connectors/feed/checkpoint").await;
    assert_eq!(status, 404, "no checkpoint after a failed pull");
    let (_, st) = host.get_json("/v1/connectors/feed").await;
    assert!(st["last_error"].as_str().unwrap().contains("503"), "{st}");

    fail.store(0, Ordering::SeqCst);
    let r = host
        .client
        .post(host.url("/v1/connectors/feed/pull"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(host.events("feed").await.len(), 1);
    let (_, cp) = host.get_json("/v1/connectors/feed/checkpoint").await;
    assert_eq!(cp["value"], "1");
}

#[tokio::test]
async fn outbound_requests_outside_allowed_hosts_fail_in_the_guest() {
    let source = SourceServer::start(|_| Answer::json(200, serde_json::json!({"items": []}))).await;
    // The manifest allows another port only.
    let m = format!(
        "[pull]\nevery = \"1h\"\n[sandbox]\nallowed_hosts = [\"127.0.0.1:1\"]\n[config]\nurl = \"http://127.0.0.1:{}/items\"\n",
        source.addr.port()
    );
    let host = TestHost::start(&[("feed", plugins::HTTP_POLL, Some(&m))]).await;
    let r = host
        .client
        .post(host.url("/v1/connectors/feed/pull"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("denied"),
        "{body}"
    );
    assert!(
        source.requests().is_empty(),
        "the request never left the host"
    );
}
