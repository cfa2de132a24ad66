//! The push path under pressure: concurrent retries, rate limits, overload,
//! oversized bodies and slow clients.

use futures::StreamExt;
use inlet_tests::{TestHost, plugins};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The slow fixture's calls sleep for seconds: a deadline they never miss.
const SLOW: &str = "[sandbox]\npush_deadline = \"30s\"\n";

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
        let url = host.url("/ingest/slow?ms=3000");
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
        Some(&format!("[push]\nmax_in_flight = 2\n{SLOW}")),
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
    let host = TestHost::start_with(&[("slow", plugins::SLOW_PUSH, Some(SLOW))], |c| {
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

/// A TCP connection to `host` from `local` (another loopback address).
async fn connect_from(local: &str, host: &TestHost) -> tokio::net::TcpStream {
    let addr: std::net::SocketAddr = host.url("").trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads a whole (short) HTTP response and returns its status code.
async fn status_of(stream: &mut tokio::net::TcpStream) -> u16 {
    tokio::time::timeout(Duration::from_secs(30), read_status(stream))
        .await
        .expect("an answer within 30 s")
}

/// Reads until the peer closes and returns the response's status code.
async fn read_status(stream: &mut tokio::net::TcpStream) -> u16 {
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"))
}

fn github_signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Slow anonymous bodies from one address (127.0.0.2) exhaust that
/// address's share of the unauthenticated-bytes budget and nothing else:
/// they take no push slot, and a signed push from 127.0.0.1 is stored.
/// Before, 1,030 such connections took every global push slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_anonymous_bodies_cannot_starve_an_authentic_sender() {
    let host = TestHost::start_with(&[], |c| {
        c.limits.max_in_flight = 8;
        c.limits.max_body_bytes = 16 * 1024;
        c.limits.unauthenticated_bytes_per_peer = 16 * 1024;
        c.limits.body_read_timeout = Duration::from_secs(600);
    })
    .await;
    let dir = host.plugins_dir();
    std::fs::write(dir.join("gh.secret"), "s3cret").unwrap();
    inlet_tests::install(
        &dir,
        "gh",
        plugins::WEBHOOK_JSON,
        Some("[push]\nauth = { scheme = \"github\", secret_file = \"gh.secret\" }\n"),
    );
    host.reload().await;
    // 40 bodies of 1,000 declared bytes, one byte sent: 16 of them fill
    // the attacker's 16 KiB share (and, before, all 8 push slots); the
    // other 24 are refused. Which ones is the host's business: on a loaded
    // machine it may read the connections' headers in any order. The body
    // timeout is longer than the test, so no held body frees its share.
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut stream = connect_from("127.0.0.2", &host).await;
        stream
            .write_all(b"POST /ingest/gh HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{")
            .await
            .unwrap();
        held.push(stream);
    }
    let mut answers: futures::stream::FuturesUnordered<_> = held
        .iter_mut()
        .map(|stream| async move { read_status(stream).await })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    while refused < 24 {
        let answer = tokio::time::timeout_at(deadline.into(), answers.next())
            .await
            .unwrap_or_else(|_| panic!("only {refused} of 24 expected refusals within 60 s"))
            .expect("16 connections stay held");
        assert_eq!(answer, 503, "past its share, the attacker gets 503");
        refused += 1;
    }
    let body = br#"{"id":"real"}"#;
    let signature = github_signature(b"s3cret", body);
    let (status, reply, _) = host
        .post_json(
            "/ingest/gh",
            std::str::from_utf8(body).unwrap(),
            &[("X-Hub-Signature-256", &signature)],
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    // The 16 within the share are still waiting for their bodies.
    assert_eq!(answers.len(), 16);
    assert!(futures::FutureExt::now_or_never(answers.next()).is_none());
}

/// Connections past the per-address cap are answered 503 and closed at
/// once; other addresses are served.
#[tokio::test]
async fn connections_past_the_per_address_cap_get_503_and_others_are_served() {
    let host = TestHost::start_with(&[("hooks", plugins::WEBHOOK_JSON, None)], |c| {
        c.limits.max_connections_per_peer = 20;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(connect_from("127.0.0.2", &host).await);
    }
    // The 21st: answered 503 whatever it asks, and closed.
    let mut extra = connect_from("127.0.0.2", &host).await;
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&mut extra).await, 503);
    let (status, body, _) = host.post_json("/ingest/hooks", r#"{"id":"a"}"#, &[]).await;
    assert_eq!(status, 202, "{body}");
    drop(idle);
}

/// A commit wakes only the long polls of its own source (idle polls on `a`
/// cost pushes to `b` nothing), and past `max_long_polls` a wait is 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_long_polls_are_woken_only_by_their_own_source_and_capped() {
    let host = std::sync::Arc::new(
        TestHost::start_with(
            &[
                ("a", plugins::WEBHOOK_JSON, None),
                ("b", plugins::WEBHOOK_JSON, None),
            ],
            |c| c.limits.max_long_polls = 100,
        )
        .await,
    );
    let polls: Vec<_> = (0..100)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move {
                // Like a real consumer: a 503 (the probe below held a
                // place for a moment) is retried.
                loop {
                    let r = host
                        .client
                        .get(host.url("/v1/streams/a/events?wait=60"))
                        .send()
                        .await
                        .unwrap();
                    if r.status() != 503 {
                        return (r.status().as_u16(), r.text().await.unwrap());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    // Every poll is waiting once one more is refused.
    inlet_tests::eventually(
        Duration::from_secs(30),
        "100 long polls waiting",
        || async {
            let (code, _) = host.get_json("/v1/streams/a/events?wait=1").await;
            (code == 503).then_some(())
        },
    )
    .await;
    for i in 0..20 {
        let (status, body, _) = host
            .post_json("/ingest/b", &format!(r#"{{"id":"b{i}"}}"#), &[])
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let woken = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("inlet_long_poll_wakeups_total{source=\"a\"} "))
            .map_or(0, |v| v.parse::<u64>().unwrap())
    };
    // On JetStream, waiters also wake on a timer to see other hosts'
    // commits; on sled only a commit to their own source wakes them.
    if inlet_tests::test_store() == inlet_host::config::StoreKind::Sled {
        assert_eq!(
            woken(&host.metrics().await),
            0,
            "pushes to b woke polls on a"
        );
    }
    let (status, body, _) = host.post_json("/ingest/a", r#"{"id":"a1"}"#, &[]).await;
    assert_eq!(status, 202, "{body}");
    for poll in polls {
        let (status, text) = poll.await.unwrap();
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("\"a1\""), "{text}");
    }
    assert!(woken(&host.metrics().await) >= 100);
}
