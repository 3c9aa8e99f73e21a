//! Drift the reconciler found between outcomes, provider events and ledger
//! postings, published on `recon.discrepancies.v1`. Wire form:
//! `schemas/recon/Discrepancy.v1.avsc`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscrepancyClass {
    /// A payout succeeded and no posting arrived within the provider's settlement window.
    MissingPosting,
    /// Money was booked for a payout that did not succeed (or is unknown).
    UnexpectedPosting,
    /// The posting's amount or currency differs from the outcome's.
    AmountMismatch,
    /// More payout bookings than reversals for one payout, beyond the one expected.
    DuplicatePosting,
    /// The outcome's provider reports the opposite terminal state (failed after paid, paid after failed).
    EventContradictsOutcome,
    /// The vendor returned the money after paying; open until core banking books the reversal.
    PayoutReturned,
    /// A provider other than the one the outcome names executed the payout too.
    DoubleExecution,
    /// `pending_unknown` past its deadline and the vendor could not settle it.
    StuckPendingUnknown,
    /// A class a newer producer added; readers keep it rather than fail.
    Other,
}

impl DiscrepancyClass {
    pub const ALL: [DiscrepancyClass; 8] = [
        Self::MissingPosting,
        Self::UnexpectedPosting,
        Self::AmountMismatch,
        Self::DuplicatePosting,
        Self::EventContradictsOutcome,
        Self::PayoutReturned,
        Self::DoubleExecution,
        Self::StuckPendingUnknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingPosting => "missing_posting",
            Self::UnexpectedPosting => "unexpected_posting",
            Self::AmountMismatch => "amount_mismatch",
            Self::DuplicatePosting => "duplicate_posting",
            Self::EventContradictsOutcome => "event_contradicts_outcome",
            Self::PayoutReturned => "payout_returned",
            Self::DoubleExecution => "double_execution",
            Self::StuckPendingUnknown => "stuck_pending_unknown",
            Self::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Self {
        Self::ALL.into_iter().find(|c| c.as_str() == s).unwrap_or(Self::Other)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscrepancyStatus {
    Open,
    Resolved,
}

impl DiscrepancyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discrepancy {
    /// Deterministic per (class, subject): see [`Discrepancy::id_for`].
    pub discrepancy_id: String,
    pub class: DiscrepancyClass,
    pub domain: String,
    pub subject_id: String,
    /// Partners involved, the outcome's provider first.
    pub providers: Vec<String>,
    pub expected: String,
    pub actual: String,
    pub status: DiscrepancyStatus,
    /// First detection; a later update keeps it.
    pub detected_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
}

impl Discrepancy {
    /// The same drift found again maps to the same id, so it is updated or
    /// closed rather than reported twice.
    pub fn id_for(domain: &str, class: DiscrepancyClass, subject_id: &str) -> String {
        format!("{domain}:{}:{subject_id}", class.as_str())
    }
}
