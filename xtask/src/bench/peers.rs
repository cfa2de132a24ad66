//! Inlet beside its peers, under the field's standard load generator: wrk
//! (one thread, keep-alive, ~200-byte JSON, a unique id and idempotency key
//! per request) against
//! (a) a minimal hyper server that reads the body and answers 202 (the
//!     ceiling: what HTTP alone costs on this machine),
//! (b) `wasmtime serve` 48 with the pooling allocator, serving the
//!     `peer-proxy` fixture, a `wasi:http/proxy` component that reads the
//!     body and answers 202 (the reference wasm HTTP host; it stores
//!     nothing),
//! (c) Inlet with `webhook-json`, durable (fsync per group commit),
//! (d) Inlet `--unsafe-no-fsync`,
//! each at 1, 16, 64 and 256 connections. Prints a markdown table with the
//! ratios to (a) and (b) and the #21 targets at 64 connections; writes
//! `target/bench/peers.json`.
//!
//! `wasmtime-cli` is installed into `target/tools/` by `cargo install` the
//! first time (many minutes); `--smoke` never installs it and skips (b)
//! when it is missing.

use super::{Inlet, build_fixture, build_inlet, load, write_json};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WASMTIME_VERSION: &str = "48.0.8";

/// The #21 targets for Inlet durable at 64 connections.
const TARGET_VS_WASMTIME: f64 = 2.0;
const TARGET_VS_HYPER: f64 = 0.25;
const TARGET_P99_MS: f64 = 5.0;
const TARGET_P999_MS: f64 = 20.0;

pub fn run(smoke: bool) -> Result<()> {
    ensure_wrk()?;
    let bin = build_inlet(smoke)?;
    let webhook = crate::target_dir()
        .join("plugins")
        .join("webhook-json.wasm");
    let peer = build_fixture("peer-proxy")?;
    let wasmtime = wasmtime_cli(smoke)?;
    let (conns, duration): (&[usize], _) = if smoke {
        (&[16], Duration::from_secs(1))
    } else {
        (&[1, 16, 64, 256], Duration::from_secs(8))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let script = tempfile::tempdir()?;
    let mut rows: Vec<serde_json::Value> = Vec::new();
    let mut measure = |name: &str, addr: &str, path: &str| -> Result<()> {
        // A second of load first: connections, caches, the JIT'd component.
        wrk(script.path(), addr, path, conns[0], Duration::from_secs(1))?;
        for &n in conns {
            let r = wrk(script.path(), addr, path, n, duration)?;
            eprintln!("xtask: peers {name} at {n}: {:.0} req/s", r.rps);
            rows.push(serde_json::json!({
                "target": name, "connections": n, "rps": r.rps,
                "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "p999_ms": r.p999_ms,
                "errors": r.errors,
            }));
        }
        Ok(())
    };

    let hyper_addr = rt.block_on(load::ceiling_server());
    measure("hyper (ceiling)", &hyper_addr, "/")?;
    match &wasmtime {
        Some(cli) => {
            let serve = WasmtimeServe::start(cli, &peer)?;
            measure("wasmtime serve", &serve.addr, "/")?;
        }
        None => eprintln!(
            "xtask: smoke: wasmtime-cli {WASMTIME_VERSION} is not installed in target/tools; the wasmtime serve row is skipped"
        ),
    }
    for (name, extra) in [
        ("Inlet durable", &[][..]),
        ("Inlet --unsafe-no-fsync", &["--unsafe-no-fsync"][..]),
    ] {
        let inlet = Inlet::start(&bin, &[("webhook-json", webhook.clone(), None)], extra)?;
        measure(name, &inlet.addr, "/ingest/webhook-json")?;
    }

    // Ratios to the ceiling and to wasmtime serve at the same count.
    let base = |target: &str, n: &serde_json::Value| {
        rows.iter()
            .find(|r| r["target"] == target && &r["connections"] == n)
            .and_then(|r| r["rps"].as_f64())
    };
    let ratios: Vec<(Option<f64>, Option<f64>)> = rows
        .iter()
        .map(|r| {
            let rps = r["rps"].as_f64().unwrap_or(0.0);
            let n = &r["connections"];
            (
                base("hyper (ceiling)", n).map(|b| rps / b.max(1.0)),
                base("wasmtime serve", n).map(|b| rps / b.max(1.0)),
            )
        })
        .collect();
    for (row, (h, w)) in rows.iter_mut().zip(ratios) {
        row["vs_hyper"] = serde_json::json!(h);
        row["vs_wasmtime"] = serde_json::json!(w);
    }
    let fmt = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |v| format!("{v:.2}"));
    println!(
        "\n### peers (wrk, 1 thread, keep-alive, ~200-byte JSON, unique idempotency keys, {} s per row)\n",
        duration.as_secs()
    );
    println!(
        "| target | conns | req/s | p50 ms | p99 ms | p99.9 ms | errors | ×hyper | ×wasmtime serve |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            r["target"].as_str().unwrap_or(""),
            r["connections"],
            r["rps"].as_f64().unwrap_or(0.0),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["p999_ms"].as_f64().unwrap_or(0.0),
            r["errors"],
            fmt(&r["vs_hyper"]),
            fmt(&r["vs_wasmtime"]),
        );
    }
    let targets = targets(&rows);
    if !smoke {
        println!("\nTargets (Inlet durable, 64 connections):\n");
        for t in &targets {
            println!(
                "- {}: {} (target {}) — {}",
                t["what"].as_str().unwrap_or(""),
                t["measured"],
                t["target"].as_str().unwrap_or(""),
                if t["met"] == true { "met" } else { "not met" }
            );
        }
    }
    write_json(
        "peers",
        &serde_json::json!({
            "smoke": smoke, "wrk_threads": 1, "seconds": duration.as_secs(),
            "rows": rows, "targets": targets,
        }),
    )?;
    // The harness itself must have worked: every target answered 2xx.
    for r in &rows {
        if r["rps"].as_f64().unwrap_or(0.0) <= 0.0 {
            bail!(
                "peers: {} at {} connections served nothing",
                r["target"],
                r["connections"]
            );
        }
    }
    Ok(())
}

