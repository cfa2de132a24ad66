//! `stripe-events`: Stripe events by push (webhooks) and by pull
//! (reconciliation from `GET /v1/events`), stored once either way.
//!
//! **Push.** The host checks `Stripe-Signature` (manifest `auth = { scheme =
//! "stripe", ... }`) before this code runs. The body is one Stripe event;
//! it becomes one event with id = the Stripe event `id` (`evt_...`),
//! attribute `type`, time = `created`, payload = the event.
//!
//! **Pull.** Reconciliation reads `{base_url}/v1/events?limit={limit}`, the
//! same events with the same ids, so an event pushed and then pulled (or
//! pulled and then pushed) is stored once: push and pull share the source's
//! dedup namespace. A webhook that Stripe (or a proxy) failed to deliver
//! arrives by pull.
//!
//! # Checkpoint
//!
//! Stripe lists newest first and pages with `starting_after` (older) and
//! `ending_before` (newer). New events appear at the *head* of the list, so
//! a plain "next page" cursor would walk away from them. The checkpoint is
//! a small versioned JSON object:
//!
//! ```json
//! {"version":"1","newest":"evt_9","backfill_after":"evt_4"}
//! ```
//!
//! - `newest` is the newest event stored so far: the high-water mark.
//! - `backfill_after` is set only during the first reconciliation, which
//!   walks from the head of the list down to its oldest event.
//!
//! One pull does exactly one of:
//!
//! 1. **First pull** (no checkpoint): the head page. `newest` = its first
//!    event; if the list has more, `backfill_after` = its last event.
//! 2. **Backfill** (`backfill_after` set): the page `starting_after` it,
//!    older events; `backfill_after` moves down, and is cleared on the last
//!    page. `newest` stays: events that arrive meanwhile are newer than it
//!    and are picked up by the tail.
//! 3. **Tail**: the page `ending_before=newest`, the events *just* newer than
//!    the mark, oldest page first. `newest` moves to the page's newest
//!    event; `has_more` pulls the next newer page at once.
//!
//! Every step commits a page's events together with a checkpoint that only
//! claims what is stored, so a failure or a crash at any point resumes
//! without a gap; repeated events are dropped by id. Within a page events
//! are stored oldest first. Stripe keeps events for 30 days: if the mark is
//! older than that, Stripe rejects it and the pull fails with `invalid`;
//! reset the checkpoint (`DELETE /v1/connectors/NAME/checkpoint`) to
//! reconcile from the head again (duplicates are dropped).

use inlet_sdk::{
    Connector, Descriptor, Error, Event, PullBatch, PushOutcome, Request, config_or,
    config_required, http,
};
use serde_json::{Value, json};

/// The connector; see the crate docs.
pub struct StripeEvents;

impl Connector for StripeEvents {
    fn describe() -> Descriptor {
        Descriptor::new("stripe-events", env!("CARGO_PKG_VERSION"))
            .push()
            .pull()
            .schedule("5m")
            .description(
                "Stripe events: webhooks in real time, reconciled from /v1/events; each event stored once by its evt_ id.",
            )
    }

    fn on_push(req: Request) -> Result<PushOutcome, Error> {
        let event: Value = req.json()?;
        Ok(PushOutcome::events(vec![to_event(&event)?]))
    }

    fn pull(since: Option<String>, _partition: Option<String>) -> Result<PullBatch, Error> {
        let base = config_required("base_url")?;
        let limit = config_or("limit", "100");
        let checkpoint = since.as_deref().map(Checkpoint::parse).transpose()?;
        let step = Step::after(checkpoint.as_ref());
        let url = step.url(&format!("{}/v1/events", base.trim_end_matches('/')), &limit);
        let page: Value = http::Request::get(&url)
            .with_header("Accept", "application/json")
            .send()?
            .error_for_status()?
            .json()?;
        let (batch, next) = reconcile(checkpoint, &page, &url)?;
        Ok(match next {
            Some(c) => batch.checkpoint(c.to_string()),
            None => batch,
        })
    }
}

inlet_sdk::export_connector!(StripeEvents);

/// Where reconciliation stands; see the crate docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The newest event stored so far.
    pub newest: String,
    /// During the first reconciliation: the oldest event stored so far.
    pub backfill_after: Option<String>,
}

