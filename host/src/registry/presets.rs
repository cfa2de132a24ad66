//! Provider presets of `[push] auth`: `auth = { scheme = "slack",
//! secret_env = "..." }` and the provider's headers, encoding, signed
//! string and timestamp rule are built in. Most are `hmac` templates
//! (template.rs); GitLab's token and Mailgun's signature in the body are
//! checks of their own, here.
//!
//! The tolerances are the providers' own advice where they give one
//! (Paddle 5 s, Calendly 3 min, Twitch 10 min), else 5 minutes; `tolerance`
//! in the manifest overrides it.

use super::template::{Signed, fresh, is_form};
use crate::config::AuthScheme;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use std::time::{Duration, SystemTime};

/// A preset that is an `hmac` template.
pub(super) struct TemplatePreset {
    pub name: &'static str,
    pub algorithm: &'static str,
    pub header: &'static str,
    pub format: &'static str,
    pub signed: &'static str,
    pub timestamp_header: Option<&'static str>,
    /// The default tolerance, for presets with a timestamp.
    pub tolerance: Option<Duration>,
    /// Twilio's `bodySHA256` query parameter for bodies that are not forms.
    pub body_sha256_param: Option<&'static str>,
    /// The provider's delivery id, the idempotency key unless the manifest
    /// names another header (a replayed delivery is answered, not stored).
    pub idempotency_header: Option<&'static str>,
}

const FIVE_MINUTES: Option<Duration> = Some(Duration::from_secs(300));

const fn preset(
    name: &'static str,
    algorithm: &'static str,
    header: &'static str,
    format: &'static str,
    signed: &'static str,
) -> TemplatePreset {
    TemplatePreset {
        name,
        algorithm,
        header,
        format,
        signed,
        timestamp_header: None,
        tolerance: None,
        body_sha256_param: None,
        idempotency_header: None,
    }
}

/// The template behind `scheme`, when it is a template preset.
pub(super) fn template(scheme: AuthScheme) -> Option<TemplatePreset> {
    Some(match scheme {
        AuthScheme::Slack => TemplatePreset {
            timestamp_header: Some("X-Slack-Request-Timestamp"),
            tolerance: FIVE_MINUTES,
            ..preset(
                "slack",
                "sha256",
                "X-Slack-Signature",
                "v0={hex}",
                "v0:{timestamp}:{body}",
            )
        },
        AuthScheme::Zoom => TemplatePreset {
            timestamp_header: Some("x-zm-request-timestamp"),
            tolerance: FIVE_MINUTES,
            ..preset(
                "zoom",
                "sha256",
                "x-zm-signature",
                "v0={hex}",
                "v0:{timestamp}:{body}",
            )
        },
        AuthScheme::Shopify => TemplatePreset {
            idempotency_header: Some("X-Shopify-Webhook-Id"),
            ..preset(
                "shopify",
                "sha256",
                "X-Shopify-Hmac-Sha256",
                "{base64}",
                "{body}",
            )
        },
        AuthScheme::Paddle => TemplatePreset {
            tolerance: Some(Duration::from_secs(5)),
            ..preset(
                "paddle",
                "sha256",
                "Paddle-Signature",
                "ts={timestamp};h1={hex}",
                "{timestamp}:{body}",
            )
        },
        AuthScheme::Linear => TemplatePreset {
            idempotency_header: Some("Linear-Delivery"),
            ..preset("linear", "sha256", "Linear-Signature", "{hex}", "{body}")
        },
        AuthScheme::Intercom => preset(
            "intercom",
            "sha1",
            "X-Hub-Signature",
            "sha1={hex}",
            "{body}",
        ),
        AuthScheme::Typeform => preset(
            "typeform",
            "sha256",
            "Typeform-Signature",
            "sha256={base64}",
            "{body}",
        ),
        AuthScheme::Calendly => TemplatePreset {
            tolerance: Some(Duration::from_secs(180)),
            ..preset(
                "calendly",
                "sha256",
                "Calendly-Webhook-Signature",
                "t={timestamp},v1={hex}",
                "{timestamp}.{body}",
            )
        },
        AuthScheme::Twitch => TemplatePreset {
            timestamp_header: Some("Twitch-Eventsub-Message-Timestamp"),
            idempotency_header: Some("Twitch-Eventsub-Message-Id"),
            tolerance: Some(Duration::from_secs(600)),
            ..preset(
                "twitch",
                "sha256",
                "Twitch-Eventsub-Message-Signature",
                "sha256={hex}",
                "{header:Twitch-Eventsub-Message-Id}{timestamp}{body}",
            )
        },
        AuthScheme::Square => preset(
            "square",
            "sha256",
            "x-square-hmacsha256-signature",
            "{base64}",
            "{url}{body}",
        ),
        AuthScheme::Twilio => TemplatePreset {
            body_sha256_param: Some("bodySHA256"),
            idempotency_header: Some("I-Twilio-Idempotency-Token"),
            ..preset(
                "twilio",
                "sha1",
                "X-Twilio-Signature",
                "{base64}",
                "{url}{form}",
            )
        },
        _ => return None,
    })
}

/// GitLab's header carrying the webhook's secret token.
pub(super) const GITLAB_TOKEN: &str = "x-gitlab-token";

/// Mailgun: `signature.timestamp`, `.token` and `.signature` (hex
/// HMAC-SHA256 of timestamp then token) in a JSON body, or the
/// `timestamp`, `token` and `signature` fields of a form post.
pub(super) fn mailgun(
    secrets: &[Vec<u8>],
    tolerance: Duration,
    headers: &HeaderMap,
    req: Signed<'_>,
    now: SystemTime,
) -> bool {
    let Some(fields) = mailgun_fields(headers, req.body) else {
        return false;
    };
    let Ok(given) = hex::decode(fields.signature.trim()) else {
        return false;
    };
    if given.len() != 32 || fields.token.is_empty() || !fresh(&fields.timestamp, tolerance, now) {
        return false;
    }
    let mut found = false;
    for secret in secrets {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(fields.timestamp.as_bytes());
        mac.update(fields.token.as_bytes());
        // Constant-time; every secret is tried.
        found |= mac.verify_slice(&given).is_ok();
    }
    found
}

#[derive(serde::Deserialize, Default)]
struct MailgunFields {
    timestamp: String,
    token: String,
    signature: String,
}

/// Mailgun's signature fields, from a JSON body (`signature.*`) or a
/// urlencoded form.
fn mailgun_fields(headers: &HeaderMap, body: &[u8]) -> Option<MailgunFields> {
    #[derive(serde::Deserialize)]
    struct Body {
        signature: MailgunFields,
    }
    if is_form(headers) {
        let mut f = MailgunFields::default();
        for (k, v) in form_urlencoded::parse(body) {
            match &*k {
                "timestamp" => f.timestamp = v.into_owned(),
                "token" => f.token = v.into_owned(),
                "signature" => f.signature = v.into_owned(),
                _ => {}
            }
        }
        Some(f)
    } else {
        serde_json::from_slice::<Body>(body)
            .ok()
            .map(|b| b.signature)
    }
}

/// Mailgun's token, the idempotency key of its deliveries: the signature
/// covers the timestamp and token, not the event, so a replayed token is
/// answered with the first delivery's answer and never stores another
/// event.
pub(super) fn mailgun_key(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    mailgun_fields(headers, body)
        .map(|f| f.token)
        .filter(|t| !t.is_empty())
        .map(|t| format!("mailgun-token:{t}"))
}
