//! Provider callbacks acting on consents: the open banking worker's second
//! consumer, on `openbanking.provider-events.v1` (canonical
//! [`ProviderEvent`]s the webhook ingester published from Plaid's verified
//! webhooks, keyed by Plaid's `item_id`, our word in `reason`: see
//! `switchyard_adapters::webhooks::plaid::map`).
//!
//! 1. Decode; undecodable bytes go to the callback DLQ. A provider this
//!    worker does not configure is dead-lettered; a word we do not act on
//!    (`ITEM_ERROR:<code>` other than a login, `REVOKED` for now) is
//!    acknowledged and counted.
//! 2. A callback claimed before (`ob_callbacks`, per provider event id) is
//!    not applied again; what it publishes is sent if its first delivery
//!    died before the broker acknowledged it.
//! 3. Find the consent by (provider, item id), its `provider_reference`.
//!    None yet (the COMPLETE_CONSENT that got the item may not be stored):
//!    retried through the callback retry topic, bounded, then the DLQ.
//! 4. Apply, claim and store in one transaction (compare-and-set on the
//!    consent's version, so a concurrent command or callback makes this
//!    one read again):
//!    - `REFRESH_AVAILABLE` (Plaid SYNC_UPDATES_AVAILABLE): a REFRESH of
//!      transactions (`trigger: PROVIDER_UPDATE`) onto the commands topic,
//!      its idempotency key derived from the consent and the callback
//!      ([`provider_update_key`]), so the command handler
//!      runs it under the full contract (cursor, pages published once); a
//!      consent that is not usable is not refreshed;
//!    - `CONSENT_EXPIRING` (PENDING_EXPIRATION): ACTIVE -> EXPIRING;
//!    - `LOGIN_REQUIRED` (ERROR with ITEM_LOGIN_REQUIRED) -> LOGIN_REQUIRED;
//!    - `LOGIN_REPAIRED`: LOGIN_REQUIRED -> ACTIVE (only from there, and
//!      only with a token held: a repaired login on any other state says
//!      nothing new).
//! 5. Publish the event of the state entered (event id `<consent>:<version>`,
//!    as the command path), or the REFRESH; mark it sent; the runtime
//!    commits the offset.
//!
//! Log lines carry the consent id and the provider event id; Plaid's item
//! id is no credential, but tokens never reach this module.

use super::OpenBankingHandler;
use std::sync::Arc;
use std::time::Duration;
use switchyard_bus::{AvroDecoder, AvroEncoder, Failure, Handler, Inbound, MessageContext, Outbound};
use switchyard_canonical::openbanking::{Dataset, OpenBankingAction, OpenBankingCommand, RefreshSpec, RefreshTrigger};
use switchyard_canonical::openbanking_consent::{Consent, ConsentObserved, ConsentSignal, ConsentState};
use switchyard_canonical::openbanking_event::OpenBankingEvent;
use switchyard_canonical::{now_ms, ProviderEvent};
use switchyard_store::openbanking::ConsentRow;
use switchyard_store::openbanking_callbacks::{ByReference, CallbackClaim, Commit, ObCallbacks, Payload};
use switchyard_store::AuditEntry;
use tracing::Instrument;

use crate::answer::{dead_letter, store_down};

pub const PROVIDER_EVENT_SCHEMA: &str = include_str!("../../../../schemas/events/ProviderEvent.v1.avsc");

/// Compare-and-set attempts against concurrent writers of one consent
/// before the callback takes the retry path.
const CAS_ATTEMPTS: usize = 8;

pub struct CallbackHandler {
    pub ob: Arc<OpenBankingHandler>,
    pub callbacks: ObCallbacks,
    pub decoder: AvroDecoder,
    /// Encodes the REFRESH commands provider updates start.
    pub command_encoder: AvroEncoder,
    /// First wait before a callback for an item no consent holds yet is tried again.
    pub unknown_consent_retry: Duration,
    /// A claimed callback whose payload is still unsent this long after
    /// its claim was left by a delivery that died: sent by the next one.
    pub resend_after: Duration,
}

/// What a callback says about a consent, in our words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Word {
    RefreshAvailable,
    Expiring,
    LoginRequired,
    LoginRepaired,
}

impl Word {
    /// The ingester's word (`reason`) to ours; none: not acted on.
    pub fn of(reason: Option<&str>) -> Option<Self> {
        match reason? {
            "REFRESH_AVAILABLE" => Some(Word::RefreshAvailable),
            "CONSENT_EXPIRING" => Some(Word::Expiring),
            "LOGIN_REQUIRED" => Some(Word::LoginRequired),
            "LOGIN_REPAIRED" => Some(Word::LoginRepaired),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Word::RefreshAvailable => "REFRESH_AVAILABLE",
            Word::Expiring => "CONSENT_EXPIRING",
            Word::LoginRequired => "LOGIN_REQUIRED",
            Word::LoginRepaired => "LOGIN_REPAIRED",
        }
    }
}

