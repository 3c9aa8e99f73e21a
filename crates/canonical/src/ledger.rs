//! What core banking booked for a payout or a card, published on
//! `ledger.postings.v1`. Wire form: `schemas/ledger/LedgerPosting.v1.avsc`.
//! Core banking stays the system of record; switchyard only compares these
//! with its own facts.
//!
//! A card posting names our card id in `card_id` (and, as the topic's key,
//! in `payout_id` too, since that field is required in every released
//! version) plus what it books: a card transaction event
//! (`card_transaction_id`, the `CardTransaction`'s `transaction_event_id`) or
//! a card event (`card_event_id`: a provisional credit, or the event a fee
//! is charged for). `card_fee` marks a fee charged for the referenced
//! transaction or event rather than the booking of it, so an ATM fee next to
//! its withdrawal is not a second booking of the withdrawal.

use serde::{Deserialize, Serialize};

/// Which way a posting moves the customer's money. For card postings
/// `Payout` is a debit of the cardholder and `Reversal` a credit: the enum
/// cannot grow new symbols without breaking readers of the released schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PostingKind {
    /// Debits the customer for the payout.
    Payout,
    /// Credits it back: the payout failed or the money was returned.
    Reversal,
}

impl PostingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PostingKind::Payout => "payout",
            PostingKind::Reversal => "reversal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "payout" => Some(PostingKind::Payout),
            "reversal" => Some(PostingKind::Reversal),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerPosting {
    /// Core banking's id of the booking; a re-sent posting keeps it, so it
    /// tells a re-delivery from a second booking.
    pub posting_id: String,
    /// The subject id of the payout command.
    pub payout_id: String,
    pub idempotency_key: Option<String>,
    pub correlation_id: Option<String>,
    pub kind: PostingKind,
    /// Positive, minor units.
    pub amount_minor: i64,
    pub currency: String,
    pub posted_at_ms: i64,
    /// Our card id; set on every card posting, absent on payout postings.
    #[serde(default)]
    pub card_id: Option<String>,
    /// The booked card transaction event (`<processor>:<event token>`).
    #[serde(default)]
    pub card_transaction_id: Option<String>,
    /// The card event booked (a provisional credit) or charged for (a fee).
    #[serde(default)]
    pub card_event_id: Option<String>,
    /// The fee's code (core banking's), when the posting is a fee.
    #[serde(default)]
    pub card_fee: Option<String>,
}
