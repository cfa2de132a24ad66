//! The error a hook returns; it mirrors the WIT `error` variant.

use std::fmt;

use crate::wit::inlet::connector::types as wit;

/// Why a hook failed. The host maps each case in one place.
///
/// | variant | push reply | pull |
/// |---|---|---|
/// | [`Invalid`](Error::Invalid) | 400 | not retried quickly; the connector is marked failing |
/// | [`Unauthorized`](Error::Unauthorized) | 401 | the source refused the credentials; marked failing |
/// | [`Unavailable`](Error::Unavailable) | 503 | retried with backoff |
/// | [`RateLimited`](Error::RateLimited) | 429 | the next attempt waits at least that many seconds |
/// | [`Other`](Error::Other) | 500 | retried with backoff |
///
/// A failed pull never moves the checkpoint, so returning an error loses
/// nothing.
///
/// ```no_run
/// use inlet_sdk::Error;
///
/// fn check_signature(ok: bool) -> Result<(), Error> {
///     if !ok {
///         return Err(Error::unauthorized("signature does not match"));
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input is bad (push: 400; pull: the connector is marked failing).
    Invalid(String),
    /// Credentials were refused (push: 401; pull: marked failing).
    Unauthorized(String),
    /// A transient failure (push: 503; pull: retried with backoff).
    Unavailable(String),
    /// The source asked to slow down, optionally for this many seconds
    /// (push: 429 with `Retry-After`; pull: the next attempt waits).
    RateLimited(Option<u32>),
    /// Anything else (push: 500; pull: retried with backoff).
    Other(String),
}

impl Error {
    /// Bad input: [`Error::Invalid`].
    ///
    /// ```no_run
    /// let err = inlet_sdk::Error::invalid("field `amount` must be a number");
    /// ```
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// Refused credentials: [`Error::Unauthorized`].
    ///
    /// ```no_run
    /// let err = inlet_sdk::Error::unauthorized("missing signature header");
    /// ```
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(message.into())
    }

    /// A transient failure worth retrying: [`Error::Unavailable`].
    ///
    /// ```no_run
    /// let err = inlet_sdk::Error::unavailable("source is in maintenance");
    /// ```
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }

    /// The source asked to slow down: [`Error::RateLimited`].
    ///
    /// ```no_run
    /// let err = inlet_sdk::Error::rate_limited(Some(30));
    /// ```
    pub fn rate_limited(retry_after_secs: Option<u32>) -> Self {
        Self::RateLimited(retry_after_secs)
    }

    /// Anything else: [`Error::Other`].
    ///
    /// ```no_run
    /// let err = inlet_sdk::Error::other("unexpected state");
    /// ```
    pub fn other(message: impl Into<String>) -> Self {
        Self::Other(message.into())
    }

    pub(crate) fn into_wit(self) -> wit::Error {
        match self {
            Self::Invalid(m) => wit::Error::Invalid(m),
            Self::Unauthorized(m) => wit::Error::Unauthorized(m),
            Self::Unavailable(m) => wit::Error::Unavailable(m),
            Self::RateLimited(s) => wit::Error::RateLimited(s),
            Self::Other(m) => wit::Error::Other(m),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(m) => write!(f, "invalid: {m}"),
            Self::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            Self::Unavailable(m) => write!(f, "unavailable: {m}"),
            Self::RateLimited(Some(secs)) => write!(f, "rate limited: retry after {secs}s"),
            Self::RateLimited(None) => f.write_str("rate limited"),
            Self::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_kind() {
        assert_eq!(Error::invalid("bad").to_string(), "invalid: bad");
        assert_eq!(
            Error::rate_limited(Some(3)).to_string(),
            "rate limited: retry after 3s"
        );
        assert_eq!(Error::rate_limited(None).to_string(), "rate limited");
        assert_eq!(Error::other("boom").to_string(), "boom");
    }

    #[test]
    fn converts_every_variant() {
        assert!(matches!(
            Error::unauthorized("x").into_wit(),
            wit::Error::Unauthorized(m) if m == "x"
        ));
        assert!(matches!(
            Error::rate_limited(Some(5)).into_wit(),
            wit::Error::RateLimited(Some(5))
        ));
    }
}
