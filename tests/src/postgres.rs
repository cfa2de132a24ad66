//! A throwaway PostgreSQL server for the SQL tests: `initdb` in a temp dir,
//! `postgres` on a free 127.0.0.1 port with its unix socket inside that
//! dir, run as `nobody` (postgres refuses to run as root), and stopped on
//! drop. No system service or system directory is touched.
//!
//! The binaries come from Debian's `postgresql` package
//! (`/usr/lib/postgresql/VERSION/bin`); `.ci/run` installs it. Without them
//! [`Postgres::start`] panics saying how to install them: a test that needs
//! a database must fail, not skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The unprivileged account the server runs as.
const NOBODY: u32 = 65534;

/// A running (or stopped, restartable) PostgreSQL server over a temp dir.
pub struct Postgres {
    /// The temp dir: `data/` (the cluster), the socket, `postgres.log`.
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// The password of the `postgres` user (scram-sha-256 over TCP).
    pub password: String,
    child: Option<Child>,
}

impl Postgres {
    /// Creates a cluster and starts the server; waits until it accepts
    /// connections.
    pub async fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        let password = "inlet-test-secret".to_string();
        std::fs::write(dir.path().join("pwfile"), &password).unwrap();
        std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
        std::os::unix::fs::chown(dir.path().join("pwfile"), Some(NOBODY), Some(NOBODY)).unwrap();
        let out = as_nobody(&bin.join("initdb"))
            .current_dir(dir.path())
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-locale",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", dir.path().join("pwfile").display()))
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut pg = Postgres {
            dir,
            bin,
            port,
            password,
            child: None,
        };
        pg.resume().await;
        pg
    }

    /// The connection URL with the right password.
    pub fn url(&self) -> String {
        self.url_with_password(&self.password)
    }

    /// The connection URL with `password`.
    pub fn url_with_password(&self, password: &str) -> String {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// A client connection (its driver runs on the current runtime).
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connecting to the test postgres");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Stops the server (fast shutdown: sessions are cut) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "-INT");
            wait_or_kill(&mut child);
        }
    }

    /// Starts the server again on the same port and data, and waits until
    /// it accepts connections.
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).unwrap();
        let child = as_nobody(&self.bin.join("postgres"))
            .current_dir(self.dir.path())
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting postgres");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut pause = Duration::from_millis(10);
        loop {
            match tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await {
                Ok(_) => return,
                Err(e) => {
                    let exited = self
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten());
                    assert!(
                        exited.is_none() && tokio::time::Instant::now() < deadline,
                        "postgres did not start ({e}; exit: {exited:?}); its log:\n{}",
                        self.log()
                    );
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the postmaster ends its backends too.
            signal(&child, "-QUIT");
            wait_or_kill(&mut child);
        }
    }
}

/// The newest `/usr/lib/postgresql/*/bin` holding `initdb`; panics with the
/// fix when there is none.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "the PostgreSQL server binaries are not installed (no /usr/lib/postgresql/*/bin/initdb); \
             run `.ci/run`, or `apt-get install postgresql`, then run the tests again"
        ),
    }
}

/// `program` run as `nobody` (setpriv execs it, so the child is the server
/// itself and signals reach it).
fn as_nobody(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "--",
    ])
    .arg(program)
    .env_remove("PGDATA")
    .env("LC_ALL", "C");
    cmd
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
}

fn wait_or_kill(child: &mut Child) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
