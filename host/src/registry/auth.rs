//! Push authentication, checked by the host before the connector runs.
//!
//! Every comparison is constant-time and length-checked; several secrets
//! may be configured at once (rotation) and any one of them is accepted.
//! A failure never says which part failed.

use crate::config::{AuthConfig, AuthScheme, ConfigError, SecretSource, SignatureEncoding};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use std::path::Path;
use std::time::{Duration, SystemTime};
use subtle::ConstantTimeEq;

pub use super::template::Signed;
use super::template::fresh;

type HmacSha256 = Hmac<Sha256>;

/// A resolved authenticator for one source.
#[derive(Clone)]
pub enum Verifier {
    None,
    Bearer(Vec<Vec<u8>>),
    Hmac {
        header: http::HeaderName,
        encoding: SignatureEncoding,
        prefix: String,
        secrets: Vec<Vec<u8>>,
    },
    Github(Vec<Vec<u8>>),
    Stripe {
        secrets: Vec<Vec<u8>>,
        tolerance: Duration,
    },
    StandardWebhooks {
        secrets: Vec<Vec<u8>>,
        tolerance: Duration,
    },
    /// `scheme = "hmac"` (registry/template.rs) and the presets that are
    /// templates (registry/presets.rs).
    Template(Box<super::template::Template>),
    /// A token in a header of the provider's (`gitlab`).
    HeaderToken {
        header: http::HeaderName,
        tokens: Vec<Vec<u8>>,
    },
    /// `mailgun`: the signature is in the body.
    Mailgun {
        secrets: Vec<Vec<u8>>,
        tolerance: Duration,
    },
    /// `ed25519`, `ecdsa-p256` (registry/asymmetric.rs).
    Asymmetric(Box<super::asymmetric::Asymmetric>),
}

impl std::fmt::Debug for Verifier {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier({})", self.scheme_name())
    }
}

impl Verifier {
    /// The manifest's `scheme`.
    pub fn scheme_name(&self) -> &'static str {
        match self {
            Verifier::None => "none",
            Verifier::Bearer(_) => "bearer",
            Verifier::Hmac { .. } => "hmac-sha256",
            Verifier::Github(_) => "github",
            Verifier::Stripe { .. } => "stripe",
            Verifier::StandardWebhooks { .. } => "standard-webhooks",
            Verifier::Template(t) => t.name,
            Verifier::HeaderToken { .. } => "gitlab",
            Verifier::Mailgun { .. } => "mailgun",
            Verifier::Asymmetric(a) => match a.keys {
                super::asymmetric::Keys::Ed25519(_) => "ed25519",
                super::asymmetric::Keys::P256(_) => "ecdsa-p256",
            },
        }
    }
}

fn read_secrets(
    path: &Path,
    key: &str,
    env: Option<&SecretSource>,
    file: Option<&SecretSource>,
) -> Result<Vec<Vec<u8>>, ConfigError> {
    let out: Vec<Vec<u8>> = SecretSource::read_all(
        path,
        (&format!("push.auth.{key}_env"), env),
        (&format!("push.auth.{key}_file"), file),
    )?
    .into_iter()
    .map(|(_, s)| s.into_bytes())
    .collect();
    if out.is_empty() {
        return Err(ConfigError::invalid(
            path,
            "push.auth",
            format!("this scheme needs `{key}_env` or `{key}_file`"),
        ));
    }
    Ok(out)
}

