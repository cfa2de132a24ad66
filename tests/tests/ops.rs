//! Operations: admin auth, graceful shutdown, one process per data dir,
//! request ids in logs, retention with consumer cursors, OpenAPI parity.

use inlet_tests::{ChildHost, TestHost, eventually, plugins};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_inlet");

/// A script in `dir` that runs the host binary after `limits` (shell lines
/// such as `ulimit -n 512`): a host under resource limits of its own.
fn limited_bin(dir: &tempfile::TempDir, limits: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let script = dir.path().join("limited.sh");
    std::fs::write(
        &script,
        format!("#!/bin/bash\n{limits}\nexec {BIN} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.to_str().unwrap().to_string()
}

/// A token setting whose variable is unset or empty refuses the start,
/// naming the key and the variable: it never means "no token" (the admin
/// API and /metrics used to answer everyone then).
#[test]
fn token_settings_whose_variable_is_unset_or_empty_refuse_the_start() {
    let dir = inlet_tests::host_dir(&[("hooks", plugins::WEBHOOK_JSON, None)]);
    let config = dir.path().join("inlet.toml");
    for (key, env) in [
        ("admin_token_env", &[][..]),
        ("admin_token_env", &[("INLET_TEST_TOKEN", "")][..]),
        ("admin_token_env", &[("INLET_TEST_TOKEN", " \n")][..]),
        ("metrics_token_env", &[][..]),
        ("metrics_token_env", &[("INLET_TEST_TOKEN", "")][..]),
    ] {
        std::fs::write(&config, format!("{key} = \"INLET_TEST_TOKEN\"\n")).unwrap();
        let Err((status, log)) = ChildHost::spawn(
            BIN,
            dir.path(),
            &["--config", config.to_str().unwrap()],
            env,
        ) else {
            panic!("the host started with {key} and {env:?}");
        };
        assert!(!status.success());
        assert!(
            log.contains(key) && log.contains("INLET_TEST_TOKEN"),
            "{key} {env:?}: {log}"
        );
    }
}

#[tokio::test]
async fn admin_api_needs_the_token_when_configured() {
    let dir = inlet_tests::host_dir(&[("hooks", plugins::WEBHOOK_JSON, None)]);
    std::fs::write(
        dir.path().join("inlet.toml"),
        "admin_token_env = \"INLET_TEST_ADMIN\"\nmetrics_token_env = \"INLET_TEST_METRICS\"\n",
    )
    .unwrap();
    let config = dir.path().join("inlet.toml");
    let host = ChildHost::spawn(
        BIN,
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &[
            ("INLET_TEST_ADMIN", "s3cr3t"),
            ("INLET_TEST_METRICS", "scrape"),
        ],
    )
    .expect("starts");
    let client = reqwest::Client::new();
    for path in [
        "/v1/connectors",
        "/v1/streams/hooks/events",
        "/v1/openapi.json",
    ] {
        let r = client.get(host.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = client
            .get(host.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = client
            .get(host.url(path))
            .bearer_auth("s3cr3t")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // /metrics has its own token: the scraper's, not the admin's.
    let metrics = host.url("/metrics");
    assert_eq!(client.get(&metrics).send().await.unwrap().status(), 401);
    assert_eq!(
        client
            .get(&metrics)
            .bearer_auth("s3cr3t")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client
            .get(&metrics)
            .bearer_auth("scrape")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Push keeps its own (per-source) auth; health stays open.
    let r = client
        .post(host.url("/ingest/hooks"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        client
            .get(host.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(host.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_push_then_exits_cleanly() {
    // A push in flight for 5 s (the drain waits up to 30 s): long enough to
    // be seen in flight on a slow machine, within a deadline it cannot miss.
    let dir = inlet_tests::host_dir(&[(
        "slow",
        plugins::SLOW_PUSH,
        Some("[sandbox]\npush_deadline = \"30s\"\n"),
    )]);
    let mut host = ChildHost::spawn(BIN, dir.path(), &[], &[]).expect("starts");
    let client = reqwest::Client::new();
    let url = host.url("/ingest/slow?ms=5000");
    let c = client.clone();
    let push = tokio::spawn(async move { c.post(url).body(r#"{"slow":true}"#).send().await });
    let metrics = host.url("/metrics");
    eventually(Duration::from_secs(10), "the push to be in flight", || {
        let client = client.clone();
        let metrics = metrics.clone();
        async move {
            let text = client.get(metrics).send().await.ok()?.text().await.ok()?;
            text.contains("inlet_push_in_flight 1").then_some(())
        }
    })
    .await;
    host.terminate();
    let resp = push.await.unwrap().expect("the in-flight push is answered");
    assert_eq!(resp.status(), 202, "drained, not cut off");
    let status = tokio::task::spawn_blocking(move || {
        let s = host.child.wait().unwrap();
        (s, host)
    })
    .await
    .unwrap();
    assert!(
        status.0.success(),
        "exit status {:?}; log:\n{}",
        status.0,
        status.1.log_text()
    );
    drop(status);
    // The acknowledged event is there after a restart.
    let host = ChildHost::spawn(BIN, dir.path(), &[], &[]).expect("restarts");
    let text = client
        .get(host.url("/v1/streams/slow/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[tokio::test]
async fn a_second_instance_on_the_same_data_dir_is_refused() {
    let dir = inlet_tests::host_dir(&[("hooks", plugins::WEBHOOK_JSON, None)]);
    let first = ChildHost::spawn(BIN, dir.path(), &[], &[]).expect("first starts");
    let Err((status, log)) = ChildHost::spawn(BIN, dir.path(), &[], &[]) else {
        panic!("a second instance started on the same data dir");
    };
    assert!(!status.success());
    let data = dir.path().join("data");
    assert!(
        log.contains(&data.display().to_string()),
        "names the directory: {log}"
    );
    assert!(
        log.contains(&format!("pid {}", first.child.id())),
        "names the holder: {log}"
    );
    // The first one is unharmed.
    let r = reqwest::Client::new()
        .post(first.url("/ingest/hooks"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn push_logs_carry_the_request_id_in_json() {
    let dir = inlet_tests::host_dir(&[("hooks", plugins::WEBHOOK_JSON, None)]);
    let host = ChildHost::spawn(
        BIN,
        dir.path(),
        &["--log-format", "json"],
        &[("RUST_LOG", "inlet_host=debug")],
    )
    .expect("starts");
    let client = reqwest::Client::new();
    let r = client
        .post(host.url("/ingest/hooks"))
        .header("x-request-id", "req-test-42")
        .body(r#"{"id":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["x-request-id"], "req-test-42");
    let r = client
        .post(host.url("/ingest/hooks"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(!generated.is_empty());
    let line = eventually(Duration::from_secs(10), "the push log line", || {
        let log = host.log_text();
        async move {
            log.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| {
                    v["fields"]["message"] == "Push accepted."
                        && v.to_string().contains("req-test-42")
                })
        }
    })
    .await;
    assert_eq!(line["level"], "DEBUG");
}

#[tokio::test]
async fn retention_keeps_what_a_consumer_has_not_read_until_max_bytes_forces_it() {
    let host = TestHost::start_with(
        &[(
            "hooks",
            plugins::WEBHOOK_JSON,
            Some("[stream]\nretention = \"1ms\"\n"),
        )],
        |c| c.compaction_interval = Duration::from_millis(50),
    )
    .await;
    // A consumer registers before anything is read.
    let r = host
        .client
        .put(host.url("/v1/streams/hooks/cursors/etl"))
        .body(r#"{"offset":0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for i in 0..5 {
        let (s, _, _) = host
            .post_json("/ingest/hooks", &format!(r#"{{"id":"e{i}"}}"#), &[])
            .await;
        assert_eq!(s, 202);
    }
    // The consumer reads up to offset 3: only 1..=3 may go.
    let r = host
        .client
        .put(host.url("/v1/streams/hooks/cursors/etl"))
        .body(r#"{"offset":3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, cursor) = host.get_json("/v1/streams/hooks/cursors/etl").await;
    assert_eq!(cursor["offset"], 3);
    let left = eventually(Duration::from_secs(10), "events 1..=3 trimmed", || async {
        let e = host.events("hooks").await;
        (e.len() == 2).then_some(e)
    })
    .await;
    let offsets: Vec<u64> = left.iter().map(|e| e["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, vec![4, 5], "unread events are kept");
    // New events keep increasing offsets even though older ones are gone.
    let (_, body, _) = host.post_json("/ingest/hooks", r#"{"id":"e5"}"#, &[]).await;
    assert_eq!(body["first_offset"], 6);
    let (_, st) = host.get_json("/v1/connectors/hooks").await;
    assert_eq!(st["counters"]["events_trimmed"], 3, "{st}");
    assert_eq!(st["counters"]["events_trimmed_forced"], 0, "{st}");
    let r = host
        .client
        .put(host.url("/v1/streams/hooks/cursors/etl"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn max_bytes_cuts_past_a_cursor_and_counts_it() {
    let host = TestHost::start_with(
        &[(
            "hooks",
            plugins::WEBHOOK_JSON,
            Some("[stream]\nmax_bytes = 1200\n"),
        )],
        |c| c.compaction_interval = Duration::from_millis(50),
    )
    .await;
    host.client
        .put(host.url("/v1/streams/hooks/cursors/slow-reader"))
        .body(r#"{"offset":0}"#)
        .send()
        .await
        .unwrap();
    for i in 0..10 {
        let body = format!(r#"{{"id":"b{i}","pad":"{}"}}"#, "x".repeat(200));
        assert_eq!(host.post_json("/ingest/hooks", &body, &[]).await.0, 202);
    }
    let left = eventually(
        Duration::from_secs(10),
        "the journal cut under max_bytes",
        || async {
            let e = host.events("hooks").await;
            (e.len() < 10).then_some(e)
        },
    )
    .await;
    assert!(!left.is_empty());
    assert_eq!(left.last().unwrap()["offset"], 10, "the newest are kept");
    let (_, st) = host.get_json("/v1/connectors/hooks").await;
    assert!(
        st["counters"]["events_trimmed_forced"].as_u64().unwrap() > 0,
        "{st}"
    );
    let metrics = host.metrics().await;
    assert!(
        metrics.contains("inlet_events_trimmed_forced_total{source=\"hooks\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let host = TestHost::start(&[("hooks", plugins::WEBHOOK_JSON, None)]).await;
    let (status, doc) = host.get_json("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 14);
    for (path, item) in paths {
        let concrete = path
            .replace("{source}", "hooks")
            .replace("{name}", "hooks")
            .replace("{rest}", "a/b")
            .replace("{asset}", "app.js");
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_none() {
                continue;
            }
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = host
                .client
                .request(m, host.url(&concrete))
                .body("{}")
                .send()
                .await
                .unwrap();
            let text = r.text().await.unwrap();
            assert!(
                !text.contains("\"code\":\"not_found\"")
                    && !text.contains("\"code\":\"method_not_allowed\""),
                "{method} {path} is documented but not served: {text}"
            );
        }
    }
    // And an undocumented route is not served.
    let r = host
        .client
        .get(host.url("/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = host
        .client
        .delete(host.url("/v1/connectors"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
}

#[tokio::test]
async fn metrics_cover_a_scripted_session() {
    let host = TestHost::start(&[("hooks", plugins::WEBHOOK_JSON, None)]).await;
    assert_eq!(
        host.post_json(
            "/ingest/hooks",
            r#"{"id":"m1"}"#,
            &[("Idempotency-Key", "m1")]
        )
        .await
        .0,
        202
    );
    assert_eq!(
        host.post_json(
            "/ingest/hooks",
            r#"{"id":"m1"}"#,
            &[("Idempotency-Key", "m1")]
        )
        .await
        .0,
        200
    );
    assert_eq!(host.post_json("/ingest/hooks", "nope", &[]).await.0, 400);
    assert_eq!(host.post_json("/ingest/unknown", "{}", &[]).await.0, 404);
    let r = host
        .client
        .put(host.url("/v1/connectors/hooks/checkpoint"))
        .body(r#"{"value":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = host.metrics().await;
    for expected in [
        "inlet_push_requests_total{source=\"hooks\",outcome=\"accepted\"} 1",
        "inlet_push_requests_total{source=\"hooks\",outcome=\"duplicate\"} 1",
        "inlet_push_requests_total{source=\"hooks\",outcome=\"invalid\"} 1",
        "inlet_push_duration_seconds_count{source=\"hooks\"} 3",
        "inlet_push_duration_seconds_bucket{le=",
        "inlet_events_push_total{source=\"hooks\"} 1",
        "inlet_connector_loads_total{source=\"hooks\",outcome=\"loaded\"} 1",
        "inlet_store_flush_duration_seconds_count ",
        "inlet_checkpoint_age_seconds{source=\"hooks\",partition=\"\"}",
        "inlet_store_bytes ",
        "inlet_push_in_flight 0",
        "inlet_component_cache_misses_total ",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert!(
        !text.contains("unknown"),
        "unknown sources get no series (senders choose those names)"
    );
    assert!(!text.contains("# EOF"));
}

#[tokio::test]
async fn a_corrupt_store_is_reported_with_its_path_and_never_recreated() {
    let dir = inlet_tests::host_dir(&[("hooks", plugins::WEBHOOK_JSON, None)]);
    {
        let mut host = ChildHost::spawn(BIN, dir.path(), &[], &[]).expect("starts");
        let r = reqwest::Client::new()
            .post(host.url("/ingest/hooks"))
            .body(r#"{"id":"keep-me"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        host.terminate();
        assert!(host.child.wait().unwrap().success());
    }
    let db = dir.path().join("data/sled/db");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&db, garbage).unwrap();
    let Err((status, log)) = ChildHost::spawn(BIN, dir.path(), &[], &[]) else {
        panic!("a corrupt store was opened (silently recreated?)");
    };
    assert!(!status.success());
    let data = dir.path().join("data").display().to_string();
    assert!(
        log.contains(&data) && log.contains("corrupt") && log.contains("restore it from a backup"),
        "{log}"
    );
    // Nothing was recreated over it.
    assert!(dir.path().join("data/STORE").exists());
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let dir = inlet_tests::host_dir(&[(
        "slow",
        plugins::SLOW_PUSH,
        Some("[sandbox]\npush_deadline = \"30s\"\n"),
    )]);
    let host = ChildHost::spawn(BIN, dir.path(), &[], &[]).expect("starts");
    let client = reqwest::Client::new();
    let url = host.url("/ingest/slow?ms=20000");
    let c = client.clone();
    let _push = tokio::spawn(async move { c.post(url).body("{}").send().await });
    let metrics = host.url("/metrics");
    eventually(Duration::from_secs(10), "the push to be in flight", || {
        let client = client.clone();
        let metrics = metrics.clone();
        async move {
            let text = client.get(metrics).send().await.ok()?.text().await.ok()?;
            text.contains("inlet_push_in_flight 1").then_some(())
        }
    })
    .await;
    host.terminate();
    // The first signal drains (the push has ~20 s to go); wait until the
    // host says so before the second.
    eventually(Duration::from_secs(10), "the drain to start", || {
        let log = host.log_text();
        async move { log.contains("Shutting down").then_some(()) }
    })
    .await;
    host.terminate();
    let started = std::time::Instant::now();
    let mut host = host;
    let status = tokio::task::spawn_blocking(move || host.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exited at once, not after the drain"
    );
}

/// FIFOs in the plugins directory (as `NAME.wasm` or as the manifest of a
/// good component) never hang start-up, a reload or shutdown: they are
/// refused with the reason, and every other connector serves. Before, the
/// host never listened, and a FIFO manifest blocked every later reload and
/// shutdown.
#[tokio::test]
async fn special_files_in_the_plugins_directory_never_hang_the_host() {
    let dir = inlet_tests::host_dir(&[
        ("hooks", plugins::WEBHOOK_JSON, None),
        ("jam", plugins::WEBHOOK_JSON, None),
    ]);
    let p = dir.path().join("plugins.d");
    for fifo in ["stuck.wasm", "jam.toml"] {
        let made = std::process::Command::new("mkfifo")
            .arg(p.join(fifo))
            .status()
            .unwrap();
        assert!(made.success());
    }
    let path = dir.path().to_path_buf();
    let host = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || ChildHost::spawn(BIN, &path, &[], &[])),
    )
    .await
    .expect("the host listens despite the FIFOs")
    .unwrap()
    .expect("starts");
    let client = reqwest::Client::new();
    let r = client
        .post(host.url("/ingest/hooks"))
        .body(r#"{"id":"1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    for (name, file) in [("stuck", "stuck.wasm"), ("jam", "jam.toml")] {
        let status: serde_json::Value = client
            .get(host.url(&format!("/v1/connectors/{name}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let err = status["last_error"].as_str().unwrap_or_default();
        assert!(
            err.contains(file) && err.contains("not a regular file"),
            "{name}: {status}"
        );
        let r = client
            .post(host.url(&format!("/ingest/{name}")))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{name}");
    }
    let reload = tokio::time::timeout(
        Duration::from_secs(30),
        client.post(host.url("/v1/reload")).send(),
    )
    .await
    .expect("a reload finishes despite the FIFOs")
    .unwrap();
    assert_eq!(reload.status(), 200);
    host.terminate();
    let mut host = host;
    let exited = tokio::time::timeout(
        Duration::from_secs(40),
        tokio::task::spawn_blocking(move || host.child.wait().unwrap()),
    )
    .await
    .expect("shutdown finishes despite the FIFOs")
    .unwrap();
    assert!(exited.success(), "{exited:?}");
}

/// A disk that fails (here: a file size limit with SIGXFSZ ignored, as a
/// full disk would) never turns into an acknowledgement: the push that hit
/// it gets 503, and so does its retry with the same Idempotency-Key (it used
/// to get `200 duplicate` for an event that never reached the disk), every
/// later push, and `/readyz`. After a restart with room on the disk the
/// retry is stored, once.
#[tokio::test]
async fn a_failed_write_is_never_acknowledged_not_even_as_a_duplicate() {
    let dir = inlet_tests::host_dir(&[("hooks", plugins::WEBHOOK_JSON, None)]);
    let limited = limited_bin(&dir, "ulimit -f 2048\ntrap '' XFSZ");
    let mut host = ChildHost::spawn(&limited, dir.path(), &[], &[]).expect("starts");
    let client = reqwest::Client::new();
    let pad = "x".repeat(16 << 10);
    let push = |host: &ChildHost, key: String| {
        let request = client
            .post(host.url("/ingest/hooks"))
            .header("Idempotency-Key", key.clone())
            .body(format!(r#"{{"id":"{key}","pad":"{pad}"}}"#));
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let mut failed_key = None;
    for i in 0..1000 {
        let key = format!("k{i}");
        let (status, body) = push(&host, key.clone()).await;
        if status == 503 {
            assert!(body.contains("store_unavailable"), "{body}");
            failed_key = Some(key);
            break;
        }
        assert_eq!(status, 202, "{body}");
    }
    let failed_key = failed_key.expect("a 2 MiB file limit fails a write within 16 MB");
    let (status, body) = push(&host, failed_key.clone()).await;
    assert_eq!(status, 503, "the retry of a lost write: {body}");
    let (status, body) = push(&host, "another".to_string()).await;
    assert_eq!(status, 503, "{body}");
    let ready = client.get(host.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "a host that cannot write is not ready");
    host.child.kill().unwrap();
    host.child.wait().unwrap();

    // Room on the disk again: the retry is stored, once.
    let host = ChildHost::spawn(BIN, dir.path(), &[], &[]).expect("restarts");
    let (status, body) = push(&host, failed_key.clone()).await;
    assert_eq!(status, 202, "the lost write is stored on retry: {body}");
    let (status, body) = push(&host, failed_key.clone()).await;
    assert_eq!(status, 200, "{body}");
    let stored = host
        .events("hooks")
        .await
        .iter()
        .filter(|e| e["id"] == failed_key.as_str())
        .count();
    assert_eq!(stored, 1, "{failed_key} stored exactly once");
}

/// The consumer token reads streams and reads and moves cursors, and
/// nothing else: it cannot see connectors, pull, move checkpoints or reload.
#[tokio::test]
async fn the_consumer_token_reads_streams_and_moves_cursors_only() {
    let dir = inlet_tests::host_dir(&[("hooks", plugins::WEBHOOK_JSON, None)]);
    let config = dir.path().join("inlet.toml");
    std::fs::write(
        &config,
        "admin_token_env = \"INLET_TEST_ADMIN\"\nconsumer_token_env = \"INLET_TEST_CONSUMER\"\n",
    )
    .unwrap();
    let host = ChildHost::spawn(
        BIN,
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &[
            ("INLET_TEST_ADMIN", "admin-t0ken"),
            ("INLET_TEST_CONSUMER", "reader"),
        ],
    )
    .expect("starts");
    let client = reqwest::Client::new();
    let r = client
        .post(host.url("/ingest/hooks"))
        .body(r#"{"id":"1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let call = |method: reqwest::Method, path: &str, token: &str, body: &str| {
        client
            .request(method, host.url(path))
            .bearer_auth(token)
            .body(body.to_string())
            .send()
    };
    use reqwest::Method;
    for token in ["reader", "admin-t0ken"] {
        let r = call(Method::GET, "/v1/streams/hooks/events", token, "")
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{token}");
        assert!(r.text().await.unwrap().contains("\"1\""));
        let r = call(
            Method::PUT,
            "/v1/streams/hooks/cursors/etl",
            token,
            r#"{"offset":1}"#,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{token}");
        let r = call(Method::GET, "/v1/streams/hooks/cursors/etl", token, "")
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{token}");
    }
    for (method, path, body) in [
        (Method::GET, "/v1/connectors", ""),
        (Method::GET, "/v1/connectors/hooks", ""),
        (
            Method::PUT,
            "/v1/connectors/hooks/checkpoint",
            r#"{"value":"x"}"#,
        ),
        (Method::POST, "/v1/reload", ""),
    ] {
        let r = call(method.clone(), path, "reader", body).await.unwrap();
        assert_eq!(r.status(), 401, "{method} {path} with the consumer token");
    }
    let r = call(Method::GET, "/v1/streams/hooks/events", "wrong", "")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// With a file limit of 512, 600 long polls are shed with 503 below the
/// limit instead of exhausting it: the host keeps accepting and answering,
/// and once the polls are gone a push is stored. Before, the host stopped
/// accepting connections (`Too many open files`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_past_the_file_limit_are_shed_with_503() {
    let dir = inlet_tests::host_dir(&[("hooks", plugins::WEBHOOK_JSON, None)]);
    let limited = limited_bin(&dir, "ulimit -n 512");
    let host =
        std::sync::Arc::new(ChildHost::spawn(&limited, dir.path(), &[], &[]).expect("starts"));
    // One connection per poll, as 600 consumers would open.
    let mut polls: futures::stream::FuturesUnordered<_> = (0..600)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let r = client
                    .get(host.url("/v1/streams/hooks/events?wait=30"))
                    .send()
                    .await;
                r.map(|r| r.status().as_u16()).ok()
            })
        })
        .collect();
    // Polls past the cap are shed at once: answered 503 while the host has
    // room to answer refusals, closed without an answer past that. Without
    // the cap they sat in the accept backlog until earlier polls ended.
    let (shed, answered) = tokio::time::timeout(Duration::from_secs(25), async {
        use futures::StreamExt as _;
        let (mut shed, mut answered) = (0, 0);
        while let Some(poll) = polls.next().await {
            match poll.unwrap() {
                Some(503) => answered += 1,
                None => {}
                Some(_) => continue,
            }
            shed += 1;
            if shed == 100 {
                break;
            }
        }
        (shed, answered)
    })
    .await
    .expect("polls past the cap are shed at once, not left in the backlog");
    assert_eq!(shed, 100);
    eprintln!("{answered} of the first 100 shed polls were answered 503");
    // Once the polls are gone, pushes are served again.
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(60), "a push stored", || {
        let request = client
            .post(host.url("/ingest/hooks"))
            .body(r#"{"id":"after"}"#)
            .send();
        async move { (request.await.ok()?.status() == 202).then_some(()) }
    })
    .await;
}

/// `admin_listen`: `/v1` and `/metrics` only there, `/ingest` only on the
/// main listener (404 across), health checks on both; an ingest listener
/// facing the internet needs no admin token when the admin one is on
/// loopback.
#[tokio::test]
async fn admin_listen_splits_the_admin_api_from_ingest() {
    let host = TestHost::start_with(&[("hooks", plugins::WEBHOOK_JSON, None)], |c| {
        c.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let admin = host
        .admin_base
        .clone()
        .expect("the admin listener is bound");
    let client = &host.client;
    let status =
        |url: String| async move { client.get(url).send().await.unwrap().status().as_u16() };
    // The ingest listener: pushes and health, no admin routes.
    let (code, body, _) = host.post_json("/ingest/hooks", r#"{"id":"1"}"#, &[]).await;
    assert_eq!(code, 202, "{body}");
    for path in [
        "/v1/connectors",
        "/v1/streams/hooks/events",
        "/metrics",
        "/v1/openapi.json",
        "/console",
        "/console/app.js",
    ] {
        assert_eq!(
            status(host.url(path)).await,
            404,
            "{path} on the ingest listener"
        );
    }
    assert_eq!(status(host.url("/healthz")).await, 200);
    // The admin listener: everything but pushes.
    for path in [
        "/v1/connectors",
        "/v1/streams/hooks/events",
        "/metrics",
        "/healthz",
        "/readyz",
        "/console",
        "/console/app.js",
    ] {
        assert_eq!(
            status(format!("{admin}{path}")).await,
            200,
            "{path} on the admin listener"
        );
    }
    let pushed = client
        .post(format!("{admin}/ingest/hooks"))
        .body(r#"{"id":"2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 404);
    let events = host.events("hooks").await;
    assert_eq!(
        events.len(),
        1,
        "only the push to the ingest listener: {events:?}"
    );
}
