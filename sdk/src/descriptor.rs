//! What a connector says about itself.

use crate::wit::inlet::connector::types as wit;

/// What a connector says about itself, returned by
/// [`Connector::describe`](crate::Connector::describe).
///
/// The host calls `describe` once when it loads the component; it must not
/// fail. The source name in URLs is the file stem of the `.wasm`, not
/// [`name`](Descriptor::name).
///
/// ```no_run
/// use inlet_sdk::Descriptor;
///
/// let descriptor = Descriptor::new("orders", env!("CARGO_PKG_VERSION"))
///     .push()
///     .pull()
///     .schedule("5m")
///     .description("Orders from the shop, pushed in real time and reconciled every 5 minutes.");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    name: String,
    version: String,
    push: bool,
    pull: bool,
    schedule: Option<String>,
    description: String,
}

impl Descriptor {
    /// A descriptor with no modes, no schedule and no description.
    ///
    /// ```no_run
    /// let d = inlet_sdk::Descriptor::new("orders", "1.0.0").push();
    /// ```
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            push: false,
            pull: false,
            schedule: None,
            description: String::new(),
        }
    }

    /// Declares that the connector accepts push requests
    /// ([`Connector::on_push`](crate::Connector::on_push)).
    ///
    /// ```no_run
    /// let d = inlet_sdk::Descriptor::new("hooks", "1.0.0").push();
    /// ```
    #[must_use]
    pub fn push(mut self) -> Self {
        self.push = true;
        self
    }

    /// Declares that the connector can be pulled
    /// ([`Connector::pull`](crate::Connector::pull)).
    ///
    /// ```no_run
    /// let d = inlet_sdk::Descriptor::new("poller", "1.0.0").pull();
    /// ```
    #[must_use]
    pub fn pull(mut self) -> Self {
        self.pull = true;
        self
    }

    /// The default pull schedule, such as `"30s"` or `"1m"`; the manifest's
    /// `[pull] every` overrides it.
    ///
    /// ```no_run
    /// let d = inlet_sdk::Descriptor::new("poller", "1.0.0").pull().schedule("1m");
    /// ```
    #[must_use]
    pub fn schedule(mut self, every: impl Into<String>) -> Self {
        self.schedule = Some(every.into());
        self
    }

    /// A one-line, human-readable description.
    ///
    /// ```no_run
    /// let d = inlet_sdk::Descriptor::new("poller", "1.0.0").description("Polls the items API.");
    /// ```
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// The human-readable name.
    ///
    /// ```no_run
    /// # let d = inlet_sdk::Descriptor::new("poller", "1.0.0");
    /// assert_eq!(d.name(), "poller");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connector's version.
    ///
    /// ```no_run
    /// # let d = inlet_sdk::Descriptor::new("poller", "1.0.0");
    /// assert_eq!(d.version(), "1.0.0");
    /// ```
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether push is declared.
    ///
    /// ```no_run
    /// # let d = inlet_sdk::Descriptor::new("poller", "1.0.0");
    /// assert!(!d.supports_push());
    /// ```
    pub fn supports_push(&self) -> bool {
        self.push
    }

    /// Whether pull is declared.
    ///
    /// ```no_run
    /// # let d = inlet_sdk::Descriptor::new("poller", "1.0.0").pull();
    /// assert!(d.supports_pull());
    /// ```
    pub fn supports_pull(&self) -> bool {
        self.pull
    }

    /// The default pull schedule, if set.
    ///
    /// ```no_run
    /// # let d = inlet_sdk::Descriptor::new("poller", "1.0.0").schedule("1m");
    /// assert_eq!(d.get_schedule(), Some("1m"));
    /// ```
    pub fn get_schedule(&self) -> Option<&str> {
        self.schedule.as_deref()
    }

    /// The description (empty when unset).
    ///
    /// ```no_run
    /// # let d = inlet_sdk::Descriptor::new("poller", "1.0.0");
    /// assert_eq!(d.get_description(), "");
    /// ```
    pub fn get_description(&self) -> &str {
        &self.description
    }

    pub(crate) fn into_wit(self) -> wit::Descriptor {
        let mut modes = wit::Modes::empty();
        if self.push {
            modes |= wit::Modes::PUSH;
        }
        if self.pull {
            modes |= wit::Modes::PULL;
        }
        wit::Descriptor {
            name: self.name,
            version: self.version,
            modes,
            schedule: self.schedule,
            description: self.description,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_become_flags() {
        let d = Descriptor::new("n", "1").pull().schedule("1m").into_wit();
        assert_eq!(d.modes, wit::Modes::PULL);
        assert_eq!(d.schedule.as_deref(), Some("1m"));
        let d = Descriptor::new("n", "1").push().pull().into_wit();
        assert_eq!(d.modes, wit::Modes::PUSH | wit::Modes::PULL);
    }
}