impl Checkpoint {
    /// Reads a checkpoint written by [`Checkpoint::to_string`]; anything else
    /// is `invalid` (set a good one with `PUT .../checkpoint` or delete it).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "checkpoint `{text}` {why}; expected {{\"version\":\"1\",\"newest\":\"evt_...\"}}"
            ))
        };
        let v: Value = serde_json::from_str(text).map_err(|_| bad("is not JSON"))?;
        if v["version"] != "1" {
            return Err(bad("has an unknown version"));
        }
        let newest = v["newest"].as_str().ok_or_else(|| bad("has no `newest`"))?;
        Ok(Checkpoint {
            newest: newest.to_owned(),
            backfill_after: v["backfill_after"].as_str().map(str::to_owned),
        })
    }
}

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v = json!({"version": "1", "newest": self.newest});
        if let Some(b) = &self.backfill_after {
            v["backfill_after"] = json!(b);
        }
        write!(f, "{v}")
    }
}

/// The request one pull makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The head of the list (newest events).
    Head,
    /// Older events, `starting_after` this id.
    Backfill(String),
    /// Newer events, `ending_before` this id.
    Tail(String),
}

impl Step {
    /// The step that follows `checkpoint`.
    pub fn after(checkpoint: Option<&Checkpoint>) -> Self {
        match checkpoint {
            None => Step::Head,
            Some(Checkpoint {
                backfill_after: Some(b),
                ..
            }) => Step::Backfill(b.clone()),
            Some(c) => Step::Tail(c.newest.clone()),
        }
    }

    /// The list URL for this step.
    pub fn url(&self, events_url: &str, limit: &str) -> String {
        let url = http::append_query(events_url, "limit", limit);
        match self {
            Step::Head => url,
            Step::Backfill(id) => http::append_query(&url, "starting_after", id),
            Step::Tail(id) => http::append_query(&url, "ending_before", id),
        }
    }
}

