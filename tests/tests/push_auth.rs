//! Push authentication for real senders: every scheme with valid, tampered,
//! wrong-secret, rotated-secret, missing, stale and truncated signatures.
//! Secrets come from files beside the manifest (no process-wide env).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use inlet_tests::{TestHost, plugins};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

fn hmac(secret: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A host with one `webhook-json` source named `hooks` under `manifest`,
/// with secret files `a.secret` and `b.secret` beside it.
async fn host_with(manifest: &str, secrets: &[(&str, &str)]) -> TestHost {
    let host = TestHost::start(&[]).await;
    let dir = host.plugins_dir();
    for (file, value) in secrets {
        std::fs::write(dir.join(file), value).unwrap();
    }
    inlet_tests::install(&dir, "hooks", plugins::WEBHOOK_JSON, Some(manifest));
    host.reload().await;
    let (status, st) = host.get_json("/v1/connectors/hooks").await;
    assert_eq!(status, 200, "{st}");
    assert!(st["last_error"].is_null(), "{st}");
    host
}

async fn push(host: &TestHost, body: &str, headers: &[(&str, String)]) -> u16 {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, reply, _) = host.post_json("/ingest/hooks", body, &h).await;
    if status == 401 {
        assert_eq!(reply["error"]["code"], "unauthorized");
        assert_eq!(
            reply["error"]["message"], "the request could not be authenticated",
            "no detail of which part failed"
        );
    }
    status
}

