//! The pull engine end to end: backoff through an outage, a crash between a
//! pull and its commit, parallel partitions, cursor boundaries, the outbound
//! sandbox (injected secrets, redirects), cron schedules and hybrid
//! push + pull reconciliation. Sources are in-process servers on 127.0.0.1;
//! every wait polls with a deadline.

use futures::FutureExt as _;
use hmac::{Hmac, Mac};
use inlet_tests::source::{Answer, Seen, SourceServer};
use inlet_tests::{TestHost, eventually, plugins};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

async fn checkpoint(host: &TestHost, name: &str, partition: Option<&str>) -> Option<String> {
    let q = partition
        .map(|p| format!("?partition={p}"))
        .unwrap_or_default();
    let (status, cp) = host
        .get_json(&format!("/v1/connectors/{name}/checkpoint{q}"))
        .await;
    (status == 200).then(|| cp["value"].as_str().unwrap().to_string())
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn assert_unique(ids: &[String]) {
    let set: HashSet<_> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "an id was stored twice: {ids:?}");
}

/// The `http-poll` page for items `since..` (at most `page`, of `available`).
fn page_of(seen: &Seen, page: usize, available: usize) -> Answer {
    let start: usize = seen.param("since").map(|s| s.parse().unwrap()).unwrap_or(0);
    let end = (start + page).min(available).max(start);
    let items: Vec<_> = (start..end)
        .map(|i| json!({"id": format!("item-{i}"), "n": i}))
        .collect();
    Answer::json(
        200,
        json!({"items": items, "next_cursor": end.to_string(), "has_more": end < available}),
    )
}

type AsyncHandler = Arc<dyn Fn(Seen) -> futures::future::BoxFuture<'static, Answer> + Send + Sync>;

fn boxed(h: &AsyncHandler) -> impl Fn(Seen) -> futures::future::BoxFuture<'static, Answer> + use<> {
    let h = h.clone();
    move |s| h(s)
}