/// Turns one list page (`{"data": [...], "has_more": bool}`, newest first)
/// fetched for the step after `checkpoint` into the batch to commit and
/// the checkpoint that covers it (`None`: unchanged).
pub fn reconcile(
    checkpoint: Option<Checkpoint>,
    page: &Value,
    url: &str,
) -> Result<(PullBatch, Option<Checkpoint>), Error> {
    let data = page["data"]
        .as_array()
        .ok_or_else(|| Error::invalid(format!("GET {url}: the response has no `data` list")))?;
    let has_more = page["has_more"].as_bool().unwrap_or(false);
    let ids = data
        .iter()
        .map(|e| {
            e["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::invalid(format!("GET {url}: an event has no `id`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Oldest first within the page.
    let events = data
        .iter()
        .rev()
        .map(to_event)
        .collect::<Result<Vec<_>, _>>()?;
    let (newest_in_page, oldest_in_page) = (ids.first().cloned(), ids.last().cloned());
    let (next, more) = match (checkpoint, newest_in_page) {
        // Nothing at all yet, or nothing new.
        (c, None) => (
            c.filter(|c| c.backfill_after.is_some())
                .map(|c| Checkpoint {
                    backfill_after: None,
                    ..c
                }),
            false,
        ),
        (None, Some(newest)) => (
            Some(Checkpoint {
                newest,
                backfill_after: has_more.then(|| oldest_in_page.clone()).flatten(),
            }),
            has_more,
        ),
        (
            Some(Checkpoint {
                newest,
                backfill_after: Some(_),
            }),
            Some(_),
        ) => (
            Some(Checkpoint {
                newest,
                backfill_after: has_more.then(|| oldest_in_page.clone()).flatten(),
            }),
            // Backfill done or not, the tail comes next at once.
            true,
        ),
        (Some(_), Some(newest)) => (
            Some(Checkpoint {
                newest,
                backfill_after: None,
            }),
            has_more,
        ),
    };
    Ok((PullBatch::new(events).has_more(more), next))
}

/// One Stripe event object as an Inlet event.
pub fn to_event(event: &Value) -> Result<Event, Error> {
    let id = event["id"]
        .as_str()
        .filter(|id| id.starts_with("evt_"))
        .ok_or_else(|| {
            Error::invalid("not a Stripe event: `id` must be a string starting with evt_")
        })?;
    let kind = event["type"]
        .as_str()
        .ok_or_else(|| Error::invalid(format!("Stripe event {id} has no `type`")))?;
    let mut e = Event::json(event)?.id(id).attr("type", kind);
    if let Some(created) = event["created"].as_u64() {
        e = e.time_ms(created.saturating_mul(1000));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: &[&str], has_more: bool) -> Value {
        json!({
            "object": "list",
            "data": ids.iter().map(|id| json!({"id": id, "type": "charge.succeeded", "created": 1})).collect::<Vec<_>>(),
            "has_more": has_more,
        })
    }

    fn cp(newest: &str, backfill: Option<&str>) -> Checkpoint {
        Checkpoint {
            newest: newest.into(),
            backfill_after: backfill.map(Into::into),
        }
    }

    #[test]
    fn checkpoint_round_trips_and_is_versioned() {
        let c = cp("evt_9", Some("evt_4"));
        assert_eq!(Checkpoint::parse(&c.to_string()).unwrap(), c);
        assert!(matches!(Checkpoint::parse("evt_9"), Err(Error::Invalid(_))));
        assert!(matches!(
            Checkpoint::parse(r#"{"version":"2","newest":"evt_1"}"#),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn steps_follow_the_checkpoint() {
        let u = "http://s/v1/events";
        assert_eq!(
            Step::after(None).url(u, "10"),
            "http://s/v1/events?limit=10"
        );
        assert_eq!(
            Step::after(Some(&cp("evt_9", Some("evt_4")))).url(u, "10"),
            "http://s/v1/events?limit=10&starting_after=evt_4"
        );
        assert_eq!(
            Step::after(Some(&cp("evt_9", None))).url(u, "10"),
            "http://s/v1/events?limit=10&ending_before=evt_9"
        );
    }

    #[test]
    fn first_page_sets_the_mark_and_starts_a_backfill() {
        let (batch, next) = reconcile(None, &page(&["evt_9", "evt_8"], true), "u").unwrap();
        assert_eq!(next, Some(cp("evt_9", Some("evt_8"))));
        assert!(batch.get_has_more());
        let ids: Vec<_> = batch.events().iter().map(|e| e.get_id().unwrap()).collect();
        assert_eq!(ids, ["evt_8", "evt_9"], "oldest first");
        let (_, next) = reconcile(None, &page(&["evt_9"], false), "u").unwrap();
        assert_eq!(next, Some(cp("evt_9", None)));
        let (batch, next) = reconcile(None, &page(&[], false), "u").unwrap();
        assert_eq!(next, None);
        assert!(!batch.get_has_more());
    }

    #[test]
    fn backfill_keeps_the_mark_and_hands_over_to_the_tail() {
        let start = cp("evt_9", Some("evt_8"));
        let (b, next) =
            reconcile(Some(start.clone()), &page(&["evt_7", "evt_6"], true), "u").unwrap();
        assert_eq!(next, Some(cp("evt_9", Some("evt_6"))));
        assert!(b.get_has_more());
        let (b, next) = reconcile(Some(start.clone()), &page(&["evt_5"], false), "u").unwrap();
        assert_eq!(next, Some(cp("evt_9", None)));
        assert!(b.get_has_more(), "the tail comes at once");
        let (_, next) = reconcile(Some(start), &page(&[], false), "u").unwrap();
        assert_eq!(next, Some(cp("evt_9", None)));
    }

    #[test]
    fn tail_moves_the_mark_to_the_newest() {
        let (b, next) = reconcile(
            Some(cp("evt_9", None)),
            &page(&["evt_12", "evt_11", "evt_10"], true),
            "u",
        )
        .unwrap();
        assert_eq!(next, Some(cp("evt_12", None)));
        assert!(b.get_has_more());
        let (b, next) = reconcile(Some(cp("evt_12", None)), &page(&[], false), "u").unwrap();
        assert_eq!(next, None, "nothing new keeps the checkpoint");
        assert!(!b.get_has_more());
    }

    #[test]
    fn events_carry_id_type_and_time() {
        let e = to_event(&json!({"id": "evt_1", "type": "invoice.paid", "created": 1700000000}))
            .unwrap();
        assert_eq!(e.get_id(), Some("evt_1"));
        assert_eq!(e.attribute("type"), Some("invoice.paid"));
        assert_eq!(e.get_time_ms(), Some(1_700_000_000_000));
        assert!(matches!(
            to_event(&json!({"id": "ch_1", "type": "x"})),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            to_event(&json!({"id": "evt_1"})),
            Err(Error::Invalid(_))
        ));
    }
}
