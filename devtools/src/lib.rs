//! What the test harness (`tests/build.rs`, `tests/src`), the integration
//! tests and `xtask` share, so each exists once: the command that builds
//! connectors for wasm32-wasip2, where it puts them, and the line with
//! which `inlet serve` announces its address. Standard library only: a
//! build script depends on it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What `inlet serve` prints on stdout once it listens, before the address
/// (`https://` with `[tls]`).
pub const LISTENING: &str = "listening on http://";

/// The `host:port` of a "listening on http(s)://..." line, if it is one.
pub fn listening_addr(line: &str) -> Option<&str> {
    let line = line.trim();
    line.strip_prefix(LISTENING)
        .or_else(|| line.strip_prefix("listening on https://"))
}

/// The crates (directory names with a `Cargo.toml`) under `root/dir`,
/// sorted: `plugins` for the example connectors, `tests/fixtures` for the
/// test fixtures.
pub fn crates_in(root: &Path, dir: &str) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.join("Cargo.toml").is_file()
                && let Some(name) = path.file_name().and_then(|n| n.to_str())
            {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names
}

/// `cargo build` of `crates` for wasm32-wasip2 with the `plugin` profile,
/// into `wasm_dir` (a target directory of its own, so a build script can
/// run it while the outer cargo holds the main one). Settings meant for an
/// outer native build are removed; the jobserver is kept, so both builds
/// share the machine's cores.
pub fn wasm_build(cargo: &str, root: &Path, wasm_dir: &Path, crates: &[String]) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
            "--target-dir",
        ])
        .arg(wasm_dir);
    for name in crates {
        cmd.args(["-p", name]);
    }
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
    cmd
}

/// Where [`wasm_build`] leaves the component of crate `name`.
pub fn built_wasm(wasm_dir: &Path, name: &str) -> PathBuf {
    wasm_dir
        .join("wasm32-wasip2")
        .join("plugin")
        .join(format!("{}.wasm", name.replace('-', "_")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_the_address() {
        assert_eq!(
            listening_addr("listening on http://127.0.0.1:4242\n"),
            Some("127.0.0.1:4242")
        );
        assert_eq!(listening_addr("Error: cannot listen"), None);
    }

    #[test]
    fn built_components_are_named_after_the_crate() {
        assert_eq!(
            built_wasm(Path::new("t"), "slow-push"),
            Path::new("t/wasm32-wasip2/plugin/slow_push.wasm")
        );
    }
}
