//! Card processors. [`CardCall`] is what the card worker asks of a
//! processor, already judged legal by the lifecycle
//! ([`switchyard_canonical::card::CardLifecycle::admit`]); [`CardAnswer`] is
//! the processor's answer in our vocabulary. Each processor module maps both
//! ways and owns its wire types; nothing processor-shaped leaves it, and the
//! PAN and PIN never enter it in clear (the PIN arrives encrypted for the
//! processor, the PAN is never requested).
//!
//! Idempotency: every call carries our key in the processor's form
//! ([`CardProcessor::provider_key`]); a processor without an idempotency
//! header is made idempotent by a client-chosen token or a lookup inside
//! its module, documented there.

pub mod lithic;
pub mod marqeta;
pub(crate) mod transaction;

use switchyard_canonical::card::{CardState, DisputeSpec, EvidenceSpec, IssueSpec, PinSpec, ProvisionSpec, ReplaceReason, ShippingAddress};
use switchyard_canonical::card_dispute::DisputeState;
use switchyard_canonical::card_transaction::{CardDeclineCode, CardTransactionKind};

/// The card as both sides know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardRef<'a> {
    pub card_id: &'a str,
    /// The processor's token for the card, from the ISSUE answer.
    pub processor_reference: &'a str,
}

/// One request to a processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardCall<'a> {
    Issue { card_id: &'a str, spec: &'a IssueSpec },
    Activate { card: CardRef<'a> },
    SetPin { card: CardRef<'a>, pin: &'a PinSpec },
    Suspend { card: CardRef<'a> },
    Reinstate { card: CardRef<'a> },
    Terminate { card: CardRef<'a> },
    /// A new card for the same cardholder and product, linked to the old one.
    Replace { card: CardRef<'a>, new_card_id: &'a str, reason: ReplaceReason, shipping: Option<&'a ShippingAddress> },
    ProvisionToken { card: CardRef<'a>, spec: &'a ProvisionSpec },
    OpenDispute { card: CardRef<'a>, spec: &'a DisputeSpec },
    SubmitDisputeEvidence { card: CardRef<'a>, dispute_reference: &'a str, spec: &'a EvidenceSpec },
}

/// What a push-provisioning request came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provisioning {
    /// The wallet's opaque payload (encrypted for the wallet, passed through).
    Ready { activation_data: String, encrypted_data: Option<String>, ephemeral_public_key: Option<String> },
    /// The issuer wants the cardholder to confirm first (step-up).
    StepUpRequired,
    /// The wallet's payload, handed over before the token is decided: the
    /// processor tells the decision later, by callback
    /// ([`CardCallback::Token`]). Marqeta answers this way.
    Requested { activation_data: String, encrypted_data: Option<String>, ephemeral_public_key: Option<String> },
}

/// A processor's decision on a wallet token it was asked to provision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenDecision {
    /// Every party approved: the token is in the wallet.
    Provisioned,
    /// A party wants the cardholder verified further first (step-up).
    StepUpRequired,
    /// The token went active: news only for a token held for step-up (an
    /// approved token was told with its decision).
    Activated,
}

/// A processor's word on one wallet token of a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    pub decision: TokenDecision,
    /// The processor's id of the wallet token, which ties a step-up to the
    /// token's later activation; `None` in callbacks stored before it was
    /// carried.
    pub wallet_token: Option<String>,
}

/// The processor's answer, in our vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CardAnswer {
    /// The card's token: the new card's for ISSUE and REPLACE.
    pub processor_reference: Option<String>,
    pub last_four: Option<String>,
    /// The card's state as the processor reports it after the call (the
    /// new card's for REPLACE).
    pub state: Option<CardState>,
    pub dispute_reference: Option<String>,
    pub dispute_state: Option<DisputeState>,
    pub provisioning: Option<Provisioning>,
}

/// A processor callback about a card, in our vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardCallback {
    /// The processor says the card (its `provider_reference`) is now in this state.
    State(CardState),
    /// A transaction event on the card (`provider_reference`): booked once
    /// on `cards.transactions.v1`.
    Transaction(TransactionFacts),
    /// About a card, but nothing the lifecycle models yet (a wallet
    /// token's transition, a reissue): acknowledged and counted.
    NotModeled,
    /// The card's shipment came back to the processor (undeliverable):
    /// published once as CARD_SHIPPING_RETURNED; the card's state is the
    /// processor's next word (it may close the card, or reship it).
    ShippingReturned,
    /// A dispute (chargeback) moved at the processor: its reference is the
    /// processor's dispute token, not a card token; the card worker finds
    /// the card through the dispute it opened there.
    Dispute(DisputeFacts),
    /// The decision on, or activation of, a wallet token of the card
    /// ([`Provisioning::Requested`]).
    Token(TokenFacts),
    /// Not about a card at all (a dispute status we cannot read, a
    /// transaction without a card): acknowledged and counted.
    NotACard,
}

