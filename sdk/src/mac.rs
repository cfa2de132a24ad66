//! Message authentication codes with secrets the host holds: [`sign`] and
//! [`verify`] with a secret the manifest grants by name in
//! `[sandbox.secrets]`. The connector never sees the key.
//!
//! For handshakes that prove the endpoint knows a secret, such as Zoom's
//! `endpoint.url_validation` (answer the HMAC-SHA256 of a token):
//!
//! ```no_run
//! use inlet_sdk::mac::{self, Algorithm};
//!
//! # fn f() -> Result<(), inlet_sdk::Error> {
//! // plugins.d/zoom.toml:  [sandbox.secrets]
//! //                       zoom = { env = "ZOOM_SECRET_TOKEN" }
//! let token = mac::sign("zoom", Algorithm::Sha256, b"qgg8vlvZRS6UYooatFL8Aw")?;
//! assert!(mac::verify("zoom", Algorithm::Sha256, b"qgg8vlvZRS6UYooatFL8Aw", &token)?);
//! # Ok(())
//! # }
//! ```
//!
//! In a native test, [`Env::secret`](crate::testing::Env::secret) plays the
//! manifest's grant. A component that never calls these does not import
//! the `mac` interface.

use crate::Error;

/// The HMAC's hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// The HMAC of `data` under the secret the manifest grants as `secret`
/// (its first value when it lists several). [`Error::Invalid`] when there
/// is no such grant.
pub fn sign(secret: &str, algorithm: Algorithm, data: &[u8]) -> Result<Vec<u8>, Error> {
    #[cfg(target_family = "wasm")]
    return wit::sign(secret, algorithm.into(), data).map_err(crate::sql::error_from_wit);
    #[cfg(not(target_family = "wasm"))]
    return crate::testing::mac(secret, algorithm, data).map(|mut macs| macs.swap_remove(0));
}

/// Whether `mac` is the HMAC of `data` under any value of the secret
/// granted as `secret`, compared in constant time by the host.
/// [`Error::Invalid`] when there is no such grant.
pub fn verify(secret: &str, algorithm: Algorithm, data: &[u8], mac: &[u8]) -> Result<bool, Error> {
    #[cfg(target_family = "wasm")]
    return wit::verify(secret, algorithm.into(), data, mac).map_err(crate::sql::error_from_wit);
    #[cfg(not(target_family = "wasm"))]
    return crate::testing::mac(secret, algorithm, data).map(|macs| macs.iter().any(|m| m == mac));
}

#[cfg(target_family = "wasm")]
use crate::wit::inlet::connector::mac as wit;

#[cfg(target_family = "wasm")]
impl From<Algorithm> for wit::Algorithm {
    fn from(a: Algorithm) -> Self {
        match a {
            Algorithm::Sha1 => wit::Algorithm::Sha1,
            Algorithm::Sha256 => wit::Algorithm::Sha256,
            Algorithm::Sha512 => wit::Algorithm::Sha512,
        }
    }
}
