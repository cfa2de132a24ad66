//! Log lines written to the host's log under the connector's name.
//!
//! Logging never fails; the host may drop lines from a connector that logs
//! too much. Write sentences: `log::info(format!("Fetched {n} items."))`.
//!
//! ```no_run
//! use inlet_sdk::log;
//!
//! log::debug("Parsing the request body.");
//! log::warn(format!("Skipped {} malformed rows.", 3));
//! ```

use crate::wit::inlet::connector::host::{self, Level};

/// Logs `message` at trace level.
///
/// ```no_run
/// inlet_sdk::log::trace("Entering pull.");
/// ```
pub fn trace(message: impl AsRef<str>) {
    host::log(Level::Trace, message.as_ref());
}

/// Logs `message` at debug level.
///
/// ```no_run
/// inlet_sdk::log::debug("Request parsed.");
/// ```
pub fn debug(message: impl AsRef<str>) {
    host::log(Level::Debug, message.as_ref());
}

/// Logs `message` at info level.
///
/// ```no_run
/// inlet_sdk::log::info("Fetched 10 items.");
/// ```
pub fn info(message: impl AsRef<str>) {
    host::log(Level::Info, message.as_ref());
}

/// Logs `message` at warn level.
///
/// ```no_run
/// inlet_sdk::log::warn("The source returned an item without an id.");
/// ```
pub fn warn(message: impl AsRef<str>) {
    host::log(Level::Warn, message.as_ref());
}

/// Logs `message` at error level.
///
/// ```no_run
/// inlet_sdk::log::error("The source answered with an unknown schema.");
/// ```
pub fn error(message: impl AsRef<str>) {
    host::log(Level::Error, message.as_ref());
}