impl Verifier {
    /// Resolves `auth`, reading secrets now so a missing one fails at load.
    /// `url` is the source's public URL (for schemes that sign it).
    pub fn build(auth: &AuthConfig, path: &Path, url: Option<&str>) -> Result<Self, ConfigError> {
        let unexpected = |key: &str, set: bool| -> Result<(), ConfigError> {
            if set {
                Err(ConfigError::invalid(
                    path,
                    &format!("push.auth.{key}"),
                    format!(
                        "is not used by the `{}` scheme; remove it",
                        auth.scheme.name()
                    ),
                ))
            } else {
                Ok(())
            }
        };
        // The first key set of a group the scheme does not read, named.
        let refuse = |keys: &[(&str, bool)]| match keys.iter().find(|(_, set)| *set) {
            Some((key, _)) => unexpected(key, true),
            None => Ok(()),
        };
        let signature_keys = [
            ("header", auth.header.is_some()),
            ("encoding", auth.encoding.is_some()),
            ("prefix", auth.prefix.is_some()),
        ];
        let secret_keys = [
            ("secret_env", auth.secret_env.is_some()),
            ("secret_file", auth.secret_file.is_some()),
        ];
        let asymmetric = matches!(auth.scheme, AuthScheme::Ed25519 | AuthScheme::EcdsaP256);
        if auth.scheme != AuthScheme::Hmac {
            refuse(&[
                ("algorithm", auth.algorithm.is_some()),
                ("format", auth.format.is_some()),
                ("signed", auth.signed.is_some()),
                (
                    "timestamp_header",
                    auth.timestamp_header.is_some() && !asymmetric,
                ),
            ])?;
        }
        if !asymmetric {
            refuse(&[
                ("public_key", auth.public_key.is_some()),
                ("public_key_env", auth.public_key_env.is_some()),
                ("public_key_file", auth.public_key_file.is_some()),
            ])?;
        }
        // A key a scheme does not read is refused, never silently ignored:
        // only schemes that sign a timestamp read `tolerance`, only bearer
        // reads tokens.
        // (`hmac` decides for itself whether it has a timestamp.)
        let preset = super::presets::template(auth.scheme);
        let timestamped = matches!(
            auth.scheme,
            AuthScheme::Stripe
                | AuthScheme::StandardWebhooks
                | AuthScheme::Hmac
                | AuthScheme::Mailgun
                | AuthScheme::Ed25519
                | AuthScheme::EcdsaP256
        ) || preset.as_ref().is_some_and(|p| p.tolerance.is_some());
        unexpected("tolerance", auth.tolerance.is_some() && !timestamped)?;
        if auth.scheme != AuthScheme::Bearer {
            refuse(&[
                ("token_env", auth.token_env.is_some()),
                ("token_file", auth.token_file.is_some()),
            ])?;
        }
        let secrets = || {
            read_secrets(
                path,
                "secret",
                auth.secret_env.as_ref(),
                auth.secret_file.as_ref(),
            )
        };
        if let Some(preset) = preset {
            refuse(&signature_keys)?;
            // The preset is a template with the provider's keys filled in.
            let filled = AuthConfig {
                algorithm: Some(preset.algorithm.into()),
                header: Some(preset.header.into()),
                format: Some(preset.format.into()),
                signed: Some(preset.signed.into()),
                timestamp_header: preset.timestamp_header.map(Into::into),
                tolerance: auth.tolerance.or(preset.tolerance),
                ..auth.clone()
            };
            let mut template = super::template::Template::build(&filled, path, secrets()?, url)?;
            template.name = preset.name;
            template.body_sha256_param = preset.body_sha256_param;
            template.idempotency_header = preset.idempotency_header;
            return Ok(Verifier::Template(Box::new(template)));
        }
        Ok(match auth.scheme {
            AuthScheme::Gitlab => {
                refuse(&signature_keys)?;
                Verifier::HeaderToken {
                    header: http::HeaderName::from_static(super::presets::GITLAB_TOKEN),
                    tokens: secrets()?,
                }
            }
            AuthScheme::Mailgun => {
                refuse(&signature_keys)?;
                Verifier::Mailgun {
                    secrets: secrets()?,
                    tolerance: auth.tolerance.unwrap_or(Duration::from_secs(300)),
                }
            }
            AuthScheme::Ed25519 | AuthScheme::EcdsaP256 => {
                refuse(&secret_keys)?;
                refuse(&signature_keys[1..])?;
                Verifier::Asymmetric(Box::new(super::asymmetric::Asymmetric::build(auth, path)?))
            }
            // Template presets were handled above.
            AuthScheme::Slack
            | AuthScheme::Shopify
            | AuthScheme::Zoom
            | AuthScheme::Paddle
            | AuthScheme::Linear
            | AuthScheme::Intercom
            | AuthScheme::Typeform
            | AuthScheme::Calendly
            | AuthScheme::Twitch
            | AuthScheme::Square
            | AuthScheme::Twilio => unreachable!("a template preset"),
            AuthScheme::None => {
                refuse(&secret_keys)?;
                refuse(&signature_keys)?;
                Verifier::None
            }
            AuthScheme::Bearer => {
                refuse(&secret_keys)?;
                refuse(&signature_keys)?;
                Verifier::Bearer(read_secrets(
                    path,
                    "token",
                    auth.token_env.as_ref(),
                    auth.token_file.as_ref(),
                )?)
            }
            AuthScheme::HmacSha256 => {
                let header = auth.header.as_deref().ok_or_else(|| {
                    ConfigError::invalid(
                        path,
                        "push.auth.header",
                        "hmac-sha256 needs `header`, the header that carries the signature",
                    )
                })?;
                Verifier::Hmac {
                    header: http::HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                        ConfigError::invalid(
                            path,
                            "push.auth.header",
                            format!("`{header}` is not a header name"),
                        )
                    })?,
                    encoding: auth.encoding.unwrap_or_default(),
                    prefix: auth.prefix.clone().unwrap_or_default(),
                    secrets: secrets()?,
                }
            }
            AuthScheme::Github => {
                refuse(&signature_keys)?;
                Verifier::Github(secrets()?)
            }
            AuthScheme::Stripe => {
                refuse(&signature_keys)?;
                Verifier::Stripe {
                    secrets: secrets()?,
                    tolerance: auth.tolerance.unwrap_or(Duration::from_secs(300)),
                }
            }
            AuthScheme::Hmac => {
                refuse(&signature_keys[1..])?;
                Verifier::Template(Box::new(super::template::Template::build(
                    auth,
                    path,
                    secrets()?,
                    url,
                )?))
            }
            AuthScheme::StandardWebhooks => {
                refuse(&signature_keys)?;
                let raw = secrets()?;
                let mut decoded = Vec::new();
                for s in raw {
                    let text = String::from_utf8_lossy(&s);
                    let b64 = text.strip_prefix("whsec_").unwrap_or(&text);
                    decoded.push(B64.decode(b64.trim()).map_err(|_| {
                        ConfigError::invalid(
                            path,
                            "push.auth.secret_env",
                            "a Standard Webhooks secret is `whsec_` followed by base64",
                        )
                    })?);
                }
                Verifier::StandardWebhooks {
                    secrets: decoded,
                    tolerance: auth.tolerance.unwrap_or(Duration::from_secs(300)),
                }
            }
        })
    }

    /// The provider's delivery-id header, the idempotency key when the
    /// manifest names none.
    pub fn idempotency_header(&self) -> Option<&'static str> {
        match self {
            Verifier::Template(t) => t.idempotency_header,
            Verifier::Github(_) => Some("x-github-delivery"),
            _ => None,
        }
    }

    /// An idempotency key the provider puts in the body (Mailgun's token).
    pub fn body_key(&self, headers: &HeaderMap, body: &[u8]) -> Option<String> {
        match self {
            Verifier::Mailgun { .. } => super::presets::mailgun_key(headers, body),
            _ => None,
        }
    }

    /// Whether the scheme signs the URL the sender posted to.
    pub fn signs_url(&self) -> bool {
        matches!(self, Verifier::Template(t) if t.signs_url())
    }

    /// Whether the sender is authenticated by its headers alone (checked
    /// before the body is read), as opposed to a signature over the body or
    /// no authentication at all.
    pub fn authenticates_by_headers(&self) -> bool {
        matches!(self, Verifier::Bearer(_) | Verifier::HeaderToken { .. })
    }

    /// Whether a request header carries credentials, which the connector
    /// never receives: `Authorization`, `Proxy-Authorization`, `Cookie`,
    /// and the header this scheme reads its signature from.
    pub fn is_credential(&self, name: &http::HeaderName) -> bool {
        use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
        if name == AUTHORIZATION || name == PROXY_AUTHORIZATION || name == COOKIE {
            return true;
        }
        match self {
            Verifier::None | Verifier::Bearer(_) => false,
            Verifier::Hmac { header, .. } => name == header,
            Verifier::Github(_) => name == "x-hub-signature-256" || name == "x-hub-signature",
            Verifier::Stripe { .. } => name == "stripe-signature",
            Verifier::StandardWebhooks { .. } => name == "webhook-signature",
            Verifier::Template(t) => name == t.header(),
            Verifier::HeaderToken { header, .. } => name == header,
            Verifier::Mailgun { .. } => false,
            Verifier::Asymmetric(a) => name == a.header,
        }
    }

    /// Whether the request is authentic.
    pub fn verify(&self, headers: &HeaderMap, req: Signed<'_>) -> bool {
        self.verify_at(headers, req, SystemTime::now())
    }

    pub(crate) fn verify_at(&self, headers: &HeaderMap, req: Signed<'_>, now: SystemTime) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let body = req.body;
        match self {
            Verifier::HeaderToken {
                header: name,
                tokens,
            } => {
                let Some(given) = headers.get(name).map(|v| v.as_bytes()) else {
                    return false;
                };
                let mut found = false;
                for t in tokens {
                    found |= ct_eq(t, given);
                }
                found
            }
            Verifier::Mailgun { secrets, tolerance } => {
                super::presets::mailgun(secrets, *tolerance, headers, req, now)
            }
            Verifier::Asymmetric(a) => a.verify(headers, body, now),
            Verifier::None => true,
            Verifier::Bearer(tokens) => {
                let Some(given) = bearer_token(headers) else {
                    return false;
                };
                tokens.iter().any(|t| ct_eq(t, given.as_bytes()))
            }
            Verifier::Hmac {
                header: name,
                encoding,
                prefix,
                secrets,
            } => {
                let Some(given) = headers.get(name).and_then(|v| v.to_str().ok()) else {
                    return false;
                };
                let Some(sig) = given.trim().strip_prefix(prefix.as_str()) else {
                    return false;
                };
                let Some(sig) = decode(sig, *encoding) else {
                    return false;
                };
                secrets.iter().any(|s| hmac_matches(s, &[body], &sig))
            }
            Verifier::Github(secrets) => {
                let Some(sig) =
                    header("x-hub-signature-256").and_then(|v| v.strip_prefix("sha256="))
                else {
                    return false;
                };
                let Some(sig) = decode(sig, SignatureEncoding::Hex) else {
                    return false;
                };
                secrets.iter().any(|s| hmac_matches(s, &[body], &sig))
            }
            Verifier::Stripe { secrets, tolerance } => {
                let Some(value) = header("stripe-signature") else {
                    return false;
                };
                let mut timestamp = None;
                let mut sigs = Vec::new();
                for part in value.split(',').take(4 * MAX_SIGNATURES) {
                    match part.trim().split_once('=') {
                        Some(("t", t)) => timestamp = Some(t),
                        Some(("v1", s)) => sigs.extend(decode(s, SignatureEncoding::Hex)),
                        _ => {}
                    }
                }
                let Some(t) = timestamp else { return false };
                if !fresh(t, *tolerance, now) {
                    return false;
                }
                any_matches(secrets, &[t.as_bytes(), b".", body], &sigs)
            }
            Verifier::Template(t) => t.verify(headers, req, now),
            Verifier::StandardWebhooks { secrets, tolerance } => {
                let (Some(id), Some(ts), Some(sigs)) = (
                    header("webhook-id"),
                    header("webhook-timestamp"),
                    header("webhook-signature"),
                ) else {
                    return false;
                };
                if !fresh(ts, *tolerance, now) {
                    return false;
                }
                let given: Vec<Vec<u8>> = sigs
                    .split(' ')
                    .take(4 * MAX_SIGNATURES)
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .filter_map(|s| decode(s, SignatureEncoding::Base64))
                    .collect();
                any_matches(
                    secrets,
                    &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
                    &given,
                )
            }
        }
    }
}

