//! `inlet invoke`: one call of a real component in the real sandbox with
//! its manifest's grants and injections, storing nothing, the outcome as
//! JSON.

use inlet_tests::plugins;
use inlet_tests::source::{Answer, SourceServer};
use serde_json::{Value, json};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_inlet");

/// `inlet invoke ARGS` with `envs`: exit success and the JSON it printed.
fn invoke(args: &[&str], envs: &[(&str, &str)]) -> (bool, Value, String) {
    let out = Command::new(BIN)
        .arg("invoke")
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("inlet runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"));
    (out.status.success(), json, stderr)
}

// The source serves on the runtime's other thread while `invoke` blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_follows_has_more_with_the_injected_token_and_a_denied_host_says_so() {
    // Three pages of two items; the cursor is the next index.
    let source = SourceServer::start(|seen| {
        let start: usize = seen.param("since").map(|s| s.parse().unwrap()).unwrap_or(0);
        let end = (start + 2).min(6);
        let items: Vec<_> = (start..end).map(|i| json!({"id": i})).collect();
        Answer::json(
            200,
            json!({"items": items, "next_cursor": end.to_string(), "has_more": end < 6}),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("poll.toml");
    let port = source.addr.port();
    std::fs::write(
        &manifest,
        format!(
            "[config]\nurl = \"http://127.0.0.1:{port}/items\"\n\n[sandbox]\nallowed_hosts = [\"127.0.0.1:{port}\"]\n\n[[sandbox.inject]]\nhost = \"127.0.0.1:{port}\"\nheader = \"Authorization\"\nvalue_env = \"POLL_TOKEN\"\nformat = \"Bearer {{}}\"\n"
        ),
    )
    .unwrap();
    let manifest = manifest.to_str().unwrap();
    let env = [("POLL_TOKEN", "s3cret")];

    // One call.
    let (ok, out, stderr) = invoke(
        &[
            plugins::HTTP_POLL,
            "--manifest",
            manifest,
            "pull",
            "--since",
            "2",
        ],
        &env,
    );
    assert!(ok, "{out}\n{stderr}");
    assert_eq!(out["checkpoint"], "4", "{out}");
    assert_eq!(out["has_more"], true);
    let ids: Vec<_> = out["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, [json!("2"), json!("3")]);

    // A whole run, following has-more.
    let (ok, out, _) = invoke(
        &[plugins::HTTP_POLL, "--manifest", manifest, "pull", "--all"],
        &env,
    );
    assert!(ok, "{out}");
    assert_eq!(out["batches"], 3, "{out}");
    assert_eq!(out["events"].as_array().unwrap().len(), 6);
    assert_eq!(out["checkpoint"], "6");
    assert_eq!(out["has_more"], false);
    let outbound = out["outbound"].as_array().unwrap();
    assert_eq!(outbound.len(), 3, "{out}");
    assert_eq!(outbound[0]["status"], 200);
    assert_eq!(outbound[0]["injected"], json!(["authorization"]));
    assert!(
        out["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["level"] == "debug")
    );
    // The source got the token; the connector never did, and the output
    // never shows it.
    assert!(
        source
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer s3cret"))
    );
    assert!(!out.to_string().contains("s3cret"));

    // Without the grant: refused by the sandbox, as on the host.
    let bare = dir.path().join("bare.toml");
    std::fs::write(
        &bare,
        format!("[config]\nurl = \"http://127.0.0.1:{port}/items\"\n"),
    )
    .unwrap();
    let before = source.requests().len();
    let (ok, out, _) = invoke(
        &[
            plugins::HTTP_POLL,
            "--manifest",
            bare.to_str().unwrap(),
            "pull",
        ],
        &[],
    );
    assert!(!ok);
    assert_eq!(out["outbound"][0]["outcome"], "denied", "{out}");
    assert_eq!(out["error"]["class"], "connector_error", "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid"),
        "{out}"
    );
    assert_eq!(
        source.requests().len(),
        before,
        "nothing reached the source"
    );
}

#[test]
fn a_push_prints_its_events_reply_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, r#"[{"id": "a", "type": "order"}, {"id": "b"}]"#).unwrap();
    let (ok, out, stderr) = invoke(
        &[
            plugins::WEBHOOK_JSON,
            "push",
            "--body",
            body.to_str().unwrap(),
            "-H",
            "X-Thing: 1",
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    assert_eq!(out["call"], "push");
    assert_eq!(out["events"][0]["id"], "a");
    assert_eq!(out["events"][0]["attributes"]["type"], "order");
    assert_eq!(out["events"][1]["payload"], json!({"id": "b"}));
    assert_eq!(out["reply"], Value::Null);

    std::fs::write(&body, "not json").unwrap();
    let (ok, out, _) = invoke(
        &[
            plugins::WEBHOOK_JSON,
            "push",
            "--body",
            body.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok);
    assert_eq!(out["ok"], false);
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid"),
        "{out}"
    );
    // A pull of a push-only connector is refused with the reason.
    let out = Command::new(BIN)
        .args(["invoke", plugins::WEBHOOK_JSON, "pull"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pull mode"));
}
