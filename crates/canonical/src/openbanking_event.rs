//! What the open banking domain publishes besides outcomes: one
//! [`OpenBankingEvent`] per real change of a consent or of a payment
//! (`openbanking.events.v1`, keyed by `consent_id`; wire form
//! `schemas/openbanking/OpenBankingEvent.v1.avsc`). Changes no command
//! caused (a consent expiring, a user revoking at the bank, a payment
//! settling days later) reach consumers only here.
//!
//! Each change is published once: the consent and payment machines report
//! a state entered once however often a provider repeats itself, and the
//! event id (`<consent_id>:<version>`, the consent's change counter) makes
//! a republish after a crash recognisable.

use crate::openbanking_consent::ConsentState;
use crate::openbanking_outcome::{OpenBankingKind, PaymentFailureReason};
use crate::openbanking_payment::PaymentStatus;
use serde::{Deserialize, Serialize};

/// One change of one consent, or of one payment made under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenBankingEvent {
    /// `<consent_id>:<version>`.
    pub event_id: String,
    pub consent_id: String,
    /// One of the kinds [`OpenBankingKind::is_event`] admits.
    pub kind: OpenBankingKind,
    pub provider: String,
    /// For a consent change.
    pub from_consent_state: Option<ConsentState>,
    pub to_consent_state: Option<ConsentState>,
    /// CONSENT_ACTIVE and CONSENT_EXPIRING: when the grant ends.
    pub consent_expires_at_ms: Option<i64>,
    /// For PAYMENT_UPDATED: the payment and its move.
    pub payment_id: Option<String>,
    pub from_payment_status: Option<PaymentStatus>,
    pub to_payment_status: Option<PaymentStatus>,
    pub payment_failure: Option<PaymentFailureReason>,
    /// The payment was executed before it failed (a bank return): the
    /// ledger reverses what it booked.
    pub returned_after_execution: bool,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    /// The provider's clock when it happened (the deadline, for a change
    /// our clock caused); our clock when published.
    pub occurred_at_ms: i64,
    pub published_at_ms: i64,
}

impl OpenBankingEvent {
    /// The event id of a consent's `version`th change.
    pub fn event_id(consent_id: &str, version: i64) -> String {
        format!("{consent_id}:{version}")
    }
}
