//! A source's recent activity, a minute per slot over the last hour: the
//! events pushed and pulled each minute (the console's sparklines, and
//! `history` in a connector's status).

use std::sync::Mutex;

/// Slots kept: one hour of minutes.
pub const MINUTES: usize = 60;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Minutes since the Unix epoch this slot counts (0: never used).
    minute: u64,
    push: u64,
    pull: u64,
}

/// A ring of [`MINUTES`] slots; the slot of minute `m` is `m % MINUTES`,
/// reused once its minute is an hour old.
#[derive(Debug)]
pub struct History {
    slots: Mutex<[Slot; MINUTES]>,
}

impl Default for History {
    fn default() -> Self {
        History {
            slots: Mutex::new([Slot::default(); MINUTES]),
        }
    }
}

/// Which path the events came by.
#[derive(Debug, Clone, Copy)]
pub enum Path {
    Push,
    Pull,
}

impl History {
    /// Counts `events` stored by `path` at `now_ms`.
    pub fn record(&self, path: Path, events: u64, now_ms: u64) {
        let minute = now_ms / 60_000;
        let mut slots = self.slots.lock().expect("lock");
        let slot = &mut slots[(minute % MINUTES as u64) as usize];
        if slot.minute != minute {
            *slot = Slot {
                minute,
                ..Slot::default()
            };
        }
        match path {
            Path::Push => slot.push += events,
            Path::Pull => slot.pull += events,
        }
    }

    /// The last hour up to `now_ms`, oldest minute first:
    /// `{"minute_ms": <start of the newest minute>, "push": [60], "pull": [60]}`.
    pub fn snapshot(&self, now_ms: u64) -> serde_json::Value {
        let now = now_ms / 60_000;
        let slots = self.slots.lock().expect("lock");
        let (mut push, mut pull) = (Vec::with_capacity(MINUTES), Vec::with_capacity(MINUTES));
        for minute in (now + 1).saturating_sub(MINUTES as u64)..=now {
            let slot = slots[(minute % MINUTES as u64) as usize];
            let fresh = slot.minute == minute;
            push.push(if fresh { slot.push } else { 0 });
            pull.push(if fresh { slot.pull } else { 0 });
        }
        // Before the first hour since the epoch (tests with a small clock):
        // pad to a full hour.
        while push.len() < MINUTES {
            push.insert(0, 0);
            pull.insert(0, 0);
        }
        serde_json::json!({ "minute_ms": now * 60_000, "push": push, "pull": pull })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_fill_their_slots_and_an_hour_old_slot_is_reused() {
        let h = History::default();
        let t0 = 1_000 * 60 * 60_000; // a minute boundary
        h.record(Path::Push, 3, t0);
        h.record(Path::Push, 2, t0 + 59_000);
        h.record(Path::Pull, 7, t0 + 60_000);
        let s = h.snapshot(t0 + 60_000);
        assert_eq!(s["push"][58], 5);
        assert_eq!(s["pull"][59], 7);
        assert_eq!(s["push"].as_array().unwrap().len(), MINUTES);
        // An hour later the old minutes are gone, even in a reused slot.
        h.record(Path::Push, 1, t0 + 60 * 60_000);
        let s = h.snapshot(t0 + 60 * 60_000);
        assert_eq!(s["push"][59], 1);
        assert_eq!(
            s["pull"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .sum::<u64>(),
            7
        );
        let later = h.snapshot(t0 + 3 * 60 * 60_000);
        assert!(later["push"].as_array().unwrap().iter().all(|v| v == 0));
    }
}
