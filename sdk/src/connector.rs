//! The `Connector` trait and the macro that exports it as the component's
//! `inlet:connector/connector` interface.

use crate::{Descriptor, Error, PullBatch, PushOutcome, Request};

/// The hooks a connector implements. Every hook is an associated function:
/// the host creates a fresh instance for each call, so there is no `self`
/// and nothing survives between calls (keep state in the checkpoint).
///
/// Only [`describe`](Connector::describe) is required. Hooks the connector
/// does not support keep their default bodies, which return a clear
/// [`Error::Invalid`].
///
/// Register the type with [`export_connector!`](crate::export_connector).
///
/// ```no_run,standalone_crate
/// use inlet_sdk::{Connector, Descriptor, Error, Event, PushOutcome, Request};
///
/// struct Orders;
///
/// impl Connector for Orders {
///     fn describe() -> Descriptor {
///         Descriptor::new("orders", env!("CARGO_PKG_VERSION"))
///             .push()
///             .description("Order webhooks from the shop.")
///     }
///
///     fn on_push(req: Request) -> Result<PushOutcome, Error> {
///         let order: serde_json::Value = req.json()?;
///         let id = order["id"].as_str().unwrap_or_default().to_owned();
///         Ok(PushOutcome::events(vec![Event::json(&order)?.id(id)]))
///     }
/// }
///
/// inlet_sdk::export_connector!(Orders);
/// ```
pub trait Connector {
    /// Describes the connector. Called once when the component is loaded; a
    /// panic here refuses the component.
    ///
    /// ```no_run
    /// # struct Poller;
    /// impl inlet_sdk::Connector for Poller {
    ///     fn describe() -> inlet_sdk::Descriptor {
    ///         inlet_sdk::Descriptor::new("poller", "1.0.0").pull().schedule("1m")
    ///     }
    /// }
    /// ```
    fn describe() -> Descriptor;

    /// Lists the partitions to pull, each with its own checkpoint. The default,
    /// an empty list, means one unnamed partition (`partition` is `None` in
    /// [`pull`](Connector::pull)). Errors are treated as for `pull`.
    ///
    /// ```no_run
    /// # struct Repos;
    /// impl inlet_sdk::Connector for Repos {
    ///     # fn describe() -> inlet_sdk::Descriptor { inlet_sdk::Descriptor::new("repos", "1.0.0").pull() }
    ///     fn partitions() -> Result<Vec<String>, inlet_sdk::Error> {
    ///         Ok(inlet_sdk::config_or("repos", "").split(',').map(str::to_owned).collect())
    ///     }
    /// }
    /// ```
    fn partitions() -> Result<Vec<String>, Error> {
        Ok(Vec::new())
    }

    /// Handles one push request and returns the events to store. The host has
    /// already authenticated it and read the whole body.
    ///
    /// ```no_run
    /// # struct Hooks;
    /// impl inlet_sdk::Connector for Hooks {
    ///     # fn describe() -> inlet_sdk::Descriptor { inlet_sdk::Descriptor::new("hooks", "1.0.0").push() }
    ///     fn on_push(req: inlet_sdk::Request) -> Result<inlet_sdk::PushOutcome, inlet_sdk::Error> {
    ///         let event = inlet_sdk::Event::bytes(req.body().to_vec(), "application/json");
    ///         Ok(inlet_sdk::PushOutcome::events(vec![event]))
    ///     }
    /// }
    /// ```
    fn on_push(req: Request) -> Result<PushOutcome, Error> {
        let _ = req;
        Err(Error::invalid(
            "this connector does not accept push requests",
        ))
    }

    /// Fetches the next batch after checkpoint `since` (`None` on the first
    /// pull) for `partition` (`None` for the unnamed one). A failed pull never
    /// moves the checkpoint.
    ///
    /// ```no_run
    /// # struct Poller;
    /// impl inlet_sdk::Connector for Poller {
    ///     # fn describe() -> inlet_sdk::Descriptor { inlet_sdk::Descriptor::new("poller", "1.0.0").pull() }
    ///     fn pull(
    ///         since: Option<String>,
    ///         _partition: Option<String>,
    ///     ) -> Result<inlet_sdk::PullBatch, inlet_sdk::Error> {
    ///         let url = inlet_sdk::config_required("url")?;
    ///         let url = inlet_sdk::http::append_query(&url, "since", since.as_deref().unwrap_or("0"));
    ///         let items: Vec<serde_json::Value> = inlet_sdk::http::get(&url)?.error_for_status()?.json()?;
    ///         let events = items
    ///             .iter()
    ///             .map(inlet_sdk::Event::json)
    ///             .collect::<Result<Vec<_>, _>>()?;
    ///         Ok(inlet_sdk::PullBatch::new(events))
    ///     }
    /// }
    /// ```
    fn pull(since: Option<String>, partition: Option<String>) -> Result<PullBatch, Error> {
        let _ = (since, partition);
        Err(Error::invalid("this connector does not support pull"))
    }
}

