//! `github`: a push connector for GitHub webhooks.
//!
//! The host checks `X-Hub-Signature-256` (manifest `auth = { scheme =
//! "github", ... }`) before this code runs. Each delivery becomes one event:
//! id = `X-GitHub-Delivery` (GitHub sends the same id when it redelivers),
//! attribute `event` = `X-GitHub-Event`, payload = the JSON body. `ping`
//! deliveries (sent when a hook is created) are answered and not stored.

use inlet_sdk::{Connector, Descriptor, Error, Event, PushOutcome, Request, Response, log};

/// The connector; see the crate docs.
pub struct Github;

impl Connector for Github {
    fn describe() -> Descriptor {
        Descriptor::new("github", env!("CARGO_PKG_VERSION"))
            .push()
            .description("GitHub webhooks: one event per delivery, keyed by X-GitHub-Delivery.")
    }

    fn on_push(req: Request) -> Result<PushOutcome, Error> {
        let delivery = req
            .header("x-github-delivery")
            .filter(|d| !d.is_empty())
            .ok_or_else(|| Error::invalid("missing X-GitHub-Delivery header"))?
            .to_string();
        let event = req
            .header("x-github-event")
            .filter(|e| !e.is_empty())
            .ok_or_else(|| Error::invalid("missing X-GitHub-Event header"))?
            .to_string();
        if event == "ping" {
            log::info(format!(
                "Ping delivery {delivery} answered; nothing stored."
            ));
            return Ok(PushOutcome::reply_only(Response::json(
                200,
                &serde_json::json!({"status": "pong", "delivery": delivery}),
            )?));
        }
        if let Some(ct) = req.header("content-type")
            && !ct.to_ascii_lowercase().starts_with("application/json")
        {
            return Err(Error::invalid(format!(
                "content type `{ct}` is not supported; set the webhook's content type to application/json"
            )));
        }
        let payload: serde_json::Value = req.json()?;
        let mut e = Event::json(&payload)?
            .id(delivery)
            .attr("event", event.as_str());
        if let Some(action) = payload.get("action").and_then(|a| a.as_str()) {
            e = e.attr("action", action);
        }
        Ok(PushOutcome::events(vec![e]))
    }
}

inlet_sdk::export_connector!(Github);
