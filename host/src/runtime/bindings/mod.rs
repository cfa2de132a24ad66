//! The host's generated bindings, one module per version of the WIT
//! package (as Zed keeps `since_v0_*`): a later `inlet:connector@0.2.0`
//! gets a `v0_2.rs` of its own beside this one, and the host links each
//! component against the version it was built for, so a connector built
//! against 0.1.0 keeps loading. Today there is one version, and the rest
//! of the runtime uses it through the re-exports below.

pub mod v0_1;

pub use v0_1::{CONNECTOR_EXPORT, Plugin, PluginPre, host_api, mac, sql, types};
