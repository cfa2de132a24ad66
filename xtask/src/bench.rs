//! `cargo xtask bench [push|pull|call|reload|memory|scale|all] [--smoke]`:
//! release builds, each figure beside a ceiling measured in the same run; a
//! markdown table on stdout and JSON under `target/bench/`. `--smoke` runs
//! each harness for a moment on the debug build: it checks the harness
//! works and asserts nothing about speed. See BENCHMARKS.md.

mod call;
mod load;
mod memory;
mod pull;
mod push;
mod reload;
mod scale;

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub fn run(which: &str, smoke: bool) -> Result<()> {
    let all = which == "all";
    let mut ran = false;
    if all || which == "push" {
        push::run(smoke)?;
        ran = true;
    }
    if all || which == "pull" {
        pull::run(smoke)?;
        ran = true;
    }
    if all || which == "call" {
        call::run(smoke)?;
        ran = true;
    }
    if all || which == "reload" {
        reload::run(smoke)?;
        ran = true;
    }
    if all || which == "memory" {
        memory::run(smoke)?;
        ran = true;
    }
    if all || which == "scale" {
        scale::run(smoke)?;
        ran = true;
    }
    if !ran {
        bail!("unknown benchmark `{which}`; use push, pull, call, reload, memory, scale or all");
    }
    Ok(())
}

/// Builds the `inlet` binary (release; debug for `--smoke`) and the example
/// plugins; returns the binary's path.
pub(crate) fn build_inlet(smoke: bool) -> Result<PathBuf> {
    let mut cmd = crate::cargo();
    cmd.args(["build", "-p", "inlet-host", "--bin", "inlet"]);
    if !smoke {
        cmd.arg("--release");
    }
    crate::run(&mut cmd)?;
    crate::build_plugins()?;
    Ok(crate::target_dir()
        .join(if smoke { "debug" } else { "release" })
        .join("inlet"))
}

/// Builds a test fixture crate for wasm32-wasip2; returns its `.wasm`.
pub(crate) fn build_fixture(name: &str) -> Result<PathBuf> {
    let wasm_dir = crate::target_dir().join("wasm");
    crate::run(
        crate::cargo()
            .args([
                "build",
                "--target",
                "wasm32-wasip2",
                "--profile",
                "plugin",
                "--target-dir",
            ])
            .arg(&wasm_dir)
            .args(["-p", name]),
    )?;
    Ok(wasm_dir
        .join("wasm32-wasip2/plugin")
        .join(format!("{}.wasm", name.replace('-', "_"))))
}

/// A running `inlet serve` child process.
pub(crate) struct Inlet {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Inlet {
    /// Starts `inlet serve` on a free port over a temp dir holding
    /// `plugins` (name, wasm path, manifest).
    pub fn start(
        bin: &PathBuf,
        plugins: &[(&str, PathBuf, Option<&str>)],
        extra: &[&str],
    ) -> Result<Inlet> {
        use std::io::{BufRead, BufReader};
        let dir = tempfile::tempdir()?;
        let pdir = dir.path().join("plugins.d");
        std::fs::create_dir_all(&pdir)?;
        for (name, wasm, manifest) in plugins {
            std::fs::copy(wasm, pdir.join(format!("{name}.wasm")))?;
            if let Some(m) = manifest {
                std::fs::write(pdir.join(format!("{name}.toml")), m)?;
            }
        }
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--plugins"])
            .arg(&pdir)
            .arg("--data")
            .arg(dir.path().join("data"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting inlet")?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = inlet_devtools::listening_addr(&line)
            .with_context(|| format!("unexpected first line from inlet: {line:?}"))?
            .to_string();
        Ok(Inlet {
            child,
            addr,
            _dir: dir,
        })
    }
}

impl Inlet {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Inlet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn write_json(name: &str, value: &serde_json::Value) -> Result<()> {
    let dir = crate::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(value)?)?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}