/// The idempotency key of the REFRESH a provider update starts: the same
/// on every instance and delivery, and within the 64 characters a key may
/// have whatever the lengths of the ids.
pub fn provider_update_key(consent_id: &str, event_id: &str) -> String {
    let digest = switchyard_canonical::Fingerprint::of_fields(&[consent_id.as_bytes(), event_id.as_bytes()]).0;
    format!("provider-update:{}", &digest[..48])
}

/// One callback's effect on one consent, before it is stored.
struct Change {
    result: &'static str,
    payload: Option<Payload>,
    row: Option<ConsentRow>,
}

impl Handler for CallbackHandler {
    async fn handle(&self, message: Arc<Inbound>) -> Result<(), Failure> {
        let event: ProviderEvent = crate::answer::decode_command(&self.decoder, &self.ob.metrics, &message).await?;
        let ctx = message.context();
        let span = tracing::info_span!(
            "openbanking_callback",
            correlation_id = %ctx.correlation_id,
            provider = %event.provider,
            provider_event_id = %event.event_id,
            vendor_event_type = %event.vendor_event_type,
            round = message.retry_attempt(),
        );
        self.apply(&event, &ctx).instrument(span).await
    }
}

impl CallbackHandler {
    async fn apply(&self, event: &ProviderEvent, ctx: &MessageContext) -> Result<(), Failure> {
        let metrics = &self.ob.metrics;
        if !self.ob.providers.contains_key(&event.provider) {
            metrics.callback(&event.provider, "unknown_provider");
            return Err(dead_letter(&format!("callback {} from provider {:?}, which this worker does not configure", event.event_id, event.provider)));
        }
        // TrueLayer's payment webhooks act on payments, not consents.
        if let Some(status) = super::payment_callbacks::payment_word(event) {
            return self.apply_payment(event, ctx, status).await;
        }
        let Some(word) = Word::of(event.reason.as_deref()) else {
            metrics.callback(&event.provider, "not_modeled");
            tracing::debug!(reason = ?event.reason, "callback the consent machine does not act on: acknowledged");
            return Ok(());
        };
        if let Some(done) = self.callbacks.applied(&event.provider, &event.event_id).await.map_err(store_down)? {
            return self.again(event, ctx, done).await;
        }
        for _ in 0..CAS_ATTEMPTS {
            let row = self.find(event).await?;
            let change = self.change(event, &row, word).map_err(|e| dead_letter(&format!("callback {} on consent {}: {e}", event.event_id, row.consent_id)))?;
            let claim = CallbackClaim {
                provider: &event.provider,
                event_id: &event.event_id,
                consent_id: &row.consent_id,
                result: change.result,
                payload: change.payload.clone(),
                change: change.row.as_ref().map(|r| (r, row.version)),
            };
            match self.callbacks.commit(&claim).await.map_err(store_down)? {
                Commit::Applied => {
                    metrics.callback(&event.provider, change.result);
                    tracing::info!(consent_id = %row.consent_id, word = word.as_str(), result = change.result, "callback applied");
                    self.audit(event, ctx, &row, word, change.result).await;
                    return self.send(event, ctx, change.payload.as_ref()).await;
                }
                Commit::Duplicate => {
                    // Another delivery claimed it between our read and write.
                    let done = self.callbacks.applied(&event.provider, &event.event_id).await.map_err(store_down)?;
                    return match done {
                        Some(done) => self.again(event, ctx, done).await,
                        None => Err(Failure::Retry { reason: "callback claim vanished".into(), delay: Duration::from_secs(1) }),
                    };
                }
                Commit::Conflict => continue,
            }
        }
        Err(Failure::Retry { reason: format!("consent kept changing while callback {} was applied", event.event_id), delay: Duration::from_secs(1) })
    }

    /// A callback claimed before: acknowledged, its payload sent if the
    /// delivery that claimed it died before the broker had it. A claim
    /// younger than `resend_after` may still be sending: looked at again later.
    async fn again(&self, event: &ProviderEvent, ctx: &MessageContext, done: switchyard_store::openbanking_callbacks::AppliedCallback) -> Result<(), Failure> {
        if done.sent {
            self.ob.metrics.callback(&event.provider, "duplicate");
            tracing::debug!(consent_id = %done.consent_id, "callback applied before: changes nothing");
            return Ok(());
        }
        let age = Duration::from_millis(u64::try_from(now_ms() - done.applied_at_ms).unwrap_or(0));
        if age < self.resend_after {
            return Err(Failure::Retry { reason: "callback claimed by a delivery that may still be sending".into(), delay: self.resend_after - age });
        }
        tracing::warn!(consent_id = %done.consent_id, "callback claimed but never sent: sending it now");
        self.send(event, ctx, done.payload.as_ref()).await
    }

