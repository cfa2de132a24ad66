//! Push throughput by store: one host on sled, one host on JetStream and
//! three hosts on one JetStream (the load spread over them as a load
//! balancer would), all on this one machine, so the figures are ratios and
//! say nothing about a real cluster. Ceilings in the same run: the harness's
//! minimal HTTP server (as in `bench push`) and the harness publishing the
//! same payloads to JetStream directly, with msg-ids and acks.

use super::{Inlet, Rounds, build_inlet, load, write_json};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A `nats-server -js` on a free loopback port over a temp directory.
struct Nats {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Nats {
    fn start() -> Result<Nats> {
        crate::ensure_nats()?;
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = dir.path().join("nats.log");
        let bin = if Path::new("/usr/sbin/nats-server").is_file() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path().join("js"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting nats-server")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Server is ready")
        {
            if Instant::now() > deadline {
                bail!("nats-server did not get ready; see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        })
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(smoke: bool) -> Result<()> {
    let bin = build_inlet(smoke)?;
    let wasm = crate::target_dir()
        .join("plugins")
        .join("webhook-json.wasm");
    let (conns, warmup, duration) = if smoke {
        (16, Duration::from_millis(200), Duration::from_secs(1))
    } else {
        (64, Duration::from_millis(500), Duration::from_secs(3))
    };
    let nats = Nats::start()?;
    let config_dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let http_ceiling = rt.block_on(load::ceiling_server());
    let store_args = |prefix: Option<&str>| -> Result<Vec<String>> {
        let Some(prefix) = prefix else {
            return Ok(Vec::new());
        };
        let path = config_dir.path().join(format!("{prefix}inlet.toml"));
        std::fs::write(
            &path,
            format!(
                "[store]\nkind = \"jetstream\"\nurl = \"{}\"\nstream_prefix = \"{prefix}\"\nsubject_prefix = \"bench.{lower}\"\nbucket_prefix = \"{lower}\"\n",
                nats.url,
                lower = prefix.trim_end_matches('_').to_lowercase()
            ),
        )?;
        Ok(vec!["--config".into(), path.to_string_lossy().into_owned()])
    };
    let start_hosts = |hosts: usize, prefix: Option<&str>| -> Result<Vec<Inlet>> {
        let extra = store_args(prefix)?;
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        (0..hosts)
            .map(|_| Inlet::start(&bin, &[("webhook-json", wasm.clone(), None)], &extra))
            .collect()
    };
    let push = |addrs: &[String]| {
        rt.block_on(load::run_over(
            addrs,
            "/ingest/webhook-json",
            conns,
            warmup,
            duration,
            &load::Transport::Plain,
        ))
    };

    // One host on sled and one on JetStream, both up, loaded in turn for
    // a few rounds: the ratio is taken per round (both runs of a round
    // share the machine's state of the moment) and the median reported.
    let sled_host = start_hosts(1, None)?;
    let js_host = start_hosts(1, Some("ONE_"))?;
    let rounds = Rounds::in_turn(
        if smoke { 1 } else { 3 },
        || push(&[sled_host[0].addr.clone()]),
        || push(&[js_host[0].addr.clone()]),
    );
    drop((sled_host, js_host));
    let (js_ratio, on_sled, on_js) = rounds.median();
    let js_ratio = *js_ratio;
    let three = {
        let hosts = start_hosts(3, Some("THREE_"))?;
        let addrs: Vec<String> = hosts.iter().map(|i| i.addr.clone()).collect();
        push(&addrs)
    };
    let http_rps = rt
        .block_on(load::run(
            &http_ceiling,
            "/ingest/webhook-json",
            conns,
            warmup,
            duration,
        ))
        .rps();
    let mut rows = Vec::new();
    for (setup, hosts, r, prefix) in [
        ("1 host, sled", 1, on_sled, None),
        ("1 host, JetStream", 1, on_js, Some("ONE_")),
        ("3 hosts, one JetStream", 3, &three, Some("THREE_")),
    ] {
        let (ceiling, ceiling_name) = match prefix {
            None => (http_rps, "HTTP 202 server"),
            Some(prefix) => (
                rt.block_on(publish_ceiling(
                    &nats.url,
                    &format!("{prefix}CEILING"),
                    conns,
                    warmup,
                    duration,
                ))?,
                "JetStream publish + ack",
            ),
        };
        rows.push(serde_json::json!({
            "setup": setup, "hosts": hosts, "connections": conns,
            "rps": r.rps(), "p50_ms": r.percentile_ms(0.50), "p99_ms": r.percentile_ms(0.99),
            "errors": r.errors, "ceiling": ceiling_name, "ceiling_rps": ceiling,
            "ratio": r.rps() / ceiling.max(1.0),
        }));
    }
    let base = rows[0]["rps"].as_f64().unwrap_or(1.0).max(1.0);
    println!("\n### scale-out: push by store ({conns} connections, one machine)\n");
    println!(
        "| setup | req/s | vs 1 host sled | p50 ms | p99 ms | errors | ceiling | ceiling req/s | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---:|---:|");
    for r in &rows {
        let rps = r["rps"].as_f64().unwrap_or(0.0);
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {:.0} | {:.2} |",
            r["setup"].as_str().unwrap_or(""),
            rps,
            rps / base,
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["errors"],
            r["ceiling"].as_str().unwrap_or(""),
            r["ceiling_rps"].as_f64().unwrap_or(0.0),
            r["ratio"].as_f64().unwrap_or(0.0),
        );
    }
    println!(
        "\n1 host, JetStream ÷ sled: {js_ratio:.2} (the two loaded in turn, {})",
        rounds.describe()
    );
    write_json(
        "scale",
        &serde_json::json!({"smoke": smoke, "rows": rows, "jetstream_over_sled": js_ratio, "jetstream_over_sled_rounds": rounds.ratios()}),
    )?;
    Ok(())
}

/// Messages per second the harness itself gets through JetStream: a stream
/// like Inlet's (file storage, 7-day duplicate window), `publishers`
/// concurrent publishers each waiting for its ack, ~300-byte payloads with
/// unique msg-ids.
async fn publish_ceiling(
    url: &str,
    stream: &str,
    publishers: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<f64> {
    use async_nats::jetstream;
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let subject = format!("ceiling.{stream}");
    js.get_or_create_stream(jetstream::stream::Config {
        name: stream.to_string(),
        subjects: vec![subject.clone()],
        duplicate_window: Duration::from_secs(7 * 24 * 3600),
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let counted = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let payload = bytes::Bytes::from(vec![b'x'; 300]);
    let mut tasks = Vec::new();
    for _ in 0..publishers {
        let (js, subject, counted, next, payload) = (
            js.clone(),
            subject.clone(),
            counted.clone(),
            next.clone(),
            payload.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    format!("c-{n}").as_str(),
                );
                let sent = Instant::now();
                let ok = match js
                    .publish_with_headers(subject.clone(), headers, payload.clone())
                    .await
                {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                };
                if ok && sent >= measure_from && Instant::now() <= end {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(counted.load(Ordering::Relaxed) as f64 / duration.as_secs_f64())
}
