//! # inlet-host
//!
//! The Inlet data-ingestion host. Connectors are sandboxed WebAssembly
//! components (see `wit/connector.wit` and the `inlet-sdk` crate); the host
//! owns the HTTP listener, the pull scheduler, durable storage,
//! deduplication, checkpoints, secrets and limits.
//!
//! Embedding it takes a [`HostConfig`] and a call to [`Server::start`]:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use inlet_host::{HostConfig, ServeOptions, Server};
//!
//! let mut config = HostConfig::default();
//! config.listen = "127.0.0.1:0".parse()?;           // any free port
//! config.plugins_dir = "plugins.d".into();           // NAME.wasm + NAME.toml
//! config.data_dir = "data".into();                   // sled store + cache
//! let server = Server::start(config, ServeOptions::default()).await?;
//! println!("push to http://{}/ingest/NAME", server.addr());
//! server.shutdown().await;                           // drain, flush, stop
//! # Ok(()) }
//! ```
//!
//! How a request and a pull flow through the modules is described in
//! `ARCHITECTURE.md` at the repository root.

pub(crate) mod api;
pub mod cli;
pub mod config;
mod conns;
pub(crate) mod event;
pub(crate) mod mac;
pub(crate) mod metrics;
pub(crate) mod pull;
pub(crate) mod push;
pub(crate) mod registry;
pub(crate) mod reply;
pub mod runtime;
mod server;
pub(crate) mod store;
pub mod telemetry;

pub use config::{HostConfig, Manifest};
pub use server::{ServeOptions, Server};
