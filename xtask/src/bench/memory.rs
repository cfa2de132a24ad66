//! Resident memory of `inlet serve`: idle with 1 and with 100 connectors
//! loaded, and under push load (64 connections).

use super::{Inlet, build_inlet, load, write_json};
use anyhow::{Context, Result};
use std::time::Duration;

pub(crate) fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb / 1024.0)
}

pub fn run(smoke: bool) -> Result<()> {
    let bin = build_inlet(smoke)?;
    let wasm = crate::target_dir()
        .join("plugins")
        .join("webhook-json.wasm");
    let many = if smoke { 10 } else { 100 };
    let one = Inlet::start(&bin, &[("webhook-json", wasm.clone(), None)], &[])?;
    std::thread::sleep(Duration::from_millis(500));
    let idle_one = rss_mb(one.pid())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let secs = if smoke { 1 } else { 5 };
    let handle = {
        let addr = one.addr.clone();
        rt.spawn(async move {
            load::run(
                &addr,
                "/ingest/webhook-json",
                64,
                Duration::from_millis(200),
                Duration::from_secs(secs),
            )
            .await
        })
    };
    let mut peak = idle_one;
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss_mb(one.pid()).unwrap_or(0.0));
    }
    drop(one);
    let names: Vec<String> = (0..many).map(|i| format!("c{i:03}")).collect();
    let plugins: Vec<_> = names
        .iter()
        .map(|n| (n.as_str(), wasm.clone(), None))
        .collect();
    let hundred = Inlet::start(&bin, &plugins, &[])?;
    std::thread::sleep(Duration::from_millis(500));
    let idle_many = rss_mb(hundred.pid())?;
    println!("\n### memory (RSS, MiB)\n");
    println!("| idle, 1 connector | idle, {many} connectors | under push load (64 conns), peak |");
    println!("|---:|---:|---:|");
    println!("| {idle_one:.1} | {idle_many:.1} | {peak:.1} |");
    write_json(
        "memory",
        &serde_json::json!({"smoke": smoke, "idle_one_mb": idle_one, "idle_many_mb": idle_many, "many": many, "push_load_peak_mb": peak}),
    )?;
    Ok(())
}
