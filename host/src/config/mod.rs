//! Configuration files an operator writes: `inlet.toml` for the host and
//! `NAME.toml` beside each connector. Both are parsed strictly: an unknown
//! key, a bad duration or a missing secret is an error that names the file,
//! the key and the fix, never a silent default.

mod duration;
mod host;
mod manifest;
mod secret;

pub use duration::parse_duration;
pub use host::{
    HostConfig, Limits, SandboxDefaults, StoreConfig, StoreKind, TelemetryConfig, TlsConfig,
};
pub use manifest::SqlSection;
pub use manifest::{
    AuthConfig, AuthScheme, DEFAULT_DEDUP_WINDOW, DeadLetterClass, Inject, Manifest, PullSection,
    PushSection, RateLimit, Retry, SandboxSection, SecretGrant, SecretSource, SignatureEncoding,
    StreamSection, parse_cron,
};
pub use secret::{MAX_SECRET_FILE, Secret, SecretError, SecretRef};

use std::path::{Path, PathBuf};

/// A configuration file could not be used. The message names the file, the
/// key when there is one, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(path: &Path, key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// Parses a TOML document into `T`, turning toml's error (which names the
/// key and the line) into a [`ConfigError`] that names the file as well.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|err| ConfigError::Parse {
        path: path.to_path_buf(),
        message: one_line(&err.to_string()),
    })
}

/// toml's messages span several lines with a source excerpt; status fields
/// and log lines want one line.
fn one_line(message: &str) -> String {
    let mut out = Vec::new();
    for line in message.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('|') || line.chars().all(|c| c == '^' || c == ' ') {
            continue;
        }
        // Excerpt lines look like "3 | key = value".
        if line
            .split_once('|')
            .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()))
        {
            continue;
        }
        out.push(line.to_string());
    }
    out.join(": ")
}

/// Whether `name` can be a source name: the file stem of a connector, used
/// in URLs and as a storage key.
pub fn valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A source name: the file stem of a connector (`NAME.wasm`), used in URLs
/// and as a storage key; ASCII letters, digits, `-` and `_`, starting with
/// a letter or digit, at most 64 bytes. Only [`SourceName::parse`] makes
/// one, so holding one means it was checked. Not the human name a
/// connector gives itself in `describe()`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceName(std::sync::Arc<str>);

impl serde::Serialize for SourceName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl SourceName {
    /// `Some` when `name` is a valid source name.
    pub fn parse(name: &str) -> Option<Self> {
        valid_source_name(name).then(|| SourceName(std::sync::Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SourceName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for SourceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SourceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names() {
        assert!(valid_source_name("github"));
        assert!(valid_source_name("webhook-json_2"));
        assert!(!valid_source_name(""));
        assert!(!valid_source_name("-x"));
        assert!(!valid_source_name("a/b"));
        assert!(!valid_source_name("a.b"));
    }

    #[test]
    fn only_a_valid_stem_makes_a_source_name() {
        let name = SourceName::parse("orders-eu_1").unwrap();
        assert_eq!(name.as_str(), "orders-eu_1");
        assert_eq!(serde_json::to_string(&name).unwrap(), r#""orders-eu_1""#);
        for bad in ["", "-x", "a/b", "a.b", "../x", &"x".repeat(65)] {
            assert!(SourceName::parse(bad).is_none(), "{bad}");
        }
    }
}

/// Parses CIDR ranges or single addresses (`192.0.2.0/24`, `2001:db8::1`);
/// the error names the entry.
pub fn parse_ip_ranges(entries: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    entries
        .iter()
        .map(|e| {
            let e = e.trim();
            e.parse::<ipnet::IpNet>()
                .or_else(|_| e.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    format!(
                        "`{e}` is neither an address nor a CIDR range (192.0.2.0/24, 2001:db8::/32)"
                    )
                })
        })
        .collect()
}

/// The sender of a request that reached us from `peer`: the peer itself,
/// or, when the peer is a trusted proxy, the rightmost `X-Forwarded-For`
/// address no trusted proxy appended (a malformed entry stops the walk at
/// the last trusted hop: it cannot be vouched for).
pub fn client_ip(
    peer: std::net::IpAddr,
    forwarded_for: &[&str],
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    // An IPv4 sender on a dual-stack listener arrives as ::ffff:a.b.c.d:
    // compared as the IPv4 address it is.
    let peer = peer.to_canonical();
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for entry in forwarded_for.iter().rev().flat_map(|h| h.rsplit(',')) {
        let Ok(ip) = entry
            .trim()
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.to_canonical())
        else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod ip_tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_as_far_as_trusted_proxies_vouch() {
        let trusted = parse_ip_ranges(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        // An untrusted peer is the sender, whatever it claims.
        assert_eq!(
            client_ip(ip("127.0.0.2"), &["192.0.2.7"], &trusted),
            ip("127.0.0.2")
        );
        // Through a trusted proxy: the address it appended.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &["192.0.2.7"], &trusted),
            ip("192.0.2.7")
        );
        // A spoofed entry on the left is not believed: the rightmost
        // untrusted one is the sender.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &["192.0.2.7, 203.0.113.9"], &trusted),
            ip("203.0.113.9")
        );
        // Two trusted hops, over two headers.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &["192.0.2.7", "10.1.2.3"], &trusted),
            ip("192.0.2.7")
        );
        // Nothing forwarded, or garbage: the proxy itself.
        assert_eq!(client_ip(ip("127.0.0.1"), &[], &trusted), ip("127.0.0.1"));
        assert_eq!(
            client_ip(ip("127.0.0.1"), &["nope"], &trusted),
            ip("127.0.0.1")
        );
        // An IPv4 sender seen on a dual-stack listener is an IPv4 address.
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.2"), &[], &trusted),
            ip("127.0.0.2")
        );
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &["192.0.2.7"], &trusted),
            ip("192.0.2.7")
        );
        // IPv6.
        let v6 = parse_ip_ranges(&["2001:db8::/32".into()]).unwrap();
        assert!(v6[0].contains(&ip("2001:db8::1")));
        assert!(
            parse_ip_ranges(&["10.0.0.0/33".into()])
                .unwrap_err()
                .contains("10.0.0.0/33")
        );
    }
}

/// Checks a `public_url`: an absolute `http(s)` URL without a query or
/// fragment (the request's own path and query are appended to it).
pub fn check_public_url(url: &str) -> Result<(), String> {
    let ok = url.parse::<http::Uri>().is_ok_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https"))
            && u.host().is_some_and(|h| !h.is_empty())
            && u.query().is_none()
    }) && !url.contains('#');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{url}`: use the absolute URL senders post to, such as \"https://hooks.example.com\" (no query)"
        ))
    }
}
