//! `cargo xtask`: project automation.
//!
//! - `plugins`: build the example connectors into `target/plugins/NAME.wasm`
//! - `demo`: build, stage `./plugins.d` and run `inlet serve` with a demo source
//! - `test`: the whole suite (fmt, clippy, unit, integration, doc tests);
//!   `test --slow [--runs N]`: the integration suite on one core beside a
//!   CPU burner, as on a machine a third as fast
//! - `bench`: the benchmark harness (release build)
//! - `deps`: the module graph of `host/src`; fails on a circular import

mod bench;
mod crash;
mod demo;
mod deps;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the example connectors into target/plugins/NAME.wasm.
    Plugins,
    /// Build everything, stage ./plugins.d and serve on 127.0.0.1:8080.
    Demo {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Run the whole test suite: fmt, clippy, unit, integration and doc tests.
    Test {
        /// Run only the integration suite, as on a machine a third as fast:
        /// pinned to one core (`taskset -c 0`) beside a CPU burner on that
        /// core, two tests at a time.
        #[arg(long)]
        slow: bool,
        /// With --slow: how many times to run it (stops at the first failure).
        #[arg(long, default_value_t = 1, requires = "slow")]
        runs: u32,
    },
    /// Kill -9 the host under push load, restart, and check that every
    /// acknowledged event is stored exactly once.
    CrashTest {
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Print the dependency graph between the top-level modules of host/src
    /// and fail if it has a cycle (see ARCHITECTURE.md).
    Deps,
    /// Run benchmarks (release build); see BENCHMARKS.md.
    Bench {
        /// push | pull | call | reload | memory | scale | peers | all
        #[arg(default_value = "all")]
        which: String,
        /// A few seconds per benchmark: checks the harness works.
        #[arg(long)]
        smoke: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Plugins => {
            build_plugins()?;
        }
        Cmd::Demo { listen } => demo::run(&listen)?,
        Cmd::Test { slow: false, .. } => test()?,
        Cmd::Test { slow: true, runs } => slow_test(runs)?,
        Cmd::CrashTest { rounds } => crash::run(rounds)?,
        Cmd::Bench { which, smoke } => bench::run(&which, smoke)?,
        Cmd::Deps => deps::run()?,
    }
    Ok(())
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

pub(crate) fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Makes sure the wasm32-wasip2 target is installed.
pub(crate) fn ensure_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root())
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2") =>
        {
            Ok(())
        }
        Ok(_) => run(Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .current_dir(root())),
        Err(_) => {
            eprintln!("xtask: rustup not found; assuming the wasm32-wasip2 target is installed");
            Ok(())
        }
    }
}

/// Makes sure the PostgreSQL server binaries are installed: the SQL tests
/// start their own throwaway server from them (no system service is used).
/// Installs Debian's `postgresql` package when missing and apt-get can.
pub(crate) fn ensure_postgres() -> Result<()> {
    let installed = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.flatten()
                .any(|d| d.path().join("bin/initdb").is_file())
        })
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    apt_install(
        "postgresql",
        "PostgreSQL's server binaries, for the SQL tests",
    )
}

/// `nats-server` (JetStream) for the scale-out tests and the shared suite's
/// JetStream pass.
pub(crate) fn ensure_nats() -> Result<()> {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("nats-server").is_file()));
    if on_path || Path::new("/usr/sbin/nats-server").is_file() {
        return Ok(());
    }
    apt_install(
        "nats-server",
        "NATS with JetStream, for the scale-out tests",
    )
}

/// Chromium and its WebDriver (Debian's `chromium`, `chromium-driver`) for
/// the console's browser tests.
pub(crate) fn ensure_chromium() -> Result<()> {
    let have = |p: &str| Path::new(p).is_file();
    if have("/usr/bin/chromium") && have("/usr/bin/chromedriver") {
        return Ok(());
    }
    apt_install(
        "chromium chromium-driver",
        "headless Chromium and chromedriver, for the console's browser tests",
    )
}

