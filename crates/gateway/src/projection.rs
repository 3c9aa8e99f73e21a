//! The projections: a domain's outcomes (or events) in, each resource's
//! current state out, in the store `GET` reads. One consumer runtime per
//! topic, so per-key order holds and an offset is committed only once the
//! state is written. A domain only says how its message becomes a state
//! ([`Projects`]).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use switchyard_bus::{AvroDecoder, Failure, Handler, Inbound};
use switchyard_store::gateway::GatewayStore;

/// A resource's state as a message tells it.
pub(crate) struct Projected {
    pub(crate) resource_id: String,
    pub(crate) status: String,
    /// The view `GET` answers, as JSON.
    pub(crate) body: String,
    /// When the state was reached: an older observation never overwrites a newer one.
    pub(crate) observed_at_ms: i64,
}

/// How one topic's messages become resource states.
pub(crate) trait Projects: Send + Sync + 'static {
    type Message: serde::de::DeserializeOwned + Send;
    /// The store's namespace of the resources (the domain).
    const DOMAIN: &'static str;
    /// `None` for a message that says nothing about a resource of ours
    /// (another command's key collision, a step of an onboarding flow).
    fn project(message: &Self::Message) -> Option<Projected>;

    /// Every resource the message tells of, each in its domain: most topics
    /// tell of one resource of [`Self::DOMAIN`], an open banking outcome of
    /// a consent or of a payment. One consumer per topic either way.
    fn project_all(message: &Self::Message) -> Vec<(&'static str, Projected)> {
        Self::project(message).map(|state| (Self::DOMAIN, state)).into_iter().collect()
    }

    /// A message that changes only part of a view (a card event changes the
    /// card's state, not its last command): the resource whose stored view
    /// is read first and handed to [`Self::project_onto`]. `None`: the
    /// message is projected on its own ([`Self::project_all`]).
    fn amends(_message: &Self::Message) -> Option<String> {
        None
    }

    /// The state of an amending message over `previous`, the stored view's
    /// JSON; `None` when it changes nothing shown.
    fn project_onto(_message: &Self::Message, _previous: &str) -> Option<Projected> {
        None
    }
}

pub(crate) struct Projection<P> {
    pub(crate) decoder: AvroDecoder,
    pub(crate) store: GatewayStore,
    pub(crate) changed: Arc<tokio::sync::Notify>,
    /// Queues the owning team's callback of a terminal state.
    pub(crate) callbacks: Arc<crate::callbacks::Callbacks>,
    pub(crate) kind: PhantomData<fn() -> P>,
}

impl<P: Projects> Handler for Projection<P> {
    async fn handle(&self, message: Arc<Inbound>) -> Result<(), Failure> {
        let Some(payload) = message.payload.as_deref() else { return Ok(()) };
        let decoded: P::Message = match self.decoder.decode(payload).await {
            Ok(decoded) => decoded,
            Err(e) if e.is_transient() => return Err(Failure::Retry { reason: e.to_string(), delay: Duration::from_secs(1) }),
            Err(e) => {
                // The message is on the bus for its owners (core banking,
                // the reconciler); the gateway only loses its view.
                tracing::warn!(topic = %message.topic, partition = message.partition, offset = message.offset, error = %e, "undecodable message not projected");
                return Ok(());
            }
        };
        let states = match P::amends(&decoded) {
            // A view never seen is left to the message that creates it.
            Some(resource_id) => match self.store.resource(P::DOMAIN, &resource_id).await {
                Ok(Some(previous)) => P::project_onto(&decoded, &previous.body).map(|state| (P::DOMAIN, state)).into_iter().collect(),
                Ok(None) => Vec::new(),
                Err(e) => return Err(Failure::Retry { reason: format!("store: {e}"), delay: Duration::from_millis(500) }),
            },
            None => P::project_all(&decoded),
        };
        if states.is_empty() {
            return Ok(());
        }
        for (domain, state) in states {
            let written = self
                .store
                .upsert_resource(domain, &state.resource_id, &state.status, &state.body, state.observed_at_ms)
                .await
                .map_err(|e| Failure::Retry { reason: format!("store: {e}"), delay: Duration::from_millis(500) })?;
            // After the state, before the offset: a failure here retries
            // the message, whose second upsert (as new as the stored
            // state, so written again) and enqueue change nothing. A
            // state older than the stored one is no one's news.
            if !written {
                continue;
            }
            self.callbacks
                .projected(domain, &state)
                .await
                .map_err(|e| Failure::Retry { reason: format!("callback outbox: {e}"), delay: Duration::from_millis(500) })?;
        }
        self.changed.notify_waiters();
        Ok(())
    }
}

/// A view as the JSON stored and answered.
pub(crate) fn json<T: serde::Serialize>(view: &T) -> String {
    serde_json::to_string(view).unwrap_or_default()
}