/// The #21 targets, read off the Inlet durable row at 64 connections.
fn targets(rows: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let Some(row) = rows
        .iter()
        .find(|r| r["target"] == "Inlet durable" && r["connections"] == 64)
    else {
        return Vec::new();
    };
    let get = |k: &str| row[k].as_f64();
    let mut out = Vec::new();
    let mut push = |what: &str, measured: Option<f64>, target: String, met: Option<bool>| {
        out.push(serde_json::json!({
            "what": what, "measured": measured.map(|m| (m * 100.0).round() / 100.0),
            "target": target, "met": met,
        }));
    };
    let w = get("vs_wasmtime");
    push(
        "req/s ÷ wasmtime serve",
        w,
        format!("≥ {TARGET_VS_WASMTIME}"),
        w.map(|w| w >= TARGET_VS_WASMTIME),
    );
    let h = get("vs_hyper");
    push(
        "req/s ÷ hyper",
        h,
        format!("≥ {TARGET_VS_HYPER}"),
        h.map(|h| h >= TARGET_VS_HYPER),
    );
    let p = get("p99_ms");
    push(
        "p99 ms",
        p,
        format!("≤ {TARGET_P99_MS}"),
        p.map(|p| p <= TARGET_P99_MS),
    );
    let p = get("p999_ms");
    push(
        "p99.9 ms",
        p,
        format!("≤ {TARGET_P999_MS}"),
        p.map(|p| p <= TARGET_P999_MS),
    );
    let e = get("errors");
    push("errors", e, "0".into(), e.map(|e| e == 0.0));
    out
}

/// What one wrk run measured.
struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    /// Socket errors, timeouts and non-2xx answers.
    errors: u64,
}

