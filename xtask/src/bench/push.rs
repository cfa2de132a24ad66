//! Push throughput and latency: `inlet serve` with `webhook-json`, durable
//! and `--unsafe-no-fsync`, against an in-harness hyper server that reads
//! the body and answers 202 (the ceiling), at several connection counts.

use super::{Inlet, build_inlet, load, write_json};
use anyhow::Result;
use std::time::Duration;

pub fn run(smoke: bool) -> Result<()> {
    let bin = build_inlet(smoke)?;
    let wasm = crate::target_dir()
        .join("plugins")
        .join("webhook-json.wasm");
    let (conns, warmup, duration): (&[usize], _, _) = if smoke {
        (&[16], Duration::from_millis(200), Duration::from_secs(1))
    } else {
        (
            &[1, 16, 64, 256],
            Duration::from_millis(500),
            Duration::from_secs(3),
        )
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    let ceiling_addr = rt.block_on(load::ceiling_server());
    for mode in [
        "durable",
        "unsafe-no-fsync",
        "durable, no epoch interruption",
    ] {
        let extra: &[&str] = match mode {
            "durable" => &[],
            "unsafe-no-fsync" => &["--unsafe-no-fsync"],
            _ => &["--unsafe-no-epoch-interruption"],
        };
        // The no-epoch row measures epoch interruption's cost at 64
        // connections only.
        let conns: &[usize] = if mode.contains("epoch") && !smoke {
            &[64]
        } else {
            conns
        };
        let inlet = Inlet::start(&bin, &[("webhook-json", wasm.clone(), None)], extra)?;
        for &n in conns {
            let r = rt.block_on(load::run(
                &inlet.addr,
                "/ingest/webhook-json",
                n,
                warmup,
                duration,
            ));
            let c = rt.block_on(load::run(
                &ceiling_addr,
                "/ingest/webhook-json",
                n,
                warmup,
                duration,
            ));
            rows.push(serde_json::json!({
                "mode": mode, "connections": n,
                "rps": r.rps(), "p50_ms": r.percentile_ms(0.50), "p99_ms": r.percentile_ms(0.99),
                "p999_ms": r.percentile_ms(0.999), "errors": r.errors,
                "ceiling_rps": c.rps(), "ceiling_p99_ms": c.percentile_ms(0.99),
                "ratio": r.rps() / c.rps().max(1.0),
            }));
        }
    }
    println!("\n### push (webhook-json, ~200-byte JSON, unique idempotency keys)\n");
    println!(
        "| mode | conns | req/s | p50 ms | p99 ms | p99.9 ms | errors | ceiling req/s | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.0} | {:.2} |",
            r["mode"].as_str().unwrap_or(""),
            r["connections"],
            r["rps"].as_f64().unwrap_or(0.0),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["p999_ms"].as_f64().unwrap_or(0.0),
            r["errors"],
            r["ceiling_rps"].as_f64().unwrap_or(0.0),
            r["ratio"].as_f64().unwrap_or(0.0),
        );
    }
    write_json("push", &serde_json::json!({"smoke": smoke, "rows": rows}))?;
    Ok(())
}
