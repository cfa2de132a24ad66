//! `cargo xtask crash-test [--rounds N]`: acknowledged means durable.
//!
//! Each round starts `inlet serve` on the same data directory, drives
//! concurrent pushes (unique ids and idempotency keys) while recording every
//! one answered 202, `kill -9`s the process at a random moment, and goes on.
//! At the end a fresh process reads the whole stream: every acknowledged
//! event must be there exactly once.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CLIENTS: usize = 8;

fn spawn(bin: &Path, dir: &Path) -> Result<(Child, String)> {
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--plugins"])
        .arg(dir.join("plugins.d"))
        .arg("--data")
        .arg(dir.join("data"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting inlet")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let addr = inlet_devtools::listening_addr(&line)
        .with_context(|| format!("inlet did not start: {line:?}"))?
        .to_string();
    Ok((child, addr))
}

/// A pseudo-random number from the clock (no dependency needed for this).
fn jitter(max_ms: u64) -> u64 {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos() as u64;
    n.wrapping_mul(6364136223846793005) % max_ms.max(1)
}

async fn client(
    addr: String,
    round: usize,
    task: usize,
    acked: Arc<Mutex<Vec<String>>>,
    until: Instant,
) {
    let Ok(stream) = tokio::net::TcpStream::connect(&addr).await else {
        return;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return;
    };
    tokio::spawn(conn);
    let mut n = 0;
    while Instant::now() < until {
        let id = format!("r{round}-t{task}-{n}");
        n += 1;
        let req = hyper::Request::post("/ingest/webhook-json")
            .header("host", &addr)
            .header("idempotency-key", &id)
            .body(Full::new(Bytes::from(format!(
                r#"{{"id":"{id}","round":{round}}}"#
            ))))
            .expect("request");
        match sender.send_request(req).await {
            Ok(resp) if resp.status() == hyper::StatusCode::ACCEPTED => {
                if resp.into_body().collect().await.is_ok() {
                    acked.lock().expect("lock").push(id);
                }
            }
            Ok(_) => {}
            // The process was killed under us.
            Err(_) => return,
        }
    }
}

async fn read_all(addr: &str) -> Result<HashMap<String, u32>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut seen = HashMap::new();
    let mut after = 0u64;
    loop {
        let req = hyper::Request::get(format!(
            "/v1/streams/webhook-json/events?after={after}&limit=10000"
        ))
        .header("host", addr)
        .body(Full::new(Bytes::new()))?;
        let resp = sender.send_request(req).await?;
        if !resp.status().is_success() {
            bail!("reading the stream: HTTP {}", resp.status());
        }
        let body = resp.into_body().collect().await?.to_bytes();
        let mut lines = 0;
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line)?;
            after = v["offset"].as_u64().context("offset")?;
            *seen
                .entry(v["id"].as_str().unwrap_or("").to_string())
                .or_insert(0) += 1;
            lines += 1;
        }
        if lines == 0 {
            return Ok(seen);
        }
    }
}

pub fn run(rounds: usize) -> Result<()> {
    let bin = crate::debug_inlet()?;
    let built = crate::build_plugins()?;
    let wasm = built
        .iter()
        .find(|(n, _)| n == "webhook-json")
        .map(|(_, p)| p.clone())
        .context("webhook-json was not built")?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("plugins.d"))?;
    std::fs::copy(&wasm, dir.path().join("plugins.d/webhook-json.wasm"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let acked = Arc::new(Mutex::new(Vec::new()));
    for round in 0..rounds {
        let (mut child, addr) = spawn(&bin, dir.path())?;
        let run_for = Duration::from_millis(300 + jitter(1200));
        let kill_at = Instant::now() + run_for;
        let before = acked.lock().expect("lock").len();
        rt.block_on(async {
            let tasks: Vec<_> = (0..CLIENTS)
                .map(|t| {
                    tokio::spawn(client(
                        addr.clone(),
                        round,
                        t,
                        acked.clone(),
                        kill_at + Duration::from_secs(5),
                    ))
                })
                .collect();
            tokio::time::sleep_until(kill_at.into()).await;
            // kill -9 while requests are in flight.
            let _ = child.kill();
            let _ = child.wait();
            for t in tasks {
                let _ = t.await;
            }
        });
        let now = acked.lock().expect("lock").len();
        eprintln!(
            "xtask: round {}: killed after {run_for:?}, {} pushes acknowledged",
            round + 1,
            now - before
        );
    }
    let (mut child, addr) = spawn(&bin, dir.path())?;
    let seen = rt.block_on(read_all(&addr));
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen?;
    let acked = acked.lock().expect("lock").clone();
    let found = acked.iter().filter(|id| seen.contains_key(*id)).count();
    let lost = acked.len() - found;
    let duplicated = seen.values().filter(|n| **n > 1).count();
    println!("\n| rounds | acked | found | lost | duplicated | stored (incl. unacked) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {rounds} | {} | {found} | {lost} | {duplicated} | {} |",
        acked.len(),
        seen.len()
    );
    if acked.is_empty() {
        bail!("no push was acknowledged; the test measured nothing");
    }
    if lost > 0 || duplicated > 0 {
        bail!(
            "crash consistency violated: {lost} acknowledged events lost, {duplicated} duplicated"
        );
    }
    Ok(())
}