/// Runs wrk (one thread) for `duration` with `connections` against
/// `addr`, posting a ~200-byte JSON with a fresh id and idempotency key per
/// request (a run prefix keeps them unique across runs on one host).
fn wrk(dir: &Path, addr: &str, path: &str, connections: usize, duration: Duration) -> Result<Wrk> {
    static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let script = dir.join(format!("run{run}.lua"));
    std::fs::write(&script, LUA.replace("RUN", &format!("r{run}")))?;
    let out = Command::new("wrk")
        .args(["-t1", "-c", &connections.to_string(), "-d"])
        .arg(format!("{}s", duration.as_secs().max(1)))
        .args(["--timeout", "10s", "-s"])
        .arg(&script)
        .arg(format!("http://{addr}{path}"))
        .stderr(Stdio::inherit())
        .output()
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed ({}): {stdout}", out.status);
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("INLET-WRK "))
        .with_context(|| format!("wrk printed no summary: {stdout}"))?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let ok = n("requests") - n("non2xx");
    Ok(Wrk {
        rps: ok / (n("duration_us") / 1e6).max(1e-6),
        p50_ms: n("p50_us") / 1000.0,
        p99_ms: n("p99_us") / 1000.0,
        p999_ms: n("p999_us") / 1000.0,
        errors: (n("errors") + n("non2xx")) as u64,
    })
}

/// The wrk script: a unique body and key per request; at the end one JSON
/// line with the counts and the latency percentiles (microseconds).
const LUA: &str = r#"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"id":"RUN-%d","type":"bench.event","customer":"cus_0000000001","amount":4200,"currency":"eur","note":"a typical small webhook payload of about two hundred bytes....."}', n)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Idempotency-Key"] = "RUN-k-" .. n}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('INLET-WRK {"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

fn ensure_wrk() -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    crate::apt_install(
        "wrk",
        "the HTTP load generator of `cargo xtask bench peers`",
    )
}

/// `target/tools/wasmtime-48/bin/wasmtime`, installed by `cargo install
/// wasmtime-cli` when missing (not in a smoke run: `None` then).
fn wasmtime_cli(smoke: bool) -> Result<Option<PathBuf>> {
    let root = crate::target_dir()
        .join("tools")
        .join(format!("wasmtime-{WASMTIME_VERSION}"));
    let bin = root.join("bin").join("wasmtime");
    if bin.is_file() {
        return Ok(Some(bin));
    }
    if smoke {
        return Ok(None);
    }
    eprintln!(
        "xtask: installing wasmtime-cli {WASMTIME_VERSION} into {} (once; many minutes)",
        root.display()
    );
    crate::run(
        crate::cargo()
            .args(["install", "wasmtime-cli", "--locked", "--version"])
            .arg(format!("={WASMTIME_VERSION}"))
            .arg("--root")
            .arg(&root),
    )?;
    Ok(Some(bin))
}

/// `wasmtime serve` with the pooling allocator on a free loopback port.
struct WasmtimeServe {
    child: Child,
    addr: String,
}

impl WasmtimeServe {
    fn start(cli: &Path, component: &Path) -> Result<WasmtimeServe> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        // `-S cli=y`: the component's std imports `wasi:cli` (environment,
        // stdio), which `wasmtime serve` links only when asked.
        let log = tempfile::NamedTempFile::new()?;
        let child = Command::new(cli)
            .args([
                "serve",
                "-O",
                "pooling-allocator=y",
                "-S",
                "cli=y",
                "--addr",
                &addr,
            ])
            .arg(component)
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()
            .context("starting wasmtime serve")?;
        let mut serve = WasmtimeServe { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&serve.addr).is_err() {
            let exited = serve.child.try_wait()?;
            if exited.is_some() || Instant::now() > deadline {
                let stderr = std::fs::read_to_string(log.path()).unwrap_or_default();
                bail!(
                    "wasmtime serve did not listen on {} ({}): {stderr}",
                    serve.addr,
                    exited.map_or("60 s passed".to_string(), |s| s.to_string())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(serve)
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