#[tokio::test]
async fn github_signatures() {
    let host = host_with(
        r#"[push]
auth = { scheme = "github", secret_file = ["a.secret", "b.secret"] }
idempotency_header = "X-GitHub-Delivery"
"#,
        &[
            ("a.secret", "It's a Secret to Everybody\n"),
            ("b.secret", "rotated"),
        ],
    )
    .await;
    // GitHub's documentation vector (over a JSON-free body the connector
    // would refuse, so check the signature path with a valid JSON body too).
    let doc = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(
        push(
            &host,
            "Hello, World!",
            &[("X-Hub-Signature-256", doc.into())]
        )
        .await,
        400,
        "authenticated, then refused by the connector as not JSON"
    );
    assert_eq!(
        push(
            &host,
            "Hello, World?",
            &[("X-Hub-Signature-256", doc.into())]
        )
        .await,
        401,
        "tampered body"
    );

    let body = r#"{"id":"gh-1"}"#;
    let sig = |secret: &[u8]| format!("sha256={}", hex::encode(hmac(secret, body.as_bytes())));
    let good = sig(b"It's a Secret to Everybody");
    assert_eq!(
        push(&host, body, &[("X-Hub-Signature-256", good.clone())]).await,
        202
    );
    assert_eq!(
        push(&host, body, &[("X-Hub-Signature-256", sig(b"wrong"))]).await,
        401,
        "wrong secret"
    );
    assert_eq!(
        push(
            &host,
            r#"{"id":"gh-2"}"#,
            &[("X-Hub-Signature-256", good.clone())]
        )
        .await,
        401,
        "signature of another body"
    );
    let rotated = format!(
        "sha256={}",
        hex::encode(hmac(b"rotated", br#"{"id":"gh-3"}"#))
    );
    assert_eq!(
        push(
            &host,
            r#"{"id":"gh-3"}"#,
            &[("X-Hub-Signature-256", rotated)]
        )
        .await,
        202,
        "second secret"
    );
    assert_eq!(push(&host, body, &[]).await, 401, "missing header");
    assert_eq!(
        push(&host, body, &[("X-Hub-Signature-256", "sha256=".into())]).await,
        401,
        "empty"
    );
    assert_eq!(
        push(
            &host,
            body,
            &[("X-Hub-Signature-256", good[..40].to_string())]
        )
        .await,
        401,
        "truncated"
    );
    assert_eq!(
        push(
            &host,
            body,
            &[("X-Hub-Signature-256", good.replace("sha256=", "sha1="))]
        )
        .await,
        401,
        "wrong prefix"
    );
    assert_eq!(host.events("hooks").await.len(), 2);
}

#[tokio::test]
async fn github_connector_answers_ping_and_stores_deliveries_once() {
    let host = TestHost::start(&[]).await;
    let dir = host.plugins_dir();
    std::fs::write(dir.join("gh.secret"), "s3cret").unwrap();
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/github/github.toml"
    ))
    .unwrap()
    .replace(
        r#"secret_env = "GITHUB_WEBHOOK_SECRET""#,
        r#"secret_file = "gh.secret""#,
    );
    inlet_tests::install(&dir, "github", plugins::GITHUB, Some(&manifest));
    host.client
        .post(host.url("/v1/reload"))
        .send()
        .await
        .unwrap();
    let send = |event: &'static str, delivery: &'static str, body: &'static str| {
        let sig = format!("sha256={}", hex::encode(hmac(b"s3cret", body.as_bytes())));
        let host = &host;
        async move {
            let r = host
                .client
                .post(host.url("/ingest/github"))
                .header("content-type", "application/json")
                .header("X-GitHub-Event", event)
                .header("X-GitHub-Delivery", delivery)
                .header("X-Hub-Signature-256", sig)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = send("ping", "d-0", r#"{"zen":"Keep it logically awesome."}"#).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("pong")),
        "{body}"
    );
    let (status, _) = send("push", "d-1", r#"{"ref":"refs/heads/main"}"#).await;
    assert_eq!(status, 202);
    let (status, body) = send("push", "d-1", r#"{"ref":"refs/heads/main"}"#).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("duplicate")),
        "redelivery"
    );
    let (status, _) = send("issues", "d-2", r#"{"action":"opened"}"#).await;
    assert_eq!(status, 202);
    let events = host.events("github").await;
    assert_eq!(
        events.len(),
        2,
        "ping is not stored, the redelivery is not stored twice"
    );
    assert_eq!(events[0]["id"], "d-1");
    assert_eq!(events[0]["attributes"]["event"], "push");
    assert_eq!(events[1]["attributes"]["action"], "opened");
}

#[tokio::test]
async fn stripe_signatures() {
    let host = host_with(
        r#"[push]
auth = { scheme = "stripe", secret_file = ["a.secret", "b.secret"], tolerance = "300s" }
"#,
        &[
            ("a.secret", "whsec_stripe_a"),
            ("b.secret", "whsec_stripe_b"),
        ],
    )
    .await;
    let body = r#"{"id":"evt_1","type":"charge.succeeded"}"#;
    let header = |secret: &[u8], t: u64, body: &str| {
        let sig = hex::encode(hmac(secret, format!("{t}.{body}").as_bytes()));
        format!("t={t},v1={sig}")
    };
    let t = now();
    assert_eq!(
        push(
            &host,
            body,
            &[("Stripe-Signature", header(b"whsec_stripe_a", t, body))]
        )
        .await,
        202
    );
    assert_eq!(
        push(
            &host,
            body,
            &[("Stripe-Signature", header(b"whsec_other", t, body))]
        )
        .await,
        401,
        "wrong secret"
    );
    let other = r#"{"id":"evt_2","type":"charge.succeeded"}"#;
    assert_eq!(
        push(
            &host,
            other,
            &[("Stripe-Signature", header(b"whsec_stripe_a", t, body))]
        )
        .await,
        401,
        "tampered body"
    );
    assert_eq!(
        push(
            &host,
            other,
            &[("Stripe-Signature", header(b"whsec_stripe_b", t, other))]
        )
        .await,
        202,
        "rotated secret"
    );
    // Several v1 signatures (Stripe sends one per active secret): any may match.
    let third = r#"{"id":"evt_3"}"#;
    let bad = hex::encode(hmac(b"nope", format!("{t}.{third}").as_bytes()));
    let good = hex::encode(hmac(b"whsec_stripe_a", format!("{t}.{third}").as_bytes()));
    assert_eq!(
        push(
            &host,
            third,
            &[("Stripe-Signature", format!("t={t},v1={bad},v1={good}"))]
        )
        .await,
        202
    );
    assert_eq!(
        push(
            &host,
            body,
            &[("Stripe-Signature", header(b"whsec_stripe_a", t - 400, body))]
        )
        .await,
        401,
        "expired"
    );
    assert_eq!(
        push(
            &host,
            body,
            &[("Stripe-Signature", header(b"whsec_stripe_a", t + 400, body))]
        )
        .await,
        401,
        "future"
    );
    assert_eq!(
        push(&host, body, &[("Stripe-Signature", format!("t={t},v1="))]).await,
        401,
        "empty signature"
    );
    assert_eq!(
        push(&host, body, &[("Stripe-Signature", format!("v1={good}"))]).await,
        401,
        "no timestamp"
    );
    assert_eq!(push(&host, body, &[]).await, 401, "missing header");
    assert_eq!(host.events("hooks").await.len(), 3);
}

#[tokio::test]
async fn standard_webhooks_signatures() {
    let key = b"standard-webhooks-test-key-32byt";
    let secret = format!("whsec_{}", B64.encode(key));
    let host = host_with(
        r#"[push]
auth = { scheme = "standard-webhooks", secret_file = ["a.secret", "b.secret"] }
"#,
        &[
            ("a.secret", &secret),
            ("b.secret", &format!("whsec_{}", B64.encode(b"second"))),
        ],
    )
    .await;
    let sign = |key: &[u8], id: &str, ts: u64, body: &str| {
        format!(
            "v1,{}",
            B64.encode(hmac(key, format!("{id}.{ts}.{body}").as_bytes()))
        )
    };
    let headers = |id: &str, ts: u64, sig: String| {
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig),
        ]
    };
    let body = r#"{"id":"sw-1"}"#;
    let t = now();
    assert_eq!(
        push(
            &host,
            body,
            &headers("msg_1", t, sign(key, "msg_1", t, body))
        )
        .await,
        202
    );
    // webhook-id is the idempotency key: a resend is a duplicate.
    assert_eq!(
        push(
            &host,
            body,
            &headers("msg_1", t, sign(key, "msg_1", t, body))
        )
        .await,
        200
    );
    assert_eq!(
        push(
            &host,
            r#"{"id":"x"}"#,
            &headers("msg_2", t, sign(key, "msg_2", t, body))
        )
        .await,
        401,
        "tampered"
    );
    assert_eq!(
        push(
            &host,
            body,
            &headers("msg_3", t, sign(b"wrong", "msg_3", t, body))
        )
        .await,
        401,
        "wrong secret"
    );
    let b2 = r#"{"id":"sw-2"}"#;
    assert_eq!(
        push(
            &host,
            b2,
            &headers("msg_4", t, sign(b"second", "msg_4", t, b2))
        )
        .await,
        202,
        "rotated secret"
    );
    let b3 = r#"{"id":"sw-3"}"#;
    let multi = format!("v1,AAAA {}", sign(key, "msg_5", t, b3));
    assert_eq!(
        push(&host, b3, &headers("msg_5", t, multi)).await,
        202,
        "any of several signatures"
    );
    assert_eq!(
        push(
            &host,
            body,
            &headers("msg_6", t - 400, sign(key, "msg_6", t - 400, body))
        )
        .await,
        401,
        "expired"
    );
    assert_eq!(
        push(
            &host,
            body,
            &headers("msg_7", t + 400, sign(key, "msg_7", t + 400, body))
        )
        .await,
        401,
        "future"
    );
    assert_eq!(
        push(&host, body, &headers("msg_8", t, "v1,".into())).await,
        401,
        "truncated v1,"
    );
    assert_eq!(
        push(&host, body, &[("webhook-id", "msg_9".into())]).await,
        401,
        "missing headers"
    );
    assert_eq!(host.events("hooks").await.len(), 3);
}

#[tokio::test]
async fn standard_webhooks_published_vector() {
    // The example from the Standard Webhooks specification, with a tolerance
    // wide enough for its 2021 timestamp.
    let host = host_with(
        r#"[push]
auth = { scheme = "standard-webhooks", secret_file = "a.secret", tolerance = "100000d" }
"#,
        &[("a.secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
    )
    .await;
    let h = [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".to_string()),
        ("webhook-timestamp", "1614265330".to_string()),
        (
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_string(),
        ),
    ];
    assert_eq!(push(&host, r#"{"test": 2432232314}"#, &h).await, 202);
    assert_eq!(push(&host, r#"{"test": 2432232315}"#, &h).await, 401);
}

#[tokio::test]
async fn hmac_and_bearer_schemes() {
    let host = host_with(
        r#"[push]
auth = { scheme = "hmac-sha256", header = "X-Signature", prefix = "sha256=", encoding = "base64", secret_file = "a.secret" }
"#,
        &[("a.secret", "k1")],
    )
    .await;
    let body = r#"{"id":"h-1"}"#;
    let sig = format!("sha256={}", B64.encode(hmac(b"k1", body.as_bytes())));
    assert_eq!(
        push(&host, body, &[("X-Signature", sig.clone())]).await,
        202
    );
    assert_eq!(
        push(&host, body, &[("X-Signature", sig.replace("sha256=", ""))]).await,
        401,
        "missing prefix"
    );
    assert_eq!(
        push(&host, body, &[("X-Signature", "sha256=".into())]).await,
        401
    );
    assert_eq!(push(&host, body, &[]).await, 401);

    let host = host_with(
        r#"[push]
auth = { scheme = "bearer", token_file = ["a.secret", "b.secret"] }
"#,
        &[("a.secret", "tok-1"), ("b.secret", "tok-2")],
    )
    .await;
    assert_eq!(
        push(&host, body, &[("Authorization", "Bearer tok-1".into())]).await,
        202
    );
    assert_eq!(
        push(
            &host,
            r#"{"id":"h-2"}"#,
            &[("Authorization", "Bearer tok-2".into())]
        )
        .await,
        202
    );
    assert_eq!(
        push(&host, body, &[("Authorization", "Bearer tok-".into())]).await,
        401
    );
    assert_eq!(
        push(&host, body, &[("Authorization", "tok-1".into())]).await,
        401
    );
    assert_eq!(push(&host, body, &[]).await, 401);
}

#[tokio::test]
async fn a_missing_secret_refuses_the_connector_and_names_the_variable() {
    let host = TestHost::start(&[(
        "hooks",
        plugins::WEBHOOK_JSON,
        Some("[push]\nauth = { scheme = \"github\", secret_env = \"INLET_TEST_SURELY_UNSET_SECRET\" }\n"),
    )])
    .await;
    let (status, _, _) = host.post_json("/ingest/hooks", "{}", &[]).await;
    assert_eq!(status, 404, "not loaded");
    let (status, st) = host.get_json("/v1/connectors/hooks").await;
    assert_eq!(status, 200);
    let err = st["last_error"].as_str().unwrap();
    assert!(
        err.contains("hooks.toml") && err.contains("INLET_TEST_SURELY_UNSET_SECRET"),
        "{err}"
    );
}

/// Credentials stay with the host that checked them: the connector never
/// receives `Authorization`, `Proxy-Authorization`, `Cookie` or the
/// signature header of its scheme; every other header reaches it.
#[tokio::test]
async fn the_connector_never_sees_the_credentials_the_host_checked() {
    let host = TestHost::start(&[]).await;
    let dir = host.plugins_dir();
    std::fs::write(dir.join("tok.secret"), "t0k").unwrap();
    std::fs::write(dir.join("mac.secret"), "m4c").unwrap();
    inlet_tests::install(
        &dir,
        "bearer",
        plugins::HOSTILE,
        Some("[push]\nauth = { scheme = \"bearer\", token_file = \"tok.secret\" }\n"),
    );
    inlet_tests::install(
        &dir,
        "github",
        plugins::HOSTILE,
        Some("[push]\nauth = { scheme = \"github\", secret_file = \"mac.secret\" }\n"),
    );
    host.reload().await;
    let names = |reply: &serde_json::Value| -> Vec<String> {
        reply["headers"]
            .as_array()
            .unwrap_or_else(|| panic!("{reply}"))
            .iter()
            .map(|h| h[0].as_str().unwrap().to_string())
            .collect()
    };
    let (status, reply, _) = host
        .post_json(
            "/ingest/bearer/headers",
            "{}",
            &[
                ("Authorization", "Bearer t0k"),
                ("Cookie", "session=abc"),
                ("Proxy-Authorization", "Basic eDp5"),
                ("X-Request-Source", "crm"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let seen = names(&reply);
    for hidden in ["authorization", "cookie", "proxy-authorization"] {
        assert!(
            !seen.iter().any(|h| h == hidden),
            "{hidden} leaked: {seen:?}"
        );
    }
    assert!(seen.iter().any(|h| h == "x-request-source"), "{seen:?}");

    let body = "{}";
    let signature = format!("sha256={}", hex::encode(hmac(b"m4c", body.as_bytes())));
    let (status, reply, _) = host
        .post_json(
            "/ingest/github/headers",
            body,
            &[
                ("X-Hub-Signature-256", &signature),
                ("X-GitHub-Event", "push"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let seen = names(&reply);
    assert!(!seen.iter().any(|h| h == "x-hub-signature-256"), "{seen:?}");
    assert!(seen.iter().any(|h| h == "x-github-event"), "{seen:?}");
}

/// `[push] allowed_ips` and `trusted_proxies`: a sender from elsewhere gets
/// 403 before its body is read; behind a trusted proxy the sender is the
/// rightmost `X-Forwarded-For` address it appended, and an untrusted peer's
/// header is not believed. (127.0.0.1 and 127.0.0.2 are both loopback.)
#[tokio::test]
async fn allowed_ips_and_trusted_proxies_decide_who_may_push() {
    let host = TestHost::start_with(
        &[
            (
                "direct",
                plugins::WEBHOOK_JSON,
                Some("[push]\nallowed_ips = [\"127.0.0.2\"]\n"),
            ),
            (
                "proxied",
                plugins::WEBHOOK_JSON,
                Some("[push]\nallowed_ips = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n"),
            ),
        ],
        |c| c.trusted_proxies = vec!["127.0.0.1/32".into()],
    )
    .await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let (one, two) = (from([127, 0, 0, 1]), from([127, 0, 0, 2]));
    let push = |client: &reqwest::Client, source: &str, xff: Option<&str>| {
        let mut req = client
            .post(host.url(&format!("/ingest/{source}")))
            .body(r#"{"id":"x"}"#);
        if let Some(xff) = xff {
            req = req.header("x-forwarded-for", xff);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    // Direct: only 127.0.0.2.
    let (code, body) = push(&one, "direct", None).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("127.0.0.1"), "{body}");
    assert_eq!(push(&two, "direct", None).await.0, 202);
    // Through the trusted proxy (127.0.0.1): the address it appended.
    assert_eq!(push(&one, "proxied", Some("192.0.2.7")).await.0, 202);
    assert_eq!(push(&one, "proxied", Some("2001:db8::5")).await.0, 202);
    assert_eq!(push(&one, "proxied", None).await.0, 403, "the proxy itself");
    // A forged entry to the left of what the proxy appended is not believed.
    assert_eq!(
        push(&one, "proxied", Some("192.0.2.7, 203.0.113.9"))
            .await
            .0,
        403
    );
    // From an untrusted peer the header means nothing.
    assert_eq!(push(&two, "proxied", Some("192.0.2.7")).await.0, 403);
    // Refused before the body: a declared 1 GiB body still gets 403.
    let resp = one
        .post(host.url("/ingest/direct"))
        .header("content-length", "1073741824")
        .body(reqwest::Body::wrap_stream(futures::stream::pending::<
            Result<bytes::Bytes, std::io::Error>,
        >()))
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let metrics = host.metrics().await;
    assert!(
        metrics.contains(r#"inlet_push_requests_total{source="direct",outcome="forbidden"} 2"#),
        "{metrics}"
    );
}

/// `scheme = "hmac"`: a Slack-style template (timestamp header, `v0=`
/// prefix, `v0:{ts}:{body}` signed) through the real host: accepted when
/// signed by either of two secrets; a tampered body, a wrong secret, a
/// stale or future timestamp, a truncated or missing signature, another
/// scheme's signature and a missing header are 401 with nothing stored.
#[tokio::test]
async fn an_hmac_template_checks_slack_style_signatures() {
    let host = TestHost::start_with(
        &[(
            "slack",
            plugins::WEBHOOK_JSON,
            Some(
                r#"[push]
auth = { scheme = "hmac", algorithm = "sha256", header = "X-Slack-Signature", format = "v0={hex}", signed = "v0:{header:X-Slack-Request-Timestamp}:{body}", timestamp_header = "X-Slack-Request-Timestamp", tolerance = "5m", secret_file = ["old.secret", "new.secret"] }
"#,
            ),
        )],
        |c| {
            std::fs::write(c.plugins_dir.join("old.secret"), "old-signing-secret").unwrap();
            std::fs::write(c.plugins_dir.join("new.secret"), "new-signing-secret").unwrap();
        },
    )
    .await;
    let sign = |secret: &str, ts: &str, body: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("v0:{ts}:{body}").as_bytes());
        format!("v0={}", hex::encode(mac.finalize().into_bytes()))
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ts = now.to_string();
    let body = r#"{"id":"Ev1","type":"event_callback"}"#;
    let send = |sig: Option<String>, ts: String, body: &'static str| {
        let host = &host;
        async move {
            let mut headers = vec![("x-slack-request-timestamp", ts)];
            if let Some(sig) = sig {
                headers.push(("x-slack-signature", sig));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            host.post_json("/ingest/slack", body, &headers).await.0
        }
    };
    assert_eq!(
        send(
            Some(sign("old-signing-secret", &ts, body)),
            ts.clone(),
            body
        )
        .await,
        202
    );
    let body2 = r#"{"id":"Ev2"}"#;
    assert_eq!(
        send(
            Some(sign("new-signing-secret", &ts, body2)),
            ts.clone(),
            body2
        )
        .await,
        202
    );
    let good = sign("new-signing-secret", &ts, body);
    let stale = (now - 600).to_string();
    let future = (now + 600).to_string();
    for (what, sig, ts, body) in [
        (
            "tampered body",
            Some(good.clone()),
            ts.clone(),
            r#"{"id":"Ev1","type":"x"}"#,
        ),
        (
            "wrong secret",
            Some(sign("nope", &ts, body)),
            ts.clone(),
            body,
        ),
        (
            "stale",
            Some(sign("new-signing-secret", &stale, body)),
            stale.clone(),
            body,
        ),
        (
            "future",
            Some(sign("new-signing-secret", &future, body)),
            future.clone(),
            body,
        ),
        (
            "truncated",
            Some(good[..good.len() - 4].to_string()),
            ts.clone(),
            body,
        ),
        ("empty", Some("v0=".to_string()), ts.clone(), body),
        (
            "another scheme's",
            Some(good.replace("v0=", "sha256=")),
            ts.clone(),
            body,
        ),
        ("missing", None, ts.clone(), body),
    ] {
        assert_eq!(send(sig, ts, body).await, 401, "{what}");
    }
    let ids: Vec<_> = host
        .events("slack")
        .await
        .iter()
        .map(|e| e["payload"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["Ev1", "Ev2"]);
}
