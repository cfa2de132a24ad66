//! The web console in a real headless browser: Debian's `chromium` driven
//! through `chromedriver` (both installed by `cargo xtask test`) against
//! the real binary, after a scripted session (a push, a pull, a connector
//! quarantined, a reload that failed). Screenshots of the overview and a
//! connector page, at desktop and phone width, are written to
//! `target/console-screenshots/`.

use fantoccini::{Client, ClientBuilder, Locator};
use inlet_tests::source::{Answer, SourceServer};
use inlet_tests::{ChildHost, eventually, host_dir, plugins};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_inlet");
const TOKEN: &str = "console-admin-token";

/// `chromedriver` on a free port, and a headless Chromium session.
struct Browser {
    driver: Child,
    client: Option<Client>,
}

impl Browser {
    async fn start() -> Browser {
        let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
            .expect("chromedriver is not installed: `cargo xtask test` installs Debian's chromium and chromium-driver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,800"],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = eventually(Duration::from_secs(30), "chromedriver answers", || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        Browser {
            driver,
            client: Some(client),
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Waits until `css` matches an element whose text contains `text`.
    async fn wait_text(&self, css: &str, text: &str) -> fantoccini::elements::Element {
        eventually(
            Duration::from_secs(20),
            &format!("`{css}` shows {text:?}"),
            || async {
                for e in self.c().find_all(Locator::Css(css)).await.ok()? {
                    if e.text().await.ok()?.contains(text) {
                        return Some(e);
                    }
                }
                None
            },
        )
        .await
    }

    /// Clicks the element `css` showing `text`, finding it again if the
    /// page redrew it in between.
    async fn click(&self, css: &str, text: &str) {
        eventually(
            Duration::from_secs(20),
            &format!("click `{css}` {text:?}"),
            || async {
                for e in self.c().find_all(Locator::Css(css)).await.ok()? {
                    if e.text().await.ok()?.contains(text) {
                        return e.click().await.ok();
                    }
                }
                None
            },
        )
        .await
    }

    /// Types `token` into the sign-in form and submits it.
    async fn sign_in(&self, token: &str) {
        let input = self
            .c()
            .wait()
            .for_element(Locator::Css("#token"))
            .await
            .unwrap();
        input.clear().await.unwrap();
        input.send_keys(token).await.unwrap();
        let submit = self.c().find(Locator::Css("#login button")).await.unwrap();
        submit.click().await.unwrap();
    }

    async fn screenshot(&self, name: &str) {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        self.c()
            .execute("window.scrollTo(0, 0)", vec![])
            .await
            .unwrap();
        let png = self.c().screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn admin(host: &ChildHost, method: reqwest::Method, path: &str) -> serde_json::Value {
    reqwest::Client::new()
        .request(method, host.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_states_acts_through_the_api_and_follows_events_live() {
    let source = SourceServer::start(|_| {
        Answer::json(
            200,
            serde_json::json!({"items": [{"id": "item-1"}], "next_cursor": "1", "has_more": false}),
        )
    })
    .await;
    let poll = format!(
        "[pull]\nevery = \"1h\"\n[sandbox]\nallowed_hosts = [\"127.0.0.1:{p}\"]\n[config]\nurl = \"http://127.0.0.1:{p}/items\"\n",
        p = source.addr.port()
    );
    let flaky = "[sandbox]\nquarantine_after = 1\nquarantine_cooldown = \"1h\"\n";
    let dir = host_dir(&[
        ("hook", plugins::WEBHOOK_JSON, None),
        ("feed", plugins::HTTP_POLL, Some(&poll)),
        ("broken", plugins::FLAKY_PUSH, Some(flaky)),
        (
            "aging",
            plugins::WEBHOOK_JSON,
            Some("[push]\nmax_in_flight = 4\n"),
        ),
    ]);
    let config = dir.path().join("inlet.toml");
    std::fs::write(&config, "admin_token_env = \"INLET_ADMIN_TOKEN\"\n").unwrap();
    let mut host = ChildHost::spawn(
        BIN,
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &[("INLET_ADMIN_TOKEN", TOKEN)],
    )
    .expect("starts");
    let http = reqwest::Client::new();

    // The scripted session: a push, the scheduled pull, a quarantine, a
    // reload that failed.
    let r = http
        .post(host.url("/ingest/hook"))
        .body(r#"{"id":"first","type":"order.created"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .post(host.url("/ingest/broken"))
        .body(r#"{"id":"t1","do":"trap"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    std::fs::write(
        dir.path().join("plugins.d/aging.toml"),
        "[push]\nmax_in_flight = 4\nno_such_key = 1\n",
    )
    .unwrap();
    let _ = admin(&host, reqwest::Method::POST, "/v1/reload").await;
    eventually(Duration::from_secs(20), "the session's states", || async {
        let list = admin(&host, reqwest::Method::GET, "/v1/connectors").await;
        let state = |n: &str| {
            list["connectors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == n)
                .map(|c| c["state"].as_str().unwrap_or("").to_string())
        };
        let feed_pulled = list["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "feed" && c["counters"]["events_pull"] == 1);
        (state("broken").as_deref() == Some("quarantined")
            && state("aging").as_deref() == Some("stale")
            && feed_pulled)
            .then_some(())
    })
    .await;

    // The minute-by-minute history behind the sparklines, in the API.
    let sum = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
    };
    let hook = admin(&host, reqwest::Method::GET, "/v1/connectors/hook").await;
    assert_eq!(
        (sum(&hook["history"]["push"]), sum(&hook["history"]["pull"])),
        (1, 0),
        "{hook}"
    );
    let feed = admin(&host, reqwest::Method::GET, "/v1/connectors/feed").await;
    assert_eq!(
        (sum(&feed["history"]["push"]), sum(&feed["history"]["pull"])),
        (0, 1),
        "{feed}"
    );
    assert_eq!(feed["history"]["pull"].as_array().unwrap().len(), 60);

    let browser = Browser::start().await;
    let b = &browser;
    b.c().goto(&host.url("/console")).await.unwrap();

    // A token is configured: the login form, and a wrong token is refused.
    b.sign_in("not-the-token").await;
    b.wait_text("#login-error", "refused").await;
    b.sign_in(TOKEN).await;

    // The overview: every connector with its state, problems first.
    b.wait_text("table.overview", "broken").await;
    let states = eventually(Duration::from_secs(20), "four rows", || async {
        let rows = b
            .c()
            .find_all(Locator::Css("table.overview tbody tr"))
            .await
            .ok()?;
        let mut out = Vec::new();
        for r in rows {
            let name = r.attr("data-name").await.ok()??;
            let state = r
                .find(Locator::Css("[data-state]"))
                .await
                .ok()?
                .attr("data-state")
                .await
                .ok()??;
            out.push((name, state));
        }
        (out.len() == 4).then_some(out)
    })
    .await;
    assert_eq!(
        states,
        [
            ("broken".to_string(), "quarantined".to_string()),
            ("aging".to_string(), "stale".to_string()),
            ("feed".to_string(), "loaded".to_string()),
            ("hook".to_string(), "loaded".to_string()),
        ],
        "problems first, the worst first, then by name"
    );
    b.wait_text("#summary", "2 with problems").await;
    let spark = b
        .c()
        .find(Locator::Css("tr[data-name=hook] svg.spark"))
        .await
        .unwrap()
        .attr("aria-label")
        .await
        .unwrap();
    assert_eq!(spark.as_deref(), Some("last hour: 1 pushed, 0 pulled"));
    b.screenshot("overview-desktop").await;

    // Resume clears the quarantine (checked through the API).
    b.c().goto(&host.url("/console#/c/broken")).await.unwrap();
    b.click("button", "Resume").await;
    b.wait_text("#action-result", "Resumed").await;
    let st = admin(&host, reqwest::Method::GET, "/v1/connectors/broken").await;
    assert_ne!(st["state"], "quarantined", "{st}");
    assert!(st["quarantine"].is_null(), "{st}");

    // A checkpoint edit lands.
    b.c().goto(&host.url("/console#/c/feed")).await.unwrap();
    b.wait_text("table.checkpoints", "(unnamed)").await;
    b.wait_text("#manifest", "allowed_hosts").await;
    b.click("table.checkpoints button", "Edit").await;
    let input = b
        .c()
        .wait()
        .for_element(Locator::Css(".checkpoint-input"))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys("42").await.unwrap();
    b.click("table.checkpoints button", "Save").await;
    b.wait_text("#action-result", "set").await;
    let cp = admin(
        &host,
        reqwest::Method::GET,
        "/v1/connectors/feed/checkpoint",
    )
    .await;
    assert_eq!(cp["value"], "42", "{cp}");
    // Pull now runs a pull and says what it did; the source saw the edit.
    b.click("button", "Pull now").await;
    b.wait_text("#action-result", "in 1 batch").await;
    assert_eq!(
        source.requests().last().unwrap().param("since").as_deref(),
        Some("42")
    );

    // The event list shows a pushed event without a reload.
    b.c().goto(&host.url("/console#/c/hook")).await.unwrap();
    b.wait_text("#events", "first").await;
    b.screenshot("connector-desktop").await;
    let r = http
        .post(host.url("/ingest/hook"))
        .body(r#"{"id":"pushed-while-watching","type":"order.paid"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    b.wait_text("#events li", "pushed-while-watching").await;
    // The filter narrows the list.
    b.c()
        .find(Locator::Css("#event-filter"))
        .await
        .unwrap()
        .send_keys("while")
        .await
        .unwrap();
    let shown = b
        .c()
        .execute(
            "return [...document.querySelectorAll('#events li')].filter(li => !li.hidden).map(li => li.dataset.id)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown, serde_json::json!(["pushed-while-watching"]));

    // Phone width.
    b.c().set_window_size(390, 844).await.unwrap();
    b.c().goto(&host.url("/console#/")).await.unwrap();
    b.wait_text("table.overview", "hook").await;
    b.screenshot("overview-phone").await;
    b.c().goto(&host.url("/console#/c/feed")).await.unwrap();
    b.wait_text("table.checkpoints", "(unnamed)").await;
    b.screenshot("connector-phone").await;

    // Every request the page made went to this origin.
    let origins = b
        .c()
        .execute(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin).concat([location.origin])",
            vec![],
        )
        .await
        .unwrap();
    let base = host.url("");
    for o in origins.as_array().unwrap() {
        assert_eq!(o.as_str().unwrap(), base.trim_end_matches('/'), "{origins}");
    }
    // Another site's page in the operator's browser cannot drive the
    // admin API (Sec-Fetch-Site), even with the token.
    let forged = http
        .post(host.url("/v1/reload"))
        .bearer_auth(TOKEN)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // And the page is served under a CSP that allows nothing else.
    let page = http.get(host.url("/console")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );

    // The host stops answering: a banner says so.
    b.c().goto(&host.url("/console#/")).await.unwrap();
    b.wait_text("table.overview", "hook").await;
    host.terminate();
    let _ = host.child.wait();
    b.wait_text("#banner", "not answering").await;
    let _ = b.c().clone().close().await;
}
