//! `inlet invoke FILE.wasm [--manifest NAME.toml] push|pull ...`: one call
//! of the real component in the real sandbox, with the manifest's grants
//! and injections, storing nothing; the outcome as JSON (events,
//! checkpoint, has-more, reply, error and its class, log lines, outbound
//! requests).

use crate::config::{HostConfig, Manifest};
use crate::event::Event;
use crate::runtime::{CallError, PushRequest, Runtime, RuntimeOptions, Sandbox};
use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Subcommand;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Debug, Subcommand)]
pub enum InvokeCall {
    /// Call `on-push` with a request.
    Push {
        /// The request body (`-` for stdin; default empty).
        #[arg(long)]
        body: Option<PathBuf>,
        /// A request header, `Name: value` (repeatable).
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        #[arg(long, default_value = "POST")]
        method: String,
        /// The path after /ingest/NAME (e.g. `/events`).
        #[arg(long, default_value = "")]
        path: String,
        /// The query string, without `?`.
        #[arg(long, default_value = "")]
        query: String,
    },
    /// Call `pull` from a checkpoint.
    Pull {
        /// The checkpoint to pull from (none: the first pull).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        partition: Option<String>,
        /// Follow has-more like one scheduled run (up to the manifest's
        /// `max_batches_per_run`).
        #[arg(long)]
        all: bool,
    },
    /// Call `partitions`.
    Partitions,
}

/// What the call's log and outbound events said, captured from tracing.
#[derive(Default)]
struct Captured {
    logs: Vec<Value>,
    outbound: Vec<Value>,
}

struct Capture(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Fields(serde_json::Map<String, Value>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let target = event.metadata().target();
        if target != "inlet::guest" && target != "inlet::outbound" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut captured = self.0.lock().expect("capture lock");
        if target == "inlet::guest" {
            let mut line = fields.0;
            line.insert(
                "level".into(),
                event.metadata().level().as_str().to_lowercase().into(),
            );
            line.remove("connector");
            captured.logs.push(Value::Object(line));
        } else {
            let mut f = fields.0;
            f.remove("message");
            let outcome = f.get("outcome").and_then(Value::as_str).unwrap_or("");
            match outcome {
                // The response to the request with its number.
                "answered" | "failed" => {
                    let seq = f.get("seq").cloned();
                    if let Some(req) = captured
                        .outbound
                        .iter_mut()
                        .rev()
                        .find(|r| r.get("seq") == seq.as_ref() && r["outcome"] == "sent")
                    {
                        req["outcome"] = outcome.into();
                        if let Some(s) = f.get("status") {
                            req["status"] = s.clone();
                        }
                        if let Some(e) = f.get("error") {
                            req["error"] = e.clone();
                        }
                    }
                }
                _ => {
                    if let Some(Value::String(names)) = f.get("injected").cloned() {
                        let names: Vec<Value> = names
                            .split(',')
                            .filter(|n| !n.is_empty())
                            .map(Value::from)
                            .collect();
                        f.insert("injected".into(), names.into());
                    }
                    captured.outbound.push(Value::Object(f));
                }
            }
        }
    }
}

fn event_json(e: &Event) -> Value {
    let payload = if e.content_type.as_deref().is_none_or(|c| c.contains("json")) {
        serde_json::from_slice::<Value>(&e.payload).ok()
    } else {
        None
    };
    let mut v = json!({
        "id": e.id,
        "key": e.key,
        "time_ms": e.time_ms,
        "content_type": e.content_type,
        "attributes": e.attributes.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
    });
    match payload {
        Some(p) => v["payload"] = p,
        None => {
            v["payload_base64"] = base64::engine::general_purpose::STANDARD
                .encode(&e.payload)
                .into()
        }
    }
    v
}

fn error_json(err: &CallError) -> Value {
    json!({"class": err.class().as_str(), "message": err.to_string()})
}

