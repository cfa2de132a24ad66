//! The push path under pressure: concurrent retries, rate limits, overload,
//! oversized bodies and slow clients.

use futures::StreamExt;
use inlet_tests::{TestHost, plugins};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn fifty_concurrent_requests_with_one_key_store_one_event() {
    let host = TestHost::start(&[(
        "slow",
        plugins::SLOW_PUSH,
        Some("[config]\nsleep_ms = 50\n"),
    )])
    .await;
    let requests = (0..50).map(|i| {
        let client = host.client.clone();
        let url = host.url("/ingest/slow");
        async move {
            let r = client
                .post(url)
                .header("Idempotency-Key", "the-one-key")
                .body(format!(r#"{{"attempt":{i}}}"#))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            (status, body)
        }
    });
    let results: Vec<(u16, serde_json::Value)> = futures::future::join_all(requests).await;
    let accepted = results.iter().filter(|(s, _)| *s == 202).count();
    assert_eq!(accepted, 1, "exactly one is processed: {results:?}");
    for (status, body) in &results {
        match status {
            202 => {}
            200 => assert_eq!(body["status"], "duplicate"),
            409 => assert_eq!(body["error"]["code"], "in_flight"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(host.events("slow").await.len(), 1);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let host = TestHost::start(&[(
        "hooks",
        plugins::WEBHOOK_JSON,
        Some("[push]\nrate_limit = { per_second = 1, burst = 5 }\n"),
    )])
    .await;
    let started = Instant::now();
    let mut limited = Vec::new();
    for i in 0..8 {
        let (status, body, headers) = host
            .post_json("/ingest/hooks", &format!(r#"{{"id":"r{i}"}}"#), &[])
            .await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "rate_limited");
            let secs: u64 = headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .expect("numeric Retry-After");
            assert!((1..=2).contains(&secs), "Retry-After {secs}");
            limited.push(i);
        } else {
            assert_eq!(status, 202, "{body}");
        }
    }
    // Burst 5 of 8: three are limited, unless the run was so slow that a
    // token came back (one per second).
    let refills = started.elapsed().as_secs() as usize;
    assert!(
        limited.len() + refills >= 3 && limited.len() <= 3,
        "limited: {limited:?}"
    );
    assert_eq!(host.events("hooks").await.len(), 8 - limited.len());
}

/// Fires `n` concurrent slow pushes; returns (status, Retry-After) pairs.
async fn burst(host: &TestHost, n: usize) -> Vec<(u16, Option<String>)> {
    let requests = (0..n).map(|i| {
        let client = host.client.clone();
        let url = host.url("/ingest/slow?ms=1500");
        async move {
            let r = client
                .post(url)
                .body(format!(r#"{{"n":{i}}}"#))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string()),
            )
        }
    });
    futures::future::join_all(requests).await
}

#[tokio::test]
async fn per_source_overload_answers_503_at_once_and_keeps_what_it_accepted() {
    let host = TestHost::start(&[(
        "slow",
        plugins::SLOW_PUSH,
        Some("[push]\nmax_in_flight = 2\n"),
    )])
    .await;
    let results = burst(&host, 8).await;
    let accepted = results.iter().filter(|(s, _)| *s == 202).count();
    let overloaded: Vec<_> = results.iter().filter(|(s, _)| *s == 503).collect();
    assert!(accepted >= 2, "{results:?}");
    assert!(!overloaded.is_empty(), "{results:?}");
    assert_eq!(accepted + overloaded.len(), 8, "{results:?}");
    for (_, retry_after) in overloaded {
        let secs: u64 = retry_after
            .as_deref()
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!(secs >= 1);
    }
    assert_eq!(
        host.events("slow").await.len(),
        accepted,
        "every accepted push is stored"
    );
}

#[tokio::test]
async fn global_overload_answers_503() {
    let host = TestHost::start_with(&[("slow", plugins::SLOW_PUSH, None)], |c| {
        c.limits.max_in_flight = 2
    })
    .await;
    let results = burst(&host, 6).await;
    let accepted = results.iter().filter(|(s, _)| *s == 202).count();
    assert!(
        results.iter().any(|(s, r)| *s == 503 && r.is_some()),
        "{results:?}"
    );
    assert!(
        results.iter().all(|(s, _)| *s == 202 || *s == 503),
        "{results:?}"
    );
    assert_eq!(host.events("slow").await.len(), accepted);
}

#[tokio::test]
async fn oversized_bodies_are_413_with_and_without_content_length() {
    let host = TestHost::start_with(&[("hooks", plugins::WEBHOOK_JSON, None)], |c| {
        c.limits.max_body_bytes = 1000
    })
    .await;
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000));
    let (status, body, _) = host.post_json("/ingest/hooks", &big, &[]).await;
    assert_eq!(status, 413, "{body}");
    // Chunked, no Content-Length: refused once the limit is crossed.
    let chunks =
        futures::stream::iter((0..50).map(|_| Ok::<_, std::io::Error>(vec![b' '; 100]))).boxed();
    let r = host
        .client
        .post(host.url("/ingest/hooks"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(host.events("hooks").await.is_empty());
    // Just under the limit still works.
    let (status, _, _) = host
        .post_json(
            "/ingest/hooks",
            &format!(r#"{{"pad":"{}"}}"#, "x".repeat(900)),
            &[],
        )
        .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_client_sending_headers_one_byte_at_a_time_is_disconnected() {
    let host = TestHost::start_with(&[("hooks", plugins::WEBHOOK_JSON, None)], |c| {
        c.limits.header_read_timeout = Duration::from_secs(1)
    })
    .await;
    let addr = host.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = b"POST /ingest/hooks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut closed = false;
    for byte in request {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        // Is the server still there? A read that returns 0 (or errors)
        // within this pause means it closed the connection.
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => {
                // hyper may answer 408 before closing; then read to EOF.
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    stream.read_to_end(&mut Vec::new()),
                )
                .await;
                closed = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(closed, "the slow client was never disconnected");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The host still serves everyone else.
    let (status, _, _) = host.post_json("/ingest/hooks", r#"{"id":"ok"}"#, &[]).await;
    assert_eq!(status, 202);
}
