//! Configuration files an operator writes: `inlet.toml` for the host and
//! `NAME.toml` beside each connector. Both are parsed strictly: an unknown
//! key, a bad duration or a missing secret is an error that names the file,
//! the key and the fix, never a silent default.

mod duration;
mod host;
mod manifest;
mod secret;

pub use duration::parse_duration;
pub use host::{HostConfig, Limits, SandboxDefaults, StoreConfig, StoreKind, TlsConfig};
pub use manifest::SqlSection;
pub use manifest::{
    AuthConfig, AuthScheme, DEFAULT_DEDUP_WINDOW, DeadLetterClass, Inject, Manifest, PullSection,
    PushSection, RateLimit, Retry, SandboxSection, SecretSource, SignatureEncoding, StreamSection,
    parse_cron,
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
