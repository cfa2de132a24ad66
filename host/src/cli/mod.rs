//! The `inlet` command line.

mod dead_letters;
mod invoke;
mod new;

use crate::config::HostConfig;
use crate::runtime::{Runtime, RuntimeOptions, Sandbox};
use crate::{ServeOptions, Server};
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Inlet: a data-ingestion host for sandboxed WebAssembly connectors.
#[derive(Debug, Parser)]
#[command(name = "inlet", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve push and pull for every connector in the plugins directory.
    Serve {
        /// `inlet.toml`; without it the defaults apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen address [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// A separate listener for /v1 and /metrics (`admin_listen`); the
        /// main one then serves /ingest only.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Plugins directory [default: ./plugins.d].
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Data directory [default: ./data].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Acknowledge without flushing to disk. Benchmarks only: a crash
        /// loses acknowledged events.
        #[arg(long)]
        unsafe_no_fsync: bool,
        /// Never use the pooling instance allocator.
        #[arg(long)]
        no_pooling: bool,
        /// Turn epoch interruption off. Benchmarks only (to measure its
        /// cost): a guest that loops then holds a thread until its timeout.
        #[arg(long, hide = true)]
        unsafe_no_epoch_interruption: bool,
    },
    /// Check a connector component: print its descriptor as JSON, or exit
    /// non-zero with the reason it cannot be loaded.
    Check {
        /// The `.wasm` file.
        file: PathBuf,
    },
    /// Run one call of a connector in the real sandbox, with its
    /// manifest's grants and injections, storing nothing; print the
    /// outcome as JSON (exit 1 when the call failed).
    Invoke {
        /// The `.wasm` file.
        file: PathBuf,
        /// Its `NAME.toml` (grants, injections, deadlines, `[config]`).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// The host's `inlet.toml`, for its `[sandbox]` defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        call: invoke::InvokeCall,
    },
    /// Write a new connector crate (outside this checkout): Cargo.toml,
    /// src/lib.rs, tests using inlet_sdk::testing, NAME.toml, README.
    New {
        /// The connector's name: its crate, and its source in /ingest/NAME.
        name: String,
        /// A push connector (the default when neither is given).
        #[arg(long)]
        push: bool,
        /// A pull connector.
        #[arg(long)]
        pull: bool,
        /// Where to create NAME/ [default: the current directory].
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The inlet-sdk crate to depend on by path [default: the checkout
        /// inlet was built from; without it, this is required].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// List, show, replay or discard a source's dead letters on a running
    /// host (pushes its connector failed on).
    DeadLetters {
        /// The host's base URL [env: INLET_URL; default:
        /// http://127.0.0.1:8080]. The admin token is read from
        /// INLET_ADMIN_TOKEN.
        #[arg(long, global = true)]
        url: Option<String>,
        #[command(subcommand)]
        command: dead_letters::DeadLetterCommand,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` reads its config first: `[telemetry]` is part of setting up
    // tracing.
    let mut loaded = None;
    if let Command::Serve {
        config: Some(path), ..
    } = &cli.command
    {
        match HostConfig::load(path) {
            Ok(config) => loaded = Some(config),
            Err(err) => {
                eprintln!("error: {:#}", anyhow::Error::from(err));
                return ExitCode::FAILURE;
            }
        }
    }
    // `inlet invoke` captures the connector's log lines for its answer.
    let mut telemetry = None;
    if !matches!(cli.command, Command::Invoke { .. }) {
        let wanted = loaded.as_ref().and_then(|c| c.telemetry.as_ref());
        match init_tracing(cli.log_format, wanted) {
            Ok(t) => telemetry = t,
            Err(err) => {
                eprintln!("error: {err:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve {
                config: _,
                listen,
                admin_listen,
                plugins,
                data,
                unsafe_no_fsync,
                no_pooling,
                unsafe_no_epoch_interruption,
            } => {
                let mut cfg = loaded.unwrap_or_default();
                if let Some(l) = listen {
                    cfg.listen = l;
                }
                if admin_listen.is_some() {
                    cfg.admin_listen = admin_listen;
                }
                if let Some(p) = plugins {
                    cfg.plugins_dir = p;
                }
                if let Some(d) = data {
                    cfg.data_dir = d;
                }
                let options = ServeOptions {
                    unsafe_no_fsync,
                    runtime: RuntimeOptions {
                        pooling: !no_pooling,
                        epoch_interruption: !unsafe_no_epoch_interruption,
                        ..Default::default()
                    },
                };
                serve(cfg, options).await
            }
            Command::Check { file } => check(&file).await,
            Command::Invoke {
                file,
                manifest,
                config,
                call,
            } => match invoke::run(&file, manifest.as_deref(), config.as_deref(), call).await {
                Ok(true) => Ok(()),
                Ok(false) => std::process::exit(1),
                Err(err) => Err(err),
            },
            Command::New {
                name,
                push,
                pull,
                dir,
                sdk,
            } => new::run(&name, push, pull, &dir, sdk),
            Command::DeadLetters { url, command } => {
                let url = url
                    .or_else(|| std::env::var("INLET_URL").ok().filter(|u| !u.is_empty()))
                    .unwrap_or_else(|| "http://127.0.0.1:8080".into());
                dead_letters::run(url.trim_end_matches('/'), command).await
            }
        }
    });
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: HostConfig, options: ServeOptions) -> anyhow::Result<()> {
    let server = Server::start(config, options).await?;
    // Every handler is installed before the port is announced: a signal
    // sent right after must not hit the default action (which exits).
    let mut stop = StopSignals::install()?;
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(hup) => {
                tokio::spawn(reload_on_sighup(server.registry(), server.tls(), hup));
            }
            Err(err) => {
                tracing::warn!(error = %err, "Cannot install a SIGHUP handler; use POST /v1/reload to reload.");
            }
        }
    }
    // Printed on stdout so scripts (and tests) can find the port.
    let scheme = if server.tls().is_some() {
        "https"
    } else {
        "http"
    };
    println!("listening on {scheme}://{}", server.addr());
    if let Some(admin) = server.admin_addr() {
        println!("admin listening on {scheme}://{admin}");
    }
    stop.next().await;
    tracing::info!("Signal received; a second signal exits at once.");
    tokio::spawn(async move {
        stop.next().await;
        tracing::warn!("Second signal: exiting without draining.");
        std::process::exit(130);
    });
    server.shutdown().await;
    Ok(())
}

/// SIGHUP rescans the plugins directory, like `POST /v1/reload`, and re-reads
/// the TLS certificate.
#[cfg(unix)]
async fn reload_on_sighup(
    registry: Arc<crate::registry::Registry>,
    tls: Option<Arc<crate::server::Tls>>,
    mut hup: tokio::signal::unix::Signal,
) {
    while hup.recv().await.is_some() {
        let changed = registry.scan().await;
        tracing::info!(changed = ?changed, "SIGHUP: plugins directory rescanned.");
        if let Some(tls) = &tls {
            tls.reload();
        }
    }
}

/// SIGTERM and SIGINT, registered when installed (not on first poll).
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn check(file: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let bytes = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let runtime = Arc::new(Runtime::new(&RuntimeOptions {
        pooling: false,
        ..Default::default()
    })?);
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("connector")
        .to_string();
    let rt = runtime.clone();
    let (imports, code) = tokio::task::spawn_blocking(move || {
        let component = rt.compile(&bytes)?;
        anyhow::Ok((rt.imports(&component), rt.link(&component)?))
    })
    .await?
    .with_context(|| format!("{}: cannot be loaded", file.display()))?;
    let sandbox = Arc::new(Sandbox::isolated(&name, &HostConfig::default().sandbox));
    let descriptor = runtime
        .describe(&code, &sandbox)
        .await
        .with_context(|| format!("{}: describe() failed", file.display()))?;
    // The descriptor, plus every import and whether the host grants it.
    let mut out = serde_json::to_value(&descriptor)?;
    out["imports"] = serde_json::to_value(&imports)?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// The log on stderr (its own filter: `RUST_LOG`, else info) and, with
/// `[telemetry]`, the trace exporter beside it.
fn init_tracing(
    format: LogFormat,
    telemetry: Option<&crate::config::TelemetryConfig>,
) -> anyhow::Result<Option<crate::telemetry::Telemetry>> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| {
            EnvFilter::new("info,wasmtime_wasi_http=error,wasmtime=warn,cranelift_codegen=warn")
        })
        // The trace spans are the exporter's, never log lines.
        .add_directive(
            format!("{}=off", crate::telemetry::TARGET)
                .parse()
                .expect("a valid directive"),
        );
    // Colours only on a terminal: a log file or collector gets plain text.
    let log = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter);
    let (traces, telemetry) = match telemetry {
        Some(config) => {
            let (layer, telemetry) = crate::telemetry::Telemetry::start(config)?;
            (Some(layer), Some(telemetry))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(log)
        .with(traces)
        .try_init()?;
    Ok(telemetry)
}
