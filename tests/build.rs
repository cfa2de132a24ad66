//! Builds every example connector and test fixture for wasm32-wasip2, once
//! per test build, and exports their paths as constants (`plugins.rs` in
//! OUT_DIR), as wasmtime's test-programs do. Every crate under `plugins/`
//! and `tests/fixtures/` is built, whether or not a test names it (the
//! constants are `pub`, so an unused one is not reported).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let target_root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    // A target dir of its own: the outer cargo holds the lock on `target/debug`.
    let wasm_dir = target_root.join("wasm");

    let mut crates: Vec<(String, PathBuf)> = Vec::new();
    for dir in ["plugins", "tests/fixtures"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.join("Cargo.toml").is_file() {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                crates.push((name, path));
            }
        }
    }
    crates.sort();
    for dir in ["plugins", "tests/fixtures", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
            "--target-dir",
        ])
        .arg(&wasm_dir);
    for (name, _) in &crates {
        cmd.args(["-p", name]);
    }
    // Settings meant for the outer (native) build must not leak in; the
    // jobserver (CARGO_MAKEFLAGS) is shared so both builds fit two cores.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo to build the wasm plugins");
    if !status.success() {
        panic!(
            "building the wasm32-wasip2 plugins failed (is the target installed? `rustup target add wasm32-wasip2`, or run `cargo xtask test`)"
        );
    }

    let out_dir = wasm_dir.join("wasm32-wasip2").join("plugin");
    let mut consts = String::new();
    for (name, _) in &crates {
        let file = out_dir.join(format!("{}.wasm", name.replace('-', "_")));
        assert!(file.is_file(), "{} was not built", file.display());
        let ident = name.to_uppercase().replace('-', "_");
        consts.push_str(&format!(
            "/// `{name}` compiled for wasm32-wasip2.\npub const {ident}: &str = {:?};\n",
            file.display().to_string()
        ));
    }
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("plugins.rs");
    std::fs::write(out, consts).unwrap();
}
