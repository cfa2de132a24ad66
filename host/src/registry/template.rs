//! `scheme = "hmac"`: the HMAC family of webhook signatures as a template.
//!
//! ```toml
//! auth = { scheme = "hmac", algorithm = "sha256", header = "X-Slack-Signature",
//!          format = "v0={hex}", signed = "v0:{header:X-Slack-Request-Timestamp}:{body}",
//!          timestamp_header = "X-Slack-Request-Timestamp", tolerance = "5m",
//!          secret_env = "SLACK_SIGNING_SECRET" }
//! ```
//!
//! - `algorithm`: `sha1`, `sha256` (default) or `sha512`.
//! - `format`: how the header carries the signature: `{hex}` or `{base64}`,
//!   after a prefix (`sha256={hex}`), or as one of `key=value` pairs
//!   separated by `,` or `;` (`t={timestamp},v1={hex}`, `ts={timestamp};h1={hex}`);
//!   the signature key may repeat (every one is tried, at most 8).
//! - `signed`: what is signed, with `{body}`, `{timestamp}`,
//!   `{header:NAME}`, `{url}` (the URL the sender posted to: the source's
//!   public URL, then the request's path after it and its query) and
//!   `{form}` (a form post's parameters sorted, each name then value)
//!   (default `{body}`).
//! - The timestamp comes from the format's `{timestamp}` pair or from
//!   `timestamp_header` (Unix seconds, or RFC 3339); with one, `tolerance`
//!   (default 5m) bounds its distance from now, and without one
//!   `tolerance` is refused.
//!
//! The provider presets (presets.rs) are templates too.

use super::auth::MAX_SIGNATURES;
use crate::config::ConfigError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::{HeaderMap, HeaderName};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

use crate::mac::Algorithm;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Hex,
    Base64,
}

/// One piece of `signed`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Body,
    Timestamp,
    Header(HeaderName),
    Url,
    Form,
}

/// How the signature header is read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Format {
    /// `key=value` pairs separated by this, or the whole value.
    pairs: Option<char>,
    /// The signature's key (`v1`), or its prefix when not in pairs.
    sig_key: String,
    encoding: Encoding,
    /// The timestamp's key in the pairs.
    ts_key: Option<String>,
}

/// A resolved `scheme = "hmac"`.
#[derive(Clone)]
pub struct Template {
    algorithm: Algorithm,
    header: HeaderName,
    format: Format,
    signed: Vec<Piece>,
    timestamp_header: Option<HeaderName>,
    tolerance: Option<Duration>,
    pub(super) secrets: Vec<Vec<u8>>,
    /// The source's public URL (for `{url}`).
    url: Option<String>,
    /// Twilio: a body that is not a form is signed through this query
    /// parameter, the hex SHA-256 of the body, which must match.
    pub(super) body_sha256_param: Option<&'static str>,
    /// The scheme as the manifest names it (`hmac`, or a preset's name).
    pub(super) name: &'static str,
    /// The provider's delivery-id header (a preset's).
    pub(super) idempotency_header: Option<&'static str>,
}

/// What a signature may cover besides the headers: the body, and where
/// the request was sent (the path after `/ingest/{source}`, its query).
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub body: &'a [u8],
    pub rest: &'a str,
    pub query: Option<&'a str>,
}

impl Signed<'_> {
    /// The URL the sender posted to, on `base` (the source's public URL).
    fn url(&self, base: &str) -> String {
        let mut url = if self.rest.is_empty() {
            base.to_string()
        } else {
            format!("{}{}", base.trim_end_matches('/'), self.rest)
        };
        if let Some(q) = self.query {
            url.push('?');
            url.push_str(q);
        }
        url
    }

    /// The query parameter `name`, percent-decoded.
    pub(super) fn param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query?.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// Whether the request is a form post.
pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// A form body's parameters sorted, each name then value (Twilio's
/// signed string).
fn sorted_form(body: &[u8]) -> Vec<u8> {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    pairs.sort();
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// A signed timestamp as Unix seconds: digits, or RFC 3339.
pub(super) fn unix_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    u64::try_from(t.timestamp()).ok()
}

