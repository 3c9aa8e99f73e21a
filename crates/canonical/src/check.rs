//! What the check domains (KYC, AML screening, fraud scoring) share: the
//! step an outcome belongs to and common validation.
//!
//! Every check outcome carries `subject_id` (the applicant or counterparty,
//! also the Kafka key), `flow_id` (the onboarding flow, if any), `step` and
//! `terminal`, so an orchestrator can drive a flow from outcomes alone and
//! correlate by the `correlation-id` header.

use serde::{Deserialize, Serialize};

/// Which step of an onboarding flow an outcome answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlowStep {
    Kyc,
    Aml,
    Fraud,
}

/// Ids every check command needs; keys are passed to vendors, which cap them.
pub fn validate_ids(subject_id: &str, idempotency_key: &str) -> Result<(), String> {
    if subject_id.is_empty() || idempotency_key.is_empty() {
        return Err("subject_id and idempotency_key must not be empty".into());
    }
    if idempotency_key.len() > 64 {
        return Err("idempotency_key is longer than 64 characters".into());
    }
    Ok(())
}

/// `YYYY-MM-DD` with plausible month and day; no calendar arithmetic.
pub fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|p| p.parse::<u32>().ok());
    matches!((num(0..4), num(5..7), num(8..10)), (Some(_), Some(1..=12), Some(1..=31)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_dates() {
        assert!(super::is_iso_date("1990-12-10"));
        assert!(!super::is_iso_date("1990-13-10"));
        assert!(!super::is_iso_date("10-12-1990"));
    }
}
