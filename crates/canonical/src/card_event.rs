//! What the card domain publishes besides outcomes: one [`CardEvent`] per
//! real change of a card or dispute (`cards.events.v1`). Normalized card
//! transactions for core banking's ledger (`cards.transactions.v1`) are in
//! [`crate::card_transaction`]. Processor callbacks are mapped into these
//! inside the adapters; no processor code or state name appears here.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardEventKind {
    CardIssued,
    CardShipped,
    /// Shipping came back to the processor (wrong address): ops reach out.
    CardShippingReturned,
    CardPendingActivation,
    CardActivated,
    CardSuspended,
    CardReinstated,
    CardTerminated,
    CardExpired,
    /// A replacement was ordered; carries the new card id.
    CardReplaced,
    TokenProvisioned,
    /// The wallet needs the cardholder to confirm (step-up) first.
    TokenStepUpRequired,
    DisputeUpdated,
    /// Provisional credit granted, made final or reversed: core banking books it.
    ProvisionalCredit,
}

impl CardEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CardEventKind::CardIssued => "CARD_ISSUED",
            CardEventKind::CardShipped => "CARD_SHIPPED",
            CardEventKind::CardShippingReturned => "CARD_SHIPPING_RETURNED",
            CardEventKind::CardPendingActivation => "CARD_PENDING_ACTIVATION",
            CardEventKind::CardActivated => "CARD_ACTIVATED",
            CardEventKind::CardSuspended => "CARD_SUSPENDED",
            CardEventKind::CardReinstated => "CARD_REINSTATED",
            CardEventKind::CardTerminated => "CARD_TERMINATED",
            CardEventKind::CardExpired => "CARD_EXPIRED",
            CardEventKind::CardReplaced => "CARD_REPLACED",
            CardEventKind::TokenProvisioned => "TOKEN_PROVISIONED",
            CardEventKind::TokenStepUpRequired => "TOKEN_STEP_UP_REQUIRED",
            CardEventKind::DisputeUpdated => "DISPUTE_UPDATED",
            CardEventKind::ProvisionalCredit => "PROVISIONAL_CREDIT",
        }
    }

    pub const ALL: [Self; 14] = [
        Self::CardIssued,
        Self::CardShipped,
        Self::CardShippingReturned,
        Self::CardPendingActivation,
        Self::CardActivated,
        Self::CardSuspended,
        Self::CardReinstated,
        Self::CardTerminated,
        Self::CardExpired,
        Self::CardReplaced,
        Self::TokenProvisioned,
        Self::TokenStepUpRequired,
        Self::DisputeUpdated,
        Self::ProvisionalCredit,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the cardholder hears about it (a push, an email). Each state
    /// change publishes one event, so a customer is told once that a card is
    /// on its way however often the processor says so.
    pub fn notifies_cardholder(self) -> bool {
        !matches!(self, CardEventKind::CardPendingActivation | CardEventKind::ProvisionalCredit)
    }
}

/// One change of one card (or of a dispute on it), published once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardEvent {
    /// `<card_id>:<version>`: the card's change counter makes a republished
    /// event recognisable to consumers.
    pub event_id: String,
    pub card_id: String,
    pub kind: CardEventKind,
    /// Card states as [`crate::card::CardState::as_str`] names them; for a
    /// dispute event, its states.
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub processor: String,
    /// The processor's token for the card; never the PAN.
    pub processor_reference: Option<String>,
    pub last_four: Option<String>,
    /// The dispute this is about, for dispute and credit events.
    pub dispute_id: Option<String>,
    /// Provisional credit: amount in minor units, signed (a reversal is negative).
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    /// The replacement (CARD_REPLACED) or the replaced card (CARD_ISSUED of a replacement).
    pub linked_card_id: Option<String>,
    pub notify_cardholder: bool,
    /// The processor's clock when it happened; our clock when published.
    pub occurred_at_ms: i64,
    pub published_at_ms: i64,
}