/// Whether `ts` is within `tolerance` of `now`.
pub(super) fn fresh(ts: &str, tolerance: Duration, now: SystemTime) -> bool {
    let (Some(t), Ok(now)) = (unix_seconds(ts), now.duration_since(UNIX_EPOCH)) else {
        return false;
    };
    now.as_secs().abs_diff(t) <= tolerance.as_secs()
}

fn invalid(path: &Path, key: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::invalid(path, &format!("push.auth.{key}"), why)
}

fn header_name(path: &Path, key: &str, name: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| invalid(path, key, format!("`{name}` is not a header name")))
}

fn parse_format(path: &Path, text: &str) -> Result<Format, ConfigError> {
    let bad = |why: &str| invalid(path, "format", format!("`{text}`: {why}"));
    let encoding = |placeholder: &str| match placeholder {
        "{hex}" => Ok(Encoding::Hex),
        "{base64}" => Ok(Encoding::Base64),
        other => Err(bad(&format!(
            "unknown placeholder `{other}`; the signature is `{{hex}}` or `{{base64}}`"
        ))),
    };
    let Some(sep) = [',', ';'].into_iter().find(|c| text.contains(*c)) else {
        // A prefix, then the signature: `{hex}`, `sha256={hex}`, `v0={hex}`.
        let i = text
            .find('{')
            .ok_or_else(|| bad("no `{hex}` or `{base64}`: where is the signature?"))?;
        return Ok(Format {
            pairs: None,
            sig_key: text[..i].to_string(),
            encoding: encoding(text[i..].trim())?,
            ts_key: None,
        });
    };
    // `key=value` pairs: `t={timestamp},v1={hex}`, `ts={timestamp};h1={hex}`.
    let (mut sig, mut ts) = (None, None);
    for part in text.split(sep).map(str::trim) {
        let (key, value) = part
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| bad("each pair is `key={hex}`, `key={base64}` or `key={timestamp}`"))?;
        let (key, value) = (key.trim(), value.trim());
        if value == "{timestamp}" {
            ts = Some(key.to_string());
        } else if sig.replace((key.to_string(), encoding(value)?)).is_some() {
            return Err(bad("one signature pair"));
        }
    }
    let (sig_key, encoding) =
        sig.ok_or_else(|| bad("no `{hex}` or `{base64}`: where is the signature?"))?;
    Ok(Format {
        pairs: Some(sep),
        sig_key,
        encoding,
        ts_key: ts,
    })
}

fn parse_signed(path: &Path, text: &str) -> Result<Vec<Piece>, ConfigError> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_string()));
        }
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| invalid(path, "signed", format!("`{text}`: a `{{` is not closed")))?
            + start;
        let name = &rest[start + 1..end];
        pieces.push(match name {
            "body" => Piece::Body,
            "timestamp" => Piece::Timestamp,
            "url" => Piece::Url,
            "form" => Piece::Form,
            _ => match name.strip_prefix("header:") {
                Some(h) => Piece::Header(header_name(path, "signed", h)?),
                None => {
                    return Err(invalid(
                        path,
                        "signed",
                        format!("`{text}`: unknown placeholder `{{{name}}}`; use {{body}}, {{timestamp}}, {{url}}, {{form}} or {{header:NAME}}"),
                    ));
                }
            },
        });
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

