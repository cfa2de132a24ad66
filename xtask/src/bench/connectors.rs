//! How the host behaves as the work grows (`cargo xtask bench
//! scale-connectors`):
//!
//! - 1,000 connectors on one host: 500 copies of `webhook-json` and 500 of
//!   `http-poll`, each with a manifest of its own (a different `id_field`
//!   or source URL). Start-up from the compile cache (second start of the
//!   same data directory) to `/readyz` 200; resident memory; idle CPU (the
//!   process's user+system time over a quiet window, as % of one core);
//!   push throughput with every request going to the next source in turn,
//!   beside the same load on one source of the same host.
//! - 10,000 pull partitions on one connector (`partitioned-poll`): one run
//!   over all of them against an empty source (time and CPU per partition,
//!   each making one pull), idle CPU with them all scheduled (the
//!   scheduler's overhead per idle partition), then the status and
//!   checkpoint APIs with 10,000 checkpoints stored (paged; the time per
//!   request).
//!
//! Targets (#21): start ≤ 5 s, RSS ≤ 1 GiB, idle CPU ≤ 1 % of a core,
//! round-robin ≥ 0.8× one source.

use super::memory::rss_mb;
use super::{Rounds, build_fixture, build_inlet, load, write_json};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

pub fn run(smoke: bool) -> Result<()> {
    let bin = build_inlet(smoke)?;
    let plugins = crate::target_dir().join("plugins");
    let (each, partitions, window) = if smoke {
        (5, 200, Duration::from_secs(1))
    } else {
        (500, 10_000, Duration::from_secs(10))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let source = rt.block_on(empty_source());

    // 1,000 connectors.
    let dir = tempfile::tempdir()?;
    let pdir = dir.path().join("plugins.d");
    std::fs::create_dir_all(&pdir)?;
    let webhook = std::fs::read(plugins.join("webhook-json.wasm"))?;
    let poll = std::fs::read(plugins.join("http-poll.wasm"))?;
    let mut push_sources = Vec::new();
    for i in 0..each {
        let name = format!("hook-{i:04}");
        std::fs::write(pdir.join(format!("{name}.wasm")), &webhook)?;
        std::fs::write(
            pdir.join(format!("{name}.toml")),
            format!("[config]\nid_field = \"id\"\ntype_field = \"type\"\nlabel = \"{name}\"\n"),
        )?;
        push_sources.push(format!("/ingest/{name}"));
        let name = format!("poll-{i:04}");
        std::fs::write(pdir.join(format!("{name}.wasm")), &poll)?;
        std::fs::write(
            pdir.join(format!("{name}.toml")),
            format!(
                "[pull]\nevery = \"1h\"\n\n[sandbox]\nallowed_hosts = [\"{source}\"]\n\n[config]\nurl = \"http://{source}/items/{name}\"\n"
            ),
        )?;
    }
    let data = dir.path().join("data");
    // The first start compiles each distinct component once and fills the
    // cache; the measured start is the second.
    let first = Host::start(&bin, &pdir, &data)?;
    let cold = first.ready_after;
    drop(first);
    let host = Host::start(&bin, &pdir, &data)?;
    let start_s = host.ready_after.as_secs_f64();
    // Let the first scheduled pull of every poll connector finish before
    // the quiet window.
    let settle = Instant::now() + Duration::from_secs(if smoke { 1 } else { 3 });
    while Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss_idle = rss_mb(host.pid())?;
    let cpu_before = cpu_seconds(host.pid())?;
    let quiet = Instant::now();
    std::thread::sleep(window);
    let idle_cpu_pct =
        (cpu_seconds(host.pid())? - cpu_before) / quiet.elapsed().as_secs_f64() * 100.0;
    let (warmup, duration) = if smoke {
        (Duration::from_millis(200), Duration::from_secs(1))
    } else {
        (Duration::from_secs(1), Duration::from_secs(5))
    };
    // One source and round-robin in turn, a few rounds; the median
    // round's ratio is reported.
    let push =
        |paths: &[String]| rt.block_on(load::run_paths(&host.addr, paths, 64, warmup, duration));
    let rounds = Rounds::in_turn(
        if smoke { 1 } else { 3 },
        || push(&push_sources[..1]),
        || push(&push_sources),
    );
    let errors: u64 = rounds.rounds.iter().map(|r| r.1.errors + r.2.errors).sum();
    let stored_nothing = rounds
        .rounds
        .iter()
        .any(|r| r.1.requests == 0 || r.2.requests == 0);
    let (spread_ratio, one, spread) = rounds.median();
    let spread_ratio = *spread_ratio;
    let rss_loaded = rss_mb(host.pid())?;
    let t = Instant::now();
    let (status, body) = get(&host.addr, "/v1/connectors")?;
    let list = t.elapsed();
    if status != 200 {
        bail!("GET /v1/connectors answered {status}");
    }
    // Every connector loaded, none failed: the figures are of 1,000.
    let listed: serde_json::Value = serde_json::from_str(&body)?;
    let loaded = listed["connectors"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|c| c["state"] == "loaded").count());
    if loaded != each * 2 {
        bail!("{loaded} of {} connectors loaded: {body:.2000}", each * 2);
    }
    drop(host);
    let n = each * 2;

    // 10,000 partitions on one connector.
    let part = partitions_run(&bin, &source, partitions, window)?;

    println!(
        "\n### scale: {n} connectors on one host ({each} webhook-json + {each} http-poll, a manifest each)\n"
    );
    println!("| measure | value | target |");
    println!("|---|---:|---|");
    println!("| start-up from the compile cache to /readyz | {start_s:.2} s | ≤ 5 s |");
    println!(
        "| (first start, compiling) | {:.2} s | |",
        cold.as_secs_f64()
    );
    println!("| RSS idle | {rss_idle:.0} MiB | ≤ 1024 MiB |");
    println!("| RSS after push load | {rss_loaded:.0} MiB | ≤ 1024 MiB |");
    println!("| idle CPU | {idle_cpu_pct:.2} % of a core | ≤ 1 % |");
    println!(
        "| push, 64 conns, one source (median round) | {:.0} req/s (p99 {:.1} ms) | |",
        one.rps(),
        one.percentile_ms(0.99)
    );
    println!(
        "| push, 64 conns, round-robin over {each} sources (median round) | {:.0} req/s (p99 {:.1} ms) | |",
        spread.rps(),
        spread.percentile_ms(0.99)
    );
    println!(
        "| round-robin ÷ one source ({}) | {spread_ratio:.2} | ≥ 0.8 |",
        rounds.describe()
    );
    println!(
        "| GET /v1/connectors ({n} connectors) | {:.1} ms | |",
        list.as_secs_f64() * 1000.0
    );
    println!("\n### scale: {partitions} partitions on one connector\n");
    println!("| measure | value |");
    println!("|---|---:|");
    for (k, v) in &part.rows {
        println!("| {k} | {v} |");
    }
    write_json(
        "scale-connectors",
        &serde_json::json!({
            "smoke": smoke, "connectors": n,
            "start_s": start_s, "first_start_s": cold.as_secs_f64(),
            "rss_idle_mb": rss_idle, "rss_loaded_mb": rss_loaded,
            "idle_cpu_pct": idle_cpu_pct,
            "push_one_rps": one.rps(), "push_one_p99_ms": one.percentile_ms(0.99),
            "push_spread_rps": spread.rps(), "push_spread_p99_ms": spread.percentile_ms(0.99),
            "spread_ratio": spread_ratio, "spread_ratios": rounds.ratios(),
            "push_errors": errors,
            "list_ms": list.as_secs_f64() * 1000.0,
            "partitions": part.json,
        }),
    )?;
    if stored_nothing {
        bail!("scale-connectors: the push load stored nothing");
    }
    Ok(())
}

