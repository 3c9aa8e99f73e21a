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
    type Message: serde::de::DeserializeOwned + Send + Sync;
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

impl<P: Projects> Projection<P> {
    /// Reads the view, amends it, and writes it only if it is still the
    /// view read (another topic's consumer may write it in between: its
    /// write is kept and the amendment made again over it). `None`: no
    /// view yet (left to the message that creates it) or nothing to change.
    async fn amend(&self, message: &P::Message, resource_id: &str) -> Result<Option<Projected>, switchyard_store::StoreError> {
        let Some(mut previous) = self.store.resource(P::DOMAIN, resource_id).await? else { return Ok(None) };
        loop {
            let Some(state) = P::project_onto(message, &previous.body) else { return Ok(None) };
            if self.store.amend_resource(P::DOMAIN, resource_id, &previous.body, &state.status, &state.body, state.observed_at_ms).await? {
                return Ok(Some(state));
            }
            // Lost to a newer observation, or to a write since the read:
            // the next read tells which (an older amendment amends nothing),
            // and is what the next amendment starts from.
            match self.store.resource(P::DOMAIN, resource_id).await? {
                Some(now) if now.body != previous.body => previous = now,
                _ => return Ok(None),
            }
        }
    }
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
        let store_failed = |e: switchyard_store::StoreError| Failure::Retry { reason: format!("store: {e}"), delay: Duration::from_millis(500) };
        let written: Vec<(&'static str, Projected)> = match P::amends(&decoded) {
            Some(resource_id) => match self.amend(&decoded, &resource_id).await.map_err(store_failed)? {
                Some(state) => vec![(P::DOMAIN, state)],
                None => return Ok(()),
            },
            None => {
                let mut written = Vec::new();
                for (domain, state) in P::project_all(&decoded) {
                    // A state older than the stored one is no one's news.
                    if self.store.upsert_resource(domain, &state.resource_id, &state.status, &state.body, state.observed_at_ms).await.map_err(store_failed)? {
                        written.push((domain, state));
                    }
                }
                written
            }
        };
        if written.is_empty() {
            return Ok(());
        }
        for (domain, state) in &written {
            // After the state, before the offset: a failure here retries
            // the message, whose second write (as new as the stored state,
            // so written again, or, amending, nothing new) and enqueue
            // change nothing.
            self.callbacks
                .projected(domain, state)
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
