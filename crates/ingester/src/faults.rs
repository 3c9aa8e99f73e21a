//! A seam for tests: make the publish path slow, or lose the broker's
//! acknowledgement, for chosen events, deterministically. Machine load does
//! the same by chance (a produce request answered after librdkafka's
//! `message.timeout.ms`, a mark that commits late); a test cannot wait for
//! chance. Production passes [`PublishFaults::none`].

use std::sync::Arc;
use std::time::Duration;

/// What the publish path does to one delivery of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublishPlan {
    /// Waits before handing the record to the producer (inside the publish
    /// timeout, as a slow producer queue would).
    pub delay_before: Duration,
    pub outcome: PublishOutcome,
    /// Waits after the broker acknowledged, before the event is marked
    /// published (a slow or stalled store).
    pub delay_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublishOutcome {
    /// Published as usual.
    #[default]
    Normal,
    /// The record is published and acknowledged, but the publish reports a
    /// timeout: librdkafka's expiry of an in-flight batch, whose records
    /// the broker may still have written ("possibly persisted").
    AckLost,
    /// Refused before anything was sent (a definite failure).
    Refused,
}

type Plan = dyn Fn(&str) -> PublishPlan + Send + Sync;

/// Chooses a [`PublishPlan`] per delivery, by event id.
#[derive(Clone, Default)]
pub struct PublishFaults(Option<Arc<Plan>>);

impl PublishFaults {
    pub fn none() -> Self {
        Self(None)
    }

    /// `plan` is called once per publish attempt with the event id.
    pub fn new(plan: impl Fn(&str) -> PublishPlan + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(plan)))
    }

    pub(crate) fn plan(&self, event_id: &str) -> PublishPlan {
        self.0.as_ref().map(|f| f(event_id)).unwrap_or_default()
    }
}

impl std::fmt::Debug for PublishFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "PublishFaults(injected)" } else { "PublishFaults(none)" })
    }
}
