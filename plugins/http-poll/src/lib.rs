//! `http-poll`: a pull connector that pages through a JSON HTTP API with a
//! cursor.
//!
//! Each pull sends `GET {url}?{cursor_param}={since}` (the parameter is left
//! out on the first pull) and expects
//! `{"items": [...], "next_cursor": "...", "has_more": true}`. Every item
//! becomes an event; `next_cursor` becomes the checkpoint. All field names
//! are configurable in the manifest's `[config]` table.

use inlet_sdk::{
    Connector, Descriptor, Error, Event, PullBatch, config_or, config_required, http, log,
};
use serde_json::Value;

/// The connector; see the crate docs.
pub struct HttpPoll;

impl Connector for HttpPoll {
    fn describe() -> Descriptor {
        Descriptor::new("http-poll", env!("CARGO_PKG_VERSION"))
            .pull()
            .schedule("1m")
            .description(
                "Polls a JSON HTTP API with a cursor and stores each returned item as an event.",
            )
    }

    fn pull(since: Option<String>, _partition: Option<String>) -> Result<PullBatch, Error> {
        let url = config_required("url")?;
        let fields = Fields {
            items: config_or("items_field", "items"),
            cursor: config_or("cursor_field", "next_cursor"),
            has_more: config_or("has_more_field", "has_more"),
            id: config_or("id_field", "id"),
        };
        let cursor_param = config_or("cursor_param", "since");
        let url = request_url(&url, &cursor_param, since.as_deref());

        let response = http::get(&url)?.error_for_status()?;
        let batch = parse_page(response.body(), &url, &fields)?;
        log::debug(format!(
            "GET {url}: {} item(s), next cursor {:?}, has more: {}.",
            batch.events().len(),
            batch.get_checkpoint(),
            batch.get_has_more()
        ));
        if batch.get_has_more()
            && (batch.get_checkpoint().is_none() || batch.get_checkpoint() == since.as_deref())
        {
            log::warn(format!(
                "GET {url}: the response says `{}` but the cursor did not advance; \
                 waiting for the next scheduled pull instead of asking again.",
                fields.has_more
            ));
            return Ok(batch.has_more(false));
        }
        Ok(batch)
    }
}

inlet_sdk::export_connector!(HttpPoll);

/// Names of the fields read from each response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// The array of items (config `items_field`, default `items`).
    pub items: String,
    /// The next cursor, a string or a number (config `cursor_field`, default
    /// `next_cursor`).
    pub cursor: String,
    /// Whether more data is ready now (config `has_more_field`, default
    /// `has_more`; missing means `false`).
    pub has_more: String,
    /// The item's id, a string or a number (config `id_field`, default `id`).
    pub id: String,
}

impl Default for Fields {
    fn default() -> Self {
        Self {
            items: "items".to_owned(),
            cursor: "next_cursor".to_owned(),
            has_more: "has_more".to_owned(),
            id: "id".to_owned(),
        }
    }
}

/// The URL to fetch: `url` with `cursor_param=since` appended
/// (percent-encoded, with `?` or `&` as needed), or `url` itself when there is
/// no checkpoint yet.
pub fn request_url(url: &str, cursor_param: &str, since: Option<&str>) -> String {
    match since {
        Some(since) => http::append_query(url, cursor_param, since),
        None => url.to_owned(),
    }
}