/// Runs the call; prints the outcome; `Ok(false)` when the call failed.
pub async fn run(
    file: &Path,
    manifest: Option<&Path>,
    host_config: Option<&Path>,
    call: InvokeCall,
) -> anyhow::Result<bool> {
    let captured = Arc::new(Mutex::new(Captured::default()));
    // The host's own warnings still go to stderr; the connector's lines
    // and requests are captured for the answer.
    let filter = tracing_subscriber::EnvFilter::new(
        "warn,wasmtime_wasi_http=error,inlet::guest=off,inlet::outbound=off",
    );
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(
            Capture(captured.clone()).with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("inlet::guest", tracing::Level::TRACE)
                    .with_target("inlet::outbound", tracing::Level::DEBUG),
            ),
        );
    tracing::subscriber::set_global_default(subscriber)
        .context("cannot install the log capture")?;

    let bytes = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let name = manifest
        .or(Some(file))
        .and_then(|p| p.file_stem())
        .and_then(|s| s.to_str())
        .unwrap_or("connector")
        .to_string();
    let (manifest, manifest_path) = match manifest {
        Some(path) => (Manifest::load(path)?, path.to_path_buf()),
        None => (Manifest::default(), PathBuf::from("-")),
    };
    let runtime = Arc::new(Runtime::new(&RuntimeOptions {
        pooling: false,
        ..Default::default()
    })?);
    let rt = runtime.clone();
    let code = tokio::task::spawn_blocking(move || rt.link(&rt.compile(&bytes)?))
        .await?
        .with_context(|| format!("{}: cannot be loaded", file.display()))?;
    // The host's sandbox defaults (deadlines, limits) from its inlet.toml.
    let defaults = match host_config {
        Some(path) => HostConfig::load(path)?.sandbox,
        None => HostConfig::default().sandbox,
    };
    let sandbox = Arc::new(Sandbox::resolve(
        &name,
        &manifest,
        &defaults,
        &manifest_path,
        Arc::default(),
    )?);
    let descriptor = runtime
        .describe(&code, &sandbox)
        .await
        .with_context(|| format!("{}: describe() failed", file.display()))?;
    let mut out = json!({
        "connector": format!("{}@{}", descriptor.name, descriptor.version),
    });
    let ok = match call {
        InvokeCall::Push {
            body,
            headers,
            method,
            path,
            query,
        } => {
            if !descriptor.push {
                bail!("{} has no push mode (describe() says so)", file.display());
            }
            let body = match body.as_deref() {
                None => Vec::new(),
                Some(p) if p == Path::new("-") => {
                    let mut b = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
                    b
                }
                Some(p) => std::fs::read(p).with_context(|| format!("--body {}", p.display()))?,
            };
            let headers = headers
                .iter()
                .map(|h| {
                    let (k, v) = h
                        .split_once(':')
                        .with_context(|| format!("--header `{h}` is not `Name: value`"))?;
                    let name = http::HeaderName::from_bytes(k.trim().as_bytes())
                        .with_context(|| format!("--header `{h}`: not a header name"))?;
                    Ok((name, v.trim().to_string()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            // As on the host: the credentials the manifest's scheme checks
            // (and Authorization, Cookie) never reach the connector.
            // Nothing is verified here, so a scheme that signs the public
            // URL gets a stand-in.
            let verifier = crate::registry::Verifier::build(
                &manifest.push.auth,
                &manifest_path,
                Some("https://invoke.invalid"),
            )?;
            let (withheld, headers): (Vec<_>, Vec<_>) = headers
                .into_iter()
                .partition(|(name, _)| verifier.is_credential(name));
            out["withheld_headers"] = withheld
                .iter()
                .map(|(n, _)| Value::from(n.as_str()))
                .collect();
            let headers = headers
                .into_iter()
                .map(|(n, v)| (n.as_str().to_string(), v))
                .collect();
            let request = PushRequest {
                method,
                path,
                query,
                headers,
                body,
            };
            out["call"] = "push".into();
            match runtime.on_push(&code, &sandbox, request).await {
                Ok(r) => {
                    out["events"] = r.events.iter().map(event_json).collect();
                    out["reply"] = match &r.reply {
                        Some(reply) => json!({
                            "status": reply.status,
                            "headers": reply.headers,
                            "body": String::from_utf8_lossy(&reply.body),
                        }),
                        None => Value::Null,
                    };
                    true
                }
                Err(err) => {
                    out["error"] = error_json(&err);
                    false
                }
            }
        }
        InvokeCall::Pull {
            since,
            partition,
            all,
        } => {
            if !descriptor.pull {
                bail!("{} has no pull mode (describe() says so)", file.display());
            }
            out["call"] = "pull".into();
            let budget = if all {
                manifest.pull.max_batches_per_run.max(1)
            } else {
                1
            };
            let mut since = since;
            let mut events = Vec::new();
            let mut batches = 0;
            let mut ok = true;
            let started = std::time::Instant::now();
            loop {
                batches += 1;
                match runtime
                    .pull(&code, &sandbox, since.clone(), partition.clone())
                    .await
                {
                    Ok(r) => {
                        events.extend(r.events.iter().map(event_json));
                        out["has_more"] = r.has_more.into();
                        // As a scheduled run: has-more without a new
                        // checkpoint would ask the same again; stop.
                        let stalled =
                            r.has_more && (r.checkpoint.is_none() || r.checkpoint == since);
                        if let Some(cp) = r.checkpoint {
                            since = Some(cp);
                        }
                        out["checkpoint"] = since.clone().into();
                        if stalled {
                            out["stopped"] =
                                "has-more without a new checkpoint: a scheduled run stops here too"
                                    .into();
                            break;
                        }
                        if !r.has_more
                            || batches >= budget
                            || started.elapsed() >= manifest.pull.max_run_time
                        {
                            break;
                        }
                    }
                    Err(err) => {
                        out["error"] = error_json(&err);
                        ok = false;
                        break;
                    }
                }
            }
            out["events"] = events.into();
            out["batches"] = batches.into();
            ok
        }
        InvokeCall::Partitions => {
            out["call"] = "partitions".into();
            match runtime.partitions(&code, &sandbox).await {
                Ok(p) => {
                    out["partitions"] = p.into();
                    true
                }
                Err(err) => {
                    out["error"] = error_json(&err);
                    false
                }
            }
        }
    };
    let captured = std::mem::take(&mut *captured.lock().expect("capture lock"));
    out["ok"] = ok.into();
    out["logs"] = captured.logs.into();
    out["outbound"] = captured.outbound.into();
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ok)
}
