//! Tests that stop the host at one exact moment through a fail point
//! (`inlet-host`'s `failpoints` feature, the `fail` crate). A fail point is
//! global to the process, so these tests live in a binary of their own:
//! nothing else runs beside them, whichever test runner is used.

use inlet_tests::{TestHost, eventually, plugins};
use std::time::{Duration, Instant};

/// Fail points are global to the process: under `cargo test` (threads, not
/// processes) the tests here take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Holds the writer at "sled-before-flush" until the returned sender is
/// used or dropped (at most 60 s); the receiver hears when it got there.
fn hold_the_writer() -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
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
            .recv_timeout(Duration::from_secs(60));
    })
    .unwrap();
    (reached_rx, release_tx)
}

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
    let _serial = SERIAL.lock().await;
    let host = TestHost::start(&[("hooks", plugins::WEBHOOK_JSON, None)]).await;
    let (reached_rx, release_tx) = hold_the_writer();
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

/// A store write that never returns (a disk or descriptor table in
/// trouble) does not hold its request, or readiness, for ever: past the
/// store's stall limit (10 s) the push gets 503 and `/readyz` fails; once
/// the writer moves again readiness is back, and the write that landed
/// late is deduplicated on retry. Before, the request and every later one
/// waited for ever while `/readyz` said 200.
#[tokio::test]
async fn a_stalled_store_write_fails_its_request_and_readiness_until_it_moves() {
    if inlet_tests::test_store() != inlet_host::config::StoreKind::Sled {
        return;
    }
    let _serial = SERIAL.lock().await;
    let host = TestHost::start(&[("hooks", plugins::WEBHOOK_JSON, None)]).await;
    let (_reached, release) = hold_the_writer();
    let body = r#"{"id":"late"}"#;
    let started = Instant::now();
    let (status, answer, _) = host.post_json("/ingest/hooks", body, &[]).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "store_unavailable", "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let (ready, why) = host.get_json("/readyz").await;
    assert_eq!(ready, 503, "{why}");
    fail::remove("sled-before-flush");
    release.send(()).unwrap();
    eventually(
        Duration::from_secs(30),
        "readiness after the write",
        || async { (host.get_json("/readyz").await.0 == 200).then_some(()) },
    )
    .await;
    let (status, answer, _) = host.post_json("/ingest/hooks", body, &[]).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["duplicate_events"], 1, "{answer}");
    assert_eq!(host.events("hooks").await.len(), 1);
}

/// A push the connector failed on whose dead letter cannot be written
/// (the flush fails) is answered 503 `store_unavailable`, naming the
/// connector's failure: the sender retries instead of taking the 4xx as
/// final while nothing was kept. sled only (the fail point is its flush).
#[tokio::test]
async fn a_dead_letter_that_cannot_be_written_is_answered_503() {
    if inlet_tests::test_store() != inlet_host::config::StoreKind::Sled {
        return;
    }
    let _serial = SERIAL.lock().await;
    let host = TestHost::start(&[("flaky", plugins::FLAKY_PUSH, None)]).await;
    fail::cfg("sled-before-flush", "return").unwrap();
    let (status, answer, headers) = host
        .post_json("/ingest/flaky", r#"{"id":"x","do":"invalid"}"#, &[])
        .await;
    fail::remove("sled-before-flush");
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "store_unavailable", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("too strict") && message.contains("dead letter"),
        "{message}"
    );
    assert!(headers.contains_key("retry-after"));
    assert!(!headers.contains_key("inlet-dead-letter"));
}