impl Template {
    /// Resolves the template's keys (the secrets are read by the caller).
    ///
    /// `url` is the source's public URL, which `{url}` needs.
    pub fn build(
        auth: &crate::config::AuthConfig,
        path: &Path,
        secrets: Vec<Vec<u8>>,
        url: Option<&str>,
    ) -> Result<Template, ConfigError> {
        let algorithm = match auth.algorithm.as_deref().unwrap_or("sha256") {
            "sha1" => Algorithm::Sha1,
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => {
                return Err(invalid(
                    path,
                    "algorithm",
                    format!("`{other}`: use sha1, sha256 or sha512"),
                ));
            }
        };
        let header = auth.header.as_deref().ok_or_else(|| {
            invalid(
                path,
                "header",
                "`hmac` needs `header`, the header with the signature",
            )
        })?;
        let format = parse_format(path, auth.format.as_deref().unwrap_or("{hex}"))?;
        let signed = parse_signed(path, auth.signed.as_deref().unwrap_or("{body}"))?;
        let timestamp_header = auth
            .timestamp_header
            .as_deref()
            .map(|h| header_name(path, "timestamp_header", h))
            .transpose()?;
        let has_timestamp = format.ts_key.is_some() || timestamp_header.is_some();
        if auth.tolerance.is_some() && !has_timestamp {
            return Err(invalid(
                path,
                "tolerance",
                "there is no timestamp to bound: add `{timestamp}` to `format` or set `timestamp_header`",
            ));
        }
        if signed.contains(&Piece::Timestamp) && !has_timestamp {
            return Err(invalid(
                path,
                "signed",
                "`{timestamp}` needs a timestamp: in `format` or from `timestamp_header`",
            ));
        }
        // What is signed must cover the body, and the timestamp whose
        // freshness is checked: otherwise one captured signature would
        // vouch for any body, or for ever.
        if !signed.contains(&Piece::Body) && !signed.contains(&Piece::Form) {
            return Err(invalid(
                path,
                "signed",
                "the body is not signed: include `{body}` (or `{form}` for form posts)",
            ));
        }
        let signs_timestamp = signed.contains(&Piece::Timestamp)
            || timestamp_header
                .as_ref()
                .is_some_and(|h| signed.contains(&Piece::Header(h.clone())));
        if has_timestamp && !signs_timestamp {
            return Err(invalid(
                path,
                "signed",
                "the timestamp is checked but not signed: include `{timestamp}`",
            ));
        }
        if signed.contains(&Piece::Url) && url.is_none() {
            return Err(ConfigError::invalid(
                path,
                "push.public_url",
                "the signature covers the URL the sender posted to, which the host cannot know behind a proxy: set `public_url` in inlet.toml (or `[push] public_url`)",
            ));
        }
        Ok(Template {
            url: url.map(str::to_string),
            body_sha256_param: None,
            name: "hmac",
            idempotency_header: None,
            algorithm,
            header: header_name(path, "header", header)?,
            format,
            signed,
            timestamp_header,
            tolerance: has_timestamp.then(|| auth.tolerance.unwrap_or(Duration::from_secs(300))),
            secrets,
        })
    }

    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// Whether `{url}` is signed.
    pub fn signs_url(&self) -> bool {
        self.signed.contains(&Piece::Url)
    }