/// A processor's word on one dispute, vendor-neutral. Neither Lithic's
/// `dispute-v1` nor Marqeta's `chargeback_transition_response` carries a
/// response or evidence due date, so no deadline is read from them (none is
/// invented either: why none is computed from the networks' windows is in
/// `switchyard_canonical::card_dispute`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeFacts {
    /// The processor's dispute (chargeback) token, as its OPEN_DISPUTE answer gave it.
    pub dispute_reference: String,
    pub state: DisputeState,
}

/// One processor transaction event, vendor-neutral: what the card worker
/// needs for a [`CardTransaction`](switchyard_canonical::card_transaction::CardTransaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionFacts {
    /// The processor's token of this event (Lithic's transaction event,
    /// Marqeta's transaction record): the dedup key with the processor.
    pub event_token: String,
    /// The processor's transaction token, shared by an authorization and
    /// its clearing or reversal.
    pub transaction_reference: String,
    pub kind: CardTransactionKind,
    /// Minor units, positive.
    pub amount_minor: i64,
    pub currency: String,
    pub approved: bool,
    pub decline_code: Option<CardDeclineCode>,
}

/// The closed set of card processors; a new one is a variant, and every
/// `match` on it breaks until it is handled.
#[derive(Debug, Clone)]
pub enum CardProcessor {
    Lithic(lithic::LithicAdapter),
    Marqeta(marqeta::MarqetaAdapter),
}

impl CardProcessor {
    /// The catalog name: recorded with the card and published in outcomes.
    pub fn name(&self) -> &str {
        match self {
            CardProcessor::Lithic(a) => a.name(),
            CardProcessor::Marqeta(a) => a.name(),
        }
    }

    /// Our key in the processor's form (Lithic: a UUID; Marqeta: a card or
    /// transition token), derived deterministically so a retry reuses it.
    pub fn provider_key(&self, idempotency_key: &str) -> String {
        match self {
            CardProcessor::Lithic(a) => a.provider_key(idempotency_key),
            CardProcessor::Marqeta(a) => a.provider_key(idempotency_key),
        }
    }

    /// What one of this processor's callbacks (already a canonical
    /// [`ProviderEvent`](switchyard_canonical::ProviderEvent) from the
    /// webhook ingester) says about a card, in our lifecycle's words. Each
    /// processor's vendor event types are mapped in its `webhook` module.
    pub fn callback(&self, event: &switchyard_canonical::ProviderEvent) -> CardCallback {
        match self {
            CardProcessor::Lithic(_) => lithic::webhook::callback(event),
            CardProcessor::Marqeta(_) => marqeta::webhook::callback(event),
        }
    }

    /// How long the processor remembers our idempotency key; `None` when
    /// it never forgets. Lithic keeps keys for 24 hours; Marqeta's key is the
    /// client-chosen token of what it creates, which stays taken for good.
    pub fn default_key_retention(&self) -> Option<std::time::Duration> {
        match self {
            CardProcessor::Lithic(_) => Some(std::time::Duration::from_secs(24 * 3600)),
            CardProcessor::Marqeta(_) => None,
        }
    }

    /// The card this processor holds for our card id, found without
    /// creating anything: what a worker asks once the processor may have
    /// forgotten the key of an unfinished ISSUE or REPLACE. `Ok(None)`: no
    /// such card. A processor that cannot look a card up this way answers
    /// `ManualRepair`.
    pub async fn find_card(&self, card_id: &str, ctx: &crate::CallContext) -> Result<Option<CardAnswer>, crate::AdapterError> {
        match self {
            CardProcessor::Lithic(a) => a.find_issued(card_id, ctx).await,
            CardProcessor::Marqeta(a) => Err(crate::AdapterError::new(
                switchyard_canonical::ErrorClass::ManualRepair,
                switchyard_canonical::ErrorCode::Unknown,
                format!("{} cannot look card {card_id} up without its token", a.name()),
            )),
        }
    }

    /// Asks the processor whether `call`, sent under `provider_key` by an
    /// attempt that ended ambiguously (timeout, reset after sending, a 5xx
    /// that may have executed), was done, without sending it again: by the
    /// same key or token, or by reading the card back. `Some`: done, this
    /// is its answer. `None`: not shown as done; sending it again under the
    /// same key is safe (replayed, or refused while the first is in
    /// flight), sending it anywhere else is not.
    pub async fn settle(&self, call: &CardCall<'_>, provider_key: &str, ctx: &crate::CallContext) -> Result<Option<CardAnswer>, crate::AdapterError> {
        match self {
            CardProcessor::Lithic(a) => a.settle(call, ctx).await,
            CardProcessor::Marqeta(a) => a.settle(call, provider_key, ctx).await,
        }
    }

    pub async fn call(&self, call: &CardCall<'_>, provider_key: &str, ctx: &crate::CallContext) -> Result<CardAnswer, crate::AdapterError> {
        match self {
            CardProcessor::Lithic(a) => a.call(call, provider_key, ctx).await,
            CardProcessor::Marqeta(a) => a.call(call, provider_key, ctx).await,
        }
    }
}