/// Exports a [`Connector`] implementation as the component's
/// `inlet:connector/connector` interface. Use it once per crate, at the top
/// level, on a type that implements [`Connector`].
///
/// ```no_run,standalone_crate
/// struct Ping;
///
/// impl inlet_sdk::Connector for Ping {
///     fn describe() -> inlet_sdk::Descriptor {
///         inlet_sdk::Descriptor::new("ping", "0.1.0").push()
///     }
/// }
///
/// inlet_sdk::export_connector!(Ping);
/// ```
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        const _: () = {
            #[doc(hidden)]
            struct __InletConnectorExport;

            impl $crate::wit::exports::inlet::connector::connector::Guest for __InletConnectorExport {
                fn describe() -> $crate::wit::inlet::connector::types::Descriptor {
                    $crate::__private::describe::<$connector>()
                }

                fn partitions() -> ::core::result::Result<
                    $crate::__private::Vec<$crate::__private::String>,
                    $crate::wit::inlet::connector::types::Error,
                > {
                    $crate::__private::partitions::<$connector>()
                }

                fn on_push(
                    req: $crate::wit::inlet::connector::types::HttpRequest,
                ) -> ::core::result::Result<
                    $crate::wit::inlet::connector::types::PushOutcome,
                    $crate::wit::inlet::connector::types::Error,
                > {
                    $crate::__private::on_push::<$connector>(req)
                }

                fn pull(
                    since: ::core::option::Option<$crate::__private::String>,
                    partition: ::core::option::Option<$crate::__private::String>,
                ) -> ::core::result::Result<
                    $crate::wit::inlet::connector::types::PullBatch,
                    $crate::wit::inlet::connector::types::Error,
                > {
                    $crate::__private::pull::<$connector>(since, partition)
                }
            }

            // Only a wasm32 build is a component. Natively (a connector's unit
            // tests) the export names, which contain `:` and `/`, cannot be
            // linked into a shared library, so only the adapter is compiled.
            #[cfg(target_arch = "wasm32")]
            $crate::wit::__export_plugin!(__InletConnectorExport with_types_in $crate::wit);
        };
    };
}

/// Glue called by [`export_connector!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use std::string::String;
    pub use std::vec::Vec;

    use super::Connector;
    use crate::wit::inlet::connector::types as wit;
    use crate::{Error, Request};

    pub fn describe<C: Connector>() -> wit::Descriptor {
        C::describe().into_wit()
    }

    pub fn partitions<C: Connector>() -> Result<Vec<String>, wit::Error> {
        C::partitions().map_err(Error::into_wit)
    }

    pub fn on_push<C: Connector>(req: wit::HttpRequest) -> Result<wit::PushOutcome, wit::Error> {
        C::on_push(Request::from_wit(req))
            .map(crate::PushOutcome::into_wit)
            .map_err(Error::into_wit)
    }

    pub fn pull<C: Connector>(
        since: Option<String>,
        partition: Option<String>,
    ) -> Result<wit::PullBatch, wit::Error> {
        C::pull(since, partition)
            .map(crate::PullBatch::into_wit)
            .map_err(Error::into_wit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wit::inlet::connector::types as wit;

    struct Minimal;

    impl Connector for Minimal {
        fn describe() -> Descriptor {
            Descriptor::new("minimal", "0.0.1")
        }
    }

    #[test]
    fn unsupported_hooks_are_invalid() {
        let req = wit::HttpRequest {
            method: "POST".into(),
            path: String::new(),
            query: String::new(),
            headers: vec![],
            body: vec![],
        };
        assert!(matches!(
            __private::on_push::<Minimal>(req),
            Err(wit::Error::Invalid(m)) if m == "this connector does not accept push requests"
        ));
        assert!(matches!(
            __private::pull::<Minimal>(None, None),
            Err(wit::Error::Invalid(m)) if m == "this connector does not support pull"
        ));
        assert_eq!(__private::partitions::<Minimal>().ok(), Some(vec![]));
        assert_eq!(__private::describe::<Minimal>().name, "minimal");
    }
}
