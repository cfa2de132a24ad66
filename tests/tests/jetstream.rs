//! Scale-out on NATS JetStream: several hosts, one real `nats-server` on
//! loopback. Retried pushes spread over three hosts are stored once; eight
//! pull partitions are shared by three hosts, never pulled twice at once,
//! and move to the survivors when one host is killed; a NATS restart under
//! push load loses no acknowledged event; a pull batch whose checkpoint
//! write lost is replayed without duplicates.

use futures::FutureExt as _;
use inlet_host::config::StoreKind;
use inlet_tests::nats::NatsServer;
use inlet_tests::source::{Answer, Seen, SourceServer};
use inlet_tests::{ChildHost, TestHost, eventually, plugins};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

async fn host_on(nats: &NatsServer, connectors: &[(&str, &str, Option<&str>)]) -> TestHost {
    let url = nats.url();
    TestHost::start_with(connectors, move |c| {
        c.store.kind = StoreKind::Jetstream;
        c.store.url = url;
        c.store.lease_ttl = Duration::from_secs(10);
        // A slow publish on a loaded machine is waited for, not answered
        // 503 after it may have been stored.
        c.store.request_timeout = Duration::from_secs(30);
    })
    .await
}

/// Posts like a webhook sender: a 503 (store briefly unavailable, such as a
/// slow first stream creation on a loaded machine) is retried with the same
/// key; any other answer is returned.
async fn send(host: &TestHost, body: &str, key: &str) -> (u16, Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, reply, _) = host
            .post_json("/ingest/hooks", body, &[("idempotency-key", key)])
            .await;
        if status != 503 || Instant::now() > deadline {
            return (status, reply);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn retries_spread_over_three_hosts_are_stored_once() {
    let nats = NatsServer::start();
    let mut hosts = Vec::new();
    for _ in 0..3 {
        hosts.push(host_on(&nats, &[("hooks", plugins::WEBHOOK_JSON, None)]).await);
    }
    // Every event is sent to every host with the same key, the three
    // copies at once.
    let mut first_answers = HashMap::new();
    for i in 0..30 {
        let body = json!({"n": i}).to_string();
        let key = format!("key-{i}");
        let sends = hosts.iter().map(|h| {
            let body = body.clone();
            let key = key.clone();
            async move { send(h, &body, &key).await }
        });
        let answers = futures::future::join_all(sends).await;
        let mut offsets = HashSet::new();
        for (status, reply) in &answers {
            // One host stores it (202); the others answer with the first
            // answer (200) or 409 while the same host still has it in flight.
            assert!([200, 202, 409].contains(status), "{status} {reply}");
            if *status != 409 {
                offsets.insert(reply["first_offset"].clone());
            }
        }
        assert!(
            answers.iter().any(|(s, _)| *s == 202),
            "one host stored event {i}: {answers:?}"
        );
        assert_eq!(offsets.len(), 1, "all answers name one offset: {answers:?}");
        first_answers.insert(key, offsets.into_iter().next().unwrap());
    }
    // A later retry anywhere gets the original answer.
    for (i, host) in hosts.iter().enumerate() {
        let key = format!("key-{i}");
        let (status, reply) = send(host, "{\"n\": -1}", &key).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["status"], "duplicate", "{reply}");
        assert_eq!(reply["first_offset"], first_answers[&key], "{reply}");
    }
    // Every host reads the same 30 events, each once, offsets 1..=30.
    for host in &hosts {
        let events = host.events("hooks").await;
        let ns: Vec<i64> = events
            .iter()
            .map(|e| e["payload"]["n"].as_i64().unwrap())
            .collect();
        let unique: HashSet<_> = ns.iter().collect();
        assert_eq!(ns.len(), 30, "{ns:?}");
        assert_eq!(unique.len(), 30, "{ns:?}");
        let offsets: Vec<u64> = events
            .iter()
            .map(|e| e["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, (1..=30).collect::<Vec<_>>());
    }
}

/// Per partition: requests in flight now and the most ever at once.
#[derive(Default)]
struct Flights {
    per_partition: BTreeMap<String, (usize, usize)>,
}

/// One request in flight; counted out when dropped, also when the server
/// drops the handler because the client (a killed host) went away.
struct InFlight {
    flights: Arc<Mutex<Flights>>,
    partition: String,
}

impl InFlight {
    fn enter(flights: &Arc<Mutex<Flights>>, partition: &str) -> InFlight {
        let mut f = flights.lock().unwrap();
        let e = f.per_partition.entry(partition.to_string()).or_default();
        e.0 += 1;
        e.1 = e.1.max(e.0);
        InFlight {
            flights: flights.clone(),
            partition: partition.to_string(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut f = self.flights.lock().unwrap();
        f.per_partition.get_mut(&self.partition).unwrap().0 -= 1;
    }
}

/// A partitioned source: partition P has `available` items `P-0`, `P-1`,
/// ...; a page is at most 5 items; each request takes 30 ms.
async fn partitioned_source(
    available: Arc<AtomicUsize>,
    flights: Arc<Mutex<Flights>>,
) -> SourceServer {
    SourceServer::start_async(move |req: Seen| {
        let available = available.clone();
        let flights = flights.clone();
        async move {
            let p = req.param("partition").unwrap_or_default();
            let in_flight = InFlight::enter(&flights, &p);
            tokio::time::sleep(Duration::from_millis(30)).await;
            let start: usize = req.param("since").map_or(0, |s| s.parse().unwrap());
            let end = (start + 5).min(available.load(Ordering::SeqCst));
            let end = end.max(start);
            let items: Vec<_> = (start..end)
                .map(|i| json!({"id": format!("{p}-{i}")}))
                .collect();
            drop(in_flight);
            Answer::json(
                200,
                json!({"items": items, "next_cursor": end.to_string(),
                       "has_more": end < available.load(Ordering::SeqCst)}),
            )
        }
        .boxed()
    })
    .await
}

/// The lease holders, by reading the leases bucket through a host's eyes:
/// partition → host id, from the NATS KV bucket directly.
async fn lease_holders(nats_url: &str) -> BTreeMap<String, String> {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let kv = js.get_key_value("inlet_leases").await.unwrap();
    let mut keys: Vec<String> = {
        use futures::TryStreamExt;
        kv.keys().await.unwrap().try_collect().await.unwrap()
    };
    keys.retain(|k| k.starts_with("lease.parts."));
    let mut out = BTreeMap::new();
    for k in keys {
        if let Some(v) = kv.get(k.clone()).await.unwrap() {
            out.insert(k, String::from_utf8_lossy(&v).into_owned());
        }
    }
    out
}

#[tokio::test]
async fn eight_partitions_share_three_hosts_and_survive_a_kill_9() {
    let nats = NatsServer::start();
    let available = Arc::new(AtomicUsize::new(20));
    let flights = Arc::new(Mutex::new(Flights::default()));
    let source = partitioned_source(available.clone(), flights.clone()).await;
    let port = source.addr.port();
    let partitions: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    let manifest = format!(
        r#"
[pull]
every = "300ms"
min_interval = "100ms"
max_interval = "500ms"
max_parallel = 8
[sandbox]
allowed_hosts = ["127.0.0.1:{port}"]
[config]
url = "http://127.0.0.1:{port}/items"
partitions = "{}"
"#,
        partitions.join(",")
    );
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut hosts = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let plugins_dir = dir.path().join("plugins.d");
        std::fs::create_dir_all(&plugins_dir).unwrap();
        inlet_tests::install(
            &plugins_dir,
            "parts",
            plugins::PARTITIONED_POLL,
            Some(&manifest),
        );
        let config = dir.path().join("inlet.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\nkind = \"jetstream\"\nurl = \"{}\"\nlease_ttl = \"10s\"\nhost_id = \"host{i}\"\n",
                nats.url()
            ),
        )
        .unwrap();
        let child = ChildHost::spawn(
            env!("CARGO_BIN_EXE_inlet"),
            dir.path(),
            &["--config", config.to_str().unwrap()],
            &[],
        )
        .unwrap_or_else(|(status, log)| panic!("host {i} exited with {status}: {log}"));
        hosts.push(Some(child));
    }
    let client = reqwest::Client::new();
    let events_of = |base: String| {
        let client = client.clone();
        async move {
            let mut out: Vec<Value> = Vec::new();
            let mut after = 0u64;
            loop {
                let text = client
                    .get(format!(
                        "{base}/v1/streams/parts/events?limit=10000&after={after}"
                    ))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                let page: Vec<Value> = text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                let Some(last) = page.last() else { break };
                after = last["offset"].as_u64().unwrap();
                out.extend(page);
            }
            Some(out)
        }
    };
    let ids = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let base0 = hosts[0].as_ref().unwrap().base.clone();
    eventually(WAIT, "8 x 20 events", || async {
        let e = events_of(base0.clone()).await?;
        (e.len() >= 160).then_some(())
    })
    .await;
    // The work is shared: every host holds some of the leases.
    let holders = eventually(WAIT, "leases spread over the three hosts", || async {
        let h = lease_holders(&nats.url()).await;
        let owners: HashSet<&String> = h.values().collect();
        (h.len() == 8 && owners.len() == 3).then_some(h)
    })
    .await;
    let victim = holders.values().next().unwrap().clone();
    let victim_index: usize = victim.strip_prefix("host").unwrap().parse().unwrap();
    let victim_leases: Vec<String> = holders
        .iter()
        .filter(|(_, h)| **h == victim)
        .map(|(k, _)| k.clone())
        .collect();

    // kill -9 one host, then let each partition grow by 20 items.
    let mut killed = hosts[victim_index].take().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let killed_at = Instant::now();
    available.store(40, Ordering::SeqCst);
    let survivor = hosts.iter().flatten().next().unwrap().base.clone();
    let moved = eventually(WAIT, "the dead host's leases taken over", || async {
        let h = lease_holders(&nats.url()).await;
        victim_leases
            .iter()
            .all(|k| h.get(k).is_some_and(|o| *o != victim))
            .then_some(h)
    })
    .await;
    let takeover = killed_at.elapsed();
    eventually(WAIT, "8 x 40 events", || async {
        let e = events_of(survivor.clone()).await?;
        (e.len() >= 320).then_some(())
    })
    .await;
    eprintln!(
        "leases of {victim} ({}) moved after {takeover:?} (lease TTL 3 s): {moved:?}",
        victim_leases.len()
    );
    let events = events_of(survivor.clone()).await.unwrap();
    let got = ids(&events);
    let unique: HashSet<_> = got.iter().collect();
    assert_eq!(got.len(), 320, "nothing duplicated");
    assert_eq!(unique.len(), 320, "nothing duplicated");
    for p in &partitions {
        for i in 0..40 {
            assert!(unique.contains(&format!("{p}-{i}")), "{p}-{i} lost");
        }
    }
    let f = flights.lock().unwrap();
    assert_eq!(f.per_partition.len(), 8);
    for (p, (_, max)) in &f.per_partition {
        assert_eq!(*max, 1, "partition {p} was pulled by two hosts at once");
    }
}

#[tokio::test]
async fn a_nats_restart_under_push_load_loses_no_acknowledged_event() {
    let mut nats = NatsServer::start();
    let host = host_on(&nats, &[("hooks", plugins::WEBHOOK_JSON, None)]).await;
    let host = Arc::new(host);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let statuses = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (host, stop, acked, statuses) =
            (host.clone(), stop.clone(), acked.clone(), statuses.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let n = format!("{worker}-{i}");
                let body = json!({ "n": n }).to_string();
                let (status, _, _) = host
                    .post_json("/ingest/hooks", &body, &[("idempotency-key", n.as_str())])
                    .await;
                *statuses.lock().unwrap().entry(status).or_default() += 1;
                if status == 202 {
                    acked.lock().unwrap().push(n);
                }
                if status == 503 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                i += 1;
            }
        }));
    }
    let count_acked = || acked.lock().unwrap().len();
    eventually(WAIT, "pushes acknowledged before the restart", || async {
        (count_acked() >= 50).then_some(())
    })
    .await;
    nats.kill();
    eventually(WAIT, "503 while NATS is down", || async {
        (statuses.lock().unwrap().get(&503).copied().unwrap_or(0) >= 3).then_some(())
    })
    .await;
    // The load balancer's view: not ready while the store is away.
    let ready = eventually(WAIT, "/readyz 503 while NATS is down", || async {
        let (code, ready) = host.get_json("/readyz").await;
        (code == 503).then_some(ready)
    })
    .await;
    assert_eq!(ready["error"]["code"], "store_unavailable", "{ready}");
    let before = count_acked();
    nats.restart();
    eventually(WAIT, "pushes acknowledged after the restart", || async {
        (count_acked() >= before + 50).then_some(())
    })
    .await;
    eventually(WAIT, "/readyz 200 again", || async {
        (host.get_json("/readyz").await.0 == 200).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    let stored: HashSet<String> = host
        .events("hooks")
        .await
        .iter()
        .map(|e| e["payload"]["n"].as_str().unwrap().to_string())
        .collect();
    let acked = acked.lock().unwrap();
    let lost: Vec<_> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let statuses = statuses.lock().unwrap();
    assert!(
        statuses.keys().all(|s| [202, 503].contains(s)),
        "{statuses:?}"
    );
    eprintln!(
        "{} acknowledged, all present; answers {statuses:?}",
        acked.len()
    );
}

#[tokio::test]
async fn a_batch_whose_checkpoint_write_lost_is_replayed_without_duplicates() {
    // The first pull of the page after "2" is held until the test has moved
    // the checkpoint behind the host's back (an admin write on a second
    // host), so the first host's compare-and-set fails after its events
    // were published. Items carry no id: only the replay msg-ids dedup them.
    let nats = NatsServer::start();
    let held = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let (h2, r2, c2) = (held.clone(), release.clone(), calls.clone());
    let source = SourceServer::start_async(move |req: Seen| {
        let (held, release, calls) = (h2.clone(), r2.clone(), c2.clone());
        async move {
            let since = req.param("since");
            let (items, next) = match since.as_deref() {
                None => (vec![json!({"n": 0}), json!({"n": 1})], "2"),
                Some("2") => {
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        held.notify_one();
                        release.notified().await;
                    }
                    (vec![json!({"n": 2}), json!({"n": 3})], "4")
                }
                _ => (vec![], "4"),
            };
            Answer::json(
                200,
                json!({"items": items, "next_cursor": next, "has_more": false}),
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
retry = {{ initial = "50ms", max = "100ms" }}
[sandbox]
allowed_hosts = ["127.0.0.1:{port}"]
[config]
url = "http://127.0.0.1:{port}/items"
"#
    );
    let a = host_on(
        &nats,
        &[("rows", plugins::PARTITIONED_POLL, Some(&manifest))],
    )
    .await;
    eventually(WAIT, "the first page", || async {
        (a.events("rows").await.len() == 2).then_some(())
    })
    .await;
    // Host B serves the admin API for `rows` but never pulls it itself (its
    // schedule fires on 1 January): after A's failed run gives its lease
    // up, only A's retry pulls.
    let manifest_b = manifest.replace("every = \"1h\"", "cron = \"0 0 0 1 1 *\"");
    let b = host_on(
        &nats,
        &[("rows", plugins::PARTITIONED_POLL, Some(&manifest_b))],
    )
    .await;
    let puller = tokio::spawn({
        let client = a.client.clone();
        let url = a.url("/v1/connectors/rows/pull");
        async move { client.post(url).send().await.unwrap().status().as_u16() }
    });
    held.notified().await;
    // Same value, new revision: the compare-and-set of host A must fail.
    let resp = b
        .client
        .put(b.url("/v1/connectors/rows/checkpoint"))
        .body(r#"{"value": "2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Reading the checkpoint on host A meanwhile must not make A's stale
    // write look current.
    let (_, cp) = a.get_json("/v1/connectors/rows/checkpoint").await;
    assert_eq!(cp["value"], "2", "{cp}");
    release.notify_one();
    let status = puller.await.unwrap();
    assert_ne!(status, 200, "the run whose checkpoint write lost must fail");
    let st = a.status("rows").await;
    assert!(
        st["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("moved since this pull read it")),
        "{st}"
    );
    // The events were published; the checkpoint did not move.
    assert_eq!(a.events("rows").await.len(), 4);
    let (_, cp) = a.get_json("/v1/connectors/rows/checkpoint").await;
    assert_eq!(cp["value"], "2", "{cp}");
    // The retry pulls the same page again: stored once, checkpoint moves.
    let (code, run) = a.pull_now("rows").await;
    assert_eq!(code, 200, "{run}");
    assert_eq!(run["run"]["duplicates"], 2, "{run}");
    let ns: Vec<i64> = a
        .events("rows")
        .await
        .iter()
        .map(|e| e["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, vec![0, 1, 2, 3]);
    let (_, cp) = a.get_json("/v1/connectors/rows/checkpoint").await;
    assert_eq!(cp["value"], "4", "{cp}");
}

#[test]
fn a_store_that_cannot_work_fails_the_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plugins.d")).unwrap();
    // A port nothing listens on: a closed listener's.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (store, expected) in [
        (
            format!("url = \"nats://127.0.0.1:{closed}\"\nrequest_timeout = \"1s\""),
            format!("cannot connect to nats://127.0.0.1:{closed}"),
        ),
        (
            "url = \"nats://exa mple\"".to_string(),
            "[store] url \"nats://exa mple\"".to_string(),
        ),
        (
            "token_env = \"INLET_TEST_UNSET_TOKEN\"".to_string(),
            "INLET_TEST_UNSET_TOKEN".to_string(),
        ),
    ] {
        let config = dir.path().join("inlet.toml");
        std::fs::write(&config, format!("[store]\nkind = \"jetstream\"\n{store}\n")).unwrap();
        let Err((status, log)) = ChildHost::spawn(
            env!("CARGO_BIN_EXE_inlet"),
            dir.path(),
            &["--config", config.to_str().unwrap()],
            &[],
        ) else {
            panic!("the host started with [store] {store}");
        };
        assert!(!status.success());
        assert!(log.contains(&expected), "{store}: {log}");
    }
}