/// What the partitions run measured.
struct Partitions {
    rows: Vec<(String, String)>,
    json: serde_json::Value,
}

/// One connector with `count` partitions: one pull run over all of them
/// against the empty source (every partition gets a checkpoint), then
/// the status and checkpoint APIs.
fn partitions_run(bin: &Path, source: &str, count: usize, window: Duration) -> Result<Partitions> {
    let wasm = build_fixture("partitioned-poll")?;
    let dir = tempfile::tempdir()?;
    let pdir = dir.path().join("plugins.d");
    std::fs::create_dir_all(&pdir)?;
    std::fs::copy(&wasm, pdir.join("parts.wasm"))?;
    let names: Vec<String> = (0..count).map(|i| format!("p{i:05}")).collect();
    std::fs::write(
        pdir.join("parts.toml"),
        format!(
            "[pull]\nevery = \"1h\"\nmax_parallel = 16\n\n[sandbox]\nallowed_hosts = [\"{source}\"]\n\n[config]\nurl = \"http://{source}/parts\"\npartitions = \"{}\"\n",
            names.join(",")
        ),
    )?;
    let host = Host::start(bin, &pdir, &dir.path().join("data"))?;
    // The scheduled first run starts at once; wait for it to end (every
    // partition checkpointed), timing it and the CPU it took.
    let cpu0 = cpu_seconds(host.pid())?;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(600);
    let total = loop {
        let (status, body) = get(&host.addr, "/v1/connectors/parts")?;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let total = v["checkpoints_total"].as_u64().unwrap_or(0);
        if status == 200 && total as usize >= count {
            break total;
        }
        if Instant::now() > deadline {
            bail!("partitions: {total} of {count} checkpointed after 600 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let run = t0.elapsed();
    let cpu = cpu_seconds(host.pid())? - cpu0;
    // Status pages of 100 checkpoints: the first, one in the middle, the
    // last; and one whole checkpoint by partition.
    let mid = &names[count / 2];
    let last = &names[count - 2];
    let mut rows = vec![
        ("partitions".to_string(), count.to_string()),
        ("checkpoints stored".to_string(), total.to_string()),
        (
            "one run over every partition (empty source)".to_string(),
            format!("{:.2} s", run.as_secs_f64()),
        ),
        (
            "per partition (one pull each): wall / CPU".to_string(),
            format!(
                "{:.0} µs / {:.0} µs",
                run.as_secs_f64() * 1e6 / count as f64,
                cpu * 1e6 / count as f64
            ),
        ),
    ];
    let mut json = serde_json::json!({
        "partitions": count, "checkpoints": total,
        "run_s": run.as_secs_f64(), "cpu_s": cpu,
    });
    for (what, path) in [
        (
            "GET status, first page".to_string(),
            "/v1/connectors/parts".to_string(),
        ),
        (
            format!("GET status, page after {mid}"),
            format!("/v1/connectors/parts?checkpoints_after={mid}"),
        ),
        (
            format!("GET status, last page (after {last})"),
            format!("/v1/connectors/parts?checkpoints_after={last}"),
        ),
        (
            format!("GET one checkpoint ({mid})"),
            format!("/v1/connectors/parts/checkpoint?partition={mid}"),
        ),
    ] {
        let mut best = Duration::MAX;
        let mut body_len = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let (status, body) = get(&host.addr, &path)?;
            if status != 200 {
                bail!("GET {path} answered {status}: {body}");
            }
            best = best.min(t.elapsed());
            body_len = body.len();
        }
        rows.push((
            what.clone(),
            format!(
                "{:.1} ms ({} KiB)",
                best.as_secs_f64() * 1000.0,
                body_len / 1024
            ),
        ));
        json[what] = serde_json::json!({"ms": best.as_secs_f64() * 1000.0, "bytes": body_len});
    }
    // Idle with 10,000 partitions between runs.
    let cpu_before = cpu_seconds(host.pid())?;
    let quiet = Instant::now();
    std::thread::sleep(window);
    let idle = (cpu_seconds(host.pid())? - cpu_before) / quiet.elapsed().as_secs_f64() * 100.0;
    // The scheduler's overhead per idle partition: CPU per second of
    // wall time, shared out over the partitions.
    let per_partition_us = idle / 100.0 * 1e6 / count as f64;
    rows.push((
        "idle CPU between runs".to_string(),
        format!("{idle:.2} % of a core"),
    ));
    rows.push((
        "idle CPU per partition".to_string(),
        format!("{per_partition_us:.2} µs per second"),
    ));
    json["idle_cpu_pct"] = serde_json::json!(idle);
    json["idle_cpu_us_per_s_per_partition"] = serde_json::json!(per_partition_us);
    Ok(Partitions { rows, json })
}

/// A source that has nothing new: `{"items": [], "has_more": false}`.
async fn empty_source() -> String {
    load::static_server(
        hyper::StatusCode::OK,
        br#"{"items":[],"next_cursor":"c0","has_more":false}"#,
    )
    .await
}

/// `inlet serve` over fixed plugin and data directories (a restart sees
/// the same compile cache and store).
struct Host {
    child: Child,
    addr: String,
    /// From spawn to `/readyz` 200.
    ready_after: Duration,
}

impl Host {
    fn start(bin: &Path, plugins: &Path, data: &Path) -> Result<Host> {
        let t0 = Instant::now();
        let (child, addr) = super::spawn_serve(bin, plugins, data, &[])?;
        let mut host = Host {
            child,
            addr,
            ready_after: Duration::ZERO,
        };
        let deadline = t0 + Duration::from_secs(300);
        loop {
            if get(&host.addr, "/readyz").is_ok_and(|(s, _)| s == 200) {
                break;
            }
            if Instant::now() > deadline {
                bail!("inlet was not ready within 300 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        host.ready_after = t0.elapsed();
        Ok(host)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(addr: &str, path: &str) -> Result<(u16, String)> {
    super::http(addr, "GET", path, "")
}

/// User + system CPU seconds of `pid` so far (`/proc/PID/stat`).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may contain spaces) in parentheses.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / clock_ticks_per_second()?)
}

/// The unit of `/proc/PID/stat`'s times (`getconf CLK_TCK`; 100 on every
/// Linux this runs on, asked rather than assumed).
fn clock_ticks_per_second() -> Result<f64> {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    if let Some(t) = TICKS.get() {
        return Ok(*t);
    }
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("getconf CLK_TCK")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ticks: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("getconf CLK_TCK answered {text:?}"))?;
    if ticks == 0 {
        bail!("getconf CLK_TCK answered 0");
    }
    Ok(*TICKS.get_or_init(|| f64::from(ticks)))
}
