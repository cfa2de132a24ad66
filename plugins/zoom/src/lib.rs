//! `zoom`: a push connector for Zoom webhooks.
//!
//! The host checks `x-zm-signature` (manifest `auth = { scheme = "zoom",
//! ... }`) before this code runs. Zoom's `endpoint.url_validation`
//! challenge is answered with `encryptedToken`, the HMAC-SHA256 of its
//! `plainToken` under the webhook's secret token, which the host computes
//! for the secret granted as `zoom` in `[sandbox.secrets]`: this code never
//! sees the secret. Every other notification becomes one event: id
//! `{event}:{event_ts}` (plus the object's id when there is one; a retry
//! carries the same body, so the same id), attribute `event`, payload the
//! JSON body.

use inlet_sdk::mac::{self, Algorithm};
use inlet_sdk::{Connector, Descriptor, Error, Event, PushOutcome, Request, Response, log};

/// The connector; see the crate docs.
pub struct Zoom;

/// The `[sandbox.secrets]` grant holding Zoom's secret token.
const SECRET: &str = "zoom";

impl Connector for Zoom {
    fn describe() -> Descriptor {
        Descriptor::new("zoom", env!("CARGO_PKG_VERSION"))
            .push()
            .description(
                "Zoom webhooks: answers endpoint.url_validation, one event per notification.",
            )
    }

    fn on_push(req: Request) -> Result<PushOutcome, Error> {
        let body: serde_json::Value = req.json()?;
        let event = body["event"]
            .as_str()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| Error::invalid("the notification has no `event`"))?;
        if event == "endpoint.url_validation" {
            let plain = body["payload"]["plainToken"]
                .as_str()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    Error::invalid("endpoint.url_validation without payload.plainToken")
                })?;
            let encrypted = mac::sign(SECRET, Algorithm::Sha256, plain.as_bytes())?;
            log::info("Zoom endpoint validation answered; nothing stored.");
            return Ok(PushOutcome::reply_only(Response::json(
                200,
                &serde_json::json!({
                    "plainToken": plain,
                    "encryptedToken": hex(&encrypted),
                }),
            )?));
        }
        let ts = body["event_ts"]
            .as_u64()
            .ok_or_else(|| Error::invalid("the notification has no numeric `event_ts`"))?;
        let object = &body["payload"]["object"];
        let mut id = format!("{event}:{ts}");
        if let Some(o) = object["uuid"].as_str().or(object["id"].as_str()) {
            id = format!("{id}:{o}");
        } else if let Some(o) = object["id"].as_u64() {
            id = format!("{id}:{o}");
        }
        let e = Event::json(&body)?.id(id).attr("event", event);
        Ok(PushOutcome::events(vec![e]))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

inlet_sdk::export_connector!(Zoom);

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_sdk::testing::Env;

    #[test]
    fn the_validation_challenge_is_answered_with_the_hosts_hmac() {
        let env = Env::new().secret("zoom", "z-secret");
        let body = br#"{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680}"#;
        let out = env
            .push::<Zoom>(Request::new("POST", "", body.to_vec()))
            .unwrap();
        assert!(out.get_events().is_empty());
        let reply: serde_json::Value = serde_json::from_slice(out.reply().unwrap().body()).unwrap();
        let expected = env
            .run(|| mac::sign("zoom", Algorithm::Sha256, b"qgg8vlvZRS6UYooatFL8Aw"))
            .unwrap();
        assert_eq!(reply["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
        assert_eq!(reply["encryptedToken"], hex(&expected));
        // Without the grant: a clear error, not a panic.
        let err = Env::new()
            .push::<Zoom>(Request::new("POST", "", body.to_vec()))
            .unwrap_err();
        assert!(err.to_string().contains("no secret `zoom`"), "{err}");
    }

    #[test]
    fn notifications_become_events_keyed_by_event_time_and_object() {
        let body = br#"{"event":"meeting.started","event_ts":1700000000123,"payload":{"object":{"id":"85746065","uuid":"4444AAAiAAAAAiAiAiiAii=="}}}"#;
        let out = Env::new()
            .push::<Zoom>(Request::new("POST", "", body.to_vec()))
            .unwrap();
        let events = out.get_events();
        assert_eq!(
            events[0].get_id(),
            Some("meeting.started:1700000000123:4444AAAiAAAAAiAiAiiAii==")
        );
        assert_eq!(events[0].attribute("event"), Some("meeting.started"));
    }
}
