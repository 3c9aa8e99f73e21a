//! What core banking booked for a payout, published on `ledger.postings.v1`.
//! Wire form: `schemas/ledger/LedgerPosting.v1.avsc`. Core banking stays the
//! system of record; switchyard only compares these with its own facts.

use serde::{Deserialize, Serialize};

/// Which way a posting moves the customer's money.
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
}
