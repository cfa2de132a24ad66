//! SQL pull sources end to end: a real PostgreSQL server started by the
//! test (see `inlet_tests::postgres`), the real host, the real
//! `postgres-table` and `sql-probe` components.

use inlet_tests::postgres::Postgres;
use inlet_tests::{TestHost, eventually, plugins};
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The manifest of a `postgres-table` connector on `table`, with the URL
/// in a file next to it (no process environment needed).
fn table_manifest(table: &str, batch: u32, pull: &str) -> String {
    format!(
        r#"
[pull]
{pull}

[sandbox.sql.main]
url_file = "main.url"

[config]
connection = "main"
table = "{table}"
cursor_column = "updated_at"
id_column = "id"
batch = {batch}
"#
    )
}

async fn start_host(pg: &Postgres, connectors: &[(&str, &str, Option<&str>)]) -> TestHost {
    start_host_with_url(&pg.url(), connectors).await
}

async fn start_host_with_url(url: &str, connectors: &[(&str, &str, Option<&str>)]) -> TestHost {
    TestHost::start_with(connectors, |config| {
        std::fs::write(config.plugins_dir.join("main.url"), url).unwrap();
    })
    .await
}

async fn create_items(pg: &Postgres, table: &str) {
    pg.client()
        .await
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, \
             name text NOT NULL, amount numeric NOT NULL)"
        ))
        .await
        .unwrap();
}

/// Waits until the pull at start has finished.
async fn first_pull_done(host: &TestHost, name: &str) -> Value {
    eventually(
        Duration::from_secs(30),
        "the first scheduled pull",
        || async {
            let st = host.status(name).await;
            st["pull"]["last_pull_ms"].is_u64().then_some(st)
        },
    )
    .await
}

