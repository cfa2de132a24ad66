//! The bearer tokens of the admin API, `/metrics` and stream consumers:
//! read once at start (a setting whose variable is unset or empty refuses
//! the start) and compared in constant time.

use crate::config::HostConfig;
use crate::reply::ApiError;

/// The admin and metrics tokens. A token setting whose variable is unset or
/// empty refuses the start (it never means "no token"); an admin API
/// without a token on a listener that is not loopback needs
/// `admin_open = true`, and is logged as a warning.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub(crate) admin: Option<String>,
    pub(crate) metrics: Option<String>,
    pub(crate) consumer: Option<String>,
}

pub(crate) fn tokens(config: &HostConfig) -> anyhow::Result<Tokens> {
    let read = |key: &str, var: &Option<String>| -> anyhow::Result<Option<String>> {
        var.as_ref()
            .map(|var| {
                crate::config::SecretRef::Env(var.clone())
                    .read(std::path::Path::new("."))
                    .map(|s| s.expose().to_string())
                    .map_err(|e| anyhow::anyhow!("inlet.toml: `{key}`: {e}"))
            })
            .transpose()
    };
    let admin = read("admin_token_env", &config.admin_token_env)?;
    let metrics = read("metrics_token_env", &config.metrics_token_env)?;
    let consumer = read("consumer_token_env", &config.consumer_token_env)?;
    if consumer.is_some() && admin.is_none() {
        anyhow::bail!(
            "inlet.toml: `consumer_token_env` is set but `admin_token_env` is not: without an admin \
             token every /v1 route is open and the consumer token restricts nothing; set both"
        );
    }
    // The listener that serves /v1: `admin_listen` when there is one.
    let admin_addr = config.admin_listen.unwrap_or(config.listen);
    if admin.is_none() && !admin_addr.ip().is_loopback() {
        if !config.admin_open {
            anyhow::bail!(
                "inlet.toml: `{} = \"{admin_addr}\"` is not a loopback address and no `admin_token_env` is set: \
                 anyone who reaches the port could move checkpoints, reset cursors and read every stream \
                 through /v1. Set `admin_token_env` (and export the token), `admin_listen` to a loopback \
                 address, or `admin_open = true` to serve the admin API without a token on purpose",
                if config.admin_listen.is_some() {
                    "admin_listen"
                } else {
                    "listen"
                }
            );
        }
        tracing::warn!(
            listen = %admin_addr,
            "admin_open = true: the admin API (/v1) answers anyone who reaches this listener, without a token."
        );
    }
    Ok(Tokens {
        admin,
        metrics,
        consumer,
    })
}

/// `Ok` when no token is configured or the request carries it (compared
/// in constant time, whatever their lengths); else what needs it.
pub(super) fn check_bearer(
    token: Option<&str>,
    headers: &http::HeaderMap,
    what: &'static str,
) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Ok(());
    };
    let given = crate::registry::bearer_token(headers).unwrap_or("");
    // Digests of equal length, compared in constant time: neither the
    // token's bytes nor its length show in the time taken.
    use sha2::Digest as _;
    use subtle::ConstantTimeEq;
    let digest = |b: &str| sha2::Sha256::digest(b.as_bytes());
    if bool::from(digest(given).ct_eq(&digest(token))) {
        Ok(())
    } else {
        Err(ApiError::TokenRequired(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With `admin_listen`, the rule is about the listener that serves /v1.
    #[test]
    fn the_admin_listener_decides_whether_a_token_is_needed() {
        let mut config = HostConfig {
            listen: "0.0.0.0:8080".parse().unwrap(),
            admin_listen: Some("127.0.0.1:9090".parse().unwrap()),
            ..HostConfig::default()
        };
        assert!(tokens(&config).is_ok(), "the public listener serves no /v1");
        config.listen = "127.0.0.1:8080".parse().unwrap();
        config.admin_listen = Some("0.0.0.0:9090".parse().unwrap());
        let err = tokens(&config).unwrap_err().to_string();
        assert!(err.contains("admin_listen = \"0.0.0.0:9090\""), "{err}");
    }

    #[test]
    fn an_admin_api_without_a_token_stays_on_loopback_unless_opened_on_purpose() {
        let mut config = HostConfig {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..HostConfig::default()
        };
        let err = tokens(&config).unwrap_err().to_string();
        assert!(
            err.contains("not a loopback address") && err.contains("admin_open"),
            "{err}"
        );
        config.listen = "[::]:8080".parse().unwrap();
        assert!(tokens(&config).is_err());
        config.admin_open = true;
        let none = Tokens {
            admin: None,
            metrics: None,
            consumer: None,
        };
        assert_eq!(tokens(&config).unwrap(), none);
        config.admin_open = false;
        for loopback in ["127.0.0.1:0", "127.0.0.2:8080", "[::1]:0"] {
            config.listen = loopback.parse().unwrap();
            assert_eq!(tokens(&config).unwrap(), none, "{loopback}");
        }
    }
}
