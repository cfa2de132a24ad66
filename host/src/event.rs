//! The event a connector produced: plain data that the runtime returns and
//! the store renders into its envelope. A leaf: it depends on nothing else
//! in the crate, so the runtime and the store need not know each other.

/// An event as a connector produced it.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub id: Option<String>,
    pub key: Option<String>,
    pub time_ms: Option<u64>,
    pub payload: Vec<u8>,
    pub content_type: Option<String>,
    pub attributes: Vec<(String, String)>,
}
