//! The pull side: one batch returned by `pull`.

use crate::Event;
use crate::wit::inlet::connector::types as wit;

/// One batch from [`Connector::pull`](crate::Connector::pull).
///
/// The host commits the events and the [`checkpoint`](PullBatch::checkpoint)
/// in one transaction and passes the checkpoint back as `since` on the next
/// pull. Without a checkpoint the previous one is kept. With
/// [`has_more`](PullBatch::has_more) the host pulls again at once, within its
/// per-run budget.
///
/// ```no_run
/// use inlet_sdk::{Event, PullBatch};
///
/// # fn main() -> Result<(), inlet_sdk::Error> {
/// let events = vec![Event::json(&serde_json::json!({ "id": 7 }))?.id("7")];
/// let batch = PullBatch::new(events).checkpoint("2024-05-01T10:00:00Z").has_more(true);
/// let nothing_new = PullBatch::empty();
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullBatch {
    events: Vec<Event>,
    checkpoint: Option<String>,
    has_more: bool,
}

impl PullBatch {
    /// A batch of `events` in source order, keeping the previous checkpoint.
    ///
    /// ```no_run
    /// let batch = inlet_sdk::PullBatch::new(Vec::new());
    /// ```
    pub fn new(events: Vec<Event>) -> Self {
        Self {
            events,
            checkpoint: None,
            has_more: false,
        }
    }

    /// No events, no new checkpoint, nothing more.
    ///
    /// ```no_run
    /// let batch = inlet_sdk::PullBatch::empty();
    /// ```
    pub fn empty() -> Self {
        Self::default()
    }

    /// The checkpoint that covers these events; it comes back as `since`.
    ///
    /// ```no_run
    /// let batch = inlet_sdk::PullBatch::new(vec![]).checkpoint("cursor-42");
    /// ```
    #[must_use]
    pub fn checkpoint(mut self, checkpoint: impl Into<String>) -> Self {
        self.checkpoint = Some(checkpoint.into());
        self
    }

    /// Whether more data is ready now.
    ///
    /// ```no_run
    /// let batch = inlet_sdk::PullBatch::new(vec![]).has_more(true);
    /// ```
    #[must_use]
    pub fn has_more(mut self, has_more: bool) -> Self {
        self.has_more = has_more;
        self
    }

    /// The events, in source order.
    ///
    /// ```no_run
    /// assert!(inlet_sdk::PullBatch::empty().events().is_empty());
    /// ```
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The new checkpoint, if any (spelled `get_checkpoint` because
    /// [`checkpoint`](PullBatch::checkpoint) is the builder).
    ///
    /// ```no_run
    /// assert_eq!(inlet_sdk::PullBatch::empty().get_checkpoint(), None);
    /// ```
    pub fn get_checkpoint(&self) -> Option<&str> {
        self.checkpoint.as_deref()
    }

    /// Whether more data is ready now (spelled `get_has_more` because
    /// [`has_more`](PullBatch::has_more) is the builder).
    ///
    /// ```no_run
    /// assert!(!inlet_sdk::PullBatch::empty().get_has_more());
    /// ```
    pub fn get_has_more(&self) -> bool {
        self.has_more
    }

    pub(crate) fn into_wit(self) -> wit::PullBatch {
        wit::PullBatch {
            events: self.events.into_iter().map(Event::into_wit).collect(),
            checkpoint: self.checkpoint,
            has_more: self.has_more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts() {
        let wit = PullBatch::new(vec![Event::bytes(vec![], "x")])
            .checkpoint("c")
            .has_more(true)
            .into_wit();
        assert_eq!(wit.events.len(), 1);
        assert_eq!(wit.checkpoint.as_deref(), Some("c"));
        assert!(wit.has_more);
        let empty = PullBatch::empty().into_wit();
        assert!(empty.events.is_empty() && empty.checkpoint.is_none() && !empty.has_more);
    }
}
