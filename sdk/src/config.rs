//! The connector's `[config]` table from its manifest.

use std::fmt::Display;
use std::str::FromStr;

use crate::Error;
#[cfg(target_family = "wasm")]
use crate::wit::inlet::connector::host;

/// Reads `key` from the `[config]` table of the connector's manifest
/// (`plugins.d/NAME.toml`); `None` when the key is absent.
///
/// ```no_run
/// let repo = inlet_sdk::config("repo");
/// ```
pub fn config(key: &str) -> Option<String> {
    #[cfg(target_family = "wasm")]
    return host::config(key);
    #[cfg(not(target_family = "wasm"))]
    return crate::testing::config(key);
}

/// Reads `key`, or `default` when it is absent.
///
/// ```no_run
/// let field = inlet_sdk::config_or("id_field", "id");
/// ```
pub fn config_or(key: &str, default: impl Into<String>) -> String {
    config(key).unwrap_or_else(|| default.into())
}

/// Reads `key`, or fails with [`Error::Invalid`] saying that it is required.
///
/// ```no_run
/// # fn f() -> Result<(), inlet_sdk::Error> {
/// let url = inlet_sdk::config_required("url")?;
/// # Ok(())
/// # }
/// ```
pub fn config_required(key: &str) -> Result<String, Error> {
    config(key).ok_or_else(|| Error::invalid(format!("config key `{key}` is required")))
}

/// Reads `key` and parses it with [`FromStr`]: `Ok(None)` when it is absent,
/// [`Error::Invalid`] naming the key when it does not parse.
///
/// ```no_run
/// # fn f() -> Result<(), inlet_sdk::Error> {
/// let page_size: u32 = inlet_sdk::config_parse("page_size")?.unwrap_or(100);
/// # Ok(())
/// # }
/// ```
pub fn config_parse<T>(key: &str) -> Result<Option<T>, Error>
where
    T: FromStr,
    T::Err: Display,
{
    config(key).map(|raw| parse_value(key, &raw)).transpose()
}

fn parse_value<T>(key: &str, raw: &str) -> Result<T, Error>
where
    T: FromStr,
    T::Err: Display,
{
    raw.trim().parse().map_err(|e| {
        Error::invalid(format!(
            "config key `{key}` has an invalid value {raw:?}: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_key() {
        assert_eq!(parse_value::<u32>("n", " 42 "), Ok(42));
        let err = parse_value::<u32>("page_size", "many").unwrap_err();
        assert_eq!(
            err,
            Error::invalid(
                "config key `page_size` has an invalid value \"many\": invalid digit found in string"
            )
        );
    }
}
