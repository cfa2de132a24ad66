//! Tests that stop the host at one exact moment through a fail point
//! (`inlet-host`'s `failpoints` feature, the `fail` crate). A fail point is
//! global to the process, so these tests live in a binary of their own:
//! nothing else runs beside them, whichever test runner is used.

use inlet_tests::{TestHost, plugins};
use std::time::Duration;

/// A retry that arrives while the original's group is applied in sled's
/// memory but not yet flushed is not answered from that memory: it gets 409
/// `in_flight` (the original holds the key), never an early `200 duplicate`
/// for an event a crash could still take back. (It got that 200 when the
/// key was looked up before it was claimed.) sled only: the fail point sits
/// between its batch and its flush.
#[tokio::test]
async fn a_retry_during_the_originals_flush_is_not_answered_early() {
    if inlet_tests::test_store() != inlet_host::config::StoreKind::Sled {
        return;
    }
    let host = TestHost::start(&[("hooks", plugins::WEBHOOK_JSON, None)]).await;
    let (reached_tx, reached_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (reached_tx, release_rx) = (
        std::sync::Mutex::new(reached_tx),
        std::sync::Mutex::new(release_rx),
    );
    fail::cfg_callback("sled-before-flush", move || {
        let _ = reached_tx.lock().unwrap().send(());
        let _ = release_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30));
    })
    .unwrap();
    let body = r#"{"id":"order-1"}"#;
    let original = {
        let request = host
            .client
            .post(host.url("/ingest/hooks"))
            .header("Idempotency-Key", "k-1")
            .body(body);
        tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
    };
    // The original's group is in sled's memory, its flush not started.
    tokio::task::spawn_blocking(move || reached_rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the original push reached the flush");
    let (status, answer, _) = host
        .post_json("/ingest/hooks", body, &[("Idempotency-Key", "k-1")])
        .await;
    fail::remove("sled-before-flush");
    release_tx.send(()).unwrap();
    assert_eq!(status, 409, "a retry during the flush: {answer}");
    assert_eq!(answer["error"]["code"], "in_flight", "{answer}");
    assert_eq!(original.await.unwrap(), 202);
    // Durable now: the retry gets the original answer.
    let (status, answer, _) = host
        .post_json("/ingest/hooks", body, &[("Idempotency-Key", "k-1")])
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "duplicate", "{answer}");
    assert_eq!(host.events("hooks").await.len(), 1);
}
