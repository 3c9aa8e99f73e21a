//! Card transactions for core banking's ledger: one [`CardTransaction`] per
//! processor transaction event (an authorization, its clearing, a reversal,
//! a return), on `cards.transactions.v1` keyed by our card id; wire form
//! `schemas/cards/CardTransaction.v1.avsc`.
//!
//! Processors report a transaction as a series of events under one
//! transaction token; each event is booked once. `transaction_event_id`
//! (`<processor>:<processor's event token>`) is the ledger's dedup key: the
//! card worker publishes each event once, and a republish after a crash
//! carries the same id. Amounts are minor units of `currency`, always
//! positive: `kind` says which way the money moves. No PAN, CVV or PIN is
//! ever part of a transaction; the card is named by our id and the
//! processor's token.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardTransactionKind {
    /// Funds held for a purchase (approved) or refused (declined).
    Authorization,
    /// An authorization's amount changed (incremental, advice, partial).
    AuthorizationAdjustment,
    /// A hold released before clearing (by the merchant or on expiry).
    AuthorizationReversal,
    /// The purchase settled: the ledger debits.
    Clearing,
    /// Money back to the cardholder (a merchant refund): the ledger credits.
    Return,
    /// A return undone: the ledger debits again.
    ReturnReversal,
}

impl CardTransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorization => "AUTHORIZATION",
            Self::AuthorizationAdjustment => "AUTHORIZATION_ADJUSTMENT",
            Self::AuthorizationReversal => "AUTHORIZATION_REVERSAL",
            Self::Clearing => "CLEARING",
            Self::Return => "RETURN",
            Self::ReturnReversal => "RETURN_REVERSAL",
        }
    }

    pub const ALL: [Self; 6] = [
        Self::Authorization,
        Self::AuthorizationAdjustment,
        Self::AuthorizationReversal,
        Self::Clearing,
        Self::Return,
        Self::ReturnReversal,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether core banking's ledger books the event, and which way: `Some(true)`
    /// debits the cardholder, `Some(false)` credits; holds are not bookings.
    pub fn ledger_debits(self) -> Option<bool> {
        match self {
            Self::Clearing | Self::ReturnReversal => Some(true),
            Self::Return => Some(false),
            Self::Authorization | Self::AuthorizationAdjustment | Self::AuthorizationReversal => None,
        }
    }
}

/// Our decline vocabulary, whatever code the processor used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardDeclineCode {
    InsufficientFunds,
    /// Suspended, closed, not yet active, or its account paused.
    CardInactive,
    CardExpired,
    /// Reported lost or stolen.
    CardLostOrStolen,
    IncorrectPin,
    SuspectedFraud,
    /// A spend limit or velocity rule of the program.
    LimitExceeded,
    /// The merchant is blocked for this card or program.
    MerchantBlocked,
    /// Malformed, or the card details did not match.
    InvalidTransaction,
    /// The processor or the network failed (timeout, stand-in).
    SystemError,
    /// A code we do not map yet; the processor's own is in the audit.
    Other,
}

impl CardDeclineCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientFunds => "INSUFFICIENT_FUNDS",
            Self::CardInactive => "CARD_INACTIVE",
            Self::CardExpired => "CARD_EXPIRED",
            Self::CardLostOrStolen => "CARD_LOST_OR_STOLEN",
            Self::IncorrectPin => "INCORRECT_PIN",
            Self::SuspectedFraud => "SUSPECTED_FRAUD",
            Self::LimitExceeded => "LIMIT_EXCEEDED",
            Self::MerchantBlocked => "MERCHANT_BLOCKED",
            Self::InvalidTransaction => "INVALID_TRANSACTION",
            Self::SystemError => "SYSTEM_ERROR",
            Self::Other => "OTHER",
        }
    }
}

/// One processor transaction event, as the ledger books it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardTransaction {
    /// `<processor>:<processor's event token>`: the dedup key.
    pub transaction_event_id: String,
    /// Our card id (the message key).
    pub card_id: String,
    /// The processor (catalog name) that holds the card.
    pub processor: String,
    /// The processor's token for the card; never the PAN.
    pub processor_reference: String,
    /// The processor's transaction token, shared by an authorization and
    /// what follows it (clearing, reversal).
    pub transaction_reference: String,
    pub kind: CardTransactionKind,
    /// Minor units of `currency`, positive; `kind` gives the direction.
    pub amount_minor: i64,
    /// Uppercase ISO 4217.
    pub currency: String,
    pub approved: bool,
    /// Why it was declined; `None` when approved.
    pub decline_code: Option<CardDeclineCode>,
    /// The processor's clock when the event happened.
    pub occurred_at_ms: i64,
    /// Our clock when published.
    pub published_at_ms: i64,
}

impl CardTransaction {
    /// The dedup key of a processor's transaction event.
    pub fn event_id(processor: &str, event_token: &str) -> String {
        format!("{processor}:{event_token}")
    }
}
