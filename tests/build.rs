//! Builds every example connector and test fixture for wasm32-wasip2, once
//! per test build, and exports their paths as constants (`plugins.rs` in
//! OUT_DIR), as wasmtime's test-programs do. Every crate under `plugins/`
//! and `tests/fixtures/` is built, whether or not a test names it (the
//! constants are `pub`, so an unused one is not reported).

use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let target_root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    // A target dir of its own: the outer cargo holds the lock on `target/debug`.
    let wasm_dir = target_root.join("wasm");

    let mut crates = inlet_devtools::crates_in(&root, "plugins");
    crates.extend(inlet_devtools::crates_in(&root, "tests/fixtures"));
    crates.sort();
    for dir in ["plugins", "tests/fixtures", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = inlet_devtools::wasm_build(&cargo, &root, &wasm_dir, &crates)
        .status()
        .expect("running cargo to build the wasm plugins");
    if !status.success() {
        panic!(
            "building the wasm32-wasip2 plugins failed (is the target installed? `rustup target add wasm32-wasip2`, or run `cargo xtask test`)"
        );
    }

    let mut consts = String::new();
    for name in &crates {
        let file = inlet_devtools::built_wasm(&wasm_dir, name);
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