    /// Whether the request is signed by one of the secrets.
    pub fn verify(&self, headers: &HeaderMap, req: Signed<'_>, now: SystemTime) -> bool {
        let body = req.body;
        let Some(value) = headers.get(&self.header).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let f = &self.format;
        let decode = |s: &str| {
            let bytes = match f.encoding {
                Encoding::Hex => hex::decode(s.trim()).ok()?,
                Encoding::Base64 => B64.decode(s.trim()).ok()?,
            };
            (bytes.len() == self.algorithm.len()).then_some(bytes)
        };
        let mut sigs = Vec::new();
        let mut ts = None;
        match f.pairs {
            Some(sep) => {
                for part in value.split(sep).take(4 * MAX_SIGNATURES) {
                    let Some((k, v)) = part.trim().split_once('=') else {
                        continue;
                    };
                    if k == f.sig_key {
                        sigs.extend(decode(v));
                    } else if f.ts_key.as_deref() == Some(k) {
                        ts = Some(v.trim().to_string());
                    }
                }
            }
            None => sigs.extend(
                value
                    .trim()
                    .strip_prefix(f.sig_key.as_str())
                    .and_then(decode),
            ),
        }
        if let Some(h) = &self.timestamp_header {
            ts = headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string());
        }
        if let Some(tolerance) = self.tolerance
            && !ts.as_deref().is_some_and(|t| fresh(t, tolerance, now))
        {
            return false;
        }
        if sigs.is_empty() || sigs.len() > MAX_SIGNATURES {
            return false;
        }
        let form = is_form(headers);
        // Twilio: a body hash in the (signed) URL is checked whenever it is
        // there, whatever the (unsigned) content type says.
        let mut body_hashed = false;
        if let Some(param) = self.body_sha256_param
            && let Some(given) = req.param(param)
        {
            use sha2::Digest as _;
            let digest = hex::encode(sha2::Sha256::digest(body));
            if !bool::from(
                given
                    .to_ascii_lowercase()
                    .as_bytes()
                    .ct_eq(digest.as_bytes()),
            ) {
                return false;
            }
            body_hashed = true;
        }
        // A body nothing signed is never accepted: `{form}` covers a form
        // post only.
        if !self.signed.contains(&Piece::Body) && !body_hashed && !form {
            return false;
        }
        let url = match (&self.url, self.signed.contains(&Piece::Url)) {
            (Some(base), true) => req.url(base),
            _ => String::new(),
        };
        let params = if form && !body_hashed && self.signed.contains(&Piece::Form) {
            sorted_form(body)
        } else {
            Vec::new()
        };
        let mut parts: Vec<&[u8]> = Vec::with_capacity(self.signed.len());
        for piece in &self.signed {
            parts.push(match piece {
                Piece::Text(t) => t.as_bytes(),
                Piece::Body => body,
                Piece::Timestamp => match &ts {
                    Some(t) => t.as_bytes(),
                    None => return false,
                },
                Piece::Header(h) => match headers.get(h) {
                    Some(v) => v.as_bytes(),
                    None => return false,
                },
                Piece::Url => url.as_bytes(),
                Piece::Form => &params,
            });
        }
        let mut found = false;
        for secret in &self.secrets {
            let expected = self.algorithm.mac(secret, &parts);
            for sig in &sigs {
                found |= bool::from(expected.ct_eq(sig));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};

    impl Template {
        fn verify_body(&self, h: &HeaderMap, body: &[u8], now: SystemTime) -> bool {
            let req = Signed {
                body,
                rest: "",
                query: None,
            };
            self.verify(h, req, now)
        }
    }

    fn auth(toml: &str) -> crate::config::AuthConfig {
        crate::config::Manifest::parse(Path::new("x.toml"), &format!("[push]\nauth = {toml}\n"))
            .unwrap()
            .push
            .auth
    }

    fn template(toml: &str, secret: &str) -> Template {
        Template::build(
            &auth(toml),
            Path::new("x.toml"),
            vec![secret.as_bytes().to_vec()],
            None,
        )
        .unwrap()
    }

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// Computed apart from the template, with the hmac crate directly.
    fn hmac256_hex(key: &str, data: &str) -> String {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        m.update(data.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    #[test]
    fn a_slack_style_template_checks_signature_timestamp_and_body() {
        let t = template(
            r#"{ scheme = "hmac", header = "X-Slack-Signature", format = "v0={hex}", signed = "v0:{header:X-Slack-Request-Timestamp}:{body}", timestamp_header = "X-Slack-Request-Timestamp", tolerance = "5m", secret_env = "UNUSED" }"#,
            "8f742231b10e8888abcd99yyyzzz85a5",
        );
        let now = SystemTime::now();
        let ts = now
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let body = "token=x&team_id=T1";
        let sig = format!(
            "v0={}",
            hmac256_hex(
                "8f742231b10e8888abcd99yyyzzz85a5",
                &format!("v0:{ts}:{body}")
            )
        );
        let h = headers(&[
            ("x-slack-signature", sig.clone()),
            ("x-slack-request-timestamp", ts.clone()),
        ]);
        assert!(t.verify_body(&h, body.as_bytes(), now));
        assert!(
            !t.verify_body(&h, b"token=y&team_id=T1", now),
            "tampered body"
        );
        let stale = now + Duration::from_secs(301);
        assert!(!t.verify_body(&h, body.as_bytes(), stale), "stale");
        let early = now - Duration::from_secs(301);
        assert!(
            !t.verify_body(&h, body.as_bytes(), early),
            "from the future"
        );
        for broken in [&sig[..sig.len() - 2], "v0=", "", "v1=00"] {
            let h = headers(&[
                ("x-slack-signature", broken.to_string()),
                ("x-slack-request-timestamp", ts.clone()),
            ]);
            assert!(!t.verify_body(&h, body.as_bytes(), now), "{broken:?}");
        }
        assert!(!t.verify_body(
            &headers(&[("x-slack-request-timestamp", ts)]),
            body.as_bytes(),
            now
        ));
    }

    #[test]
    fn pairs_base64_sha1_and_sha512_rotation_and_refusals() {
        let now = SystemTime::now();
        let ts = now
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        // Paddle-style `ts=..;h1=..` over "ts:body", two signatures offered.
        let t = template(
            r#"{ scheme = "hmac", header = "Paddle-Signature", format = "ts={timestamp};h1={hex}", signed = "{timestamp}:{body}", secret_env = "UNUSED" }"#,
            "k",
        );
        let good = hmac256_hex("k", &format!("{ts}:{{}}"));
        let h = headers(&[(
            "paddle-signature",
            format!("ts={ts};h1={};h1={good}", "00".repeat(32)),
        )]);
        assert!(t.verify_body(&h, b"{}", now));
        // Shopify-style base64 of the body.
        let t = template(
            r#"{ scheme = "hmac", header = "X-Shopify-Hmac-Sha256", format = "{base64}", secret_env = "UNUSED" }"#,
            "k",
        );
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(b"k").unwrap();
        m.update(b"{}");
        let sig = B64.encode(m.finalize().into_bytes());
        assert!(t.verify_body(&headers(&[("x-shopify-hmac-sha256", sig)]), b"{}", now));
        // sha1 with a prefix, and sha512.
        for (alg, len) in [("sha1", 20), ("sha512", 64)] {
            let t = template(
                &format!(
                    r#"{{ scheme = "hmac", algorithm = "{alg}", header = "X-Sig", format = "{alg}={{hex}}", secret_env = "UNUSED" }}"#
                ),
                "k",
            );
            let sig = hex::encode(Algorithm::mac(t.algorithm, b"k", &[b"body"]));
            assert_eq!(sig.len(), 2 * len);
            assert!(
                t.verify_body(&headers(&[("x-sig", format!("{alg}={sig}"))]), b"body", now),
                "{alg}"
            );
            // Another algorithm's signature of the same length class fails.
            let other = hmac256_hex("k", "body");
            assert!(!t.verify_body(
                &headers(&[("x-sig", format!("{alg}={other}"))]),
                b"body",
                now
            ));
        }
        // Rotation: either secret.
        let two = Template::build(
            &auth(r#"{ scheme = "hmac", header = "X-Sig", secret_env = "UNUSED" }"#),
            Path::new("x.toml"),
            vec![b"old".to_vec(), b"new".to_vec()],
            None,
        )
        .unwrap();
        for key in ["old", "new"] {
            assert!(two.verify_body(&headers(&[("x-sig", hmac256_hex(key, "b"))]), b"b", now));
        }
        assert!(!two.verify_body(&headers(&[("x-sig", hmac256_hex("other", "b"))]), b"b", now));
        // Refused at load: tolerance without a timestamp, unknown pieces.
        for (toml, key) in [
            (
                r#"{ scheme = "hmac", header = "X", tolerance = "5m", secret_env = "U" }"#,
                "push.auth.tolerance",
            ),
            (
                r#"{ scheme = "hmac", header = "X", format = "{hax}", secret_env = "U" }"#,
                "push.auth.format",
            ),
            (
                r#"{ scheme = "hmac", header = "X", signed = "{bdy}", secret_env = "U" }"#,
                "push.auth.signed",
            ),
            (
                r#"{ scheme = "hmac", header = "X", algorithm = "md5", secret_env = "U" }"#,
                "push.auth.algorithm",
            ),
            (
                r#"{ scheme = "hmac", header = "X", signed = "{timestamp}.{body}", secret_env = "U" }"#,
                "push.auth.signed",
            ),
            (
                r#"{ scheme = "hmac", header = "X", signed = "{url}{body}", secret_env = "U" }"#,
                "push.public_url",
            ),
            // One signature must not vouch for any body, or for ever.
            (
                r#"{ scheme = "hmac", header = "X", signed = "{header:X-Id}", secret_env = "U" }"#,
                "push.auth.signed",
            ),
            (
                r#"{ scheme = "hmac", header = "X", timestamp_header = "X-Ts", signed = "{body}", secret_env = "U" }"#,
                "push.auth.signed",
            ),
        ] {
            let err = Template::build(&auth(toml), Path::new("x.toml"), vec![], None)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }
}