/// Turns one response body into a batch: one event per item, the cursor as
/// the checkpoint (none keeps the previous one), and `has_more`.
///
/// Errors are [`Error::Invalid`] naming `url`.
pub fn parse_page(body: &[u8], url: &str, fields: &Fields) -> Result<PullBatch, Error> {
    let invalid = |what: String| Error::invalid(format!("GET {url}: {what}"));
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("response body is not valid JSON: {e}")))?;
    let Value::Object(page) = value else {
        return Err(invalid(format!(
            "response must be a JSON object with an `{}` array, found {}",
            fields.items,
            kind_of(&value)
        )));
    };

    let items = match page.get(&fields.items) {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(invalid(format!(
                "field `{}` must be an array, found {}",
                fields.items,
                kind_of(other)
            )));
        }
        None => {
            return Err(invalid(format!(
                "response has no `{}` array (set config `items_field` if the API names it \
                 differently)",
                fields.items
            )));
        }
    };
    let events = items
        .iter()
        .enumerate()
        .map(|(i, item)| to_event(item, &fields.id).map_err(|e| invalid(format!("item {i}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;

    let checkpoint = match page.get(&fields.cursor) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(invalid(format!(
                "field `{}` must be a string or a number, found {}",
                fields.cursor,
                kind_of(other)
            )));
        }
    };
    let has_more = match page.get(&fields.has_more) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(invalid(format!(
                "field `{}` must be a boolean, found {}",
                fields.has_more,
                kind_of(other)
            )));
        }
    };

    let batch = PullBatch::new(events).has_more(has_more);
    Ok(match checkpoint {
        Some(checkpoint) => batch.checkpoint(checkpoint),
        None => batch,
    })
}

