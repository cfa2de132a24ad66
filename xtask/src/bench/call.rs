//! Per-call sandbox cost: instantiate + describe, instantiate + on-push of a
//! 200-byte body, with and without the pooling allocator
//! (`host/examples/call_bench.rs`).

use super::write_json;
use anyhow::{Context, Result};

pub fn run(smoke: bool) -> Result<()> {
    let plugins = crate::build_plugins()?;
    let wasm = plugins
        .iter()
        .find(|(n, _)| n == "webhook-json")
        .map(|(_, p)| p.clone())
        .context("webhook-json")?;
    let iterations = if smoke { "50" } else { "5000" };
    // `cargo xtask test` names the example its test pass built; the smoke
    // runs that one (a debug build: the smoke checks the harness, not the
    // figures).
    let built = std::env::var_os("CALL_BENCH_BIN").filter(|_| smoke);
    let mut cmd = match built {
        Some(bin) => std::process::Command::new(bin),
        None => {
            let mut cmd = crate::cargo();
            cmd.args(["run", "-q", "-p", "inlet-host", "--example", "call_bench"]);
            if !smoke {
                cmd.arg("--release");
            }
            cmd.arg("--");
            cmd
        }
    };
    cmd.arg(&wasm).arg(iterations);
    eprintln!("xtask: running {cmd:?}");
    let out = cmd.output()?;
    if !out.status.success() {
        anyhow::bail!(
            "call_bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("call_bench output")?;
    println!("\n### call (webhook-json, {iterations} iterations)\n");
    println!(
        "| allocator | epoch interruption | describe p50 µs | describe p99 µs | on-push p50 µs | on-push p99 µs |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for r in v["rows"].as_array().context("rows")? {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            if r["pooling"].as_bool() == Some(true) {
                "pooling"
            } else {
                "on-demand"
            },
            if r["epoch_interruption"].as_bool() == Some(true) {
                "on"
            } else {
                "off"
            },
            r["describe_p50_us"].as_f64().unwrap_or(0.0),
            r["describe_p99_us"].as_f64().unwrap_or(0.0),
            r["on_push_p50_us"].as_f64().unwrap_or(0.0),
            r["on_push_p99_us"].as_f64().unwrap_or(0.0),
        );
    }
    write_json("call", &serde_json::json!({"smoke": smoke, "result": v}))?;
    Ok(())
}
