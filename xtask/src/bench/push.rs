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
    print_table(
        &rows,
        "mode | conns",
        ["ceiling req/s", "ratio"],
        ["ceiling_rps", "ratio"],
    );
    let tls = tls_rows(&rt, &bin, &wasm, &rows, smoke, warmup, duration)?;
    write_json(
        "push",
        &serde_json::json!({"smoke": smoke, "rows": rows, "tls": tls}),
    )?;
    Ok(())
}

/// The same load over TLS 1.3 (`[tls]` with a throwaway CA), HTTP/1.1 and
/// HTTP/2 (a connection per client, and all clients as streams of one
/// connection), each beside the plain durable row at the same count.
fn tls_rows(
    rt: &tokio::runtime::Runtime,
    bin: &std::path::Path,
    wasm: &std::path::Path,
    plain: &[serde_json::Value],
    smoke: bool,
    warmup: Duration,
    duration: Duration,
) -> Result<Vec<serde_json::Value>> {
    use load::Transport;
    let certs = tempfile::tempdir()?;
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
    leaf.subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let leaf = leaf.signed_by(&key, &ca, &ca_key)?;
    std::fs::write(certs.path().join("inlet.crt"), leaf.pem())?;
    std::fs::write(certs.path().join("inlet.key"), key.serialize_pem())?;
    let config = certs.path().join("inlet.toml");
    std::fs::write(
        &config,
        "[tls]\ncert_file = \"inlet.crt\"\nkey_file = \"inlet.key\"\n",
    )?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let connector = |alpn: &[u8]| -> Result<tokio_rustls::TlsConnector> {
        let mut c = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        c.alpn_protocols = vec![alpn.to_vec()];
        Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(c)))
    };
    let conns: &[usize] = if smoke { &[16] } else { &[16, 64] };
    let inlet = Inlet::start(
        bin,
        &[("webhook-json", wasm.to_path_buf(), None)],
        &["--config", config.to_str().unwrap_or_default()],
    )?;
    let mut rows = Vec::new();
    for (mode, transport) in [
        (
            "TLS 1.3, HTTP/1.1",
            Transport::Tls {
                connector: connector(b"http/1.1")?,
                h2: false,
                shared: false,
            },
        ),
        (
            "TLS 1.3, HTTP/2",
            Transport::Tls {
                connector: connector(b"h2")?,
                h2: true,
                shared: false,
            },
        ),
        (
            "TLS 1.3, HTTP/2, one connection",
            Transport::Tls {
                connector: connector(b"h2")?,
                h2: true,
                shared: true,
            },
        ),
    ] {
        for &n in conns {
            let r = rt.block_on(load::run_over(
                std::slice::from_ref(&inlet.addr),
                "/ingest/webhook-json",
                n,
                warmup,
                duration,
                &transport,
            ));
            let base = plain
                .iter()
                .find(|p| p["mode"] == "durable" && p["connections"] == n)
                .and_then(|p| p["rps"].as_f64())
                .unwrap_or(0.0);
            rows.push(serde_json::json!({
                "mode": mode, "connections": n,
                "rps": r.rps(), "p50_ms": r.percentile_ms(0.50), "p99_ms": r.percentile_ms(0.99),
                "p999_ms": r.percentile_ms(0.999), "errors": r.errors,
                "plain_rps": base, "ratio_to_plain": r.rps() / base.max(1.0),
            }));
        }
    }
    println!("\n### push over TLS (durable; beside the plain durable row)\n");
    print_table(
        &rows,
        "transport | clients",
        ["plain req/s", "TLS/plain"],
        ["plain_rps", "ratio_to_plain"],
    );
    Ok(rows)
}

/// Prints `rows` as a markdown table: the load columns, then two more.
fn print_table(rows: &[serde_json::Value], first: &str, titles: [&str; 2], keys: [&str; 2]) {
    println!(
        "| {first} | req/s | p50 ms | p99 ms | p99.9 ms | errors | {} | {} |",
        titles[0], titles[1]
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.0} | {:.2} |",
            r["mode"].as_str().unwrap_or(""),
            r["connections"],
            r["rps"].as_f64().unwrap_or(0.0),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["p999_ms"].as_f64().unwrap_or(0.0),
            r["errors"],
            r[keys[0]].as_f64().unwrap_or(0.0),
            r[keys[1]].as_f64().unwrap_or(0.0),
        );
    }
}
