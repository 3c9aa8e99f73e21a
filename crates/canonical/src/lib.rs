//! Canonical vocabulary of switchyard: commands, outcomes, the error taxonomy
//! and identifiers. Everything that crosses the bus is expressed in these types;
//! no vendor type and no I/O lives here.
//!
//! # Layout
//! - [`money`]: amounts in minor units with an ISO 4217 currency.
//! - [`taxonomy`]: the four error classes and our own error codes.
//! - [`payout`]: the payout command and its outcome.
//! - [`check`]: what KYC, AML and fraud outcomes share (flow step, subject).
//! - [`kyc`]: identity verification command and outcome.
//! - [`aml`]: sanctions/PEP/adverse-media screening command and outcome.
//! - [`card`]: card commands and the card lifecycle state machine;
//!   [`card_dispute`] the dispute machine; [`card_event`] card events;
//!   [`card_transaction`] normalized card transactions for the ledger;
//!   [`card_outcome`] the card worker's answer.
//! - [`fraud`]: fraud scoring and feedback command and outcome.
//! - [`openbanking`]: open banking commands; [`openbanking_consent`] the
//!   consent machine and the pre-call decision; [`openbanking_payment`] the
//!   payment status machine; [`openbanking_outcome`] the worker's answer;
//!   [`openbanking_event`] consent and payment changes; [`openbanking_data`]
//!   account data deltas.
//! - [`onboarding`]: the onboarding flow's commands (start, evidence, manual
//!   decision) and the event every transition publishes.
//! - [`provider_event`]: vendor callbacks in our vocabulary, and the rule that
//!   ignores a late regression.
//! - [`routing`]: events about partner health (circuit breaker changes).
//! - [`ledger`]: the postings core banking books for payouts.
//! - [`discrepancy`]: drift the reconciler reports.
//! - [`ids`]: correlation ids and W3C trace context.
//! - [`fingerprint`]: a stable digest of a command's payload, used to tell an
//!   honest duplicate from an idempotency-key collision.

pub mod aml;
pub mod card;
pub mod card_dispute;
pub mod card_event;
pub mod card_outcome;
pub mod card_transaction;
pub mod check;
pub mod discrepancy;
pub mod fingerprint;
pub mod fraud;
pub mod ids;
pub mod kyc;
pub mod ledger;
pub mod money;
pub mod onboarding;
pub mod openbanking;
pub mod openbanking_consent;
pub mod openbanking_data;
pub mod openbanking_event;
pub mod openbanking_outcome;
pub mod openbanking_payment;
pub mod payout;
pub mod provider_event;
pub mod routing;
pub mod taxonomy;

pub use discrepancy::{Discrepancy, DiscrepancyClass, DiscrepancyStatus};
pub use fingerprint::Fingerprint;
pub use ids::{CorrelationId, TraceParent};
pub use ledger::{LedgerPosting, PostingKind};
pub use money::{Currency, Money, MoneyError};
pub use payout::{Beneficiary, PayoutCommand, PayoutOutcome, PayoutRail, PayoutStatus};
pub use provider_event::{EventProgress, ProviderEvent, ProviderEventKind, Transition};
pub use taxonomy::{ErrorClass, ErrorCode, OutcomeError};

/// Milliseconds since the Unix epoch, the only clock representation on the wire.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
