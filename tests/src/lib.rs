//! Shared helpers for the integration tests: a real host started on port 0
//! with real compiled connectors in a temp directory, an in-process source
//! server on 127.0.0.1, and polling with a deadline (never a blind sleep).

pub mod nats;
pub mod postgres;
pub mod source;

use inlet_host::config::StoreKind;
use inlet_host::{HostConfig, ServeOptions, Server};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Paths of the compiled example connectors and fixtures.
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// A host running in this process on a free port, over a temp directory.
pub struct TestHost {
    pub dir: tempfile::TempDir,
    server: Option<Server>,
    pub base: String,
    /// The admin listener's base URL, when `admin_listen` is set.
    pub admin_base: Option<String>,
    pub client: reqwest::Client,
    config: HostConfig,
    /// The host's own NATS server when the suite runs on JetStream.
    pub nats: Option<nats::NatsServer>,
}

/// The store the shared suites run on: `INLET_TEST_STORE=jetstream` (set
/// by `cargo xtask test` for its second pass) or sled.
pub fn test_store() -> StoreKind {
    match std::env::var("INLET_TEST_STORE").as_deref() {
        Ok("jetstream") => StoreKind::Jetstream,
        _ => StoreKind::Sled,
    }
}

impl TestHost {
    /// Starts a host whose plugins directory holds `connectors`:
    /// (source name, wasm path, optional manifest text).
    pub async fn start(connectors: &[(&str, &str, Option<&str>)]) -> TestHost {
        Self::start_with(connectors, |_| {}).await
    }

    /// Like [`TestHost::start`], with a chance to adjust the config.
    pub async fn start_with(
        connectors: &[(&str, &str, Option<&str>)],
        adjust: impl FnOnce(&mut HostConfig),
    ) -> TestHost {
        // The host's warnings and errors go to the test's captured output,
        // which nextest prints when the test fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "warn,wasmtime_wasi_http=error",
            ))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let plugins = dir.path().join("plugins.d");
        std::fs::create_dir_all(&plugins).unwrap();
        for (name, wasm, manifest) in connectors {
            install(&plugins, name, wasm, *manifest);
        }
        let mut config = HostConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            plugins_dir: plugins,
            data_dir: dir.path().join("data"),
            ..HostConfig::default()
        };
        adjust(&mut config);
        let mut nats = None;
        if config.store.kind == StoreKind::Sled && test_store() == StoreKind::Jetstream {
            let server = nats::NatsServer::start();
            config.store.kind = StoreKind::Jetstream;
            config.store.url = server.url();
            // Long enough that a lease call (bounded by a third of it) never
            // times out on a slow, loaded machine.
            config.store.lease_ttl = Duration::from_secs(10);
            nats = Some(server);
        }
        let server = Server::start(config.clone(), ServeOptions::default())
            .await
            .expect("host starts");
        let base = format!("http://{}", server.addr());
        let admin_base = server.admin_addr().map(|a| format!("http://{a}"));
        TestHost {
            dir,
            server: Some(server),
            base,
            admin_base,
            client: reqwest::Client::new(),
            config,
            nats,
        }
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins.d")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops the host (drain, flush, release the store) and starts a new
    /// one over the same directories.
    pub async fn restart(&mut self) {
        self.stop().await;
        let server = Server::start(self.config.clone(), ServeOptions::default())
            .await
            .expect("host restarts");
        self.base = format!("http://{}", server.addr());
        self.admin_base = server.admin_addr().map(|a| format!("http://{a}"));
        self.server = Some(server);
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json, headers)
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path).await
    }

    /// `METHOD path` without a body: the status and the body as JSON (or
    /// as a JSON string when it is not JSON).
    pub async fn call(&self, method: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .request(method, self.url(path))
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// `GET /v1/connectors/{name}`, which must answer 200.
    pub async fn status(&self, name: &str) -> serde_json::Value {
        let (code, body) = self.get_json(&format!("/v1/connectors/{name}")).await;
        assert_eq!(code, 200, "{body}");
        body
    }

    /// `POST /v1/connectors/{name}/pull`: status and body.
    pub async fn pull_now(&self, name: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url(&format!("/v1/connectors/{name}/pull")))
            .send()
            .await
            .expect("request sent");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// `POST /v1/reload`, which must answer 200.
    pub async fn reload(&self) {
        let r = self
            .client
            .post(self.url("/v1/reload"))
            .send()
            .await
            .expect("request sent");
        assert_eq!(r.status(), 200, "POST /v1/reload");
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let resp = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request sent");
        assert_eq!(resp.status(), 200, "GET /metrics");
        resp.text().await.unwrap()
    }

    /// Every envelope of `source`, in offset order.
    pub async fn events(&self, source: &str) -> Vec<serde_json::Value> {
        // Streams are served by the admin listener when there is one.
        let base = self.admin_base.clone().unwrap_or_else(|| self.url(""));
        read_stream(&self.client, &base, source).await
    }
}