#[tokio::test]
async fn outage_backs_off_and_recovers_without_loss_or_duplicates() {
    const UP: u8 = 0;
    const DOWN: u8 = 1;
    const RATE_LIMIT_ONCE: u8 = 2;
    let mode = Arc::new(AtomicU8::new(UP));
    let available = Arc::new(AtomicUsize::new(30));
    let handler: AsyncHandler = {
        let (mode, available) = (mode.clone(), available.clone());
        Arc::new(move |seen: Seen| {
            let answer = match mode.load(Ordering::SeqCst) {
                DOWN => Answer::json(503, json!({"error": "maintenance"})),
                RATE_LIMIT_ONCE => {
                    mode.store(UP, Ordering::SeqCst);
                    let mut a = Answer::json(429, json!({"error": "slow down"}));
                    a.headers.push(("retry-after".into(), "1".into()));
                    a
                }
                _ => page_of(&seen, 10, available.load(Ordering::SeqCst)),
            };
            async move { answer }.boxed()
        })
    };
    let source = SourceServer::start_async(boxed(&handler)).await;
    let port = source.addr.port();
    let manifest = format!(
        r#"
[pull]
every = "50ms"
retry = {{ initial = "50ms", max = "200ms" }}
[sandbox]
allowed_hosts = ["127.0.0.1:{port}"]
[config]
url = "http://127.0.0.1:{port}/items"
"#
    );
    let host = TestHost::start(&[("feed", plugins::HTTP_POLL, Some(&manifest))]).await;

    // Pages: 30 items in three has-more batches.
    eventually(WAIT, "30 events", || async {
        (host.events("feed").await.len() == 30).then_some(())
    })
    .await;
    assert_eq!(checkpoint(&host, "feed", None).await.as_deref(), Some("30"));

    // Down with 503 while 15 more items wait at the source.
    mode.store(DOWN, Ordering::SeqCst);
    available.store(45, Ordering::SeqCst);
    let st = eventually(WAIT, "three failures in a row, backing off", || async {
        let st = host.status("feed").await;
        (st["pull"]["consecutive_failures"].as_u64() >= Some(3)).then_some(st)
    })
    .await;
    assert_eq!(st["pull"]["state"], "backoff", "{st}");
    assert!(
        st["pull"]["last_error"].as_str().unwrap().contains("503"),
        "{st}"
    );
    assert!(st["pull"]["next_pull_ms"].as_u64().is_some(), "{st}");
    let metrics = host.metrics().await;
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("inlet_pull_consecutive_failures{source=\"feed\"} "))
        .expect("the failure gauge is exported")
        .parse()
        .unwrap();
    assert!(failures >= 3, "{metrics}");
    assert!(
        metrics.contains("inlet_pull_next_attempt_timestamp_seconds{source=\"feed\"}"),
        "{metrics}"
    );
    assert_eq!(checkpoint(&host, "feed", None).await.as_deref(), Some("30"));

    // Gone: connections refused.
    let addr = source.addr;
    let before_refused = source.requests();
    drop(source);
    let f0 = host.status("feed").await["pull"]["consecutive_failures"]
        .as_u64()
        .unwrap();
    let st = eventually(WAIT, "two refused pulls", || async {
        let st = host.status("feed").await;
        (st["pull"]["consecutive_failures"].as_u64() >= Some(f0 + 2)).then_some(st)
    })
    .await;
    assert_eq!(st["pull"]["state"], "backoff", "{st}");
    assert!(
        !st["pull"]["last_error"].as_str().unwrap().contains("503"),
        "the error is now the connection: {st}"
    );
    assert_eq!(checkpoint(&host, "feed", None).await.as_deref(), Some("30"));

    // Back, but the first answer is 429 with Retry-After: 1.
    mode.store(RATE_LIMIT_ONCE, Ordering::SeqCst);
    let source = SourceServer::start_async_on(addr, boxed(&handler)).await;
    let events = eventually(WAIT, "45 events after the outage", || async {
        let e = host.events("feed").await;
        (e.len() >= 45).then_some(e)
    })
    .await;
    let got = ids(&events);
    assert_unique(&got);
    assert_eq!(
        got,
        (0..45).map(|i| format!("item-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(checkpoint(&host, "feed", None).await.as_deref(), Some("45"));
    let st = eventually(WAIT, "state ok again", || async {
        let st = host.status("feed").await;
        (st["pull"]["state"] == "ok").then_some(st)
    })
    .await;
    assert_eq!(st["pull"]["consecutive_failures"], 0, "{st}");

    // The source never saw the cursor go backwards.
    let after = source.requests();
    let cursors: Vec<usize> = before_refused
        .iter()
        .chain(&after)
        .map(|s| s.param("since").map(|c| c.parse().unwrap()).unwrap_or(0))
        .collect();
    assert!(
        cursors.windows(2).all(|w| w[0] <= w[1]),
        "checkpoint monotonic: {cursors:?}"
    );
    // The retry after the 429 waited at least the second it asked for.
    let gap = after[1].at.duration_since(after[0].at);
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
}

/// `inlet serve` as a child process on a free port.
struct Child {
    process: std::process::Child,
    base: String,
}

impl Child {
    fn start(dir: &std::path::Path) -> Child {
        use std::io::BufRead as _;
        let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_inlet"))
            .args(["serve", "--listen", "127.0.0.1:0", "--plugins"])
            .arg(dir.join("plugins.d"))
            .arg("--data")
            .arg(dir.join("data"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(dir.join("inlet.log")).unwrap())
            .spawn()
            .expect("inlet starts");
        let mut line = String::new();
        std::io::BufReader::new(process.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = format!(
            "http://{}",
            inlet_devtools::listening_addr(&line).unwrap_or_else(|| panic!("first line: {line:?}"))
        );
        Child { process, base }
    }

    fn kill_9(&mut self) {
        self.process.kill().unwrap(); // SIGKILL on Unix
        self.process.wait().unwrap();
    }

    async fn events(&self, client: &reqwest::Client) -> Vec<Value> {
        let text = client
            .get(format!("{}/v1/streams/feed/events?limit=10000", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn checkpoint(&self, client: &reqwest::Client) -> Option<String> {
        let r = client
            .get(format!("{}/v1/connectors/feed/checkpoint", self.base))
            .send()
            .await
            .unwrap();
        if r.status() != 200 {
            return None;
        }
        let v: Value = r.json().await.unwrap();
        v["value"].as_str().map(str::to_string)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test]
async fn kill_9_between_a_pull_and_its_commit_loses_and_duplicates_nothing() {
    // Pages of 5 of 15 items; the page after the first blocks until released.
    let (release, released) = tokio::sync::watch::channel(false);
    let source = SourceServer::start_async(move |seen: Seen| {
        let mut released = released.clone();
        async move {
            if seen.param("since").as_deref() == Some("5") {
                let _ = released.wait_for(|r| *r).await;
            }
            page_of(&seen, 5, 15)
        }
        .boxed()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "[pull]\nevery = \"1h\"\n[sandbox]\nallowed_hosts = [\"127.0.0.1:{p}\"]\n[config]\nurl = \"http://127.0.0.1:{p}/items\"\n",
        p = source.addr.port()
    );
    std::fs::create_dir_all(dir.path().join("plugins.d")).unwrap();
    inlet_tests::install(
        &dir.path().join("plugins.d"),
        "feed",
        plugins::HTTP_POLL,
        Some(&manifest),
    );
    let client = reqwest::Client::new();

    let mut child = Child::start(dir.path());
    // The first page is committed; the second pull is in flight.
    eventually(WAIT, "the second page requested", || async {
        source
            .requests()
            .iter()
            .any(|s| s.param("since").as_deref() == Some("5"))
            .then_some(())
    })
    .await;
    assert_eq!(child.checkpoint(&client).await.as_deref(), Some("5"));
    assert_eq!(child.events(&client).await.len(), 5);
    child.kill_9();
    release.send(true).unwrap();

    let child = Child::start(dir.path());
    let events = eventually(WAIT, "15 events after the restart", || async {
        let e = child.events(&client).await;
        (e.len() >= 15).then_some(e)
    })
    .await;
    let got = ids(&events);
    assert_unique(&got);
    assert_eq!(
        got,
        (0..15).map(|i| format!("item-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(child.checkpoint(&client).await.as_deref(), Some("15"));
    let resumed = source
        .requests()
        .iter()
        .filter(|s| s.param("since").as_deref() == Some("5"))
        .count();
    assert_eq!(resumed, 2, "the interrupted page was asked again, once");
    assert!(
        source
            .requests()
            .iter()
            .filter(|s| s.param("since").is_none())
            .count()
            == 1,
        "the restart resumed from the checkpoint, not from the start"
    );
}

/// Concurrency seen by a source: in flight now and at most, overall and
/// per partition.
#[derive(Default)]
struct Concurrency {
    now: usize,
    max: usize,
    per_partition: BTreeMap<String, (usize, usize)>,
}

#[tokio::test]
async fn partitions_pull_up_to_max_parallel_and_never_overlap_themselves() {
    let seen = Arc::new(Mutex::new(Concurrency::default()));
    let s2 = seen.clone();
    let source = SourceServer::start_async(move |req: Seen| {
        let seen = s2.clone();
        async move {
            let p = req.param("partition").unwrap_or_default();
            {
                let mut c = seen.lock().unwrap();
                c.now += 1;
                c.max = c.max.max(c.now);
                let e = c.per_partition.entry(p.clone()).or_default();
                e.0 += 1;
                e.1 = e.1.max(e.0);
            }
            // The source's latency: a request waits (up to 500 ms) for a
            // second one to be in flight, so parallel partitions overlap
            // however slowly the machine starts them.
            let arrived = Instant::now();
            while seen.lock().unwrap().now < 2 && arrived.elapsed() < Duration::from_millis(500) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let start: usize = req.param("since").map(|s| s.parse().unwrap()).unwrap_or(0);
            let end = (start + 2).min(6);
            let items: Vec<_> = (start..end)
                .map(|i| json!({"id": format!("{p}-{i}")}))
                .collect();
            {
                let mut c = seen.lock().unwrap();
                c.now -= 1;
                c.per_partition.get_mut(&p).unwrap().0 -= 1;
            }
            Answer::json(
                200,
                json!({"items": items, "next_cursor": end.to_string(), "has_more": end < 6}),
            )
        }
        .boxed()
    })
    .await;
    let port = source.addr.port();
    let manifest = format!(
        r#"
[pull]
every = "1h"
max_parallel = 2
[sandbox]
allowed_hosts = ["127.0.0.1:{port}"]
[config]
url = "http://127.0.0.1:{port}/items"
partitions = "a,b,c,d"
"#
    );
    let host = TestHost::start(&[("parts", plugins::PARTITIONED_POLL, Some(&manifest))]).await;
    // Two manual runs beside the scheduled one.
    let (r1, r2) = tokio::join!(host.pull_now("parts"), host.pull_now("parts"));
    assert_eq!(r1.0, 200, "{r1:?}");
    assert_eq!(r2.0, 200, "{r2:?}");
    let events = eventually(WAIT, "24 events", || async {
        let e = host.events("parts").await;
        (e.len() >= 24).then_some(e)
    })
    .await;
    let got = ids(&events);
    assert_unique(&got);
    assert_eq!(got.len(), 24);
    for e in &events {
        assert!(
            e["id"]
                .as_str()
                .unwrap()
                .starts_with(e["key"].as_str().unwrap()),
            "{e}"
        );
    }
    for p in ["a", "b", "c", "d"] {
        assert_eq!(
            checkpoint(&host, "parts", Some(p)).await.as_deref(),
            Some("6")
        );
    }
    let (_, run) = host.pull_now("parts").await;
    assert_eq!(run["run"]["partitions"], 4, "{run}");
    assert_eq!(run["run"]["events"], 0, "{run}");

    let c = seen.lock().unwrap();
    assert!(c.max <= 2, "{} partitions in flight at once", c.max);
    assert_eq!(c.max, 2, "partitions were pulled in parallel");
    for (p, (_, max)) in &c.per_partition {
        assert_eq!(*max, 1, "partition {p} was pulled twice at once");
    }
    assert_eq!(c.per_partition.len(), 4);
}

#[tokio::test]
async fn rows_sharing_the_boundary_timestamp_are_stored_once() {
    const T: &str = "2024-05-01T12:00:00Z";
    let rows: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(
        (0..3)
            .map(|i| (format!("2024-05-01T11:0{i}:00Z"), format!("early-{i}")))
            .chain((0..50).map(|i| (T.to_string(), format!("row-{i:02}"))))
            .collect(),
    ));
    let r2 = rows.clone();
    let source = SourceServer::start(move |seen| {
        let limit: usize = seen.param("limit").unwrap().parse().unwrap();
        let from = (
            seen.param("updated_at").unwrap_or_default(),
            seen.param("id").unwrap_or_default(),
        );
        let mut rows = r2.lock().unwrap().clone();
        rows.sort();
        let page: Vec<_> = rows
            .into_iter()
            .filter(|r| *r >= from)
            .take(limit)
            .map(|(t, id)| json!({"id": id, "updated_at": t}))
            .collect();
        Answer::json(200, json!({ "rows": page }))
    })
    .await;
    let port = source.addr.port();
    let manifest = format!(
        "[pull]\nevery = \"1h\"\n[sandbox]\nallowed_hosts = [\"127.0.0.1:{port}\"]\n[config]\nurl = \"http://127.0.0.1:{port}/rows\"\nlimit = 7\n"
    );
    let host = TestHost::start(&[("rows", plugins::CURSOR_ROWS, Some(&manifest))]).await;
    let events = eventually(WAIT, "53 rows", || async {
        let e = host.events("rows").await;
        (e.len() >= 53).then_some(e)
    })
    .await;
    let got = ids(&events);
    assert_unique(&got);
    assert_eq!(got.len(), 53);
    assert!(
        source.requests().len() >= 9,
        "the 50 rows at one timestamp were split across pulls"
    );
    let (_, run) = host.pull_now("rows").await;
    assert_eq!(run["run"]["events"], 0, "{run}");
    assert_eq!(
        run["run"]["duplicates"], 1,
        "the boundary row overlaps: {run}"
    );

    // Late rows at the boundary timestamp, then later ones.
    rows.lock().unwrap().extend([
        (T.to_string(), "row-50".to_string()),
        (T.to_string(), "row-51".to_string()),
        ("2024-05-01T12:00:01Z".to_string(), "late-0".to_string()),
    ]);
    let (status, run) = host.pull_now("rows").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["run"]["events"], 3, "{run}");
    let got = ids(&host.events("rows").await);
    assert_unique(&got);
    assert_eq!(got.len(), 56);
}

const SECRET: &str = "s3cr3t-inject-value-42";

#[tokio::test]
async fn injected_secret_reaches_the_source_but_never_the_guest() {
    let source = SourceServer::start(|_| Answer::json(200, json!({"ok": true}))).await;
    let port = source.addr.port();
    let manifest = format!(
        r#"
[pull]
every = "1h"
[sandbox]
allowed_hosts = ["127.0.0.1:{port}"]
[[sandbox.inject]]
host = "127.0.0.1:{port}"
header = "Authorization"
value_file = "probe.token"
format = "Bearer {{}}"
[config]
url = "http://127.0.0.1:{port}/data"
token = "the guest may read this, it is no secret"
"#
    );
    let host = TestHost::start(&[]).await;
    std::fs::write(host.plugins_dir().join("probe.token"), SECRET).unwrap();
    inlet_tests::install(
        &host.plugins_dir(),
        "probe",
        plugins::OUTBOUND_PROBE,
        Some(&manifest),
    );
    host.reload().await;
    let (status, run) = host.pull_now("probe").await;
    assert_eq!(status, 200, "{run}");

    let auth: Vec<_> = source
        .requests()
        .iter()
        .map(|s| s.header("authorization").map(str::to_string))
        .collect();
    assert!(!auth.is_empty());
    assert!(
        auth.iter()
            .all(|a| a.as_deref() == Some(&format!("Bearer {SECRET}"))),
        "{auth:?}"
    );

    // What the guest saw, it stored (and logged): no trace of the secret.
    let events = host.events("probe").await;
    assert!(!events.is_empty());
    let seen = &events[0]["payload"];
    assert_eq!(seen["status"], 200, "{seen}");
    assert_eq!(
        seen["config"]["token"],
        "the guest may read this, it is no secret"
    );
    let stream = host
        .client
        .get(host.url("/v1/streams/probe/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!stream.contains(SECRET), "{stream}");
    for path in ["/v1/connectors/probe", "/v1/connectors", "/metrics"] {
        let text = host
            .client
            .get(host.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!text.contains(SECRET), "{path}: {text}");
    }
}

#[tokio::test]
async fn redirects_are_checked_hop_by_hop() {
    // `outside` is not allowed; `other` is allowed but gets no injected header.
    let outside = SourceServer::start(|_| Answer::json(200, json!({"leaked": true}))).await;
    let other = SourceServer::start(|_| Answer::json(200, json!({"hop": "other"}))).await;
    let (outside_port, other_port) = (outside.addr.port(), other.addr.port());
    let start = SourceServer::start(move |seen| {
        let target = match seen.path.as_str() {
            "/to-outside" => format!("http://127.0.0.1:{outside_port}/x"),
            _ => format!("http://127.0.0.1:{other_port}/y"),
        };
        Answer {
            status: 302,
            headers: vec![("location".into(), target)],
            body: Vec::new(),
        }
    })
    .await;
    let port = start.addr.port();
    let manifest = |path: &str| {
        format!(
            r#"
[pull]
every = "1h"
[sandbox]
allowed_hosts = ["127.0.0.1:{port}", "127.0.0.1:{other_port}"]
[[sandbox.inject]]
host = "127.0.0.1:{port}"
header = "Authorization"
value_file = "probe.token"
format = "Bearer {{}}"
[config]
url = "http://127.0.0.1:{port}{path}"
"#
        )
    };
    let host = TestHost::start(&[]).await;
    std::fs::write(host.plugins_dir().join("probe.token"), SECRET).unwrap();
    let (denied, hop) = (manifest("/to-outside"), manifest("/to-other"));
    inlet_tests::install(
        &host.plugins_dir(),
        "denied",
        plugins::OUTBOUND_PROBE,
        Some(&denied),
    );
    inlet_tests::install(
        &host.plugins_dir(),
        "hop",
        plugins::OUTBOUND_PROBE,
        Some(&hop),
    );
    host.reload().await;

    let (status, body) = host.pull_now("denied").await;
    assert_eq!(status, 502, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("denied") && msg.contains(&outside_port.to_string()),
        "{msg}"
    );
    assert!(
        outside.requests().is_empty(),
        "the redirect never left the host"
    );
    assert_eq!(checkpoint(&host, "denied", None).await, None);

    let (status, body) = host.pull_now("hop").await;
    assert_eq!(status, 200, "{body}");
    let events = host.events("hop").await;
    assert_eq!(
        events[0]["payload"]["body"],
        json!({"hop": "other"}).to_string()
    );
    assert_eq!(events[0]["payload"]["hops"].as_array().unwrap().len(), 2);
    // The schedule's first pull may have come first: one or two requests.
    let to_other = other.requests();
    assert!(!to_other.is_empty());
    assert!(
        to_other.iter().all(|s| s.header("authorization").is_none()),
        "a header injected for one host does not follow a redirect to another"
    );
    assert!(
        start
            .requests()
            .iter()
            .all(|s| s.header("authorization") == Some(&format!("Bearer {SECRET}")))
    );
}

#[tokio::test]
async fn invalid_answers_mark_the_connector_failing_until_max_interval() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let source = SourceServer::start(move |_| {
        c2.fetch_add(1, Ordering::SeqCst);
        Answer::json(404, json!({"error": "no such route"}))
    })
    .await;
    let port = source.addr.port();
    let manifest = format!(
        "[pull]\nevery = \"50ms\"\nmin_interval = \"50ms\"\nmax_interval = \"1h\"\nretry = {{ initial = \"50ms\", max = \"100ms\" }}\n[sandbox]\nallowed_hosts = [\"127.0.0.1:{port}\"]\n[config]\nurl = \"http://127.0.0.1:{port}/items\"\n"
    );
    let host = TestHost::start(&[("feed", plugins::HTTP_POLL, Some(&manifest))]).await;
    // The retry waits max_interval (1h), not the 50ms..100ms backoff.
    let st = eventually(WAIT, "the connector failing until max_interval", || async {
        let st = host.status("feed").await;
        let next = st["pull"]["next_pull_ms"].as_u64()?;
        let last = st["pull"]["last_pull_ms"].as_u64()?;
        (st["pull"]["state"] == "failing" && next >= last + 3_500_000).then_some(st)
    })
    .await;
    assert_eq!(st["state"], "failing", "{st}");
    assert_eq!(st["pull"]["consecutive_failures"], 1, "{st}");
    assert!(
        st["pull"]["last_error"].as_str().unwrap().contains("404"),
        "{st}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no quick retry");
}

#[tokio::test]
async fn cron_schedules_are_checked_at_load_and_shown_in_status() {
    let host = TestHost::start(&[
        (
            "bad",
            plugins::HTTP_POLL,
            Some("[pull]\ncron = \"every five minutes\"\n"),
        ),
        (
            "yearly",
            plugins::HTTP_POLL,
            Some("[pull]\ncron = \"0 0 0 1 1 *\"\n[config]\nurl = \"http://127.0.0.1:1/\"\n"),
        ),
    ])
    .await;
    let (_, bad) = host.get_json("/v1/connectors/bad").await;
    let err = bad["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("bad.toml") && err.contains("pull.cron") && err.contains("seconds first"),
        "{bad}"
    );
    let st = eventually(WAIT, "the yearly schedule in status", || async {
        let st = host.status("yearly").await;
        st["pull"]["next_pull_ms"].as_u64().is_some().then_some(st)
    })
    .await;
    assert_eq!(st["pull"]["schedule"], "cron 0 0 0 1 1 * (UTC)", "{st}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        st["pull"]["next_pull_ms"].as_u64().unwrap() > now + 60_000,
        "a cron schedule waits for its first fire: {st}"
    );
    assert!(st["pull"]["last_pull_ms"].is_null(), "{st}");
}

fn stripe_event(i: usize) -> Value {
    json!({
        "id": format!("evt_{i:03}"),
        "object": "event",
        "type": if i.is_multiple_of(2) { "charge.succeeded" } else { "invoice.paid" },
        "created": 1_700_000_000 + i as u64,
        "data": {"object": {"id": format!("ch_{i:03}")}},
    })
}

/// Stripe's `GET /v1/events`: newest first, `limit`, `starting_after`
/// (older) and `ending_before` (newer), `has_more`.
fn stripe_list(events: &[Value], seen: &Seen) -> Answer {
    let limit: usize = seen
        .param("limit")
        .map(|l| l.parse().unwrap())
        .unwrap_or(10);
    let newest_first: Vec<&Value> = events.iter().rev().collect();
    let pos = |id: &str| newest_first.iter().position(|e| e["id"] == id).unwrap();
    let (data, has_more): (Vec<&Value>, bool) = if let Some(after) = seen.param("starting_after") {
        let rest = &newest_first[pos(&after) + 1..];
        (
            rest.iter().take(limit).copied().collect(),
            rest.len() > limit,
        )
    } else if let Some(before) = seen.param("ending_before") {
        let newer = &newest_first[..pos(&before)];
        let from = newer.len().saturating_sub(limit);
        (newer[from..].to_vec(), from > 0)
    } else {
        (
            newest_first.iter().take(limit).copied().collect(),
            newest_first.len() > limit,
        )
    };
    Answer::json(
        200,
        json!({"object": "list", "url": "/v1/events", "data": data, "has_more": has_more}),
    )
}

#[tokio::test]
async fn hybrid_stripe_events_pushed_and_pulled_are_stored_once() {
    let events: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new((0..100).map(stripe_event).collect()));
    let e2 = events.clone();
    let source = SourceServer::start(move |seen| stripe_list(&e2.lock().unwrap(), seen)).await;
    let port = source.addr.port();
    // A yearly cron: no pull until the test asks for one.
    let manifest = format!(
        r#"
[push]
auth = {{ scheme = "stripe", secret_file = "whsec.secret" }}
[pull]
cron = "0 0 0 1 1 *"
[sandbox]
allowed_hosts = ["127.0.0.1:{port}"]
[[sandbox.inject]]
host = "127.0.0.1:{port}"
header = "Authorization"
value_file = "stripe.key"
format = "Bearer {{}}"
[config]
base_url = "http://127.0.0.1:{port}"
limit = 10
"#
    );
    let host = TestHost::start(&[]).await;
    std::fs::write(host.plugins_dir().join("whsec.secret"), "whsec_test").unwrap();
    std::fs::write(host.plugins_dir().join("stripe.key"), "rk_test_123").unwrap();
    inlet_tests::install(
        &host.plugins_dir(),
        "stripe",
        plugins::STRIPE_EVENTS,
        Some(&manifest),
    );
    host.reload().await;
    let (_, st) = host.get_json("/v1/connectors/stripe").await;
    assert!(st["last_error"].is_null(), "{st}");

    let push = |i: usize| {
        let body = stripe_event(i).to_string();
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        let sig = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
        let host = &host;
        async move {
            let (status, reply, _) = host
                .post_json("/ingest/stripe", &body, &[("Stripe-Signature", &sig)])
                .await;
            assert!(status == 202 || status == 200, "{status} {reply}");
        }
    };
    // 70 delivered (every 10th of them twice); 30 lost on the way.
    let delivered: Vec<usize> = (0..100).filter(|i| i % 10 < 7).collect();
    for &i in &delivered {
        push(i).await;
    }
    for &i in delivered.iter().step_by(7) {
        push(i).await;
    }
    assert_eq!(host.events("stripe").await.len(), 70);
    assert!(source.requests().is_empty(), "no pull before the test asks");

    let (status, run) = host.pull_now("stripe").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["run"]["events"], 30, "{run}");
    assert_eq!(run["run"]["duplicates"], 70, "{run}");
    let stored = host.events("stripe").await;
    let got = ids(&stored);
    assert_unique(&got);
    assert_eq!(got.len(), 100);
    let modes: Vec<_> = stored.iter().map(|e| e["mode"].as_str().unwrap()).collect();
    assert_eq!(modes.iter().filter(|m| **m == "pull").count(), 30);
    assert!(stored.iter().all(|e| e["attributes"]["type"].is_string()));
    assert!(
        source
            .requests()
            .iter()
            .all(|s| s.header("authorization") == Some("Bearer rk_test_123"))
    );

    // Later: three new events, one of them pushed; the tail pulls the rest.
    events.lock().unwrap().extend((100..103).map(stripe_event));
    push(101).await;
    let (_, run) = host.pull_now("stripe").await;
    assert_eq!(run["run"]["events"], 2, "{run}");
    let last = source.requests().last().unwrap().clone();
    assert_eq!(last.param("ending_before").as_deref(), Some("evt_099"));
    let got = ids(&host.events("stripe").await);
    assert_unique(&got);
    assert_eq!(got.len(), 103);
    let cp: Value =
        serde_json::from_str(&checkpoint(&host, "stripe", None).await.unwrap()).unwrap();
    assert_eq!(cp["newest"], "evt_102", "{cp}");
    assert!(cp["backfill_after"].is_null(), "{cp}");
}
