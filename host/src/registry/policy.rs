//! A source's push policy, built from its manifest when it loads.

use super::Verifier;
use crate::config::{ConfigError, Manifest};
use governor::clock::{Clock, DefaultClock};
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use http::HeaderMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Authentication, idempotency, rate limit and concurrency of one source.
pub struct PushPolicy {
    pub verifier: Verifier,
    /// `allowed_ips`: who may push at all (checked before the body).
    pub allowed_ips: Option<Vec<ipnet::IpNet>>,
    pub idempotency_header: Option<http::HeaderName>,
    pub dedup_window: Duration,
    limiter: Option<RateLimiter<NotKeyed, InMemoryState, DefaultClock>>,
    slots: Option<Arc<Semaphore>>,
}

impl PushPolicy {
    /// `public_url` is the host's (`inlet.toml`); the source's URL is it
    /// + `/ingest/{name}`, unless `[push] public_url` names it.
    pub fn build(
        manifest: &Manifest,
        path: &Path,
        public_url: Option<&str>,
        name: &str,
    ) -> Result<Self, ConfigError> {
        let push = &manifest.push;
        let url = match &push.public_url {
            // Verbatim: the sender signs exactly the URL it was given.
            Some(url) => {
                crate::config::check_public_url(url)
                    .map_err(|e| ConfigError::invalid(path, "push.public_url", e))?;
                Some(url.clone())
            }
            None => public_url.map(|base| format!("{}/ingest/{name}", base.trim_end_matches('/'))),
        };
        let idempotency_header = push
            .idempotency_header
            .as_deref()
            .map(|h| {
                http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    ConfigError::invalid(
                        path,
                        "push.idempotency_header",
                        format!("`{h}` is not a header name"),
                    )
                })
            })
            .transpose()?;
        let limiter = push
            .rate_limit
            .map(|rl| RateLimiter::direct(Quota::per_second(rl.per_second).allow_burst(rl.burst)));
        let allowed_ips = push
            .allowed_ips
            .as_ref()
            .map(|list| {
                if list.is_empty() {
                    return Err(ConfigError::invalid(
                        path,
                        "push.allowed_ips",
                        "an empty list would refuse every sender; remove the key to allow any",
                    ));
                }
                crate::config::parse_ip_ranges(list)
                    .map_err(|e| ConfigError::invalid(path, "push.allowed_ips", e))
            })
            .transpose()?;
        let verifier = Verifier::build(&push.auth, path, url.as_deref())?;
        if push.public_url.is_some() && !verifier.signs_url() {
            return Err(ConfigError::invalid(
                path,
                "push.public_url",
                format!(
                    "is not used by the `{}` scheme (it does not sign the URL); remove it",
                    push.auth.scheme.name()
                ),
            ));
        }
        // A preset's delivery-id header is the key unless the manifest
        // names one.
        let idempotency_header = idempotency_header.or_else(|| {
            verifier
                .idempotency_header()
                .and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok())
        });
        Ok(PushPolicy {
            verifier,
            allowed_ips,
            idempotency_header,
            dedup_window: manifest.dedup_window(),
            limiter,
            slots: push
                .max_in_flight
                .map(|n| Arc::new(Semaphore::new(n as usize))),
        })
    }

    /// The request's idempotency key: the configured header, else
    /// `Idempotency-Key`, else `webhook-id`.
    pub fn idempotency_key(&self, headers: &HeaderMap) -> Option<String> {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        match &self.idempotency_header {
            Some(h) => get(h.as_str()),
            None => get("idempotency-key").or_else(|| get("webhook-id")),
        }
    }

    /// Takes a token, or says how long until one is free.
    pub fn check_rate(&self) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(l) => l
                .check()
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }

    /// Takes a per-source in-flight slot (always succeeds when unlimited).
    pub fn try_slot(&self) -> Option<Option<OwnedSemaphorePermit>> {
        match &self.slots {
            None => Some(None),
            Some(s) => s.clone().try_acquire_owned().ok().map(Some),
        }
    }
}