/// Every envelope of `source` on the host at `base`, in offset order, page
/// by page.
async fn read_stream(client: &reqwest::Client, base: &str, source: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let resp = client
            .get(format!(
                "{base}/v1/streams/{source}/events?limit=10000{after}"
            ))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "reading the stream of {source}: {text}");
        let page: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        let Some(last) = page.last() else { break };
        after = format!("&after={}", last["offset"]);
        out.extend(page);
    }
    out
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // Best effort: tests that care call `stop()` themselves.
            server.shutdown_token().cancel();
        }
    }
}

/// Copies `wasm` to `plugins/NAME.wasm` (via a temp name and an atomic
/// rename) and writes the manifest, if any.
pub fn install(plugins: &Path, name: &str, wasm: &str, manifest: Option<&str>) {
    if let Some(m) = manifest {
        std::fs::write(plugins.join(format!("{name}.toml")), m).unwrap();
    }
    let tmp = plugins.join(format!(".{name}.wasm.tmp"));
    std::fs::copy(wasm, &tmp).unwrap();
    std::fs::rename(&tmp, plugins.join(format!("{name}.wasm"))).unwrap();
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with
/// `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// A temporary directory for a [`ChildHost`]: `plugins.d` with `plugins`
/// installed (name, wasm, manifest).
pub fn host_dir(plugins: &[(&str, &str, Option<&str>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plugins.d");
    std::fs::create_dir_all(&p).unwrap();
    for (name, wasm, manifest) in plugins {
        install(&p, name, wasm, *manifest);
    }
    dir
}

/// The real `inlet` binary as a child process, for tests that signal or
/// kill it. Its stderr (the log) goes to `dir/inlet.log`.
pub struct ChildHost {
    pub child: std::process::Child,
    pub base: String,
    pub log: PathBuf,
}

impl ChildHost {
    /// Starts `bin serve --listen 127.0.0.1:0` over `dir/plugins.d` and
    /// `dir/data`, with `extra` arguments and `envs`, and waits for its
    /// "listening on" line. Returns the exit status and log instead when
    /// the process exits before listening.
    pub fn spawn(
        bin: &str,
        dir: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<ChildHost, (std::process::ExitStatus, String)> {
        use std::io::{BufRead, BufReader};
        let log = dir.join(format!(
            "inlet-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--plugins"])
            .arg(dir.join("plugins.d"))
            .arg("--data")
            .arg(dir.join("data"))
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("inlet starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        match inlet_devtools::listening_addr(&line) {
            Some(addr) => Ok(ChildHost {
                child,
                base: format!("http://{addr}"),
                log,
            }),
            None => {
                let status = child.wait().unwrap();
                Err((status, std::fs::read_to_string(&log).unwrap_or_default()))
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Every envelope of `source`, in offset order.
    pub async fn events(&self, source: &str) -> Vec<serde_json::Value> {
        read_stream(&reqwest::Client::new(), &self.base, source).await
    }

    /// `GET /metrics` (no token).
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("request sent")
            .text()
            .await
            .unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChildHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
