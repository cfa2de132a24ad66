//! `slack`: a push connector for Slack's Events API.
//!
//! The host checks `X-Slack-Signature` over the timestamp and body
//! (manifest `auth = { scheme = "slack", ... }`) before this code runs.
//! `url_verification` (sent when the Request URL is set) is answered with
//! its `challenge` and stores nothing; each `event_callback` becomes one
//! event with id `event_id` (Slack retries with the same id, so a retry is
//! stored once), attributes `type` (the inner event's type) and `team`,
//! payload the JSON body. `app_rate_limited` notices are acknowledged and
//! logged.

use inlet_sdk::{Connector, Descriptor, Error, Event, PushOutcome, Request, Response, log};

/// The connector; see the crate docs.
pub struct Slack;

impl Connector for Slack {
    fn describe() -> Descriptor {
        Descriptor::new("slack", env!("CARGO_PKG_VERSION"))
            .push()
            .description("Slack Events API: answers url_verification, one event per event_id.")
    }

    fn on_push(req: Request) -> Result<PushOutcome, Error> {
        let body: serde_json::Value = req.json()?;
        match body["type"].as_str() {
            Some("url_verification") => {
                let challenge = body["challenge"]
                    .as_str()
                    .ok_or_else(|| Error::invalid("url_verification without `challenge`"))?;
                log::info("Slack URL verification answered; nothing stored.");
                Ok(PushOutcome::reply_only(Response::json(
                    200,
                    &serde_json::json!({ "challenge": challenge }),
                )?))
            }
            Some("event_callback") => {
                let id = body["event_id"]
                    .as_str()
                    .filter(|i| !i.is_empty())
                    .ok_or_else(|| Error::invalid("event_callback without `event_id`"))?;
                let mut e = Event::json(&body)?.id(id);
                if let Some(kind) = body["event"]["type"].as_str() {
                    e = e.attr("type", kind);
                }
                if let Some(team) = body["team_id"].as_str() {
                    e = e.attr("team", team);
                }
                Ok(PushOutcome::events(vec![e]))
            }
            Some("app_rate_limited") => {
                log::warn(format!(
                    "Slack is rate-limiting this app's events (minute {}).",
                    body["minute_rate_limited"]
                ));
                Ok(PushOutcome::reply_only(Response::json(
                    200,
                    &serde_json::json!({ "ok": true }),
                )?))
            }
            Some(other) => Err(Error::invalid(format!("unknown Events API type `{other}`"))),
            None => Err(Error::invalid("the body has no `type`")),
        }
    }
}

inlet_sdk::export_connector!(Slack);
