//! What a connector may import. The host grants a fixed set of interfaces
//! and refuses a component that imports anything else before linking it, so
//! the refusal names every offending import instead of failing on the first.
//!
//! Granted:
//! - `wasi:cli/*` stdio, exit and terminal interfaces, with an empty
//!   environment and no arguments (stdout/stderr go to the host log);
//! - `wasi:clocks/*`, `wasi:random/*`, `wasi:io/*`;
//! - `wasi:filesystem/types` and `wasi:filesystem/preopens`, with no
//!   preopened directory (Rust's std imports them; every path fails);
//! - `wasi:http/types` and `wasi:http/outgoing-handler`, filtered by the
//!   manifest's `allowed_hosts`;
//! - `inlet:connector/host` and `inlet:connector/types`;
//! - `inlet:connector/sql`, which answers only for connections the manifest
//!   grants in `[sandbox.sql]` (`invalid` otherwise);
//! - `inlet:connector/mac`, HMACs with the secrets the manifest grants in
//!   `[sandbox.secrets]` (`invalid` otherwise).
//!
//! Refused: `wasi:sockets/*` (outbound traffic goes through wasi:http only)
//! and every other interface or top-level function.

pub(crate) mod host_api;
pub(crate) mod mac;
pub(crate) mod outbound;
pub(crate) mod sql;

use serde::Serialize;
use std::fmt;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Interfaces the host grants, without their `@version`.
const GRANTED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
    "inlet:connector/host",
    "inlet:connector/types",
    "inlet:connector/sql",
    "inlet:connector/mac",
];

/// One import of a component and whether the host grants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Import {
    /// The import name, such as `wasi:http/outgoing-handler@0.2.0`.
    pub name: String,
    /// Whether the host provides it to connectors.
    pub granted: bool,
}

impl Import {
    fn new(name: &str) -> Self {
        let base = name.split('@').next().unwrap_or(name);
        Import {
            name: name.to_string(),
            granted: GRANTED.contains(&base),
        }
    }
}

impl fmt::Display for Import {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.granted { "granted" } else { "refused" };
        write!(f, "{} ({verdict})", self.name)
    }
}

/// Every import of `component`, in the component's order.
pub fn imports(engine: &Engine, component: &Component) -> Vec<Import> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| Import::new(name))
        .collect()
}

/// Refuses a component that imports anything the host does not grant; the
/// message lists the refused imports and then all of them.
pub fn check(engine: &Engine, component: &Component) -> anyhow::Result<()> {
    let all = imports(engine, component);
    let refused: Vec<&str> = all
        .iter()
        .filter(|i| !i.granted)
        .map(|i| i.name.as_str())
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let listing: Vec<String> = all.iter().map(Import::to_string).collect();
    anyhow::bail!(
        "the component imports what the host does not grant: {}. Connectors get \
         wasi:cli (no environment), clocks, random, io, wasi:filesystem without \
         directories, wasi:http/outgoing-handler (filtered by `allowed_hosts`) and \
         inlet:connector/host and sql (grants in `[sandbox.sql]`); no sockets. Its imports: {}",
        refused.join(", "),
        listing.join(", ")
    )
}

/// The names of a component's top-level exports, for an error message.
pub fn exports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_by_interface_whatever_the_version() {
        assert!(Import::new("wasi:io/streams@0.2.12").granted);
        assert!(Import::new("inlet:connector/host@0.1.0").granted);
        assert!(Import::new("inlet:connector/sql@0.1.0").granted);
        assert!(Import::new("wasi:filesystem/preopens@0.2.0").granted);
        assert!(!Import::new("wasi:sockets/tcp@0.2.0").granted);
        assert!(!Import::new("wasi:http/incoming-handler@0.2.0").granted);
        assert!(!Import::new("wasi:cli/environment-extra@0.2.0").granted);
        assert!(!Import::new("log").granted);
    }
}
