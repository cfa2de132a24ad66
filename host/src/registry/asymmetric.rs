//! Asymmetric push signatures: `ed25519` (Discord interactions) and
//! `ecdsa-p256` (SendGrid's Event Webhook), both over the timestamp header
//! followed by the body, with the sender's public key from the manifest.
//! The crypto is RustCrypto's (`ed25519-dalek`, `p256`).

use super::template::fresh;
use crate::config::{AuthConfig, AuthScheme, ConfigError, SecretSource};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::{HeaderMap, HeaderName};
use std::path::Path;
use std::time::{Duration, SystemTime};

#[derive(Clone)]
pub enum Keys {
    Ed25519(Vec<ed25519_dalek::VerifyingKey>),
    P256(Vec<p256::ecdsa::VerifyingKey>),
}

/// A resolved `ed25519` or `ecdsa-p256` scheme.
#[derive(Clone)]
pub struct Asymmetric {
    pub(super) keys: Keys,
    pub(super) header: HeaderName,
    pub(super) timestamp_header: HeaderName,
    tolerance: Duration,
}

fn invalid(path: &Path, key: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::invalid(path, &format!("push.auth.{key}"), why)
}

impl Asymmetric {
    /// Reads the public key(s) (`public_key`, `public_key_env`,
    /// `public_key_file`, each one or a list for rotation).
    pub fn build(auth: &AuthConfig, path: &Path) -> Result<Asymmetric, ConfigError> {
        let mut texts: Vec<(&str, String)> = Vec::new();
        for k in auth.public_key.iter().flat_map(|s| s.names()) {
            texts.push(("public_key", k.to_string()));
        }
        // Read like secrets (trimmed, never empty), though they are not.
        let read = SecretSource::read_all(
            path,
            ("push.auth.public_key_env", auth.public_key_env.as_ref()),
            ("push.auth.public_key_file", auth.public_key_file.as_ref()),
        )?;
        texts.extend(read.into_iter().map(|(key, value)| {
            (
                key.trim_start_matches("push.auth."),
                String::from_utf8_lossy(&value.into_bytes()).into_owned(),
            )
        }));
        if texts.is_empty() {
            return Err(invalid(
                path,
                "public_key",
                "this scheme needs the sender's public key: `public_key`, `public_key_env` or `public_key_file`",
            ));
        }
        let ed = auth.scheme == AuthScheme::Ed25519;
        let keys = if ed {
            let mut keys = Vec::new();
            for (key, text) in &texts {
                let bytes = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        invalid(
                            path,
                            key,
                            "an Ed25519 public key is 64 hex digits (32 bytes)",
                        )
                    })?;
                keys.push(
                    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                        .map_err(|_| invalid(path, key, "not a valid Ed25519 public key"))?,
                );
            }
            Keys::Ed25519(keys)
        } else {
            use p256::pkcs8::DecodePublicKey as _;
            let mut keys = Vec::new();
            for (key, text) in &texts {
                let text = text.trim();
                let parsed = if text.starts_with("-----BEGIN") {
                    p256::ecdsa::VerifyingKey::from_public_key_pem(text).ok()
                } else {
                    B64.decode(text)
                        .ok()
                        .and_then(|der| p256::ecdsa::VerifyingKey::from_public_key_der(&der).ok())
                };
                keys.push(parsed.ok_or_else(|| {
                    invalid(
                        path,
                        key,
                        "a P-256 public key is base64 DER (SubjectPublicKeyInfo, as SendGrid prints it) or PEM",
                    )
                })?);
            }
            Keys::P256(keys)
        };
        let (header, timestamp_header) = if ed {
            ("X-Signature-Ed25519", "X-Signature-Timestamp")
        } else {
            (
                "X-Twilio-Email-Event-Webhook-Signature",
                "X-Twilio-Email-Event-Webhook-Timestamp",
            )
        };
        let name = |key: &str, given: Option<&str>, default: &str| {
            let n = given.unwrap_or(default);
            HeaderName::from_bytes(n.trim().as_bytes())
                .map_err(|_| invalid(path, key, format!("`{n}` is not a header name")))
        };
        Ok(Asymmetric {
            keys,
            header: name("header", auth.header.as_deref(), header)?,
            timestamp_header: name(
                "timestamp_header",
                auth.timestamp_header.as_deref(),
                timestamp_header,
            )?,
            tolerance: auth.tolerance.unwrap_or(Duration::from_secs(300)),
        })
    }

    /// Whether one of the keys signed timestamp + body, and the timestamp
    /// is fresh.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: SystemTime) -> bool {
        let get = |h: &HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
        let (Some(sig), Some(ts)) = (get(&self.header), get(&self.timestamp_header)) else {
            return false;
        };
        if !fresh(ts, self.tolerance, now) {
            return false;
        }
        let mut message = Vec::with_capacity(ts.len() + body.len());
        message.extend_from_slice(ts.as_bytes());
        message.extend_from_slice(body);
        match &self.keys {
            Keys::Ed25519(keys) => {
                let Some(sig) = hex::decode(sig.trim())
                    .ok()
                    .and_then(|b| <[u8; 64]>::try_from(b).ok())
                else {
                    return false;
                };
                let sig = ed25519_dalek::Signature::from_bytes(&sig);
                keys.iter().any(|k| k.verify_strict(&message, &sig).is_ok())
            }
            Keys::P256(keys) => {
                use p256::ecdsa::signature::Verifier as _;
                let Ok(raw) = B64.decode(sig.trim()) else {
                    return false;
                };
                let sig = match raw.len() {
                    64 => p256::ecdsa::Signature::from_slice(&raw),
                    _ => p256::ecdsa::Signature::from_der(&raw),
                };
                let Ok(sig) = sig else { return false };
                keys.iter().any(|k| k.verify(&message, &sig).is_ok())
            }
        }
    }
}
