//! Per-call cost of the sandbox, used by `cargo xtask bench call`:
//! instantiate + `describe()` and instantiate + `on-push` (a 200-byte JSON
//! body) on a pre-instantiated component, with and without the pooling
//! allocator, and with epoch interruption as configured.
//!
//! Usage: `call_bench FILE.wasm ITERATIONS` → one JSON object on stdout.

use inlet_host::config::SandboxDefaults;
use inlet_host::runtime::{PushRequest, Runtime, RuntimeOptions, Sandbox};
use std::sync::Arc;
use std::time::Instant;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn measure(
    wasm: &[u8],
    iterations: usize,
    pooling: bool,
    epoch: bool,
) -> anyhow::Result<serde_json::Value> {
    let runtime = Runtime::new(&RuntimeOptions {
        pooling,
        epoch_interruption: epoch,
        ..Default::default()
    })?;
    let code = runtime.link(&runtime.compile(wasm)?)?;
    let sandbox = Arc::new(Sandbox::isolated("bench", &SandboxDefaults::default()));
    let body = br#"{"id":"evt_0000000001","type":"bench.event","customer":"cus_0000000001","amount":4200,"currency":"eur","note":"a typical small webhook payload of about two hundred bytes.."}"#.to_vec();
    // Warm up.
    for _ in 0..iterations.min(100) {
        runtime.describe(&code, &sandbox).await?;
    }
    let mut describe = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        runtime.describe(&code, &sandbox).await?;
        describe.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut push = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let req = PushRequest {
            method: "POST".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.clone(),
            ..Default::default()
        };
        let t = Instant::now();
        runtime.on_push(&code, &sandbox, req).await?;
        push.push(t.elapsed().as_secs_f64() * 1e6);
    }
    describe.sort_by(f64::total_cmp);
    push.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "pooling_requested": pooling,
        "pooling": runtime.pooling(),
        "epoch_interruption": epoch,
        "describe_p50_us": percentile(&describe, 0.5),
        "describe_p99_us": percentile(&describe, 0.99),
        "on_push_p50_us": percentile(&push, 0.5),
        "on_push_p99_us": percentile(&push, 0.99),
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let wasm = std::fs::read(args.next().expect("usage: call_bench FILE.wasm ITERATIONS"))?;
    let iterations: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(2000);
    let mut rows = Vec::new();
    for (pooling, epoch) in [(true, true), (true, false), (false, true)] {
        rows.push(measure(&wasm, iterations, pooling, epoch).await?);
    }
    println!(
        "{}",
        serde_json::json!({"iterations": iterations, "rows": rows})
    );
    Ok(())
}
