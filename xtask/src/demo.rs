//! `cargo xtask demo`: the example connectors served on the sled store,
//! with a small demo source on 127.0.0.1:9000 for `http-poll` to pull.

use crate::{build_plugins, cargo, root};
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Instant;

fn run_demo_source(listener: TcpListener) {
    let started = Instant::now();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            continue;
        }
        // Skip the headers.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let target = request_line.split_whitespace().nth(1).unwrap_or("/");
        let since: usize = target
            .split_once("since=")
            .and_then(|(_, v)| v.split('&').next()?.parse().ok())
            .unwrap_or(0);
        // Three items at start, one more every ten seconds.
        let available = 3 + (started.elapsed().as_secs() / 10) as usize;
        let end = (since + 5).min(available);
        let items: Vec<String> = (since..end)
            .map(|i| {
                format!(r#"{{"id":"demo-{i}","n":{i},"note":"item {i} from the demo source"}}"#)
            })
            .collect();
        let body = format!(
            r#"{{"items":[{}],"next_cursor":"{end}","has_more":{}}}"#,
            items.join(","),
            end < available
        );
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

pub fn run(listen: &str) -> Result<()> {
    let built = build_plugins()?;
    let dir = root().join("plugins.d");
    std::fs::create_dir_all(&dir)?;
    for (name, wasm) in &built {
        if name == "stripe-events" || name == "postgres-table" {
            // Both need a service the demo does not have: stripe-events
            // reconciles against api.stripe.com, postgres-table reads a
            // PostgreSQL table (see their READMEs).
            eprintln!(
                "xtask: not staging {name} (it needs credentials and a service the demo does not run)"
            );
            continue;
        }
        std::fs::copy(wasm, dir.join(format!("{name}.wasm")))?;
        let manifest = root()
            .join("plugins")
            .join(name)
            .join(format!("{name}.toml"));
        if manifest.is_file() {
            let mut text = std::fs::read_to_string(&manifest)?;
            // Demo secrets in files, so the demo needs no environment:
            // `secret_env = "VAR"` and `{ env = "VAR" }` read NAME.secret.
            if let Some(var) = text
                .split("secret_env = \"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_string)
            {
                std::fs::write(dir.join(format!("{name}.secret")), "demo-secret\n")?;
                let file = format!(r#"file = "{name}.secret""#);
                text = text
                    .replace(
                        &format!(r#"secret_env = "{var}""#),
                        &format!("secret_{file}"),
                    )
                    .replace(&format!(r#"env = "{var}""#), &file);
            }
            std::fs::write(dir.join(format!("{name}.toml")), text)?;
        }
    }
    eprintln!(
        "xtask: staged {} connectors in {}",
        built.len(),
        dir.display()
    );
    match TcpListener::bind("127.0.0.1:9000") {
        Ok(listener) => {
            eprintln!("xtask: demo source for http-poll on http://127.0.0.1:9000/items");
            std::thread::spawn(move || run_demo_source(listener));
        }
        Err(err) => eprintln!(
            "xtask: demo source not started (127.0.0.1:9000: {err}); http-poll will back off"
        ),
    }
    crate::run(
        cargo()
            .args([
                "run",
                "-p",
                "inlet-host",
                "--bin",
                "inlet",
                "--",
                "serve",
                "--listen",
                listen,
                "--plugins",
            ])
            .arg(&dir)
            .arg("--data")
            .arg(root().join("data")),
    )
    .context("inlet serve")
}
