//! `cargo xtask bench reload`: how long after an operator renames a new
//! `.wasm` into the plugins directory the first request is served by it.
//!
//! A release `inlet serve` runs as a child process over
//! `target/bench/reload/`. Each swap writes `.bench.wasm.tmp` and renames
//! it to `bench.wasm`; the clock runs from the rename until a push's
//! envelope carries the new component's label. The time includes the
//! watcher's debounce, hashing, compiling or loading from the cache,
//! `describe`, and the swap. Every swap brings a component with a content
//! hash of its own (a custom section with a counter is appended), so a
//! "fresh" swap really compiles; a "cache hit" swap goes back to the
//! previous one, which the host compiled moments before.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// How long one swap may take before the benchmark gives up.
const SWAP_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(smoke: bool) -> Result<()> {
    crate::ensure_target()?;
    let bin = super::build_inlet(smoke)?;
    let wasm_dir = crate::target_dir().join("wasm");
    crate::run(
        crate::cargo()
            .args(["build", "--target", "wasm32-wasip2", "--profile", "plugin"])
            .arg("--target-dir")
            .arg(&wasm_dir)
            .args(["-p", "webhook-json", "-p", "webhook-json-big"]),
    )?;
    let built = wasm_dir.join("wasm32-wasip2").join("plugin");
    let rounds = if smoke { 1 } else { 5 };
    let mut rows = Vec::new();
    for (what, file) in [
        ("webhook-json", "webhook_json.wasm"),
        ("webhook-json-big", "webhook_json_big.wasm"),
    ] {
        let wasm = std::fs::read(built.join(file))
            .with_context(|| format!("{}: cannot read", built.join(file).display()))?;
        let (fresh, hit) = measure(&bin, &wasm, rounds)
            .with_context(|| format!("benchmarking reloads of {what}"))?;
        rows.push((what, wasm.len(), fresh, hit));
    }
    println!();
    println!("Reload latency: rename of `NAME.wasm` → first push served by the new version");
    println!(
        "(release build, {rounds} swap(s) each, includes the watcher's 25 ms debounce; median, min–max)."
    );
    println!();
    println!("| component | size | fresh compile | cache hit |");
    println!("|---|---:|---:|---:|");
    for (what, size, fresh, hit) in rows {
        println!(
            "| {what} | {:.2} MB | {} | {} |",
            size as f64 / 1e6,
            summary(&fresh),
            summary(&hit)
        );
    }
    Ok(())
}

/// Runs `rounds` fresh swaps and as many cache-hit swaps of `wasm`.
fn measure(bin: &Path, wasm: &[u8], rounds: u64) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let dir = crate::target_dir().join("bench").join("reload");
    let _ = std::fs::remove_dir_all(&dir);
    let plugins = dir.join("plugins.d");
    std::fs::create_dir_all(&plugins)?;
    std::fs::write(plugins.join("bench.wasm"), variant(wasm, 0))?;
    let server = Server::start(bin, &plugins, &dir.join("data"))?;
    let mut probe = Probe {
        addr: server.addr.clone(),
        n: 0,
    };
    let mut label = probe.wait_for(|_| true)?;
    let (mut fresh, mut hit) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for (bytes, into) in [
            (variant(wasm, round), &mut fresh),
            (variant(wasm, round - 1), &mut hit),
        ] {
            let tmp = plugins.join(".bench.wasm.tmp");
            std::fs::write(&tmp, bytes)?;
            let started = Instant::now();
            std::fs::rename(&tmp, plugins.join("bench.wasm"))?;
            let old = label.clone();
            label = probe.wait_for(|l| l != old)?;
            into.push(started.elapsed());
        }
    }
    Ok((fresh, hit))
}

/// `wasm` with a custom section holding `n`: same code, another hash.
fn variant(wasm: &[u8], n: u64) -> Vec<u8> {
    let name = b"inlet-bench";
    let mut content = leb128(name.len() as u64);
    content.extend_from_slice(name);
    content.extend_from_slice(&n.to_le_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    out.extend(leb128(content.len() as u64));
    out.extend(content);
    out
}

fn leb128(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn summary(samples: &[Duration]) -> String {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    match (ms.first(), ms.last()) {
        (Some(min), Some(max)) => format!("{:.0} ms ({min:.0}–{max:.0})", ms[ms.len() / 2]),
        _ => "n/a".into(),
    }
}

/// A release `inlet serve` child process; killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(bin: &Path, plugins: &Path, data: &Path) -> Result<Server> {
        let (child, addr) = super::spawn_serve(bin, plugins, data, &[])?;
        Ok(Server { child, addr })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes one event at a time and reads back its envelope's label.
struct Probe {
    addr: String,
    n: u64,
}

impl Probe {
    /// Probes until a push is stored by a connector whose label satisfies
    /// `accept`; returns that label.
    fn wait_for(&mut self, accept: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + SWAP_TIMEOUT;
        loop {
            if let Some(label) = self.push()?
                && accept(&label)
            {
                return Ok(label);
            }
            if Instant::now() > deadline {
                bail!("no push was served by the new version within {SWAP_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// One push; the label of the connector that stored it.
    fn push(&mut self) -> Result<Option<String>> {
        self.n += 1;
        let body = format!(r#"{{"id":"probe-{}"}}"#, self.n);
        let (status, reply) = self.http("POST", "/ingest/bench", &body)?;
        if status == 404 {
            return Ok(None); // not loaded yet
        }
        if status != 202 {
            bail!("a push failed during a reload: {status} {reply}");
        }
        let offset: u64 = field(&reply, "\"first_offset\":", &[',', '}'])
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no first_offset in {reply}"))?;
        let (_, page) = self.http(
            "GET",
            &format!("/v1/streams/bench/events?after={}&limit=1", offset - 1),
            "",
        )?;
        Ok(field(&page, "\"connector\":\"", &['"']).map(str::to_string))
    }

    fn http(&self, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
        super::http(&self.addr, method, path, body)
    }
}

/// The text after `key` up to the first of `ends`.
fn field<'a>(text: &'a str, key: &str, ends: &[char]) -> Option<&'a str> {
    let rest = &text[text.find(key)? + key.len()..];
    Some(&rest[..rest.find(ends)?])
}