fn unique_ids(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn ten_thousand_rows_in_ten_batches_then_only_updates() {
    let pg = Postgres::start().await;
    create_items(&pg, "items").await;
    let m = table_manifest("items", 1000, "every = \"1h\"");
    let host = start_host(&pg, &[("items", plugins::POSTGRES_TABLE, Some(&m))]).await;
    // The pull at start finds the table empty.
    let st = first_pull_done(&host, "items").await;
    assert_eq!(st["pull"]["state"], "ok", "{st}");

    let db = pg.client().await;
    db.batch_execute(
        "INSERT INTO items SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second', \
         'item ' || i, i * 1.25 FROM generate_series(1, 10000) AS i",
    )
    .await
    .unwrap();

    let started = Instant::now();
    let (code, run) = host.pull_now("items").await;
    let elapsed = started.elapsed();
    assert_eq!(code, 200, "{run}");
    assert_eq!(run["run"]["events"], 10_000, "{run}");
    assert_eq!(run["run"]["batches"], 10, "{run}");
    eprintln!(
        "postgres-table: 10000 rows in {elapsed:?} ({:.0} rows/s)",
        10_000.0 / elapsed.as_secs_f64()
    );

    let events = host.events("items").await;
    assert_eq!(events.len(), 10_000);
    assert_eq!(unique_ids(&events).len(), 10_000);
    let first = &events[0];
    assert_eq!(first["payload"]["id"], 1);
    assert_eq!(first["payload"]["name"], "item 1");
    assert_eq!(first["payload"]["amount"], "1.25");
    let micros_1 = 1_704_067_201_000_000i64;
    assert_eq!(first["payload"]["updated_at"], micros_1);
    assert_eq!(first["id"], format!("items:1:{micros_1}"));
    assert_eq!(first["time_ms"], micros_1 / 1000);

    let (_, cp) = host.get_json("/v1/connectors/items/checkpoint").await;
    let cp: Value = serde_json::from_str(cp["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        cp,
        serde_json::json!({"version": "1", "cursor": {"timestamp": micros_1 + 9_999_000_000i64}, "id": {"int": 10000}})
    );

    // Nothing new: nothing stored.
    let (_, run) = host.pull_now("items").await;
    assert_eq!(run["run"]["events"], 0, "{run}");

    // 100 rows updated: exactly 100 new events.
    db.batch_execute(
        "UPDATE items SET updated_at = timestamptz '2025-01-01 00:00:00+00' + id * interval '1 ms', \
         name = 'updated' WHERE id % 100 = 0",
    )
    .await
    .unwrap();
    let (_, run) = host.pull_now("items").await;
    assert_eq!(run["run"]["events"], 100, "{run}");
    let events = host.events("items").await;
    assert_eq!(events.len(), 10_100);
    assert!(
        events[10_000..]
            .iter()
            .all(|e| e["payload"]["name"] == "updated")
    );
    let (_, run) = host.pull_now("items").await;
    assert_eq!(run["run"]["events"], 0, "{run}");
}

#[tokio::test]
async fn equal_cursor_values_across_batch_boundaries_are_read_once() {
    let pg = Postgres::start().await;
    create_items(&pg, "same").await;
    pg.client()
        .await
        .batch_execute(
            "INSERT INTO same SELECT i, timestamptz '2024-06-01 12:00:00+00', 'x', 0 \
             FROM generate_series(1, 500) AS i",
        )
        .await
        .unwrap();
    let m = table_manifest("public.same", 64, "every = \"1h\"");
    let host = start_host(&pg, &[("same", plugins::POSTGRES_TABLE, Some(&m))]).await;
    let events = eventually(Duration::from_secs(30), "500 events", || async {
        let e = host.events("same").await;
        (e.len() >= 500).then_some(e)
    })
    .await;
    assert_eq!(events.len(), 500);
    assert_eq!(unique_ids(&events).len(), 500);
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e["payload"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=500).collect::<Vec<_>>());
    let (_, run) = host.pull_now("same").await;
    assert_eq!(run["run"]["events"], 0, "{run}");
}

#[tokio::test]
async fn a_database_restart_mid_run_backs_off_then_resumes_without_loss_or_duplicates() {
    let mut pg = Postgres::start().await;
    create_items(&pg, "items").await;
    pg.client()
        .await
        .batch_execute(
            "INSERT INTO items SELECT i, timestamptz '2024-01-01 00:00:00+00' + (i / 3) * interval '1 second', \
             'item', i FROM generate_series(1, 3000) AS i",
        )
        .await
        .unwrap();
    let m = table_manifest(
        "items",
        50,
        "every = \"200ms\"\nmin_interval = \"100ms\"\nmax_interval = \"300ms\"\n\
         max_batches_per_run = 2\nretry = { initial = \"100ms\", max = \"400ms\" }",
    );
    let host = start_host(&pg, &[("items", plugins::POSTGRES_TABLE, Some(&m))]).await;
    eventually(Duration::from_secs(30), "the first batches", || async {
        (!host.events("items").await.is_empty()).then_some(())
    })
    .await;

    pg.stop();
    let st = eventually(
        Duration::from_secs(30),
        "backoff while the database is down",
        || async {
            let st = host.status("items").await;
            (st["pull"]["consecutive_failures"].as_u64() >= Some(2)).then_some(st)
        },
    )
    .await;
    assert_eq!(st["pull"]["state"], "backoff", "{st}");
    let error = st["pull"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("sql connection `main`"), "{st}");
    let stored_while_down = host.events("items").await.len();
    assert!(stored_while_down < 3000, "the run was not cut short");

    pg.resume().await;
    let events = eventually(
        Duration::from_secs(60),
        "all 3000 rows after the restart",
        || async {
            let e = host.events("items").await;
            (e.len() >= 3000).then_some(e)
        },
    )
    .await;
    assert_eq!(events.len(), 3000);
    assert_eq!(unique_ids(&events).len(), 3000);
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e["payload"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=3000).collect::<Vec<_>>(),
        "in keyset order, once each"
    );
    let st = eventually(
        Duration::from_secs(30),
        "a good run after the restart",
        || async {
            let st = host.status("items").await;
            (st["pull"]["state"] == "ok").then_some(st)
        },
    )
    .await;
    assert_eq!(st["pull"]["consecutive_failures"], 0, "{st}");
}

