//! `webhook-json`: a push connector that stores each JSON object it receives
//! as one event.
//!
//! The body is a JSON object or an array of objects. Each object becomes an
//! event whose payload is that object; its id comes from the field named by
//! config `id_field` (default `id`) and its `type` attribute from the field
//! named by `type_field` (default `type`).

use inlet_sdk::{Connector, Descriptor, Error, Event, PushOutcome, Request, config_or, log};
use serde_json::Value;

/// The connector; see the crate docs.
pub struct WebhookJson;

impl Connector for WebhookJson {
    fn describe() -> Descriptor {
        Descriptor::new("webhook-json", env!("CARGO_PKG_VERSION"))
            .push()
            .description(
                "Stores each JSON object pushed to it (one object or an array of objects) as \
                 an event, with its id and type taken from configurable fields.",
            )
    }

    fn on_push(req: Request) -> Result<PushOutcome, Error> {
        let fields = Fields {
            id: config_or("id_field", "id"),
            kind: config_or("type_field", "type"),
        };
        let result = parse_body(req.body(), &fields);
        match &result {
            Ok(events) => log::debug(format!(
                "{} {:?}: parsed {} event(s) from a {}-byte body.",
                req.method(),
                req.path(),
                events.len(),
                req.body().len()
            )),
            Err(e) => log::debug(format!(
                "{} {:?}: rejected a {}-byte body: {e}.",
                req.method(),
                req.path(),
                req.body().len()
            )),
        }
        result.map(PushOutcome::events)
    }
}

inlet_sdk::export_connector!(WebhookJson);

/// Names of the fields events take their id and type from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// Field holding the event id (a string or a number).
    pub id: String,
    /// Field holding the event type, stored as the `type` attribute.
    pub kind: String,
}

impl Default for Fields {
    fn default() -> Self {
        Self {
            id: "id".to_owned(),
            kind: "type".to_owned(),
        }
    }
}

/// Turns a request body into events: one per object, in order.
///
/// Errors are [`Error::Invalid`] and say what was wrong: not JSON, not an
/// object or array, an array element that is not an object, or an id that is
/// neither a string nor a number. An empty array gives no events.
pub fn parse_body(body: &[u8], fields: &Fields) -> Result<Vec<Event>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid(
            "body is empty; expected a JSON object or an array of objects",
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("body is not valid JSON: {e}")))?;
    match value {
        Value::Object(_) => Ok(vec![to_event(&value, fields, None)?]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(_) => to_event(item, fields, Some(i)),
                other => Err(Error::invalid(format!(
                    "element {i} of the array is not an object (found {})",
                    kind_of(other)
                ))),
            })
            .collect(),
        other => Err(Error::invalid(format!(
            "body must be a JSON object or an array of objects, found {}",
            kind_of(&other)
        ))),
    }
}

fn to_event(object: &Value, fields: &Fields, index: Option<usize>) -> Result<Event, Error> {
    let mut event = Event::json(object)?;
    match object.get(&fields.id) {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) if id.is_empty() => {}
        Some(Value::String(id)) => event = event.id(id.as_str()),
        Some(Value::Number(n)) => event = event.id(n.to_string()),
        Some(other) => {
            let at = index.map_or_else(String::new, |i| format!("element {i} of the array: "));
            return Err(Error::invalid(format!(
                "{at}field `{}` must be a string or a number to be used as the event id, found {}",
                fields.id,
                kind_of(other)
            )));
        }
    }
    if let Some(Value::String(kind)) = object.get(&fields.kind) {
        event = event.attr("type", kind.as_str());
    }
    Ok(event)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Vec<Event>, Error> {
        parse_body(body.as_bytes(), &Fields::default())
    }

    fn invalid_message(body: &str) -> String {
        match parse(body) {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected invalid for {body:?}, got {other:?}"),
        }
    }

    #[test]
    fn one_object_is_one_event() {
        let events = parse(r#"{"id":"evt_1","type":"order.created","n":1}"#).unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.get_id(), Some("evt_1"));
        assert_eq!(event.attribute("type"), Some("order.created"));
        assert_eq!(event.get_content_type(), Some("application/json"));
        let payload: Value = serde_json::from_slice(event.payload()).unwrap();
        assert_eq!(
            payload,
            serde_json::json!({"id":"evt_1","type":"order.created","n":1})
        );
    }

    #[test]
    fn array_gives_one_event_per_object_in_order() {
        let events = parse(r#"[{"id":1},{"id":"b","type":7},{}]"#).unwrap();
        let ids: Vec<_> = events.iter().map(Event::get_id).collect();
        assert_eq!(ids, [Some("1"), Some("b"), None]);
        assert_eq!(
            events[1].attribute("type"),
            None,
            "non-string type is ignored"
        );
        assert_eq!(events[0].payload(), br#"{"id":1}"#);
    }

    #[test]
    fn empty_array_is_no_events() {
        assert!(parse(" [] ").unwrap().is_empty());
    }

    #[test]
    fn configured_fields_are_used() {
        let fields = Fields {
            id: "delivery".into(),
            kind: "event".into(),
        };
        let events = parse_body(br#"{"id":"x","delivery":12.5,"event":"push"}"#, &fields).unwrap();
        assert_eq!(events[0].get_id(), Some("12.5"));
        assert_eq!(events[0].attribute("type"), Some("push"));
    }

    #[test]
    fn null_or_empty_id_means_no_id() {
        assert_eq!(parse(r#"{"id":null}"#).unwrap()[0].get_id(), None);
        assert_eq!(parse(r#"{"id":""}"#).unwrap()[0].get_id(), None);
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        assert_eq!(
            invalid_message("not json"),
            "body is not valid JSON: expected ident at line 1 column 2"
        );
        assert_eq!(
            invalid_message("{"),
            "body is not valid JSON: EOF while parsing an object at line 1 column 1"
        );
        assert!(invalid_message("").starts_with("body is empty"));
        assert_eq!(
            invalid_message("42"),
            "body must be a JSON object or an array of objects, found a number"
        );
        assert_eq!(
            invalid_message(r#""hi""#),
            "body must be a JSON object or an array of objects, found a string"
        );
        assert_eq!(
            invalid_message(r#"[{}, {}, "x"]"#),
            "element 2 of the array is not an object (found a string)"
        );
        assert_eq!(
            invalid_message(r#"[{}, {"id": true}]"#),
            "element 1 of the array: field `id` must be a string or a number to be used as \
             the event id, found a boolean"
        );
    }

    /// `on_push` through the SDK's test kit, with its `[config]`.
    #[test]
    fn on_push_uses_the_configured_fields() {
        use inlet_sdk::testing::Env;
        let env = Env::new()
            .config("id_field", "delivery")
            .config("type_field", "event");
        let body = br#"[{"delivery":"d-1","event":"push"},{"delivery":"d-2","event":"ping"}]"#;
        let out = env
            .push::<WebhookJson>(Request::new("POST", "/github", body.to_vec()))
            .unwrap();
        let events = out.get_events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].get_id(), Some("d-1"));
        assert_eq!(events[1].attribute("type"), Some("ping"));
        assert!(out.reply().is_none());
        assert!(env.logs()[0].message.contains("parsed 2 event(s)"));
        let err = env
            .push::<WebhookJson>(Request::new("POST", "", b"nope".to_vec()))
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    }
}
