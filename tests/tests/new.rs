//! `inlet new`: each generated crate (push, pull, both) passes its own
//! tests natively, builds to a component `inlet check` accepts with the
//! right modes, and the push one reaches its first event on a running
//! host, all without an edit. The crates are built like an author builds
//! them (`cargo test`, `cargo build --target wasm32-wasip2 --release`),
//! outside the workspace, with the workspace's lockfile so that nothing
//! new is resolved.

use inlet_tests::ChildHost;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_inlet");

fn cargo(dir: &Path, target: &Path, args: &[&str]) {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn inlet_new_crates_test_build_check_and_serve_without_edits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Shared by the three crates and kept between runs (their
    // dependencies are the same).
    let target = root.join("target/inlet-new");
    let work = tempfile::tempdir().unwrap();
    for (name, flags, push, pull) in [
        ("orders-hook", &["--push"][..], true, false),
        ("result", &["--pull"][..], false, true),
        ("both_ways", &["--push", "--pull"][..], true, true),
    ] {
        let started = Instant::now();
        let out = Command::new(BIN)
            .args(["new", name, "--dir"])
            .arg(work.path())
            .args(flags)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = work.path().join(name);
        std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
        cargo(&dir, &target, &["test", "--offline"]);
        let tested = started.elapsed();
        cargo(
            &dir,
            &target,
            &[
                "build",
                "--offline",
                "--target",
                "wasm32-wasip2",
                "--release",
            ],
        );
        let wasm = target.join(format!(
            "wasm32-wasip2/release/{}.wasm",
            name.replace('-', "_")
        ));
        let out = Command::new(BIN).arg("check").arg(&wasm).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(d["name"], name, "{d}");
        assert_eq!(
            (d["push"].as_bool(), d["pull"].as_bool()),
            (Some(push), Some(pull))
        );
        eprintln!(
            "{name}: cargo test passed {:.1} s after `inlet new`, checked after {:.1} s",
            tested.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        if push && !pull {
            // Deployed as the README says: its first event.
            let host_dir = inlet_tests::host_dir(&[]);
            let plugins = host_dir.path().join("plugins.d");
            std::fs::copy(&wasm, plugins.join(format!("{name}.wasm"))).unwrap();
            std::fs::copy(
                dir.join(format!("{name}.toml")),
                plugins.join(format!("{name}.toml")),
            )
            .unwrap();
            let host = ChildHost::spawn(
                BIN,
                host_dir.path(),
                &[],
                &[("ORDERS_HOOK_PUSH_TOKEN", "change-me")],
            )
            .expect("the host starts");
            let resp = reqwest::Client::new()
                .post(host.url(&format!("/ingest/{name}")))
                .header("authorization", "Bearer change-me")
                .body(r#"{"id": "1", "hello": "world"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
            let events = host.events(name).await;
            assert_eq!(events.len(), 1);
            assert_eq!(events[0]["id"], "1");
            assert_eq!(events[0]["payload"]["hello"], "world");
            eprintln!(
                "{name}: first event {:.1} s after `inlet new`",
                started.elapsed().as_secs_f64()
            );
        }
    }
    // Names that cannot be a source or a crate are refused, naming why.
    for bad in ["9lives", "match", "serde-json", "inlet-sdk", "a.b"] {
        let out = Command::new(BIN)
            .args(["new", bad, "--dir"])
            .arg(work.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot be a connector name"),
            "{bad}"
        );
    }
}
