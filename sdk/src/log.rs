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

#[cfg(target_family = "wasm")]
use crate::wit::inlet::connector::host;
use crate::wit::inlet::connector::host::Level;

/// Logs `message` at trace level.
///
/// ```no_run
/// inlet_sdk::log::trace("Entering pull.");
/// ```
pub fn trace(message: impl AsRef<str>) {
    emit(Level::Trace, "trace", message.as_ref());
}

/// Logs `message` at debug level.
///
/// ```no_run
/// inlet_sdk::log::debug("Request parsed.");
/// ```
pub fn debug(message: impl AsRef<str>) {
    emit(Level::Debug, "debug", message.as_ref());
}

/// Logs `message` at info level.
///
/// ```no_run
/// inlet_sdk::log::info("Fetched 10 items.");
/// ```
pub fn info(message: impl AsRef<str>) {
    emit(Level::Info, "info", message.as_ref());
}

/// Logs `message` at warn level.
///
/// ```no_run
/// inlet_sdk::log::warn("The source returned an item without an id.");
/// ```
pub fn warn(message: impl AsRef<str>) {
    emit(Level::Warn, "warn", message.as_ref());
}

/// Logs `message` at error level.
///
/// ```no_run
/// inlet_sdk::log::error("The source answered with an unknown schema.");
/// ```
pub fn error(message: impl AsRef<str>) {
    emit(Level::Error, "error", message.as_ref());
}

/// The host's log in the component; the test environment natively.
#[allow(unused_variables)]
fn emit(level: Level, name: &'static str, message: &str) {
    #[cfg(target_family = "wasm")]
    host::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    crate::testing::log(name, message);
}
