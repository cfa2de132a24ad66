//! Dead letters: a push the connector fails on is kept (durably, before the
//! answer), listed, shown without credentials, discarded or replayed after
//! the fix through the connector loaded then, and stored exactly once even
//! when the sender retries during the replay. Retention by bytes and age; a
//! kill -9 right after the answer keeps the letter; two hosts on one
//! JetStream replay each letter once.

use inlet_host::config::StoreKind;
use inlet_tests::nats::NatsServer;
use inlet_tests::{ChildHost, TestHost, eventually, host_dir, plugins};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const BIN: &str = env!("CARGO_BIN_EXE_inlet");

fn manifest(fixed: bool, extra: &str) -> String {
    format!(
        r#"
[push]
auth = {{ scheme = "bearer", token_file = "dl.secret" }}
{extra}

[sandbox]
push_deadline = "1s"
quarantine_after = 100

[config]
fixed = "{fixed}"
"#
    )
}

/// A host with the bearer token every manifest here names in its plugins
/// directory.
async fn start(
    connectors: &[(&str, &str, Option<&str>)],
    adjust: impl FnOnce(&mut inlet_host::HostConfig),
) -> TestHost {
    TestHost::start_with(connectors, |c| {
        std::fs::write(c.plugins_dir.join("dl.secret"), "s3cret-token").unwrap();
        adjust(c);
    })
    .await
}

/// `METHOD path` on the admin API: status and JSON body.
async fn admin(host: &TestHost, method: reqwest::Method, path: &str) -> (u16, Value) {
    host.call(method, path).await
}

/// `GET` one letter of `flaky`.
async fn show(host: &TestHost, id: &str) -> (u16, Value) {
    host.get_json(&format!("/v1/connectors/flaky/dead-letters/{id}"))
        .await
}

async fn push(host: &TestHost, id: &str, what: &str, key: &str) -> (u16, Value, Option<String>) {
    let (status, body, headers) = host
        .post_json(
            "/ingest/flaky",
            &json!({"id": id, "do": what}).to_string(),
            &[
                ("authorization", "Bearer s3cret-token"),
                ("cookie", "session=c00kie"),
                ("idempotency-key", key),
                ("x-request-source", "test"),
            ],
        )
        .await;
    let letter = headers
        .get("inlet-dead-letter")
        .map(|v| v.to_str().unwrap().to_string());
    (status, body, letter)
}

