//! One record produced by a connector.

use serde::Serialize;

use crate::Error;
use crate::wit::inlet::connector::types as wit;

const JSON: &str = "application/json";

/// One record produced by a connector, built with [`Event::json`] or
/// [`Event::bytes`] and then the builder methods.
///
/// Give every event a stable [`id`](Event::id) when the source has one: within
/// a source the host stores an id at most once per dedup window, whether it
/// arrived by push or by pull.
///
/// The builder methods take the field names (`id`, `key`, `time_ms`,
/// `content_type`), so the getters are spelled `get_*`.
///
/// ```no_run
/// use inlet_sdk::Event;
///
/// # fn main() -> Result<(), inlet_sdk::Error> {
/// let order = serde_json::json!({ "id": "o-1", "total": 12 });
/// let event = Event::json(&order)?
///     .id("o-1")
///     .key("customer-7")
///     .time_ms(1_700_000_000_000)
///     .attr("type", "order.created");
/// assert_eq!(event.get_id(), Some("o-1"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    id: Option<String>,
    key: Option<String>,
    time_ms: Option<u64>,
    payload: Vec<u8>,
    content_type: Option<String>,
    attributes: Vec<(String, String)>,
}

impl Event {
    /// An event whose payload is `value` serialized as JSON, with content type
    /// `application/json`. A value that cannot be serialized (a map with
    /// non-string keys, say) gives [`Error::Invalid`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), inlet_sdk::Error> {
    /// let event = inlet_sdk::Event::json(&serde_json::json!({ "ok": true }))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        let payload = serde_json::to_vec(value)
            .map_err(|e| Error::invalid(format!("event payload is not serializable: {e}")))?;
        Ok(Self::bytes(payload, JSON))
    }

    /// An event with a raw payload and its MIME type.
    ///
    /// ```no_run
    /// let event = inlet_sdk::Event::bytes(b"a,b,c".to_vec(), "text/csv");
    /// ```
    pub fn bytes(payload: Vec<u8>, content_type: impl Into<String>) -> Self {
        Self {
            id: None,
            key: None,
            time_ms: None,
            payload,
            content_type: Some(content_type.into()),
            attributes: Vec::new(),
        }
    }

    /// Sets the stable source id, the dedup key within the source.
    ///
    /// ```no_run
    /// # let event = inlet_sdk::Event::bytes(vec![], "text/plain");
    /// let event = event.id("evt_123");
    /// ```
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the ordering or partition key, passed through to consumers.
    ///
    /// ```no_run
    /// # let event = inlet_sdk::Event::bytes(vec![], "text/plain");
    /// let event = event.key("customer-7");
    /// ```
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the event time in milliseconds since the Unix epoch.
    ///
    /// ```no_run
    /// # let event = inlet_sdk::Event::bytes(vec![], "text/plain");
    /// let event = event.time_ms(1_700_000_000_000);
    /// ```
    #[must_use]
    pub fn time_ms(mut self, time_ms: u64) -> Self {
        self.time_ms = Some(time_ms);
        self
    }

    /// Adds a small string attribute such as the event type.
    ///
    /// ```no_run
    /// # let event = inlet_sdk::Event::bytes(vec![], "text/plain");
    /// let event = event.attr("type", "invoice.paid");
    /// ```
    #[must_use]
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((name.into(), value.into()));
        self
    }

    /// Replaces the MIME type of the payload.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), inlet_sdk::Error> {
    /// # let value = serde_json::json!({});
    /// let event = inlet_sdk::Event::json(&value)?.content_type("application/cloudevents+json");
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// The stable source id, if set.
    ///
    /// ```no_run
    /// # let event = inlet_sdk::Event::bytes(vec![], "text/plain");
    /// if let Some(id) = event.get_id() { inlet_sdk::log::debug(format!("id {id}")); }
    /// ```
    pub fn get_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The ordering key, if set.
    ///
    /// ```no_run
    /// # let event = inlet_sdk::Event::bytes(vec![], "text/plain");
    /// let key = event.get_key();
    /// ```
    pub fn get_key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The event time in milliseconds since the Unix epoch, if set.
    ///
    /// ```no_run
    /// # let event = inlet_sdk::Event::bytes(vec![], "text/plain");
    /// let when = event.get_time_ms();
    /// ```
    pub fn get_time_ms(&self) -> Option<u64> {
        self.time_ms
    }

    /// The payload bytes.
    ///
    /// ```no_run
    /// # let event = inlet_sdk::Event::bytes(vec![], "text/plain");
    /// let size = event.payload().len();
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The MIME type of the payload.
    ///
    /// ```no_run
    /// # let event = inlet_sdk::Event::bytes(vec![], "text/plain");
    /// assert_eq!(event.get_content_type(), Some("text/plain"));
    /// ```
    pub fn get_content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// All attributes, in the order they were added.
    ///
    /// ```no_run
    /// # let event = inlet_sdk::Event::bytes(vec![], "text/plain");
    /// for (name, value) in event.attributes() { println!("{name}={value}"); }
    /// ```
    pub fn attributes(&self) -> &[(String, String)] {
        &self.attributes
    }

    /// The value of the first attribute called `name`.
    ///
    /// ```no_run
    /// # let event = inlet_sdk::Event::bytes(vec![], "text/plain");
    /// let kind = event.attribute("type");
    /// ```
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn into_wit(self) -> wit::Event {
        wit::Event {
            id: self.id,
            key: self.key,
            time_ms: self.time_ms,
            payload: self.payload,
            content_type: self.content_type,
            attributes: self.attributes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_sets_content_type_and_payload() {
        let event = Event::json(&serde_json::json!({"a": 1}))
            .unwrap()
            .id("x")
            .attr("type", "t");
        assert_eq!(event.payload(), br#"{"a":1}"#);
        assert_eq!(event.get_content_type(), Some(JSON));
        assert_eq!(event.get_id(), Some("x"));
        assert_eq!(event.attribute("type"), Some("t"));
        assert_eq!(event.attribute("missing"), None);
    }

    #[test]
    fn unserializable_json_is_invalid() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1);
        assert!(matches!(Event::json(&map), Err(Error::Invalid(_))));
    }
}