    /// The consent holding the event's item; retried while none does.
    async fn find(&self, event: &ProviderEvent) -> Result<ConsentRow, Failure> {
        match self.callbacks.find_by_reference(&event.provider, &event.provider_reference).await.map_err(store_down)? {
            ByReference::One(row) => Ok(*row),
            ByReference::None => {
                self.ob.metrics.callback(&event.provider, "unknown_consent");
                Err(Failure::Retry {
                    reason: format!(
                        "no consent of ours holds {} item {} of callback {} ({}); the COMPLETE_CONSENT that got it may not be stored yet",
                        event.provider, event.provider_reference, event.event_id, event.vendor_event_type
                    ),
                    delay: self.unknown_consent_retry,
                })
            }
            ByReference::Ambiguous => {
                Err(dead_letter(&format!("two consents hold {} item {} of callback {}: the consent store needs repair", event.provider, event.provider_reference, event.event_id)))
            }
        }
    }

    /// What `word` does to the consent in `row` (nothing stored yet).
    fn change(&self, event: &ProviderEvent, row: &ConsentRow, word: Word) -> Result<Change, String> {
        let mut consent: Consent = serde_json::from_str(&row.consent).map_err(|e| format!("stored consent is unreadable: {e}"))?;
        let now = now_ms();
        let from = consent.state_at(now, self.ob.timings);
        if word == Word::RefreshAvailable {
            if !from.usable() || row.access_token_enc.is_none() {
                return Ok(Change { result: "not_usable", payload: None, row: None });
            }
            let command = refresh_command(&row.consent_id, &event.event_id);
            let json = serde_json::to_string(&command).map_err(|e| e.to_string())?;
            return Ok(Change { result: "refresh", payload: Some(Payload { kind: "command".into(), json }), row: None });
        }
        // The stored state, not `from`: a deadline that passed while nothing
        // ran is the command path's to apply and announce.
        let before = consent.state;
        let at = event.occurred_at_ms;
        let observed = match word {
            Word::Expiring => consent.observe(ConsentSignal::ExpiringSoon { expires_at_ms: None }, at),
            Word::LoginRequired => consent.observe(ConsentSignal::LoginRequired, at),
            Word::LoginRepaired if before == ConsentState::LoginRequired && row.access_token_enc.is_some() => {
                let granted = ConsentSignal::Granted { expires_at_ms: consent.expires_at_ms, access_expires_at_ms: consent.access_expires_at_ms };
                consent.observe(granted, at)
            }
            Word::LoginRepaired => ConsentObserved::Unchanged,
            Word::RefreshAvailable => ConsentObserved::Unchanged,
        };
        let result = match observed {
            ConsentObserved::Entered(_) => "entered",
            ConsentObserved::Updated => "updated",
            ConsentObserved::Unchanged => "unchanged",
            ConsentObserved::Contradiction { .. } => "contradiction",
        };
        if matches!(observed, ConsentObserved::Unchanged | ConsentObserved::Contradiction { .. }) {
            return Ok(Change { result, payload: None, row: None });
        }
        let mut changed = row.clone();
        changed.version += 1;
        changed.state = consent.state.as_str().to_owned();
        changed.consent = serde_json::to_string(&consent).map_err(|e| e.to_string())?;
        let payload = match (consent.state != before, consent.state.event()) {
            (true, Some(kind)) => {
                let event = OpenBankingEvent {
                    event_id: OpenBankingEvent::event_id(&row.consent_id, changed.version),
                    consent_id: row.consent_id.clone(),
                    kind,
                    provider: row.provider.clone(),
                    from_consent_state: Some(before),
                    to_consent_state: Some(consent.state),
                    consent_expires_at_ms: consent.expires_at_ms,
                    payment_id: None,
                    from_payment_status: None,
                    to_payment_status: None,
                    payment_failure: None,
                    returned_after_execution: false,
                    amount_minor: None,
                    currency: None,
                    occurred_at_ms: consent.changed_at_ms.max(0),
                    published_at_ms: now,
                };
                Some(Payload { kind: "event".into(), json: serde_json::to_string(&event).map_err(|e| e.to_string())? })
            }
            _ => None,
        };
        Ok(Change { result, payload, row: Some(changed) })
    }