fn to_event(item: &Value, id_field: &str) -> Result<Event, String> {
    let event = Event::json(item).map_err(|e| e.to_string())?;
    Ok(match item.get(id_field) {
        None | Some(Value::Null) => event,
        Some(Value::String(id)) if id.is_empty() => event,
        Some(Value::String(id)) => event.id(id.as_str()),
        Some(Value::Number(n)) => event.id(n.to_string()),
        Some(other) => {
            return Err(format!(
                "field `{id_field}` must be a string or a number to be used as the event id, \
                 found {}",
                kind_of(other)
            ));
        }
    })
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

    const URL: &str = "http://127.0.0.1:9000/items";

    fn parse(body: &str) -> Result<PullBatch, Error> {
        parse_page(body.as_bytes(), URL, &Fields::default())
    }

    fn invalid_message(body: &str) -> String {
        match parse(body) {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected invalid for {body:?}, got {other:?}"),
        }
    }

    #[test]
    fn url_gets_the_cursor_only_when_there_is_one() {
        assert_eq!(request_url(URL, "since", None), URL);
        assert_eq!(
            request_url(URL, "since", Some("2024-05-01T10:00:00+02:00")),
            "http://127.0.0.1:9000/items?since=2024-05-01T10%3A00%3A00%2B02%3A00"
        );
        assert_eq!(
            request_url("http://h/items?limit=10", "after", Some("a b&c")),
            "http://h/items?limit=10&after=a%20b%26c"
        );
    }

    #[test]
    fn page_becomes_events_checkpoint_and_has_more() {
        let batch = parse(
            r#"{"items":[{"id":"a","v":1},{"id":2},{"v":3}],"next_cursor":"c2","has_more":true}"#,
        )
        .unwrap();
        let ids: Vec<_> = batch.events().iter().map(Event::get_id).collect();
        assert_eq!(ids, [Some("a"), Some("2"), None]);
        assert_eq!(batch.events()[0].payload(), br#"{"id":"a","v":1}"#);
        assert_eq!(batch.get_checkpoint(), Some("c2"));
        assert!(batch.get_has_more());
    }

    #[test]
    fn missing_cursor_keeps_the_checkpoint_and_missing_has_more_is_false() {
        let batch = parse(r#"{"items":[]}"#).unwrap();
        assert!(batch.events().is_empty());
        assert_eq!(batch.get_checkpoint(), None);
        assert!(!batch.get_has_more());
        let batch = parse(r#"{"items":[],"next_cursor":null,"has_more":null}"#).unwrap();
        assert_eq!(batch.get_checkpoint(), None);
    }

    #[test]
    fn numeric_cursor_becomes_a_string() {
        assert_eq!(
            parse(r#"{"items":[],"next_cursor":1700000000123}"#)
                .unwrap()
                .get_checkpoint(),
            Some("1700000000123")
        );
    }

    #[test]
    fn field_names_are_configurable() {
        let fields = Fields {
            items: "data".into(),
            cursor: "cursor".into(),
            has_more: "more".into(),
            id: "uuid".into(),
        };
        let batch = parse_page(
            br#"{"data":[{"uuid":"u1","id":"ignored"}],"cursor":"k","more":false}"#,
            URL,
            &fields,
        )
        .unwrap();
        assert_eq!(batch.events()[0].get_id(), Some("u1"));
        assert_eq!(batch.get_checkpoint(), Some("k"));
    }

    #[test]
    fn bad_responses_name_the_url() {
        assert_eq!(
            invalid_message("<html>"),
            "GET http://127.0.0.1:9000/items: response body is not valid JSON: expected value \
             at line 1 column 1"
        );
        assert_eq!(
            invalid_message("[]"),
            "GET http://127.0.0.1:9000/items: response must be a JSON object with an `items` \
             array, found an array"
        );
        assert!(invalid_message("{}").contains("response has no `items` array"));
        assert!(invalid_message(r#"{"items":{}}"#).contains("field `items` must be an array"));
        assert!(
            invalid_message(r#"{"items":[],"next_cursor":{}}"#)
                .contains("field `next_cursor` must be a string or a number")
        );
        assert!(
            invalid_message(r#"{"items":[],"has_more":"yes"}"#)
                .contains("field `has_more` must be a boolean, found a string")
        );
        assert_eq!(
            invalid_message(r#"{"items":[{"id":1},{"id":[1]}]}"#),
            "GET http://127.0.0.1:9000/items: item 1: field `id` must be a string or a number \
             to be used as the event id, found an array"
        );
    }

    /// The whole hook through the SDK's test kit: config, the scripted
    /// source, the injected token the connector never sets itself.
    #[test]
    fn pull_follows_the_cursor_with_the_hosts_token() {
        use inlet_sdk::testing::{Env, Route};
        let env = Env::new()
            .config("url", "https://api.example.com/items")
            .inject("api.example.com", "Authorization", "Bearer from-the-host")
            .route(Route::get("https://api.example.com/items?since=7").json(
                200,
                &serde_json::json!({"items": [{"id": 8}, {"id": "9"}], "next_cursor": 9, "has_more": true}),
            ))
            .route(Route::get("https://api.example.com/items?since=9").json(
                200,
                &serde_json::json!({"items": [], "next_cursor": 9, "has_more": true}),
            ));
        let batch = env.pull::<HttpPoll>(Some("7"), None).unwrap();
        let ids: Vec<_> = batch.events().iter().map(|e| e.get_id().unwrap()).collect();
        assert_eq!(ids, ["8", "9"]);
        assert_eq!(batch.get_checkpoint(), Some("9"));
        assert!(batch.get_has_more());
        // A cursor that does not advance stops the run, with a warning.
        let batch = env.pull::<HttpPoll>(Some("9"), None).unwrap();
        assert!(!batch.get_has_more());
        assert!(
            env.logs()
                .iter()
                .any(|l| l.level == "warn" && l.message.contains("did not advance"))
        );
        let sent = env.sent();
        assert_eq!(sent.len(), 2);
        assert!(
            sent.iter()
                .all(|s| s.connector_header("authorization").is_none())
        );
        assert_eq!(
            sent[0].header("authorization"),
            Some("Bearer from-the-host")
        );
        // The source down: retried with backoff (`unavailable`).
        let down = Env::new()
            .config("url", "https://api.example.com/items")
            .route(
                Route::get("https://api.example.com/items")
                    .any_query()
                    .status(503),
            );
        assert!(matches!(
            down.pull::<HttpPoll>(None, None),
            Err(Error::Unavailable(_))
        ));
        // Without `url`: a clear `invalid`.
        let err = Env::new().pull::<HttpPoll>(None, None).unwrap_err();
        assert!(err.to_string().contains("url"), "{err}");
    }
}
