//! `inlet check`: the descriptor of a good component, a clear reason for a
//! bad file.

use inlet_tests::plugins;
use std::process::Command;

fn check(file: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_inlet"))
        .args(["check", file])
        .output()
        .expect("inlet runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn examples_print_their_descriptor() {
    for (file, name, push, pull) in [
        (plugins::WEBHOOK_JSON, "webhook-json", true, false),
        (plugins::HTTP_POLL, "http-poll", false, true),
        (plugins::STRIPE_EVENTS, "stripe-events", true, true),
    ] {
        let (ok, stdout, stderr) = check(file);
        assert!(ok, "{file}: {stderr}");
        let d: serde_json::Value = serde_json::from_str(&stdout).expect("JSON descriptor");
        assert_eq!(d["name"], name);
        assert_eq!(d["version"], "0.1.0");
        assert_eq!(
            (d["push"].as_bool(), d["pull"].as_bool()),
            (Some(push), Some(pull))
        );
    }
}

#[test]
fn a_file_that_is_not_a_component_is_refused_with_the_reason() {
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let (ok, stdout, stderr) = check(readme);
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("README.md") && stderr.contains("not a WebAssembly component"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    // The smallest core module: magic + version 1.
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let (ok, _, stderr) = check(core.to_str().unwrap());
    assert!(!ok);
    assert!(
        stderr.contains("core WebAssembly module, not a component"),
        "{stderr}"
    );

    // What `cargo build` leaves without `crate-type = ["cdylib"]`.
    let rlib = dir.path().join("libmine.rlib");
    std::fs::write(
        &rlib,
        b"!<arch>\nlib.rmeta/      0           0     0     644     8         `\n",
    )
    .unwrap();
    let (ok, _, stderr) = check(rlib.to_str().unwrap());
    assert!(!ok);
    assert!(
        stderr.contains("crate-type = [\"cdylib\"]") && stderr.contains("wasm32-wasip2"),
        "{stderr}"
    );
    let elf = dir.path().join("libmine.so");
    std::fs::write(&elf, b"\x7fELF\x02\x01\x01\0").unwrap();
    let (ok, _, stderr) = check(elf.to_str().unwrap());
    assert!(!ok && stderr.contains("native binary"), "{stderr}");

    let (ok, _, stderr) = check("/no/such/file.wasm");
    assert!(!ok);
    assert!(stderr.contains("cannot read"), "{stderr}");
}
