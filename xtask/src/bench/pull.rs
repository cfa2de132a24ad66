//! Pull throughput: the `bench-pull` fixture returns batches of 1,000
//! synthetic ~200-byte events with has-more; one manual pull stores them all
//! through the real path (instantiate, lift, render, one durable commit per
//! batch). The ceiling is a raw sled batch insert of envelope-sized records
//! with the same flush policy (one flush per 1,000).

use super::{Inlet, build_fixture, build_inlet, write_json};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::time::Instant;

const BATCH: u64 = 1000;

/// The raw-sled ceiling: `total` records of `size` bytes, flushed per batch.
fn sled_ceiling(total: u64, size: usize) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None)
        .open()?;
    let tree = db.open_tree("bench")?;
    let value = vec![b'x'; size];
    let started = Instant::now();
    let mut n = 0u64;
    while n < total {
        let mut batch = sled::Batch::default();
        for i in n..(n + BATCH).min(total) {
            batch.insert(&i.to_be_bytes(), value.as_slice());
        }
        tree.apply_batch(batch)?;
        db.flush()?;
        n += BATCH;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

pub fn run(smoke: bool) -> Result<()> {
    let bin = build_inlet(smoke)?;
    let wasm = build_fixture("bench-pull")?;
    let total: u64 = if smoke { 5_000 } else { 100_000 };
    let manifest = format!(
        "[pull]\nevery = \"1h\"\nmax_batches_per_run = 100000\nmax_run_time = \"1h\"\n[config]\nbatch = {BATCH}\ntotal = {total}\n"
    );
    let inlet = Inlet::start(&bin, &[("bench-pull", wasm, Some(&manifest))], &[])?;
    // The schedule's first run starts as soon as the host listens; it pulls
    // everything (has-more, within a budget larger than the data). Time it
    // until the status counts every event.
    let started = Instant::now();
    loop {
        let mut s = std::net::TcpStream::connect(&inlet.addr)?;
        write!(
            s,
            "GET /v1/connectors/bench-pull HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )?;
        let mut status = String::new();
        s.read_to_string(&mut status)?;
        let body = status.split("\r\n\r\n").nth(1).context("status body")?;
        let v: serde_json::Value = serde_json::from_str(body)?;
        let stored = v["counters"]["events_pull"].as_u64().unwrap_or(0);
        if stored >= total {
            if stored != total {
                bail!("stored {stored} events, expected {total}");
            }
            break;
        }
        if started.elapsed().as_secs() > 600 {
            bail!("the pull did not finish in 10 minutes ({stored} of {total})");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let manual = started.elapsed();
    // A manual pull now finds nothing new: the checkpoint is at the end.
    let (_, reply) = super::http(&inlet.addr, "POST", "/v1/connectors/bench-pull/pull", "")?;
    if !reply.contains("\"events\":0") {
        bail!("a second pull stored more: {reply}");
    }
    let pull_eps = total as f64 / manual.as_secs_f64();
    // Envelope lines are ~420 bytes for these payloads.
    let ceiling = sled_ceiling(total, 420)?;
    println!("\n### pull (bench-pull fixture, batches of {BATCH} × ~200-byte events, durable)\n");
    println!("| events | seconds | events/s | raw sled ceiling events/s | ratio |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {total} | {:.2} | {:.0} | {:.0} | {:.2} |",
        manual.as_secs_f64(),
        pull_eps,
        ceiling,
        pull_eps / ceiling
    );
    write_json(
        "pull",
        &serde_json::json!({"smoke": smoke, "events": total, "seconds": manual.as_secs_f64(),
            "events_per_second": pull_eps, "ceiling_events_per_second": ceiling, "ratio": pull_eps / ceiling}),
    )?;
    Ok(())
}