pub(crate) fn apt_install(package: &str, why: &str) -> Result<()> {
    eprintln!("xtask: installing the Debian package `{package}`: {why}");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let mut install = vec!["install", "-y", "-qq"];
    install.extend(package.split(' '));
    match apt(&["update", "-qq"]).and_then(|_| apt(&install)) {
        Ok(status) if status.success() => Ok(()),
        other => bail!(
            "`{package}` is not installed and `apt-get install {package}` did not work ({other:?}); install it ({why}) and run again"
        ),
    }
}

/// The debug `inlet` binary: the one `cargo xtask test` names in
/// `INLET_BIN` (built by its test pass, with the workspace's features), or
/// `cargo build -p inlet-host --bin inlet`. Building the host alone
/// resolves other features than the workspace's test build does, which
/// recompiles some sixty crates on a cold machine (about four minutes).
pub(crate) fn debug_inlet() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("INLET_BIN").map(PathBuf::from) {
        if bin.is_file() {
            return Ok(bin);
        }
        bail!("INLET_BIN names {}, which is not a file", bin.display());
    }
    run(cargo().args(["build", "-p", "inlet-host", "--bin", "inlet"]))?;
    Ok(target_dir().join("debug").join("inlet"))
}

/// The executable of the example `name` as `cargo test --workspace`
/// built it (nothing is compiled when the test pass ran before), if cargo
/// reports one.
fn built_example(name: &str) -> Result<Option<PathBuf>> {
    let out = cargo()
        .args([
            "test",
            "--workspace",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("`cargo test --workspace --no-run` failed");
    }
    let found = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "example"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from));
    Ok(found)
}

/// Builds the example connectors under `plugins/` (with the same command as
/// the tests' build script, so settings meant for a native build such as
/// `RUSTFLAGS` never reach the wasm build); returns (name, path) of each
/// `.wasm`.
pub(crate) fn build_plugins() -> Result<Vec<(String, PathBuf)>> {
    ensure_target()?;
    let names = inlet_devtools::crates_in(&root(), "plugins");
    let wasm_dir = target_dir().join("wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(&mut inlet_devtools::wasm_build(
        &cargo,
        &root(),
        &wasm_dir,
        &names,
    ))?;
    let out = target_dir().join("plugins");
    std::fs::create_dir_all(&out)?;
    let mut built = Vec::new();
    for n in names {
        let from = inlet_devtools::built_wasm(&wasm_dir, &n);
        let to = out.join(format!("{n}.wasm"));
        std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        eprintln!("xtask: built {}", to.display());
        built.push((n, to));
    }
    Ok(built)
}

/// Integration test binaries that run on both stores.
const SHARED_SUITE: &[&str] = &[
    "push",
    "push_auth",
    "push_limits",
    "pull",
    "pull_engine",
    "reload",
    "sandbox",
    "ops",
    "postgres",
    "dead_letters",
];

fn test() -> Result<()> {
    ensure_target()?;
    ensure_postgres()?;
    ensure_nats()?;
    ensure_chromium()?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // No circular imports between the host's top-level modules.
    deps::run()?;
    let has_nextest = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut passed = if has_nextest {
        run_counting(cargo().args(["nextest", "run", "--workspace", "--no-fail-fast"]))?
    } else {
        run_counting(cargo().args(["test", "--workspace", "--no-fail-fast"]))?
    };
    // The shared suite again, every host on its own nats-server (JetStream
    // store): the same push, pull, reload, sandbox and operations tests.
    let mut shared = cargo();
    shared.env("INLET_TEST_STORE", "jetstream");
    if has_nextest {
        // Selected from `--workspace` by a filter, not with `-p`: the same
        // package selection as the pass above resolves the same features,
        // so nothing is compiled again (with `-p inlet-tests` it was two
        // minutes of a cold run).
        let binaries: Vec<String> = SHARED_SUITE
            .iter()
            .map(|s| format!("binary_id(=inlet-tests::{s})"))
            .collect();
        shared.args(["nextest", "run", "--workspace", "--no-fail-fast", "-E"]);
        shared.arg(binaries.join(" | "));
    } else {
        shared.args(["test", "-p", "inlet-tests", "--no-fail-fast"]);
        for suite in SHARED_SUITE {
            shared.args(["--test", suite]);
        }
    }
    passed += run_counting(&mut shared)?;
    passed += run_counting(cargo().args(["test", "--workspace", "--doc"]))?;
    // The SDK builds alone, as a connector outside the checkout gets it
    // (its own WIT copy, nothing it cannot resolve from crates.io).
    run(cargo().args(["package", "-p", "inlet-sdk", "--allow-dirty"]))?;
    // The crash test and the bench smoke use the binary the test pass
    // built (the integration tests' `inlet`: the same CLI, with fail points
    // compiled in and never configured), instead of building another.
    let bin = target_dir().join("debug").join("inlet");
    run(cargo()
        .env("INLET_BIN", &bin)
        .args(["xtask", "crash-test", "--rounds", "3"]))?;
    let mut smoke = cargo();
    smoke.env("INLET_BIN", &bin);
    // `cargo test` builds the examples too; `call_bench` run from it is
    // the one the test pass compiled (`cargo run -p inlet-host` would
    // compile the host again with its own features: two minutes cold).
    if let Some(call_bench) = built_example("call_bench")? {
        smoke.env("CALL_BENCH_BIN", call_bench);
    }
    run(smoke.args(["xtask", "bench", "--smoke"]))?;
    // One closing line for whoever reads the log: every suite above passed.
    println!("xtask: {passed} passed, 0 failed");
    Ok(())
}