fn decode(text: &str, encoding: SignatureEncoding) -> Option<Vec<u8>> {
    let bytes = match encoding {
        SignatureEncoding::Hex => hex::decode(text.trim()).ok()?,
        SignatureEncoding::Base64 => B64.decode(text.trim()).ok()?,
    };
    // An empty or truncated signature never matches.
    (bytes.len() == 32).then_some(bytes)
}

fn hmac_matches(secret: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    // `verify_slice` is constant-time and checks the length.
    mac.verify_slice(expected).is_ok()
}

/// Most signatures one header may offer; senders send one per active
/// secret, so a handful. More is refused (each would cost a MAC otherwise).
pub(super) const MAX_SIGNATURES: usize = 8;

/// Whether any of `given` is the HMAC of `parts` under any of `secrets`.
/// The body is hashed once per secret, not once per offered signature, so
/// a header stuffed with signatures costs nothing extra.
fn any_matches(secrets: &[Vec<u8>], parts: &[&[u8]], given: &[Vec<u8>]) -> bool {
    if given.is_empty() || given.len() > MAX_SIGNATURES {
        return false;
    }
    let mut found = false;
    for secret in secrets {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        for p in parts {
            mac.update(p);
        }
        let expected = mac.finalize().into_bytes();
        for sig in given {
            // Constant-time and length-checked; no early exit on a match.
            found |= ct_eq(&expected, sig);
        }
    }
    found
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The token of an `Authorization: Bearer <token>` header (the scheme
/// matched without regard to case, as RFC 7235 says), trimmed. The one
/// reader of bearer tokens: push auth and the admin, metrics and consumer
/// tokens.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    impl Verifier {
        fn verify_body(&self, h: &HeaderMap, body: &[u8]) -> bool {
            let req = Signed {
                body,
                rest: "",
                query: None,
            };
            self.verify(h, req)
        }
    }

    #[test]
    fn bearer_tokens_are_read_one_way() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("authorization", v.parse().unwrap());
            h
        };
        assert_eq!(bearer_token(&with("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&with("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&with("BEARER abc")), Some("abc"));
        assert_eq!(bearer_token(&with("Basic abc")), None);
        assert_eq!(bearer_token(&with("Bearer ")), None);
        assert_eq!(bearer_token(&with("Bearerabc")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// A key the scheme does not read is refused at load, naming it (it
    /// used to be accepted and ignored: `tolerance` on hmac-sha256).
    #[test]
    fn keys_a_scheme_does_not_read_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.secret"), "k").unwrap();
        let path = dir.path().join("x.toml");
        for (auth, key) in [
            (
                r#"{ scheme = "hmac-sha256", header = "x-sig", secret_file = "s.secret", tolerance = "5m" }"#,
                "push.auth.tolerance",
            ),
            (
                r#"{ scheme = "github", secret_file = "s.secret", tolerance = "5m" }"#,
                "push.auth.tolerance",
            ),
            (
                r#"{ scheme = "bearer", token_file = "s.secret", tolerance = "5m" }"#,
                "push.auth.tolerance",
            ),
            (
                r#"{ scheme = "github", secret_file = "s.secret", token_file = "s.secret" }"#,
                "push.auth.token_file",
            ),
            (
                r#"{ scheme = "none", secret_file = "s.secret" }"#,
                "push.auth.secret_file",
            ),
            (
                r#"{ scheme = "none", prefix = "sha256=" }"#,
                "push.auth.prefix",
            ),
            (
                r#"{ scheme = "stripe", secret_file = "s.secret", signed = "{body}" }"#,
                "push.auth.signed",
            ),
        ] {
            let manifest =
                crate::config::Manifest::parse(&path, &format!("[push]\nauth = {auth}\n")).unwrap();
            let err = match Verifier::build(&manifest.push.auth, &path, None) {
                Ok(_) => panic!("{auth} was accepted"),
                Err(err) => err.to_string(),
            };
            assert!(
                err.contains(key) && err.contains("not used"),
                "{auth}: {err}"
            );
        }
        let ok = crate::config::Manifest::parse(
            &path,
            "[push]\nauth = { scheme = \"stripe\", secret_file = \"s.secret\", tolerance = \"5m\" }\n",
        )
        .unwrap();
        assert!(Verifier::build(&ok.push.auth, &path, None).is_ok());
    }

    #[test]
    fn github_documentation_vector() {
        let v = Verifier::Github(vec![b"It's a Secret to Everybody".to_vec()]);
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(v.verify_body(&headers(&[("x-hub-signature-256", sig)]), b"Hello, World!"));
        assert!(!v.verify_body(&headers(&[("x-hub-signature-256", sig)]), b"Hello, World?"));
        assert!(!v.verify_body(
            &headers(&[("x-hub-signature-256", "sha256=")]),
            b"Hello, World!"
        ));
        assert!(!v.verify_body(&headers(&[]), b"Hello, World!"));
    }

    #[test]
    fn standard_webhooks_truncated_signature_fails() {
        let v = Verifier::StandardWebhooks {
            secrets: vec![b"key".to_vec()],
            tolerance: Duration::from_secs(300),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &now),
            ("webhook-signature", "v1,"),
        ]);
        assert!(!v.verify_body(&h, b"{}"));
    }

    #[test]
    fn stripe_refuses_a_header_stuffed_with_signatures() {
        let v = Verifier::Stripe {
            secrets: vec![b"whsec_x".to_vec()],
            tolerance: Duration::from_secs(300),
        };
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut mac = HmacSha256::new_from_slice(b"whsec_x").unwrap();
        mac.update(format!("{t}.{{}}").as_bytes());
        let good = hex::encode(mac.finalize().into_bytes());
        let ok = format!("t={t},v1={good}");
        assert!(v.verify_body(&headers(&[("stripe-signature", &ok)]), b"{}"));
        let junk: Vec<String> = (0..20).map(|i| format!("v1={:064x}", i)).collect();
        let stuffed = format!("t={t},{},v1={good}", junk.join(","));
        assert!(!v.verify_body(&headers(&[("stripe-signature", &stuffed)]), b"{}"));
    }

    #[test]
    fn bearer_compares_whole_token() {
        let v = Verifier::Bearer(vec![b"secret-token".to_vec(), b"rotated".to_vec()]);
        assert!(v.verify_body(&headers(&[("authorization", "Bearer secret-token")]), b""));
        assert!(v.verify_body(&headers(&[("authorization", "Bearer rotated")]), b""));
        assert!(!v.verify_body(&headers(&[("authorization", "Bearer secret")]), b""));
        assert!(!v.verify_body(&headers(&[("authorization", "secret-token")]), b""));
    }
}
