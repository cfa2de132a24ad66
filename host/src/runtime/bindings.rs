//! The one `bindgen!` of the host: Rust types for `wit/connector.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { "inlet:connector/sql.query": async },
    exports: { default: async },
});

pub use inlet::connector::host as host_api;
pub use inlet::connector::sql;
pub use inlet::connector::types;
