//! `cargo xtask bench [push|pull|call|reload|memory|scale|scale-connectors|peers|all] [--smoke]`:
//! release builds, each figure beside a ceiling measured in the same run; a
//! markdown table on stdout and JSON under `target/bench/`. `--smoke` runs
//! each harness for a moment on the debug build: it checks the harness
//! works and asserts nothing about speed. See BENCHMARKS.md.

mod call;
mod connectors;
mod load;
mod memory;
mod peers;
mod pull;
mod push;
mod reload;
mod scale;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
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
    if all || which == "scale-connectors" {
        connectors::run(smoke)?;
        ran = true;
    }
    if all || which == "peers" {
        peers::run(smoke)?;
        ran = true;
    }
    if !ran {
        bail!(
            "unknown benchmark `{which}`; use push, pull, call, reload, memory, scale, scale-connectors, peers or all"
        );
    }
    Ok(())
}

/// Builds the `inlet` binary (release; debug for `--smoke`) and the example
/// plugins; returns the binary's path.
pub(crate) fn build_inlet(smoke: bool) -> Result<PathBuf> {
    let bin = if smoke {
        crate::debug_inlet()?
    } else {
        crate::run(crate::cargo().args([
            "build",
            "-p",
            "inlet-host",
            "--bin",
            "inlet",
            "--release",
        ]))?;
        crate::target_dir().join("release").join("inlet")
    };
    crate::build_plugins()?;
    Ok(bin)
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
        bin: &Path,
        plugins: &[(&str, PathBuf, Option<&str>)],
        extra: &[&str],
    ) -> Result<Inlet> {
        let dir = tempfile::tempdir()?;
        let pdir = dir.path().join("plugins.d");
        std::fs::create_dir_all(&pdir)?;
        for (name, wasm, manifest) in plugins {
            std::fs::copy(wasm, pdir.join(format!("{name}.wasm")))?;
            if let Some(m) = manifest {
                std::fs::write(pdir.join(format!("{name}.toml")), m)?;
            }
        }
        let (child, addr) = spawn_serve(bin, &pdir, &dir.path().join("data"), extra)?;
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

/// Spawns `inlet serve` on a free loopback port over `plugins` and
/// `data`; returns the child and the address its first line names.
pub(crate) fn spawn_serve(
    bin: &Path,
    plugins: &Path,
    data: &Path,
    extra: &[&str],
) -> Result<(Child, String)> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--plugins"])
        .arg(plugins)
        .arg("--data")
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let addr = inlet_devtools::listening_addr(&line)
        .with_context(|| format!("unexpected first line from inlet: {line:?}"))?
        .to_string();
    Ok((child, addr))
}

/// One HTTP/1.1 request (`Connection: close`, a JSON body when not
/// empty): the status and the body.
pub(crate) fn http(addr: &str, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response: {resp:?}"))?;
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// Two loads measured in turn for a few rounds, each round's ratio
/// `b ÷ a` (both runs of a round share the machine's state of the
/// moment), sorted.
pub(crate) struct Rounds {
    /// Each round's (ratio, a, b), by ratio.
    pub rounds: Vec<(f64, load::LoadResult, load::LoadResult)>,
}

impl Rounds {
    /// Runs `a` and `b` for `rounds` rounds. Which goes first alternates,
    /// so neither always meets the other's after-effects (a store's
    /// write-back).
    pub(crate) fn in_turn(
        rounds: usize,
        mut a: impl FnMut() -> load::LoadResult,
        mut b: impl FnMut() -> load::LoadResult,
    ) -> Rounds {
        let mut all: Vec<_> = (0..rounds)
            .map(|round| {
                let (ra, rb) = if round % 2 == 0 {
                    let ra = a();
                    (ra, b())
                } else {
                    let rb = b();
                    (a(), rb)
                };
                (rb.rps() / ra.rps().max(1.0), ra, rb)
            })
            .collect();
        all.sort_by(|x, y| x.0.total_cmp(&y.0));
        Rounds { rounds: all }
    }

    /// The median round.
    pub(crate) fn median(&self) -> &(f64, load::LoadResult, load::LoadResult) {
        &self.rounds[self.rounds.len() / 2]
    }

    pub(crate) fn ratios(&self) -> Vec<f64> {
        self.rounds.iter().map(|r| r.0).collect()
    }

    /// "median of 3 rounds: 0.91, 0.93, 1.10", or "one round: 0.94".
    pub(crate) fn describe(&self) -> String {
        let label = match self.rounds.len() {
            1 => "one round".to_string(),
            n => format!("median of {n} rounds"),
        };
        let ratios: Vec<String> = self.rounds.iter().map(|r| format!("{:.2}", r.0)).collect();
        format!("{label}: {}", ratios.join(", "))
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
