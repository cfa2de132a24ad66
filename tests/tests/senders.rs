//! Every provider preset, end to end: one host, one source per preset, each
//! `auth = { scheme = "<preset>", ... }` in one line. The signatures are
//! made here, apart from the host, from each provider's documented recipe
//! with the hmac, sha1/sha2, ed25519-dalek and p256 crates directly. For each: a
//! valid request is stored, and so is one signed with the rotated second
//! secret or key; a tampered body, a wrong secret, another preset's
//! signature, a stale or future timestamp (where the scheme has one), a
//! truncated, an empty and a missing signature are each 401, and nothing
//! of them is stored.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use inlet_tests::{TestHost, plugins};
use std::time::{SystemTime, UNIX_EPOCH};

const PUBLIC_URL: &str = "https://hooks.example.com";

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hmac1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// What happens to the signature on its way.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mangle {
    Intact,
    Truncated,
    Empty,
    Missing,
}

impl Mangle {
    fn apply(self, sig: String) -> Option<String> {
        match self {
            Mangle::Intact => Some(sig),
            Mangle::Truncated => Some(sig[..sig.len() - 4].to_string()),
            Mangle::Empty => Some(String::new()),
            Mangle::Missing => None,
        }
    }
}

/// The signing key a request is made with: the first or second (rotated)
/// secret or key pair, or a wrong one.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Key {
    First,
    Second,
    Wrong,
}

impl Key {
    fn secret(self) -> &'static [u8] {
        match self {
            Key::First => b"first-signing-secret",
            Key::Second => b"second-signing-secret",
            Key::Wrong => b"not-the-secret",
        }
    }

    fn seed(self) -> [u8; 32] {
        match self {
            Key::First => [1; 32],
            Key::Second => [2; 32],
            Key::Wrong => [3; 32],
        }
    }
}

/// A request to send.
struct Req {
    headers: Vec<(String, String)>,
    body: String,
    query: String,
}

/// One sender: its source, its manifest line and its signer.
struct Sender {
    source: &'static str,
    /// The manifest's `auth = ...`.
    auth: String,
    wasm: &'static str,
    /// The signer's tolerance in seconds, when it signs a timestamp.
    tolerance: Option<u64>,
    /// Whether the signature covers the body (a token does not).
    covers_body: bool,
    sign: fn(&Sender, Key, u64, &str, Mangle) -> Req,
}

impl Sender {
    fn url(&self, query: &str) -> String {
        format!("{PUBLIC_URL}/ingest/{}{query}", self.source)
    }
}

fn req(headers: Vec<(&str, Option<String>)>, body: &str) -> Req {
    Req {
        headers: headers
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?)))
            .collect(),
        body: body.to_string(),
        query: String::new(),
    }
}

/// Slack's and Zoom's recipe: `v0=` hex HMAC-SHA256 of
/// `v0:{timestamp}:{body}`, the timestamp in a header of its own.
fn v0(key: Key, ts: u64, body: &str, m: Mangle, ts_header: &str, sig_header: &str) -> Req {
    let mac = hmac256(key.secret(), &[format!("v0:{ts}:{body}").as_bytes()]);
    req(
        vec![
            (ts_header, Some(ts.to_string())),
            (sig_header, m.apply(format!("v0={}", hex::encode(mac)))),
        ],
        body,
    )
}

