//! What the reconciler keeps about a subject, as read from and written to the store.

use super::{CardFact, CardPostingFact};
use switchyard_canonical::{Discrepancy, DiscrepancyClass, DiscrepancyStatus, PayoutStatus, PostingKind, ProviderEventKind};

/// A payout outcome as the reconciler keeps it: the most final one per
/// (subject, idempotency key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeFact {
    pub subject_id: String,
    pub idempotency_key: String,
    pub status: PayoutStatus,
    pub provider: Option<String>,
    pub provider_reference: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    /// From the outcome's `correlation-id` header.
    pub correlation_id: Option<String>,
    pub completed_at_ms: i64,
}

impl OutcomeFact {
    /// Later outcomes of one key replace earlier ones only if at least as
    /// final: a replayed `pending_unknown` never hides the `paid` that settled it.
    /// A rejection (no vendor call: invalid, or an idempotency collision
    /// answered under the same key) ranks lowest: it says nothing about a
    /// payout already executed under that key.
    pub fn rank(&self) -> i64 {
        match self.status {
            PayoutStatus::Rejected => 0,
            PayoutStatus::Held => 1,
            PayoutStatus::Submitted | PayoutStatus::PendingUnknown => 2,
            PayoutStatus::Paid | PayoutStatus::Failed => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingFact {
    pub posting_id: String,
    pub subject_id: String,
    pub idempotency_key: Option<String>,
    pub correlation_id: Option<String>,
    pub kind: PostingKind,
    pub amount_minor: i64,
    pub currency: String,
    pub posted_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFact {
    pub provider: String,
    pub event_id: String,
    pub subject_id: String,
    pub provider_reference: String,
    pub kind: ProviderEventKind,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub occurred_at_ms: i64,
    pub received_at_ms: i64,
}

/// Everything stored about one subject: the input of the matching rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectFacts {
    pub subject_id: String,
    pub outcomes: Vec<OutcomeFact>,
    pub postings: Vec<PostingFact>,
    pub events: Vec<EventFact>,
    /// Discrepancies recorded for the subject so far, open or resolved.
    pub discrepancies: Vec<Discrepancy>,
    /// Card transactions and card events filed under the subject.
    pub cards: Vec<CardFact>,
    /// Ledger postings that name a card, filed under what they book.
    pub card_postings: Vec<CardPostingFact>,
}

/// A payout command as JSON, for status queries; not a fact the rules judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    pub subject_id: String,
    pub idempotency_key: String,
    pub command_json: String,
}

/// Facts gathered from one poll of the topics.
#[derive(Debug, Clone, Default)]
pub struct FactBatch {
    pub outcomes: Vec<OutcomeFact>,
    pub postings: Vec<PostingFact>,
    pub events: Vec<EventFact>,
    pub commands: Vec<CommandRecord>,
    pub cards: Vec<CardFact>,
    pub card_postings: Vec<CardPostingFact>,
}

impl FactBatch {
    pub fn len(&self) -> usize {
        self.outcomes.len() + self.postings.len() + self.events.len() + self.commands.len() + self.cards.len() + self.card_postings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A subject due for evaluation, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSubject {
    pub subject_id: String,
    /// Written back with the verdict; a newer fact makes the write a no-op.
    pub version: i64,
    /// Open discrepancies on record; zero spares loading them.
    pub open_count: i64,
}

/// The verdict on one subject, to be written back.
#[derive(Debug, Clone)]
pub struct Judged {
    pub subject_id: String,
    pub version: i64,
    /// When to look again (a window still running), or never.
    pub next_due_at_ms: Option<i64>,
    pub open_count: i64,
    /// Discrepancies that opened, changed or resolved in this evaluation.
    pub changed: Vec<Discrepancy>,
}

/// Counts of discrepancies by class and status, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub by_class: Vec<(DiscrepancyClass, DiscrepancyStatus, i64)>,
}
