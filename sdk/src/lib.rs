//! Write [Inlet](https://example.invalid/inlet) connectors: one trait, one
//! macro, typed events and outbound HTTP.
//!
//! A connector is a WebAssembly component (`wasm32-wasip2`) that turns push
//! requests and source responses into [`Event`]s. The host does everything
//! that must be trusted: the HTTP listener, authentication, the scheduler,
//! durable storage, deduplication, checkpoints, secrets and limits.
//!
//! # A push connector
//!
//! Implement [`Connector`] on a unit struct and register it with
//! [`export_connector!`]. [`describe`](Connector::describe) is the only
//! required hook; the others default to a clear [`Error::Invalid`].
//!
//! ```no_run,standalone_crate
//! use inlet_sdk::{Connector, Descriptor, Error, Event, PushOutcome, Request, log};
//!
//! struct Orders;
//!
//! impl Connector for Orders {
//!     fn describe() -> Descriptor {
//!         Descriptor::new("orders", env!("CARGO_PKG_VERSION"))
//!             .push()
//!             .description("Order webhooks from the shop.")
//!     }
//!
//!     fn on_push(req: Request) -> Result<PushOutcome, Error> {
//!         let order: serde_json::Value = req.json()?; // bad JSON: 400 to the sender
//!         let id = order["id"].as_str().ok_or_else(|| Error::invalid("order has no `id`"))?;
//!         log::debug(format!("Received order {id}."));
//!         let event = Event::json(&order)?.id(id).attr("type", "order");
//!         Ok(PushOutcome::events(vec![event]))
//!     }
//! }
//!
//! inlet_sdk::export_connector!(Orders);
//! ```
//!
//! # A pull connector
//!
//! [`pull`](Connector::pull) gets the last committed checkpoint as `since`
//! and returns a [`PullBatch`] with the next one. The host commits the events
//! and the checkpoint together, so a failed pull loses nothing. Read settings
//! with [`config`] and reach the source with [`http`] (only hosts in the
//! manifest's `allowed_hosts`).
//!
//! ```no_run,standalone_crate
//! use inlet_sdk::{Connector, Descriptor, Error, Event, PullBatch, config_required, http};
//!
//! #[derive(serde::Deserialize)]
//! struct Page { items: Vec<serde_json::Value>, next: Option<String> }
//!
//! struct Items;
//!
//! impl Connector for Items {
//!     fn describe() -> Descriptor {
//!         Descriptor::new("items", env!("CARGO_PKG_VERSION")).pull().schedule("1m")
//!     }
//!
//!     fn pull(since: Option<String>, _partition: Option<String>) -> Result<PullBatch, Error> {
//!         let mut request = http::Request::get(config_required("url")?);
//!         if let Some(since) = &since {
//!             request = request.with_query("since", since);
//!         }
//!         let page: Page = request.send()?.error_for_status()?.json()?;
//!         let events = page
//!             .items
//!             .iter()
//!             .map(|item| Ok(Event::json(item)?.id(item["id"].to_string())))
//!             .collect::<Result<Vec<_>, Error>>()?;
//!         let batch = PullBatch::new(events);
//!         Ok(match page.next {
//!             Some(next) => batch.checkpoint(next),
//!             None => batch,
//!         })
//!     }
//! }
//!
//! inlet_sdk::export_connector!(Items);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release`; the crate's
//! `README.md` walks through deployment, error semantics and safe cursors.

// Lets the generated bindings name this crate as `inlet_sdk` from inside it
// too, so the same paths work here and in connector crates.
extern crate self as inlet_sdk;

mod config;
mod connector;
mod descriptor;
mod error;
mod event;
pub mod http;
pub mod log;
pub mod mac;
mod percent;
mod pull;
mod push;
pub mod sql;
pub mod testing;

pub use config::{config, config_or, config_parse, config_required};
#[doc(hidden)]
pub use connector::__private;
pub use connector::Connector;
pub use descriptor::Descriptor;
pub use error::Error;
pub use event::Event;
pub use pull::PullBatch;
pub use push::{PushOutcome, Request, Response};

/// Bindings generated from `wit/connector.wit`; used by
/// [`export_connector!`], not part of the public API.
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "inlet_sdk::wit",
    });
}

#[cfg(test)]
mod tests {
    /// The SDK carries its own copy of the WIT, so that it builds outside
    /// the checkout; it must be the host's contract, byte for byte.
    #[test]
    fn the_wit_copy_is_the_hosts_contract() {
        let ours = include_str!("../wit/connector.wit");
        let contract = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/connector.wit");
        // Packaged alone (cargo package), the checkout is not there.
        if let Ok(theirs) = std::fs::read_to_string(contract) {
            assert!(
                ours == theirs,
                "sdk/wit/connector.wit differs from wit/connector.wit: copy it (cp wit/connector.wit sdk/wit/)"
            );
        }
    }
}