#[tokio::test]
async fn without_a_grant_or_with_writes_the_capability_refuses() {
    let pg = Postgres::start().await;
    create_items(&pg, "items").await;
    let db = pg.client().await;
    db.batch_execute("INSERT INTO items VALUES (1, now(), 'keep', 1), (2, now(), 'keep', 2)")
        .await
        .unwrap();
    let probe = |statement: &str, grant: bool| {
        format!(
            "[pull]\nevery = \"1h\"\n{}\n[config]\nconnection = \"main\"\nstatement = \"{statement}\"\n",
            if grant {
                "[sandbox.sql.main]\nurl_file = \"main.url\"\n"
            } else {
                ""
            }
        )
    };
    let (nogrant, select, delete, drop, with_delete) = (
        probe("SELECT * FROM items", false),
        probe("SELECT * FROM items", true),
        probe("DELETE FROM items", true),
        probe("DROP TABLE items", true),
        probe(
            "WITH d AS (DELETE FROM items RETURNING id) SELECT * FROM d",
            true,
        ),
    );
    let host = start_host(
        &pg,
        &[
            ("nogrant", plugins::SQL_PROBE, Some(&nogrant)),
            ("select", plugins::SQL_PROBE, Some(&select)),
            ("delete", plugins::SQL_PROBE, Some(&delete)),
            ("drop", plugins::SQL_PROBE, Some(&drop)),
            ("withdelete", plugins::SQL_PROBE, Some(&with_delete)),
        ],
    )
    .await;

    let st = first_pull_done(&host, "nogrant").await;
    assert_eq!(st["pull"]["state"], "failing", "{st}");
    assert!(
        st["pull"]["last_error"]
            .as_str()
            .unwrap()
            .contains("invalid: no sql grant for connection `main`"),
        "{st}"
    );
    for name in ["delete", "drop", "withdelete"] {
        let st = first_pull_done(&host, name).await;
        assert_eq!(st["pull"]["state"], "failing", "{name}: {st}");
        let error = st["pull"]["last_error"].as_str().unwrap();
        assert!(
            error.contains("invalid: sql connection `main`: cannot execute")
                && error.contains("in a read-only transaction"),
            "{name}: {st}"
        );
        assert!(host.events(name).await.is_empty());
    }
    let st = first_pull_done(&host, "select").await;
    assert_eq!(st["pull"]["state"], "ok", "{st}");
    let events = host.events("select").await;
    assert_eq!(events[0]["payload"]["rows"], 2);

    let n: i64 = db
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "the table is intact");
}

