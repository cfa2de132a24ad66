//! Hot reload end to end: real files in the watched plugins directory, real
//! components, real HTTP. Nothing here calls `POST /v1/reload` to make a
//! change visible: the watcher must notice on its own.

use inlet_tests::source::{Answer, SourceServer};
use inlet_tests::{TestHost, eventually, install, plugins};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How long a reload may take to become visible (compiling in a debug
/// build on a busy machine included).
const RELOAD: Duration = Duration::from_secs(30);

/// Pushes `{"id": id}` to `source`: the status and, when it was stored,
/// the `connector` label of its envelope.
async fn push_and_label(host: &TestHost, source: &str, id: &str) -> (u16, Option<String>) {
    let body = serde_json::json!({ "id": id }).to_string();
    let (status, reply, _) = host
        .post_json(&format!("/ingest/{source}"), &body, &[])
        .await;
    let Some(offset) = reply["first_offset"].as_u64() else {
        return (status, None);
    };
    let (_, page) = host
        .get_json(&format!(
            "/v1/streams/{source}/events?after={}&limit=1",
            offset - 1
        ))
        .await;
    let envelope: serde_json::Value = match page {
        serde_json::Value::String(text) => serde_json::from_str(text.trim()).unwrap(),
        v => v,
    };
    (status, envelope["connector"].as_str().map(str::to_string))
}

/// Numbers probe events, so no two share an id (dedup would drop one).
static PROBES: AtomicUsize = AtomicUsize::new(0);

/// Waits until a push to `source` is served by `version`.
async fn served_by(host: &TestHost, source: &str, version: &str) {
    eventually(RELOAD, &format!("{source} served by {version}"), || async {
        let id = format!("probe-{}", PROBES.fetch_add(1, Ordering::Relaxed));
        let (status, label) = push_and_label(host, source, &id).await;
        assert!((200..300).contains(&status), "probe got {status}");
        label
            .filter(|l| l.contains(&format!("@{version}+")))
            .map(|_| ())
    })
    .await;
}

/// The value of an unlabelled Prometheus metric.
async fn metric(host: &TestHost, name: &str) -> u64 {
    let text = host.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swapping_versions_under_push_load_fails_no_request() {
    let host = Arc::new(TestHost::start(&[("hook", plugins::WEBHOOK_JSON, None)]).await);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (host, stop, sent) = (host.clone(), stop.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = format!(r#"{{"id":"c{client}-{n}"}}"#);
                let (status, reply, _) = host.post_json("/ingest/hook", &body, &[]).await;
                if !(200..300).contains(&status) {
                    failures.push(format!("{status} {reply}"));
                }
                n += 1;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    for round in 0..5 {
        install(&host.plugins_dir(), "hook", plugins::WEBHOOK_JSON_V2, None);
        served_by(&host, "hook", "0.2.0").await;
        install(&host.plugins_dir(), "hook", plugins::WEBHOOK_JSON, None);
        served_by(&host, "hook", "0.1.0").await;
        eprintln!(
            "round {round}: {} requests so far",
            sent.load(Ordering::Relaxed)
        );
    }
    eventually(Duration::from_secs(120), "2,000 requests sent", || async {
        (sent.load(Ordering::Relaxed) >= 2000).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    let total = sent.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let status = host.status("hook").await;
    assert_eq!(status["version"], "0.1.0", "{status}");
    assert_eq!(status["reloads"], 11, "one load and ten swaps: {status}");
    assert_eq!(status["last_error"], serde_json::Value::Null, "{status}");
    let labels: std::collections::HashSet<String> = host
        .events("hook")
        .await
        .iter()
        .map(|e| e["connector"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(labels.len(), 2, "two versions served: {labels:?}");
}

#[tokio::test]
async fn a_broken_file_keeps_the_old_version_until_the_write_finishes() {
    let host = TestHost::start(&[("hook", plugins::WEBHOOK_JSON, None)]).await;
    let wasm = host.plugins_dir().join("hook.wasm");
    let v2 = std::fs::read(plugins::WEBHOOK_JSON_V2).unwrap();
    let (head, tail) = v2.split_at(v2.len() / 2);

    // A copy caught half-way: not a valid component.
    std::fs::write(&wasm, head).unwrap();
    let status = eventually(RELOAD, "the load error in status", || async {
        let s = host.status("hook").await;
        s["last_error"].is_string().then_some(s)
    })
    .await;
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("hook.wasm"),
        "the error names the file: {error}"
    );
    assert_eq!(status["version"], "0.1.0", "{status}");
    let (code, label) = push_and_label(&host, "hook", "during-error").await;
    assert_eq!(code, 202);
    assert!(label.unwrap().contains("@0.1.0+"), "the old version serves");

    // The write finishes: the watcher retries and the new version loads.
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&wasm)
        .unwrap()
        .write_all(tail)
        .unwrap();
    served_by(&host, "hook", "0.2.0").await;
    let status = host.status("hook").await;
    assert_eq!(status["last_error"], serde_json::Value::Null, "{status}");
    assert_eq!(status["version"], "0.2.0");

    // Dotfiles and temporary names are never loaded.
    for name in [
        ".other.wasm",
        "other.wasm.part",
        "other.wasm.tmp",
        "other.wasm~",
    ] {
        std::fs::copy(plugins::WEBHOOK_JSON, host.plugins_dir().join(name)).unwrap();
    }
    let resp = host
        .client
        .post(host.url("/v1/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (code, _) = host.get_json("/v1/connectors/other").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn a_manifest_with_an_unknown_key_keeps_the_old_version() {
    let good = "[push]\nmax_in_flight = 8\n";
    let host = TestHost::start(&[("hook", plugins::WEBHOOK_JSON, Some(good))]).await;
    let manifest = host.plugins_dir().join("hook.toml");
    std::fs::write(
        &manifest,
        "[push]\nmax_in_flight = 8\nmax_inflight_typo = 9\n",
    )
    .unwrap();
    let status = eventually(RELOAD, "the manifest error in status", || async {
        let s = host.status("hook").await;
        s["last_error"].is_string().then_some(s)
    })
    .await;
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("max_inflight_typo") && error.contains("hook.toml"),
        "the error names the file and the key: {error}"
    );
    assert_eq!(status["reloads"], 1, "{status}");
    let (code, _, _) = host.post_json("/ingest/hook", r#"{"id":"a"}"#, &[]).await;
    assert_eq!(code, 202, "the old version serves");

    std::fs::write(&manifest, "[push]\nmax_in_flight = 4\n").unwrap();
    // The watcher may scan more than once around a write (one scan can
    // still answer for the typo); the fixed manifest's load clears it.
    let status = eventually(RELOAD, "the fixed manifest loaded", || async {
        let s = host.status("hook").await;
        (s["reloads"] == 2 && s["last_error"].is_null()).then_some(s)
    })
    .await;
    assert_eq!(status["last_error"], serde_json::Value::Null, "{status}");
}

/// A source of items; the cursor is the index of the next one.
async fn paging_source(available: Arc<AtomicUsize>) -> SourceServer {
    SourceServer::start(move |seen| {
        let start: usize = seen.param("since").map(|s| s.parse().unwrap()).unwrap_or(0);
        let end = available.load(Ordering::SeqCst);
        let items: Vec<_> = (start..end)
            .map(|i| serde_json::json!({"id": format!("item-{i}"), "n": i}))
            .collect();
        Answer::json(
            200,
            serde_json::json!({"items": items, "next_cursor": end.max(start).to_string(), "has_more": false}),
        )
    })
    .await
}

fn pull_manifest(addr: std::net::SocketAddr, every: &str) -> String {
    format!(
        "[pull]\nevery = \"{every}\"\n\n[sandbox]\nallowed_hosts = [\"127.0.0.1:{port}\"]\n\n[config]\nurl = \"http://127.0.0.1:{port}/items\"\n",
        port = addr.port()
    )
}

#[tokio::test]
async fn removal_unloads_and_restoring_resumes_from_the_checkpoint() {
    let available = Arc::new(AtomicUsize::new(5));
    let source = paging_source(available.clone()).await;
    let m = pull_manifest(source.addr, "1h");
    let host = TestHost::start(&[
        ("feed", plugins::HTTP_POLL, Some(&m)),
        ("hook", plugins::WEBHOOK_JSON, None),
    ])
    .await;
    eventually(RELOAD, "5 pulled events", || async {
        (host.events("feed").await.len() == 5).then_some(())
    })
    .await;

    // Delete both: push gets 404, the pull schedule stops, state stays.
    std::fs::remove_file(host.plugins_dir().join("feed.wasm")).unwrap();
    std::fs::remove_file(host.plugins_dir().join("hook.wasm")).unwrap();
    eventually(RELOAD, "push to a removed connector is 404", || async {
        let (code, _, _) = host.post_json("/ingest/hook", r#"{"id":"x"}"#, &[]).await;
        (code == 404).then_some(())
    })
    .await;
    let status = eventually(RELOAD, "feed removed", || async {
        let s = host.status("feed").await;
        (s["state"] == "removed").then_some(s)
    })
    .await;
    assert_eq!(status["checkpoints"][0]["value"], "5", "{status}");
    let resp = host
        .client
        .post(host.url("/v1/connectors/feed/pull"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "a removed connector cannot be pulled");
    assert_eq!(host.events("feed").await.len(), 5, "its events are kept");

    // Restore: a new schedule pulls at once, from the saved checkpoint.
    available.store(8, Ordering::SeqCst);
    let pulls_before = source.requests().len();
    install(&host.plugins_dir(), "feed", plugins::HTTP_POLL, None);
    let events = eventually(RELOAD, "8 events after restore", || async {
        let e = host.events("feed").await;
        (e.len() >= 8).then_some(e)
    })
    .await;
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..8).map(|i| format!("item-{i}")).collect();
    assert_eq!(ids, expected, "no duplicates, nothing lost");
    let resumed = &source.requests()[pulls_before];
    assert_eq!(resumed.param("since").as_deref(), Some("5"), "resumed");

    // The schedule follows a new manifest at once: from every 1h to 50ms.
    available.store(10, Ordering::SeqCst);
    std::fs::write(
        host.plugins_dir().join("feed.toml"),
        pull_manifest(source.addr, "50ms"),
    )
    .unwrap();
    eventually(RELOAD, "10 events on the new schedule", || async {
        (host.events("feed").await.len() == 10).then_some(())
    })
    .await;
    // The loop records its interval after the run's commit: poll for it.
    eventually(RELOAD, "the 50ms interval in status", || async {
        let status = host.status("feed").await;
        (status["pull"]["interval_ms"] == 50).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_restart_loads_every_connector_from_the_cache() {
    let kinds = [
        plugins::WEBHOOK_JSON,
        plugins::WEBHOOK_JSON_V2,
        plugins::WEBHOOK_JSON_BIG,
    ];
    let names: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    let connectors: Vec<(&str, &str, Option<&str>)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), kinds[i % kinds.len()], None))
        .collect();
    let mut host = TestHost::start(&connectors).await;
    assert_eq!(
        metric(&host, "inlet_component_cache_misses_total").await,
        3,
        "each distinct component compiled once"
    );
    // The other 17 share the loaded code of their hash in memory: no
    // cache read, no second copy of the machine code.
    assert_eq!(metric(&host, "inlet_component_cache_hits_total").await, 0);

    host.restart().await;
    assert_eq!(metric(&host, "inlet_component_cache_hits_total").await, 3);
    assert_eq!(metric(&host, "inlet_component_cache_misses_total").await, 0);
    assert_eq!(metric(&host, "inlet_connectors_loaded").await, 20);
    let (code, _, _) = host.post_json("/ingest/c02", r#"{"id":"big"}"#, &[]).await;
    assert_eq!(code, 202, "the cached 2 MB component serves");

    // A damaged entry is detected, recompiled and replaced, never loaded.
    let cache = host.dir.path().join("data/cache");
    let mut entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert_eq!(entries.len(), 3, "one entry per component: {entries:?}");
    for entry in &entries {
        let mut bytes = std::fs::read(entry).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(entry, bytes).unwrap();
    }
    host.restart().await;
    assert_eq!(metric(&host, "inlet_component_cache_misses_total").await, 3);
    assert_eq!(metric(&host, "inlet_component_cache_hits_total").await, 0);
    for name in ["c00", "c01", "c02"] {
        let (code, _, _) = host
            .post_json(&format!("/ingest/{name}"), r#"{"id":"after"}"#, &[])
            .await;
        assert_eq!(code, 202, "{name} serves after recompiling");
    }
    host.stop().await;
}

#[tokio::test]
async fn sighup_rescans_and_keeps_serving() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins.d");
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, "hook", plugins::WEBHOOK_JSON, None);
    let mut child = Command::new(env!("CARGO_BIN_EXE_inlet"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-pooling",
            "--plugins",
        ])
        .arg(&plugins)
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("inlet starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = format!("http://{}", inlet_devtools::listening_addr(&line).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut seen = Vec::new();
    eventually(RELOAD, "the SIGHUP rescan in the log", || {
        seen.extend(rx.try_iter());
        let found = seen
            .iter()
            .any(|l| l.contains("SIGHUP: plugins directory rescanned."));
        async move { found.then_some(()) }
    })
    .await;
    let resp = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(resp.status(), 200, "still serving after SIGHUP");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_vanished_or_empty_manifest_keeps_the_previous_one_in_force() {
    let host = TestHost::start(&[]).await;
    let dir = host.plugins_dir();
    std::fs::write(dir.join("tok.secret"), "t0k").unwrap();
    install(
        &dir,
        "guarded",
        plugins::WEBHOOK_JSON,
        Some("[push]\nauth = { scheme = \"bearer\", token_file = \"tok.secret\" }\n"),
    );
    eventually(RELOAD, "the guarded connector", || async {
        // 404 until the watcher's scan has seen the new file.
        let (_, status) = host.get_json("/v1/connectors/guarded").await;
        (status["state"] == "loaded").then_some(())
    })
    .await;
    for text in [None, Some("")] {
        match text {
            None => std::fs::remove_file(dir.join("guarded.toml")).unwrap(),
            Some(t) => std::fs::write(dir.join("guarded.toml"), t).unwrap(),
        }
        host.reload().await;
        let status = host.status("guarded").await;
        let err = status["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            err.contains("guarded.toml") && (err.contains("missing") || err.contains("empty")),
            "{status}"
        );
        assert!(err.contains("previous"), "{status}");
        // Still authenticated: the defaults (auth = none) did not slip in.
        let (code, _, _) = host.post_json("/ingest/guarded", "{}", &[]).await;
        assert_eq!(code, 401);
        let (code, _, _) = host
            .post_json("/ingest/guarded", "{}", &[("Authorization", "Bearer t0k")])
            .await;
        assert_eq!(code, 202);
    }
}

/// A manifest that exists but cannot be used refuses the first load with
/// the reason in status: it never means the defaults (`auth = none`). Before,
/// a bearer-auth manifest with one byte that was not UTF-8 loaded the
/// connector open to anyone.
#[tokio::test]
async fn a_manifest_that_cannot_be_read_refuses_the_load() {
    let host = TestHost::start(&[]).await;
    let dir = host.plugins_dir();
    std::fs::write(
        dir.join("latin1.toml"),
        b"[push]\nauth = { scheme = \"bearer\", token_env = \"NO\" } # caf\xe9\n",
    )
    .unwrap();
    std::fs::write(dir.join("empty.toml"), "\n").unwrap();
    std::fs::create_dir(dir.join("folder.toml")).unwrap();
    for (name, reason) in [
        ("latin1", "not valid UTF-8"),
        ("empty", "empty"),
        ("folder", "not a regular file"),
    ] {
        install(&dir, name, plugins::WEBHOOK_JSON, None);
        host.reload().await;
        let status = host.status(name).await;
        let err = status["last_error"].as_str().unwrap_or_default();
        assert!(
            err.contains(&format!("{name}.toml")) && err.contains(reason),
            "{name}: {status}"
        );
        assert_ne!(status["state"], "loaded", "{name}: {status}");
        let (code, body, _) = host.post_json(&format!("/ingest/{name}"), "{}", &[]).await;
        assert_eq!(code, 404, "{name} must not take pushes: {body}");
    }
    // Nothing was stored for it: the source has no stream at all.
    let (code, body) = host.get_json("/v1/streams/latin1/events").await;
    assert_eq!(code, 404, "{body}");
}

/// `require_manifest = true`: a component without its manifest is not
/// loaded (the window between copying NAME.wasm and NAME.toml), and loads
/// as soon as the manifest arrives.
#[tokio::test]
async fn require_manifest_waits_for_the_manifest() {
    let host = TestHost::start_with(&[], |c| c.require_manifest = true).await;
    let dir = host.plugins_dir();
    install(&dir, "hooks", plugins::WEBHOOK_JSON, None);
    host.reload().await;
    let status = host.status("hooks").await;
    let err = status["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("require_manifest"), "{status}");
    let (code, _, _) = host.post_json("/ingest/hooks", "{}", &[]).await;
    assert_eq!(code, 404);
    std::fs::write(dir.join("hooks.toml"), "[push]\nmax_in_flight = 8\n").unwrap();
    eventually(RELOAD, "the connector with its manifest", || async {
        (host.status("hooks").await["state"] == "loaded").then_some(())
    })
    .await;
    let (code, body, _) = host.post_json("/ingest/hooks", r#"{"id":"a"}"#, &[]).await;
    assert_eq!(code, 202, "{body}");
}

/// Status tells the truth (sdk authors were misled by each of these): a
/// version serving after a failed reload is `stale` with the reason; a
/// push that succeeds after failures clears `failing`; a failed manual pull
/// shows in `pull`; a file that failed to load and was deleted leaves the
/// list.
#[tokio::test]
async fn status_tells_the_truth_about_stale_versions_failures_and_removed_files() {
    let down = Arc::new(AtomicBool::new(false));
    let source = {
        let down = down.clone();
        SourceServer::start(move |_| {
            if down.load(Ordering::SeqCst) {
                Answer::json(500, serde_json::json!({"error": "down"}))
            } else {
                Answer::json(200, serde_json::json!({"items": [], "next_cursor": "0"}))
            }
        })
        .await
    };
    let host = TestHost::start(&[
        ("hooks", plugins::WEBHOOK_JSON, None),
        (
            "poll",
            plugins::HTTP_POLL,
            Some(&pull_manifest(source.addr, "1h")),
        ),
    ])
    .await;
    let dir = host.plugins_dir();
    // A bad manifest over a loaded connector: the old version serves, and
    // says so.
    std::fs::write(dir.join("hooks.toml"), "[push]\nno_such_key = 1\n").unwrap();
    host.reload().await;
    let status = host.status("hooks").await;
    assert_eq!(status["state"], "stale", "{status}");
    assert!(
        status["reload_error"]
            .as_str()
            .unwrap()
            .contains("no_such_key"),
        "{status}"
    );
    let (code, _, _) = host.post_json("/ingest/hooks", r#"{"id":"1"}"#, &[]).await;
    assert_eq!(code, 202, "the previous version serves");
    std::fs::remove_file(dir.join("hooks.toml")).unwrap();
    host.reload().await;
    let status = host.status("hooks").await;
    assert_eq!(status["state"], "loaded", "{status}");
    assert_eq!(status["reload_error"], Value::Null, "{status}");

    // A failing push, then a good one: `failing` does not stick.
    let (code, _, _) = host.post_json("/ingest/hooks", "not json", &[]).await;
    assert_eq!(code, 400);
    let (code, _, _) = host.post_json("/ingest/hooks", r#"{"id":"2"}"#, &[]).await;
    assert_eq!(code, 202);
    let status = host.status("hooks").await;
    assert_eq!(status["state"], "loaded", "{status}");
    assert_eq!(status["last_error"], Value::Null, "{status}");

    // A manual pull that fails after scheduled ones succeeded shows in
    // `pull`.
    eventually(RELOAD, "the first scheduled pull", || async {
        (host.status("poll").await["pull"]["state"] == "ok").then_some(())
    })
    .await;
    down.store(true, Ordering::SeqCst);
    let (code, body) = host.pull_now("poll").await;
    assert_eq!(code, 502, "{body}");
    let status = host.status("poll").await;
    assert_ne!(status["pull"]["state"], "ok", "{status}");
    assert!(status["pull"]["last_error"].as_str().is_some(), "{status}");

    // A file that never loaded, then deleted: gone from the list.
    std::fs::write(dir.join("broken.wasm"), b"not wasm").unwrap();
    host.reload().await;
    let (_, list) = host.get_json("/v1/connectors").await;
    let names = |list: &Value| -> Vec<String> {
        list["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(names(&list).contains(&"broken".to_string()), "{list}");
    std::fs::remove_file(dir.join("broken.wasm")).unwrap();
    host.reload().await;
    let (_, list) = host.get_json("/v1/connectors").await;
    assert!(!names(&list).contains(&"broken".to_string()), "{list}");
}