    /// Publishes what the callback caused, then marks it sent.
    async fn send(&self, event: &ProviderEvent, ctx: &MessageContext, payload: Option<&Payload>) -> Result<(), Failure> {
        let Some(payload) = payload else { return Ok(()) };
        match payload.kind.as_str() {
            "event" => {
                let e: OpenBankingEvent = serde_json::from_str(&payload.json).map_err(|e| dead_letter(&format!("stored callback event is unreadable: {e}")))?;
                self.ob.publish_event(ctx, &e).await?;
            }
            "command" => {
                let c: OpenBankingCommand = serde_json::from_str(&payload.json).map_err(|e| dead_letter(&format!("stored callback command is unreadable: {e}")))?;
                self.publish_command(ctx, &c).await?;
            }
            other => return Err(dead_letter(&format!("stored callback payload of unknown kind {other:?}"))),
        }
        self.callbacks.mark_sent(&event.provider, &event.event_id).await.map_err(store_down)
    }

    async fn publish_command(&self, ctx: &MessageContext, command: &OpenBankingCommand) -> Result<(), Failure> {
        let payload = self.command_encoder.encode(command).map_err(|e| dead_letter(&format!("a provider-update REFRESH does not fit the command schema: {e}")))?;
        let mut ctx = ctx.clone();
        ctx.idempotency_key = Some(command.idempotency_key.clone());
        let record = Outbound {
            topic: self.ob.topics.commands.clone(),
            key: Some(command.consent_id.as_bytes().to_vec()),
            payload,
            headers: ctx.outbound_headers(Some(self.command_encoder.schema_id())),
        };
        if !switchyard_bus::publish_until_acked(&self.ob.publisher, &record, &self.ob.shutdown).await {
            return Err(Failure::Retry { reason: "worker stopping before a provider-update REFRESH was published".into(), delay: Duration::ZERO });
        }
        Ok(())
    }

    async fn audit(&self, event: &ProviderEvent, ctx: &MessageContext, row: &ConsentRow, word: Word, result: &str) {
        let detail = serde_json::json!({
            "provider": event.provider,
            "provider_event_id": event.event_id,
            "vendor_event_type": event.vendor_event_type,
            "word": word.as_str(),
            "from": row.state,
            "result": result,
        })
        .to_string();
        let entry = AuditEntry { actor: "openbanking-worker", action: "openbanking_callback", subject_id: &row.consent_id, correlation_id: &ctx.correlation_id.0, detail: &detail };
        self.ob.store.audit_later(entry).await;
    }
}

/// The REFRESH of transactions a provider update starts.
fn refresh_command(consent_id: &str, event_id: &str) -> OpenBankingCommand {
    OpenBankingCommand {
        consent_id: consent_id.to_owned(),
        idempotency_key: provider_update_key(consent_id, event_id),
        action: OpenBankingAction::Refresh,
        consent: None,
        completion: None,
        refresh: Some(RefreshSpec { datasets: vec![Dataset::Transactions], trigger: RefreshTrigger::ProviderUpdate }),
        payment: None,
        reason: None,
        tenant_id: None,
        requested_at_ms: now_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ingesters_words_map_to_ours_and_nothing_else_is_acted_on() {
        for (reason, word) in [
            ("REFRESH_AVAILABLE", Word::RefreshAvailable),
            ("CONSENT_EXPIRING", Word::Expiring),
            ("LOGIN_REQUIRED", Word::LoginRequired),
            ("LOGIN_REPAIRED", Word::LoginRepaired),
        ] {
            assert_eq!(Word::of(Some(reason)), Some(word));
            assert_eq!(word.as_str(), reason);
        }
        for other in ["ITEM_ERROR:INSTITUTION_DOWN", "ITEM_ERROR", "REVOKED", "TRANSACTIONS:INITIAL_UPDATE", ""] {
            assert_eq!(Word::of(Some(other)), None, "{other}");
        }
        assert_eq!(Word::of(None), None);
    }

    #[test]
    fn a_provider_update_refreshes_transactions_under_a_key_naming_the_callback() {
        let c = refresh_command("con-1", "ev-9");
        assert_eq!(c.idempotency_key, provider_update_key("con-1", "ev-9"), "the same on every instance");
        assert_ne!(c.idempotency_key, provider_update_key("con-2", "ev-9"));
        let long = refresh_command(&"c".repeat(40), &format!("sha256:{}", "e".repeat(64)));
        assert!(long.validate().is_ok() && long.idempotency_key.len() <= 64, "a key within 64 characters whatever the ids: {}", long.idempotency_key);
        assert_eq!(c.refresh.as_ref().map(|r| (r.datasets.clone(), r.trigger)), Some((vec![Dataset::Transactions], RefreshTrigger::ProviderUpdate)));
        assert!(c.validate().is_ok());
    }
}
