//! The payout command core systems publish, and the outcome we answer with.
//! Wire form: `schemas/payouts/*.avsc`; these serde shapes match them field
//! for field.

use crate::{Currency, Fingerprint, Money, MoneyError, OutcomeError};
use serde::{Deserialize, Serialize};

/// How fast the money should arrive; adapters map it to the vendor's option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PayoutRail {
    Standard,
    Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beneficiary {
    pub name: String,
    pub iban: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutCommand {
    /// Subject id and Kafka key: every message about this payout shares it.
    pub payout_id: String,
    /// Chosen by the core system; the same command retried carries the same key.
    pub idempotency_key: String,
    pub amount_minor: i64,
    pub currency: String,
    pub beneficiary: Beneficiary,
    pub rail: PayoutRail,
    /// Shown on the beneficiary's statement.
    pub reference: String,
    pub requested_at_ms: i64,
    /// The tenant (bank or fintech) in a shared deployment; producers on the
    /// first schema do not send it. Routing only: not in the fingerprint.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// The core system's risk tier (`low`, `medium`, `high`, ...). Routing
    /// only: not in the fingerprint.
    #[serde(default)]
    pub risk_tier: Option<String>,
}

impl PayoutCommand {
    pub fn money(&self) -> Result<Money, MoneyError> {
        Money::new(self.amount_minor, &self.currency)
    }

    /// Fields that define what the payout does; `requested_at_ms` is left out
    /// so a core system re-sending the same payout later is still a duplicate.
    pub fn fingerprint(&self) -> Fingerprint {
        let rail = match self.rail {
            PayoutRail::Standard => "standard",
            PayoutRail::Instant => "instant",
        };
        Fingerprint::of_fields(&[
            self.payout_id.as_bytes(),
            &self.amount_minor.to_be_bytes(),
            self.currency.as_bytes(),
            self.beneficiary.name.as_bytes(),
            self.beneficiary.iban.as_bytes(),
            self.beneficiary.country.as_bytes(),
            rail.as_bytes(),
            self.reference.as_bytes(),
        ])
    }

    pub fn validate(&self) -> Result<(), String> {
        self.money().map_err(|e| e.to_string())?;
        if self.payout_id.is_empty() || self.idempotency_key.is_empty() {
            return Err("payout_id and idempotency_key must not be empty".into());
        }
        // Checked here, not left to the store or the HTTP client: there a
        // bad id would fail a whole group commit or look like a vendor
        // outage, instead of this one command being refused.
        crate::check::validate_subject_id("payout_id", &self.payout_id)?;
        crate::check::validate_idempotency_key(&self.idempotency_key)?;
        if self.beneficiary.iban.len() < 15 || self.beneficiary.name.is_empty() {
            return Err("beneficiary needs a name and an IBAN".into());
        }
        Ok(())
    }

    pub fn currency(&self) -> Result<Currency, MoneyError> {
        Currency::parse(&self.currency)
    }
}

/// Where a payout stands, in our vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PayoutStatus {
    /// The vendor accepted it; settlement follows (provider events tell).
    Submitted,
    /// The vendor reports the money delivered.
    Paid,
    /// Definitely not executed, or executed and failed.
    Failed,
    /// Refused before any vendor call (invalid, idempotency collision).
    Rejected,
    /// The vendor may or may not have executed it; the reconciler settles it.
    PendingUnknown,
    /// Stopped for compliance or because the domain is switched off.
    Held,
}

impl PayoutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::Submitted => "submitted",
            PayoutStatus::Paid => "paid",
            PayoutStatus::Failed => "failed",
            PayoutStatus::Rejected => "rejected",
            PayoutStatus::PendingUnknown => "pending_unknown",
            PayoutStatus::Held => "held",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutOutcome {
    pub payout_id: String,
    pub idempotency_key: String,
    pub status: PayoutStatus,
    pub amount_minor: i64,
    pub currency: String,
    /// Which partner executed it, by catalog name; none when no vendor was called.
    pub provider: Option<String>,
    /// The partner's own id for the payout, for support and reconciliation.
    pub provider_reference: Option<String>,
    pub error: Option<OutcomeError>,
    /// Vendor calls made for this payout, retries included.
    pub attempts: i32,
    /// True when answered from the idempotency store without a vendor call.
    pub replayed: bool,
    pub completed_at_ms: i64,
}

impl PayoutOutcome {
    /// An outcome for a command that never reached a vendor.
    pub fn rejected(cmd: &PayoutCommand, error: OutcomeError) -> Self {
        Self {
            payout_id: cmd.payout_id.clone(),
            idempotency_key: cmd.idempotency_key.clone(),
            status: PayoutStatus::Rejected,
            amount_minor: cmd.amount_minor,
            currency: cmd.currency.clone(),
            provider: None,
            provider_reference: None,
            error: Some(error),
            attempts: 0,
            replayed: false,
            completed_at_ms: crate::now_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> PayoutCommand {
        PayoutCommand {
            payout_id: "po-1".into(),
            idempotency_key: "key-1".into(),
            amount_minor: 1250,
            currency: "EUR".into(),
            beneficiary: Beneficiary {
                name: "Ada Lovelace".into(),
                iban: "DE89370400440532013000".into(),
                country: "DE".into(),
            },
            rail: PayoutRail::Standard,
            reference: "invoice 42".into(),
            requested_at_ms: 1,
            tenant_id: None,
            risk_tier: None,
        }
    }

    #[test]
    fn fingerprint_ignores_request_time_but_not_amount() {
        let a = sample();
        let mut later = a.clone();
        later.requested_at_ms = 99;
        assert_eq!(a.fingerprint(), later.fingerprint());
        let mut other = a.clone();
        other.amount_minor += 1;
        assert_ne!(a.fingerprint(), other.fingerprint());
    }

    #[test]
    fn ids_the_store_or_an_http_header_cannot_hold_are_invalid() {
        for payout_id in ["po-\0-1", "po\r\n1"] {
            let cmd = PayoutCommand { payout_id: payout_id.into(), ..sample() };
            assert!(cmd.validate().is_err_and(|e| e.contains("payout_id")), "{payout_id:?}");
        }
        for key in ["key-\0", "key\r", "key\n", "key\x0b", "kéy", "key "] {
            let cmd = PayoutCommand { idempotency_key: key.into(), ..sample() };
            assert!(cmd.validate().is_err_and(|e| e.contains("idempotency_key")), "{key:?}");
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let mut cmd = sample();
        cmd.currency = "eur".into();
        assert!(cmd.validate().is_err_and(|e| e.contains("ISO 4217")));
        assert!(sample().validate().is_ok());
    }
}