fn json_body(id: &str) -> String {
    format!(r#"{{"id":"{id}","type":"test.event"}}"#)
}

fn ed25519_public(key: Key) -> String {
    let k = ed25519_dalek::SigningKey::from_bytes(&key.seed());
    hex::encode(k.verifying_key().as_bytes())
}

fn p256_public(key: Key) -> String {
    use p256::pkcs8::EncodePublicKey as _;
    let k = p256::ecdsa::SigningKey::from_bytes(&key.seed().into()).unwrap();
    B64.encode(k.verifying_key().to_public_key_der().unwrap().as_bytes())
}

fn senders() -> Vec<Sender> {
    let files = r#"secret_file = ["first.secret", "second.secret"]"#;
    let line = |scheme: &str| format!(r#"{{ scheme = "{scheme}", {files} }}"#);
    vec![
        Sender {
            source: "slack",
            auth: line("slack"),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: Some(300),
            covers_body: true,
            sign: |_, key, ts, body, m| {
                v0(
                    key,
                    ts,
                    body,
                    m,
                    "X-Slack-Request-Timestamp",
                    "X-Slack-Signature",
                )
            },
        },
        Sender {
            source: "zoom",
            auth: line("zoom"),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: Some(300),
            covers_body: true,
            sign: |_, key, ts, body, m| {
                v0(key, ts, body, m, "x-zm-request-timestamp", "x-zm-signature")
            },
        },
        Sender {
            source: "shopify",
            auth: line("shopify"),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: None,
            covers_body: true,
            sign: |_, key, _, body, m| {
                let mac = hmac256(key.secret(), &[body.as_bytes()]);
                req(
                    vec![("X-Shopify-Hmac-Sha256", m.apply(B64.encode(mac)))],
                    body,
                )
            },
        },
        Sender {
            source: "paddle",
            auth: line("paddle"),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: Some(5),
            covers_body: true,
            sign: |_, key, ts, body, m| {
                let mac = hmac256(key.secret(), &[format!("{ts}:{body}").as_bytes()]);
                let sig = m.apply(hex::encode(mac));
                let header = sig.map(|s| format!("ts={ts};h1={s}"));
                req(vec![("Paddle-Signature", header)], body)
            },
        },
        Sender {
            source: "linear",
            auth: line("linear"),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: None,
            covers_body: true,
            sign: |_, key, _, body, m| {
                let mac = hmac256(key.secret(), &[body.as_bytes()]);
                req(vec![("Linear-Signature", m.apply(hex::encode(mac)))], body)
            },
        },
        Sender {
            source: "intercom",
            auth: line("intercom"),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: None,
            covers_body: true,
            sign: |_, key, _, body, m| {
                let mac = hmac1(key.secret(), &[body.as_bytes()]);
                req(
                    vec![(
                        "X-Hub-Signature",
                        m.apply(format!("sha1={}", hex::encode(mac))),
                    )],
                    body,
                )
            },
        },
        Sender {
            source: "typeform",
            auth: line("typeform"),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: None,
            covers_body: true,
            sign: |_, key, _, body, m| {
                let mac = hmac256(key.secret(), &[body.as_bytes()]);
                req(
                    vec![(
                        "Typeform-Signature",
                        m.apply(format!("sha256={}", B64.encode(mac))),
                    )],
                    body,
                )
            },
        },
        Sender {
            source: "calendly",
            auth: line("calendly"),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: Some(180),
            covers_body: true,
            sign: |_, key, ts, body, m| {
                let mac = hmac256(key.secret(), &[format!("{ts}.{body}").as_bytes()]);
                let sig = m.apply(hex::encode(mac));
                let header = sig.map(|s| format!("t={ts},v1={s}"));
                req(vec![("Calendly-Webhook-Signature", header)], body)
            },
        },
        Sender {
            source: "twitch",
            auth: line("twitch"),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: Some(600),
            covers_body: true,
            sign: |_, key, ts, body, m| {
                // RFC 3339 with nanoseconds, as Twitch sends it.
                let at = chrono::DateTime::from_timestamp(ts as i64, 123_456_789)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                // A message id per message (it is the idempotency key).
                use sha2::Digest as _;
                let id = &hex::encode(sha2::Sha256::digest(body))[..32];
                let mac = hmac256(
                    key.secret(),
                    &[id.as_bytes(), at.as_bytes(), body.as_bytes()],
                );
                req(
                    vec![
                        ("Twitch-Eventsub-Message-Id", Some(id.to_string())),
                        ("Twitch-Eventsub-Message-Timestamp", Some(at)),
                        (
                            "Twitch-Eventsub-Message-Signature",
                            m.apply(format!("sha256={}", hex::encode(mac))),
                        ),
                    ],
                    body,
                )
            },
        },
        Sender {
            source: "gitlab",
            auth: line("gitlab"),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: None,
            covers_body: false,
            sign: |_, key, _, body, m| {
                let token = String::from_utf8(key.secret().to_vec()).unwrap();
                req(vec![("X-Gitlab-Token", m.apply(token))], body)
            },
        },
        Sender {
            source: "square",
            auth: line("square"),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: None,
            covers_body: true,
            sign: |s, key, _, body, m| {
                let mac = hmac256(key.secret(), &[s.url("").as_bytes(), body.as_bytes()]);
                req(
                    vec![("x-square-hmacsha256-signature", m.apply(B64.encode(mac)))],
                    body,
                )
            },
        },
        Sender {
            // Twilio's form posts: the URL (with its query), then every
            // parameter sorted by name, name then value.
            source: "twilio",
            auth: line("twilio"),
            wasm: plugins::FORM_PUSH,
            tolerance: None,
            covers_body: true,
            sign: |s, key, _, body, m| {
                let id = serde_json::from_str::<serde_json::Value>(body).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let form =
                    format!("id={id}&From=%2B15005550006&Body=Hello+there%21&To=%2B15005550001");
                let sorted = format!("BodyHello there!From+15005550006To+15005550001id{id}");
                let query = "?account=main";
                let mac = hmac1(key.secret(), &[s.url(query).as_bytes(), sorted.as_bytes()]);
                let mut r = req(
                    vec![
                        (
                            "Content-Type",
                            Some("application/x-www-form-urlencoded".into()),
                        ),
                        ("X-Twilio-Signature", m.apply(B64.encode(mac))),
                    ],
                    &form,
                );
                r.query = query.to_string();
                r
            },
        },
        Sender {
            // Twilio's JSON bodies: the URL carries bodySHA256, the
            // body's hex SHA-256, and the signature covers the URL.
            source: "twilio-json",
            auth: line("twilio"),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: None,
            covers_body: true,
            sign: |s, key, _, body, m| {
                use sha2::Digest as _;
                let query = format!("?bodySHA256={}", hex::encode(sha2::Sha256::digest(body)));
                let mac = hmac1(key.secret(), &[s.url(&query).as_bytes()]);
                let mut r = req(vec![("X-Twilio-Signature", m.apply(B64.encode(mac)))], body);
                r.query = query;
                r
            },
        },
        Sender {
            // Mailgun signs timestamp + token, and sends all three in the
            // body; the connector stores the whole body.
            source: "mailgun",
            auth: line("mailgun"),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: Some(300),
            // Mailgun signs the timestamp and token, not the event.
            covers_body: false,
            sign: |_, key, ts, body, m| {
                let event: serde_json::Value = serde_json::from_str(body).unwrap();
                let token = format!("token-{}", event["id"].as_str().unwrap());
                let mac = hmac256(key.secret(), &[ts.to_string().as_bytes(), token.as_bytes()]);
                let mut signature =
                    serde_json::json!({"timestamp": ts.to_string(), "token": token});
                if let Some(sig) = m.apply(hex::encode(mac)) {
                    signature["signature"] = sig.into();
                }
                let mut full = event.clone();
                full["signature"] = signature;
                req(vec![], &full.to_string())
            },
        },
        Sender {
            source: "discord",
            auth: format!(
                r#"{{ scheme = "ed25519", public_key = ["{}", "{}"] }}"#,
                ed25519_public(Key::First),
                ed25519_public(Key::Second)
            ),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: Some(300),
            covers_body: true,
            sign: |_, key, ts, body, m| {
                use ed25519_dalek::Signer as _;
                let k = ed25519_dalek::SigningKey::from_bytes(&key.seed());
                let sig = k.sign(format!("{ts}{body}").as_bytes());
                req(
                    vec![
                        ("X-Signature-Timestamp", Some(ts.to_string())),
                        ("X-Signature-Ed25519", m.apply(hex::encode(sig.to_bytes()))),
                    ],
                    body,
                )
            },
        },
        Sender {
            source: "sendgrid",
            auth: format!(
                r#"{{ scheme = "ecdsa-p256", public_key = ["{}", "{}"] }}"#,
                p256_public(Key::First),
                p256_public(Key::Second)
            ),
            wasm: plugins::WEBHOOK_JSON,
            tolerance: Some(300),
            covers_body: true,
            sign: |_, key, ts, body, m| {
                use p256::ecdsa::signature::Signer as _;
                let k = p256::ecdsa::SigningKey::from_bytes(&key.seed().into()).unwrap();
                let sig: p256::ecdsa::Signature = k.sign(format!("{ts}{body}").as_bytes());
                req(
                    vec![
                        (
                            "X-Twilio-Email-Event-Webhook-Timestamp",
                            Some(ts.to_string()),
                        ),
                        (
                            "X-Twilio-Email-Event-Webhook-Signature",
                            m.apply(B64.encode(sig.to_der().as_bytes())),
                        ),
                    ],
                    body,
                )
            },
        },
    ]
}

async fn send(host: &TestHost, sender: &Sender, r: &Req) -> u16 {
    let mut builder = host
        .client
        .post(host.url(&format!("/ingest/{}{}", sender.source, r.query)))
        .body(r.body.clone());
    if !r
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        builder = builder.header("content-type", "application/json");
    }
    for (k, v) in &r.headers {
        builder = builder.header(k, v);
    }
    let resp = builder.send().await.unwrap();
    let status = resp.status().as_u16();
    if status == 401 {
        let reply: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(reply["error"]["code"], "unauthorized");
    }
    status
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn every_preset_accepts_its_providers_signature_and_refuses_the_rest() {
    let senders = senders();
    let manifests: Vec<(String, String)> = senders
        .iter()
        .map(|s| (s.source.to_string(), format!("[push]\nauth = {}\n", s.auth)))
        .collect();
    let connectors: Vec<(&str, &str, Option<&str>)> = senders
        .iter()
        .zip(&manifests)
        .map(|(s, (_, m))| (s.source, s.wasm, Some(m.as_str())))
        .collect();
    let host = TestHost::start_with(&connectors, |c| {
        std::fs::write(c.plugins_dir.join("first.secret"), Key::First.secret()).unwrap();
        std::fs::write(c.plugins_dir.join("second.secret"), Key::Second.secret()).unwrap();
        c.public_url = Some(PUBLIC_URL.to_string());
    })
    .await;
    // Every source loaded with its preset.
    for s in &senders {
        let (status, st) = host.get_json(&format!("/v1/connectors/{}", s.source)).await;
        assert_eq!(status, 200, "{}: {st}", s.source);
        assert!(st["last_error"].is_null(), "{}: {st}", s.source);
    }

    for (i, s) in senders.iter().enumerate() {
        // Paddle allows 5 seconds: each sender signs with its own now.
        let t = now();
        let sign = |key, ts, body: &str, m| (s.sign)(s, key, ts, body, m);
        let first = json_body(&format!("{}-1", s.source));
        let second = json_body(&format!("{}-2", s.source));
        let what = s.source;
        assert_eq!(
            send(&host, s, &sign(Key::First, t, &first, Mangle::Intact)).await,
            202,
            "{what}: valid"
        );
        assert_eq!(
            send(&host, s, &sign(Key::Second, t, &second, Mangle::Intact)).await,
            202,
            "{what}: rotated"
        );

        let refused = json_body(&format!("{}-refused", s.source));
        let mut cases: Vec<(&str, Req)> = vec![
            (
                "wrong secret",
                sign(Key::Wrong, t, &refused, Mangle::Intact),
            ),
            (
                "truncated",
                sign(Key::First, t, &refused, Mangle::Truncated),
            ),
            ("empty", sign(Key::First, t, &refused, Mangle::Empty)),
            ("missing", sign(Key::First, t, &refused, Mangle::Missing)),
        ];
        if s.covers_body {
            let mut tampered = sign(Key::First, t, &refused, Mangle::Intact);
            tampered.body = tampered.body.replacen("refused", "tampered", 1);
            cases.push(("tampered body", tampered));
        }
        if let Some(tolerance) = s.tolerance {
            cases.push((
                "stale",
                sign(Key::First, t - tolerance - 60, &refused, Mangle::Intact),
            ));
            cases.push((
                "future",
                sign(Key::First, t + tolerance + 60, &refused, Mangle::Intact),
            ));
        }
        // Another preset's valid signature, with the same secret, for the
        // same body.
        let other = &senders[(i + 1) % senders.len()];
        let mut theirs = (other.sign)(other, Key::First, t, &refused, Mangle::Intact);
        theirs.query.clear();
        cases.push(("another preset's signature", theirs));
        for (case, r) in &cases {
            assert_eq!(send(&host, s, r).await, 401, "{what}: {case}");
        }
        // Only the two valid pushes are stored.
        let ids: Vec<String> = host
            .events(s.source)
            .await
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, [format!("{what}-1"), format!("{what}-2")], "{what}");
    }

    // Twilio: a JSON delivery's signature covers the URL and its body
    // hash; calling the body a form (an unsigned header) does not skip the
    // hash.
    let twilio = senders.iter().find(|s| s.source == "twilio-json").unwrap();
    let mut swapped = (twilio.sign)(twilio, Key::First, now(), &json_body("x"), Mangle::Intact);
    swapped.body = String::new();
    swapped.headers.push((
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    assert_eq!(
        send(&host, twilio, &swapped).await,
        401,
        "twilio: body swapped"
    );

    // Mailgun signs its token, not the event: a captured token with another
    // event is answered as the first delivery, and stores nothing.
    let mailgun = senders.iter().find(|s| s.source == "mailgun").unwrap();
    let t = now();
    let first = (mailgun.sign)(mailgun, Key::First, t, &json_body("mg-a"), Mangle::Intact);
    assert_eq!(send(&host, mailgun, &first).await, 202);
    let mut forged = first;
    forged.body = forged.body.replacen("mg-a", "mg-forged", 1);
    assert_eq!(
        send(&host, mailgun, &forged).await,
        200,
        "the first answer, again"
    );
    let ids: Vec<String> = host
        .events("mailgun")
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["mailgun-1", "mailgun-2", "mg-a"]);
}

/// The Slack and Zoom connectors, on the real binary: the host checks each
/// provider's signature, the connectors answer the handshakes (Zoom's with
/// an HMAC the host computes from a secret the connector never sees) and
/// store the notifications.
#[tokio::test]
async fn slack_and_zoom_handshakes_end_to_end() {
    const BIN: &str = env!("CARGO_BIN_EXE_inlet");
    let dir = inlet_tests::host_dir(&[
        (
            "slack",
            plugins::SLACK,
            Some("[push]\nauth = { scheme = \"slack\", secret_file = \"slack.secret\" }\n"),
        ),
        (
            "zoom",
            plugins::ZOOM,
            Some(
                "[push]\nauth = { scheme = \"zoom\", secret_env = \"ZOOM_SECRET_TOKEN\" }\n\
                 [sandbox.secrets]\nzoom = { env = \"ZOOM_SECRET_TOKEN\" }\n",
            ),
        ),
    ]);
    std::fs::write(
        dir.path().join("plugins.d/slack.secret"),
        "slack-signing-secret",
    )
    .unwrap();
    let host = inlet_tests::ChildHost::spawn(
        BIN,
        dir.path(),
        &[],
        &[("ZOOM_SECRET_TOKEN", "zoom-secret-token")],
    )
    .expect("starts");
    let client = reqwest::Client::new();
    let post = |source: &str, headers: Vec<(&str, String)>, body: &str| {
        let mut b = client
            .post(host.url(&format!("/ingest/{source}")))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            b = b.header(k, v);
        }
        b.send()
    };

    // Slack: url_verification is answered with its challenge.
    let ts = now();
    let slack = |body: &str, secret: &[u8]| {
        let mac = hmac256(secret, &[format!("v0:{ts}:{body}").as_bytes()]);
        vec![
            ("X-Slack-Request-Timestamp", ts.to_string()),
            ("X-Slack-Signature", format!("v0={}", hex::encode(mac))),
        ]
    };
    let challenge = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let resp = post(
        "slack",
        slack(challenge, b"slack-signing-secret"),
        challenge,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let reply: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        reply["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    // ...but not without the signing secret.
    let resp = post("slack", slack(challenge, b"guess"), challenge)
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // An event_callback is stored by event_id; Slack's retry is not stored again.
    let callback = r#"{"type":"event_callback","team_id":"T0001","event_id":"Ev0PV52K21","event":{"type":"app_mention","text":"hi"}}"#;
    for _ in 0..2 {
        let resp = post("slack", slack(callback, b"slack-signing-secret"), callback)
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    let events = host.events("slack").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["id"], "Ev0PV52K21");

    // Zoom: endpoint.url_validation, answered with HMAC-SHA256(secret
    // token, plainToken), computed here apart from the host.
    let zoom = |body: &str| {
        let mac = hmac256(
            b"zoom-secret-token",
            &[format!("v0:{ts}:{body}").as_bytes()],
        );
        vec![
            ("x-zm-request-timestamp", ts.to_string()),
            ("x-zm-signature", format!("v0={}", hex::encode(mac))),
        ]
    };
    let validation = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let resp = post("zoom", zoom(validation), validation).await.unwrap();
    assert_eq!(resp.status(), 200);
    let reply: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(reply["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        reply["encryptedToken"],
        hex::encode(hmac256(b"zoom-secret-token", &[b"qgg8vlvZRS6UYooatFL8Aw"]))
    );
    let resp = post("zoom", vec![], validation).await.unwrap();
    assert_eq!(resp.status(), 401, "unsigned validation");
    let started = r#"{"event":"meeting.started","event_ts":1700000000123,"payload":{"object":{"id":"85746065"}}}"#;
    let resp = post("zoom", zoom(started), started).await.unwrap();
    assert_eq!(resp.status(), 202);
    let events = host.events("zoom").await;
    assert_eq!(events.len(), 1, "only the notification: {events:?}");
    assert_eq!(events[0]["id"], "meeting.started:1700000000123:85746065");
    // The secret token appears nowhere the connector could put it.
    assert!(!host.log_text().contains("zoom-secret-token"));
}