/// The integration suite as on a slow machine: every test process pinned to
/// core 0, which a busy loop shares, with two tests at a time. Each run's
/// time is printed; the first failure stops.
fn slow_test(runs: u32) -> Result<()> {
    ensure_target()?;
    ensure_postgres()?;
    ensure_nats()?;
    let has_nextest = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_nextest {
        bail!("--slow needs cargo-nextest (cargo install cargo-nextest --locked)");
    }
    // Build first, at full speed: the slow part is the tests, not rustc.
    run(cargo().args(["nextest", "run", "-p", "inlet-tests", "--no-run"]))?;
    let _burner = Burner::start()?;
    let mut times = Vec::new();
    for i in 1..=runs {
        let started = std::time::Instant::now();
        let mut cmd = Command::new("taskset");
        cmd.current_dir(root())
            .args(["-c", "0"])
            .arg(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "nextest",
                "run",
                "-p",
                "inlet-tests",
                "--no-fail-fast",
                "--test-threads",
                "2",
            ]);
        let passed = run_counting(&mut cmd)
            .with_context(|| format!("slow run {i} of {runs} failed (earlier runs: {times:?})"))?;
        let took = started.elapsed();
        eprintln!("xtask: slow run {i} of {runs}: {passed} passed in {took:.0?}");
        times.push(took);
    }
    println!(
        "xtask: slow mode, {runs} run(s) passed; times: {}",
        times
            .iter()
            .map(|t| format!("{:.0}s", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// A busy loop pinned to core 0, killed when dropped.
struct Burner(std::process::Child);

impl Burner {
    fn start() -> Result<Self> {
        let child = Command::new("taskset")
            .args(["-c", "0", "sh", "-c", "while :; do :; done"])
            .spawn()
            .context("starting the CPU burner (taskset from util-linux)")?;
        Ok(Burner(child))
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` like [`run`], forwarding its output, and returns how many
/// tests its runner reported as passed (nextest's `Summary` line, or the
/// sum of libtest's `test result:` lines).
fn run_counting(cmd: &mut Command) -> Result<u64> {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    eprintln!("xtask: running {cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let scan = |reader: Box<dyn std::io::Read + Send>, to_stderr: bool| {
        std::thread::spawn(move || {
            let mut passed = 0u64;
            let mut nextest = None;
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if to_stderr {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
                let count = |s: &str| {
                    s.trim()
                        .split(' ')
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                };
                if let Some(rest) = line.split("tests run: ").nth(1) {
                    nextest = count(rest);
                } else if let Some(rest) = line.strip_prefix("test result: ok. ") {
                    passed += count(rest).unwrap_or(0);
                }
            }
            nextest.unwrap_or(passed)
        })
    };
    let out = scan(Box::new(child.stdout.take().expect("piped")), false);
    let err = scan(Box::new(child.stderr.take().expect("piped")), true);
    let status = child.wait()?;
    let counted = out.join().unwrap_or(0).max(err.join().unwrap_or(0));
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(counted)
}