async fn letters(host: &TestHost, query: &str) -> Vec<Value> {
    let (status, page) = admin(
        host,
        reqwest::Method::GET,
        &format!("/v1/connectors/flaky/dead-letters{query}"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["dead_letters"].as_array().unwrap().clone()
}

fn ids_stored(events: &[Value]) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for e in events {
        *n.entry(e["id"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    n
}

#[tokio::test]
async fn failed_pushes_become_dead_letters_and_replay_once_after_the_fix() {
    let host = start(
        &[("flaky", plugins::FLAKY_PUSH, Some(&manifest(false, "")))],
        |_| {},
    )
    .await;

    // The connector's bugs: each failure is answered as before, with the
    // letter's id; nothing is stored.
    let mut kept = HashMap::new();
    for (id, what, status, class) in [
        ("a", "invalid", 400, "invalid"),
        ("b", "trap", 500, "trap"),
        ("c", "spin", 500, "deadline"),
        ("d", "error", 500, "error"),
        ("e", "invalid", 400, "invalid"),
    ] {
        let (got, body, letter) = push(&host, id, what, &format!("key-{id}")).await;
        assert_eq!(got, status, "{id}: {body}");
        let letter = letter.unwrap_or_else(|| panic!("{id} names its dead letter: {body}"));
        kept.insert(id, (letter, class));
    }
    let (got, body, letter) = push(&host, "ok", "nothing", "key-ok").await;
    assert_eq!(got, 202, "{body}");
    assert!(letter.is_none());
    // Refused before the connector ran: no dead letters.
    let (got, _, _) = host
        .post_json(
            "/ingest/flaky",
            r#"{"id":"x"}"#,
            &[("authorization", "Bearer wrong")],
        )
        .await;
    assert_eq!(got, 401);
    assert_eq!(ids_stored(&host.events("flaky").await).len(), 1);

    let listed = letters(&host, "").await;
    assert_eq!(listed.len(), 5, "{listed:#?}");
    for l in &listed {
        let id = l["id"].as_str().unwrap();
        let (_, (_, class)) = kept.iter().find(|(_, (lid, _))| lid == id).unwrap();
        assert_eq!(l["class"], *class, "{l}");
        assert_eq!(l["attempts"], 1);
        assert!(l["connector"].as_str().unwrap().contains("@0.1.0+sha256:"));
        assert!(
            l["request"].get("body").is_none(),
            "listing carries no bodies"
        );
    }
    let status = host.status("flaky").await;
    assert_eq!(status["dead_letters"]["count"], 5, "{status}");
    let failed_label = listed[0]["connector"].clone();
    assert_eq!(failed_label, status["label"], "{status}");
    // Filters.
    assert_eq!(letters(&host, "?class=invalid").await.len(), 2);
    assert_eq!(letters(&host, "?class=trap&limit=1").await.len(), 1);
    let (code, err) = admin(
        &host,
        reqwest::Method::GET,
        "/v1/connectors/flaky/dead-letters?class=nope",
    )
    .await;
    assert_eq!(code, 400, "{err}");

    // One letter in full: the request as the connector saw it, without the
    // credentials, and the answer the sender got.
    let (a_id, _) = &kept["a"];
    let (code, shown) = show(&host, a_id).await;
    assert_eq!(code, 200, "{shown}");
    assert_eq!(shown["status"], 400);
    assert_eq!(shown["idempotency_key"], "key-a");
    assert_eq!(shown["request"]["method"], "POST");
    let body: Value = serde_json::from_str(shown["request"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"id": "a", "do": "invalid"}));
    let text = shown.to_string();
    assert!(text.contains("x-request-source"), "{text}");
    for secret in ["s3cret-token", "c00kie", "authorization", "cookie\""] {
        assert!(!text.to_lowercase().contains(secret), "{secret} in {text}");
    }
    let everything = letters(&host, "").await;
    assert!(!Value::from(everything).to_string().contains("s3cret"));

    // Discard one.
    let (d_id, _) = &kept["d"];
    let path = format!("/v1/connectors/flaky/dead-letters/{d_id}");
    assert_eq!(admin(&host, reqwest::Method::DELETE, &path).await.0, 200);
    assert_eq!(admin(&host, reqwest::Method::GET, &path).await.0, 404);
    assert_eq!(admin(&host, reqwest::Method::DELETE, &path).await.0, 404);

    // A replay before the fix fails again: the letter stays, counted.
    let (code, out) = admin(
        &host,
        reqwest::Method::POST,
        &format!("/v1/connectors/flaky/dead-letters/{a_id}/replay"),
    )
    .await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["outcome"], "failed", "{out}");
    assert_eq!(out["class"], "invalid");
    let (_, shown) = show(&host, a_id).await;
    assert_eq!(shown["attempts"], 2, "{shown}");

    // Deploy the fix: another component in the same file (webhook-json
    // stores any object with an `id`), hot-reloaded.
    inlet_tests::install(
        &host.plugins_dir(),
        "flaky",
        plugins::WEBHOOK_JSON,
        Some(&manifest(true, "")),
    );
    host.reload().await;
    eventually(WAIT, "the fixed version is loaded", || async {
        (host.status("flaky").await["label"] != failed_label).then_some(())
    })
    .await;
    let (got, body, _) = push(&host, "probe", "invalid", "key-probe").await;
    assert_eq!(got, 202, "{body}");

    // Replay one.
    let (code, out) = admin(
        &host,
        reqwest::Method::POST,
        &format!("/v1/connectors/flaky/dead-letters/{a_id}/replay"),
    )
    .await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out, json!({"outcome": "stored", "events": 1}));
    assert_eq!(show(&host, a_id).await.0, 404);

    // The sender retries `b` while every letter is replayed: `b` is
    // stored once, whoever wins.
    let retry = push(&host, "b", "trap", "key-b");
    let replay_all = admin(
        &host,
        reqwest::Method::POST,
        "/v1/connectors/flaky/dead-letters/replay",
    );
    let ((got, body, _), (code, summary)) = tokio::join!(retry, replay_all);
    assert!([200, 202, 409].contains(&got), "{got} {body}");
    assert_eq!(code, 200, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    // Whatever stayed (busy while the retry held the key) goes now.
    let (code, again) = admin(
        &host,
        reqwest::Method::POST,
        "/v1/connectors/flaky/dead-letters/replay",
    )
    .await;
    assert_eq!(code, 200, "{again}");
    assert!(letters(&host, "").await.is_empty());
    let events = host.events("flaky").await;
    let stored = ids_stored(&events);
    for id in ["a", "b", "c", "e", "ok", "probe"] {
        assert_eq!(stored.get(id), Some(&1), "{id} once: {stored:?}");
    }
    // Replayed by the new version, which the envelope names.
    let a = events.iter().find(|e| e["id"] == "a").unwrap();
    assert_ne!(
        a["connector"], failed_label,
        "{a} vs the failed {failed_label}"
    );
    assert_eq!(stored.get("d"), None, "discarded: {stored:?}");
    // The sender's later retry gets the replay's answer, not a new event.
    let (got, body, _) = push(&host, "c", "spin", "key-c").await;
    assert_eq!(got, 200, "{body}");
    assert_eq!(ids_stored(&host.events("flaky").await).get("c"), Some(&1));

    let metrics = host.metrics().await;
    for line in [
        r#"inlet_dead_letters_kept_total{source="flaky",class="trap"} 1"#,
        r#"inlet_dead_letters_kept_total{source="flaky",class="invalid"} 2"#,
        r#"inlet_dead_letter_replays_total{source="flaky",outcome="failed"} 1"#,
        r#"inlet_dead_letters{source="flaky"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

/// What a replay must not do: store twice once the source may have
/// forgotten the key (older than the dedup window: `expired` unless
/// forced), quarantine the source for its live senders (a replay that
/// fails again is no strike), keep a secret the connector checks itself,
/// or take a malformed id for a key.
#[tokio::test]
async fn replays_are_bounded_by_the_dedup_window_strike_nobody_and_keep_no_secrets() {
    let strict = manifest(false, "").replace("quarantine_after = 100", "quarantine_after = 3");
    let short = format!("{}\n[stream]\ndedup_window = \"1s\"\n", manifest(false, ""));
    let host = start(
        &[
            ("flaky", plugins::FLAKY_PUSH, Some(&strict)),
            ("short", plugins::FLAKY_PUSH, Some(&short)),
        ],
        |_| {},
    )
    .await;
    // Two traps: two strikes of three.
    for n in 0..2 {
        let (status, body, _) = host
            .post_json(
                &format!("/ingest/flaky?access_token=qs-secret&page={n}"),
                &json!({"id": format!("t{n}"), "do": "trap"}).to_string(),
                &[
                    ("authorization", "Bearer s3cret-token"),
                    ("x-api-key", "hdr-secret"),
                    ("x-gitlab-token", "gl-secret"),
                ],
            )
            .await;
        assert_eq!(status, 500, "{body}");
    }
    let listed = letters(&host, "").await;
    assert_eq!(listed.len(), 2);
    let text = Value::from(listed.clone()).to_string();
    for secret in ["qs-secret", "hdr-secret", "gl-secret", "s3cret"] {
        assert!(!text.contains(secret), "{secret} kept: {text}");
    }
    assert!(text.contains("page=0"), "other parameters stay: {text}");
    // Replaying them on the still-broken version fails twice, and is no
    // strike: a live push still gets through.
    let (code, summary) = admin(
        &host,
        reqwest::Method::POST,
        "/v1/connectors/flaky/dead-letters/replay",
    )
    .await;
    assert_eq!(code, 200, "{summary}");
    assert_eq!(summary["failed"], 2, "{summary}");
    let (status, body, _) = push(&host, "live", "nothing", "key-live").await;
    assert_eq!(status, 202, "not quarantined by the replays: {body}");
    // Malformed ids are no letters.
    for bad in ["nope", "..%2F..", "1-2"] {
        let (code, _) = show(&host, bad).await;
        assert_eq!(code, 404, "{bad}");
    }

    // Past the dedup window a replay is refused until forced.
    let (status, body, headers) = host
        .post_json(
            "/ingest/short",
            &json!({"id": "s", "do": "invalid"}).to_string(),
            &[("authorization", "Bearer s3cret-token")],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let id = headers["inlet-dead-letter"].to_str().unwrap().to_string();
    let (_, listed) = host.get_json("/v1/connectors/short/dead-letters").await;
    assert_eq!(listed["dead_letters"][0]["id"], id.as_str(), "{listed}");
    std::fs::write(
        host.plugins_dir().join("short.toml"),
        short.replace("fixed = \"false\"", "fixed = \"true\""),
    )
    .unwrap();
    host.reload().await;
    let (code, shown) = host
        .get_json(&format!("/v1/connectors/short/dead-letters/{id}"))
        .await;
    assert_eq!(code, 200, "after the reload: {shown}");
    let path = format!("/v1/connectors/short/dead-letters/{id}/replay");
    let received: u64 = shown["received_ms"].as_u64().unwrap();
    eventually(WAIT, "the letter outlives the 1 s dedup window", || async {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        (now > received + 1_100).then_some(())
    })
    .await;
    let (code, out) = admin(&host, reqwest::Method::POST, &path).await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out, json!({"outcome": "expired"}));
    let (_, out) = admin(&host, reqwest::Method::POST, &format!("{path}?force=true")).await;
    assert_eq!(out["outcome"], "stored", "{out}");
}

#[tokio::test]
async fn dead_letters_are_bounded_by_bytes_and_age_and_can_be_turned_off() {
    let host = start(
        &[
            (
                "flaky",
                plugins::FLAKY_PUSH,
                Some(&manifest(false, "dead_letters = { max_bytes = 5000 }")),
            ),
            (
                "aged",
                plugins::FLAKY_PUSH,
                Some(&manifest(false, r#"dead_letters = { keep = "1s" }"#)),
            ),
            (
                "off",
                plugins::FLAKY_PUSH,
                Some(&manifest(false, "dead_letters = { enabled = false }")),
            ),
            (
                "narrow",
                plugins::FLAKY_PUSH,
                Some(&manifest(false, r#"dead_letters = { on = ["trap"] }"#)),
            ),
        ],
        |c| c.compaction_interval = Duration::from_millis(200),
    )
    .await;
    let send = |source: &'static str, n: usize, what: &'static str| {
        let host = &host;
        async move {
            let pad = "x".repeat(1000);
            let body = json!({"id": format!("{source}-{n}"), "do": what, "pad": pad}).to_string();
            host.post_json(
                &format!("/ingest/{source}"),
                &body,
                &[("authorization", "Bearer s3cret-token")],
            )
            .await
        }
    };
    // ~1.3 KB a letter, 5,000 bytes: the oldest go, the newest stay.
    for n in 0..8 {
        let (status, body, headers) = send("flaky", n, "invalid").await;
        assert_eq!(status, 400, "{body}");
        assert!(headers.contains_key("inlet-dead-letter"));
    }
    let kept = letters(&host, "").await;
    assert!((2..=4).contains(&kept.len()), "{}", kept.len());
    let (_, page) = admin(
        &host,
        reqwest::Method::GET,
        "/v1/connectors/flaky/dead-letters",
    )
    .await;
    assert!(page["bytes"].as_u64().unwrap() <= 5000 + 200, "{page}");
    let newest_id = kept.last().unwrap()["id"].as_str().unwrap();
    let (_, newest) = admin(
        &host,
        reqwest::Method::GET,
        &format!("/v1/connectors/flaky/dead-letters/{newest_id}"),
    )
    .await;
    let newest: Value = serde_json::from_str(newest["request"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(newest["id"], "flaky-7");
    let dropped = 8 - kept.len();
    let metrics = host.metrics().await;
    let line = format!(
        r#"inlet_dead_letters_dropped_total{{source="flaky",reason="max_bytes"}} {dropped}"#
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");

    // `keep = "1s"`: gone by the retention pass after a second.
    let (status, _, headers) = send("aged", 0, "invalid").await;
    assert_eq!(status, 400);
    assert!(headers.contains_key("inlet-dead-letter"));
    eventually(WAIT, "the aged letter expires", || async {
        let (_, page) = admin(
            &host,
            reqwest::Method::GET,
            "/v1/connectors/aged/dead-letters",
        )
        .await;
        (page["total"] == 0).then_some(())
    })
    .await;
    assert!(
        host.metrics()
            .await
            .contains(r#"inlet_dead_letters_dropped_total{source="aged",reason="keep"} 1"#)
    );

    // Off, and kept only for the classes named.
    let (status, _, headers) = send("off", 0, "trap").await;
    assert_eq!(status, 500);
    assert!(!headers.contains_key("inlet-dead-letter"));
    let (status, _, headers) = send("narrow", 0, "invalid").await;
    assert_eq!(status, 400);
    assert!(!headers.contains_key("inlet-dead-letter"));
    let (status, _, headers) = send("narrow", 1, "trap").await;
    assert_eq!(status, 500);
    assert!(headers.contains_key("inlet-dead-letter"));
    for (source, n) in [("off", 0), ("narrow", 1)] {
        let (_, page) = admin(
            &host,
            reqwest::Method::GET,
            &format!("/v1/connectors/{source}/dead-letters"),
        )
        .await;
        assert_eq!(page["total"], n, "{source}: {page}");
    }
}

/// `inlet dead-letters ARGS` against `url` with the admin token: exit
/// success, stdout and stderr.
fn cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .arg("dead-letters")
        .args(args)
        .args(["--url", url])
        .env("INLET_ADMIN_TOKEN", "adm1n")
        .output()
        .expect("inlet runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_kill_9_right_after_the_answer_keeps_the_dead_letter_and_the_cli_manages_it() {
    let dir = host_dir(&[("flaky", plugins::FLAKY_PUSH, Some(&manifest(false, "")))]);
    std::fs::write(dir.path().join("plugins.d/dl.secret"), "s3cret-token").unwrap();
    let config = dir.path().join("inlet.toml");
    std::fs::write(&config, "admin_token_env = \"INLET_TEST_ADMIN\"\n").unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let env = [("INLET_TEST_ADMIN", "adm1n")];
    let host = ChildHost::spawn(BIN, dir.path(), &args, &env).expect("host starts");
    let client = reqwest::Client::new();
    let resp = client
        .post(host.url("/ingest/flaky"))
        .header("authorization", "Bearer s3cret-token")
        .body(r#"{"id":"k","do":"invalid"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let id = resp.headers()["inlet-dead-letter"]
        .to_str()
        .unwrap()
        .to_string();
    let mut host = host;
    host.child.kill().unwrap();
    host.child.wait().unwrap();
    drop(host);

    let host = ChildHost::spawn(BIN, dir.path(), &args, &env).expect("host restarts");
    let resp = client
        .get(host.url(&format!("/v1/connectors/flaky/dead-letters/{id}")))
        .bearer_auth("adm1n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let letter: Value = resp.json().await.unwrap();
    assert_eq!(letter["class"], "invalid", "{letter}");

    // The same letter through the command line.
    let url = host.base.clone();
    let (ok, out, err) = cli(&url, &["list", "flaky"]);
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("invalid"), "{out}");
    let (ok, out, err) = cli(&url, &["show", "flaky", &id]);
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["request"]["body"], r#"{"id":"k","do":"invalid"}"#);
    let (ok, out, err) = cli(&url, &["replay", "flaky", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("\"failed\""), "not fixed yet: {out}");
    let (ok, _, err) = cli(&url, &["discard", "flaky"]);
    assert!(!ok && err.contains("--all"), "{err}");
    let (ok, out, err) = cli(&url, &["discard", "flaky", "--class", "invalid"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"discarded\": 1"), "{out}");
    let (ok, _, err) = cli(&url, &["show", "flaky", &id]);
    assert!(!ok && err.contains("404"), "{err}");
    // Without the token the host refuses, and the command says why.
    let out = std::process::Command::new(BIN)
        .args(["dead-letters", "list", "flaky", "--url", &url])
        .env_remove("INLET_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[tokio::test]
async fn two_hosts_on_one_jetstream_replay_each_letter_once() {
    let nats = NatsServer::start();
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let url = nats.url();
        hosts.push(
            start(
                &[("flaky", plugins::FLAKY_PUSH, Some(&manifest(false, "")))],
                move |c| {
                    c.store.kind = StoreKind::Jetstream;
                    c.store.url = url;
                    c.store.lease_ttl = Duration::from_secs(10);
                    c.store.request_timeout = Duration::from_secs(30);
                },
            )
            .await,
        );
    }
    // Twenty failures, spread over both hosts; both see all twenty.
    for n in 0..20 {
        let host = &hosts[n % 2];
        let (status, body, letter) =
            push(host, &format!("j{n}"), "invalid", &format!("jkey-{n}")).await;
        assert_eq!(status, 400, "{body}");
        assert!(letter.is_some());
    }
    for host in &hosts {
        assert_eq!(letters(host, "?limit=500").await.len(), 20);
    }
    for host in &hosts {
        std::fs::write(host.plugins_dir().join("flaky.toml"), manifest(true, "")).unwrap();
        host.reload().await;
    }
    for host in &hosts {
        eventually(WAIT, "the fixed version is loaded", || async {
            let (got, _, _) = push(host, "probe", "invalid", "key-probe").await;
            ([200, 202].contains(&got)).then_some(())
        })
        .await;
    }
    // Both hosts replay everything at once.
    let (a, b) = tokio::join!(
        admin(
            &hosts[0],
            reqwest::Method::POST,
            "/v1/connectors/flaky/dead-letters/replay"
        ),
        admin(
            &hosts[1],
            reqwest::Method::POST,
            "/v1/connectors/flaky/dead-letters/replay"
        ),
    );
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b.0, 200, "{}", b.1);
    let stored = a.1["stored"].as_u64().unwrap() + b.1["stored"].as_u64().unwrap();
    let duplicate = a.1["duplicate"].as_u64().unwrap() + b.1["duplicate"].as_u64().unwrap();
    assert_eq!(a.1["failed"], 0);
    assert_eq!(b.1["failed"], 0);
    // Each letter was stored by one replay; a host that found it claimed
    // or gone skipped it (busy), and a late one found it stored
    // (duplicate).
    assert_eq!(stored, 20, "{} / {}", a.1, b.1);
    assert!(duplicate <= 20);
    let (_, again) = admin(
        &hosts[0],
        reqwest::Method::POST,
        "/v1/connectors/flaky/dead-letters/replay",
    )
    .await;
    assert_eq!(again["stored"], 0, "{again}");
    assert!(letters(&hosts[0], "").await.is_empty());
    let events = hosts[1].events("flaky").await;
    let stored = ids_stored(&events);
    for n in 0..20 {
        assert_eq!(stored.get(&format!("j{n}")), Some(&1), "{stored:?}");
    }
}