#[tokio::test]
async fn a_wrong_password_fails_the_connector_with_the_server_message() {
    let pg = Postgres::start().await;
    create_items(&pg, "items").await;
    let m = table_manifest("items", 100, "every = \"1h\"");
    let host = start_host_with_url(
        &pg.url_with_password("not-the-password"),
        &[("items", plugins::POSTGRES_TABLE, Some(&m))],
    )
    .await;
    let st = first_pull_done(&host, "items").await;
    assert_eq!(st["pull"]["state"], "failing", "{st}");
    let error = st["pull"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("unauthorized")
            && error.contains("password authentication failed for user \"postgres\""),
        "{st}"
    );
    assert!(
        !error.contains("not-the-password"),
        "the secret leaked: {st}"
    );
    // The host is fine.
    let (code, _) = host.get_json("/healthz").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn a_missing_url_variable_fails_the_load_naming_it() {
    let m = "[sandbox.sql.main]\nurl_env = \"INLET_TEST_NO_SUCH_PG_URL\"\n[config]\nconnection = \"main\"\n";
    let host = TestHost::start(&[("items", plugins::POSTGRES_TABLE, Some(m))]).await;
    let st = eventually(Duration::from_secs(30), "the load error", || async {
        let (_, list) = host.get_json("/v1/connectors").await;
        let text = list.to_string();
        text.contains("INLET_TEST_NO_SUCH_PG_URL").then_some(text)
    })
    .await;
    assert!(st.contains("sandbox.sql.main.url_env"), "{st}");
}

#[tokio::test]
async fn partitions_are_pulled_each_from_its_own_checkpoint() {
    let pg = Postgres::start().await;
    let db = pg.client().await;
    db.batch_execute(
        "CREATE TABLE regional (id int PRIMARY KEY, updated_at timestamp NOT NULL, region text NOT NULL); \
         INSERT INTO regional SELECT i, timestamp '2024-01-01' + (i / 7) * interval '1 minute', \
         CASE WHEN i % 3 = 0 THEN 'us' ELSE 'eu' END FROM generate_series(1, 300) AS i",
    )
    .await
    .unwrap();
    let m = format!(
        "{}partition_column = \"region\"\npartitions = \"eu, us\"\n",
        table_manifest("regional", 40, "every = \"1h\"")
    );
    let host = start_host(&pg, &[("regional", plugins::POSTGRES_TABLE, Some(&m))]).await;
    let events = eventually(Duration::from_secs(30), "300 events", || async {
        let e = host.events("regional").await;
        (e.len() >= 300).then_some(e)
    })
    .await;
    assert_eq!(events.len(), 300);
    assert_eq!(unique_ids(&events).len(), 300);
    for (partition, last) in [("eu", 299), ("us", 300)] {
        let (code, cp) = host
            .get_json(&format!(
                "/v1/connectors/regional/checkpoint?partition={partition}"
            ))
            .await;
        assert_eq!(code, 200, "{cp}");
        let cp: Value = serde_json::from_str(cp["value"].as_str().unwrap()).unwrap();
        assert_eq!(
            cp["id"],
            serde_json::json!({"int": last}),
            "{partition}: {cp}"
        );
        assert!(
            events
                .iter()
                .filter(|e| e["partition"] == partition)
                .all(|e| e["payload"]["region"] == partition)
        );
    }
}

/// A manifest for the `sql-probe` fixture: one statement, pulled once an
/// hour (retries as given), on connection `main` (with `sql` settings).
fn probe(statement: &str, sandbox: &str, sql: &str, retry: &str) -> String {
    format!(
        "[pull]\nevery = \"1h\"\nretry = {retry}\n\
         [sandbox]\n{sandbox}\n\
         [sandbox.sql.main]\nurl_file = \"main.url\"\n{sql}\n\
         [config]\nconnection = \"main\"\nstatement = \"{statement}\"\n"
    )
}

#[tokio::test]
async fn row_caps_and_statement_timeouts_are_enforced() {
    let pg = Postgres::start().await;
    create_items(&pg, "items").await;
    pg.client()
        .await
        .batch_execute("INSERT INTO items VALUES (1, now(), 'a', 1), (2, now(), 'b', 2)")
        .await
        .unwrap();
    let hour = "{ initial = \"1h\", max = \"1h\" }";
    // The row cap does not depend on time: a deadline no machine misses.
    let capped = probe(
        "SELECT * FROM items",
        "pull_deadline = \"30s\"",
        "max_rows = 1",
        hour,
    );
    // The statement timeout ends the query a margin before the deadline,
    // whatever the first connection took; the sleep never ends by itself.
    let slow = probe("SELECT pg_sleep(600)", "pull_deadline = \"3s\"", "", hour);
    let host = start_host(
        &pg,
        &[
            ("capped", plugins::SQL_PROBE, Some(&capped)),
            ("slow", plugins::SQL_PROBE, Some(&slow)),
        ],
    )
    .await;
    let st = first_pull_done(&host, "capped").await;
    assert_eq!(st["pull"]["state"], "failing", "{st}");
    assert!(
        st["pull"]["last_error"]
            .as_str()
            .unwrap()
            .contains("more than max_rows = 1 rows"),
        "{st}"
    );
    let st = first_pull_done(&host, "slow").await;
    assert_eq!(st["pull"]["state"], "backoff", "{st}");
    // The database's own cancel ("canceling statement due to statement
    // timeout"), or on a machine too loaded for its answer to come back
    // within the margin, the host's cut just after it: either way the slow
    // database is `unavailable`.
    let error = st["pull"]["last_error"].as_str().unwrap();
    assert!(
        error.contains(
            "unavailable: sql connection `main`: canceling statement due to statement timeout"
        ) || error
            .contains("unavailable: sql connection `main`: the query ran past the call's deadline"),
        "{st}"
    );
    // And the statement timeout is enforced where it matters, in the
    // database: the ten-minute sleep does not go on running there.
    let db = pg.client().await;
    eventually(
        Duration::from_secs(30),
        "the sleep cancelled in the database",
        || async {
            let row = db
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                 WHERE query LIKE '%pg_sleep(600)%' AND state = 'active' \
                 AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap();
            (row.get::<_, i64>(0) == 0).then_some(())
        },
    )
    .await;
}

/// A database slower than the pull deadline is the source being slow:
/// every run fails as `unavailable` and backs off, and more failures than
/// the quarantine threshold never quarantine the connector.
#[tokio::test]
async fn a_database_slower_than_the_deadline_backs_off_and_is_never_quarantined() {
    let pg = Postgres::start().await;
    let slow = probe(
        "SELECT pg_sleep(600)",
        "pull_deadline = \"1s\"\nquarantine_after = 2\nquarantine_cooldown = \"1h\"",
        "",
        "{ initial = \"50ms\", max = \"200ms\" }",
    );
    let host = start_host(&pg, &[("slow", plugins::SQL_PROBE, Some(&slow))]).await;
    let st = eventually(Duration::from_secs(60), "five failed pulls", || async {
        let st = host.status("slow").await;
        (st["pull"]["consecutive_failures"].as_u64() >= Some(5)).then_some(st)
    })
    .await;
    assert_eq!(st["pull"]["state"], "backoff", "{st}");
    assert_ne!(st["state"], "quarantined", "{st}");
    assert!(st["quarantine"].is_null(), "{st}");
    let error = st["pull"]["last_error"].as_str().unwrap();
    assert!(error.contains("unavailable"), "{error}");
    let metrics = host.metrics().await;
    for line in [
        "inlet_connector_failures_total{source=\"slow\",class=\"deadline\"} 0",
        "inlet_connector_quarantines_total{source=\"slow\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
}
