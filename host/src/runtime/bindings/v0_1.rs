//! Rust types for `inlet:connector@0.1.0` (`wit/connector.wit`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { "inlet:connector/sql.query": async },
    exports: { default: async },
});

pub use inlet::connector::host as host_api;
pub use inlet::connector::mac;
pub use inlet::connector::sql;
pub use inlet::connector::types;

/// The interface every 0.1 connector exports, as a component names it.
pub const CONNECTOR_EXPORT: &str = "inlet:connector/connector@0.1.0";
