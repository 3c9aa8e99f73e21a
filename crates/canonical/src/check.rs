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
    validate_subject_id("subject_id", subject_id)?;
    validate_idempotency_key(idempotency_key)
}

/// The longest idempotency key any of our vendors accepts (Adyen: 64).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 64;
/// The longest subject id we store and key messages by: far below what an
/// index row may hold, far above any id a core system sends.
pub const MAX_SUBJECT_ID_LEN: usize = 128;

/// An idempotency key is stored with the record and sent to the vendor as
/// an HTTP header value. Only printable ASCII survives both: a control
/// character (`\r`, `\n`, NUL) cannot be put into a header at all, and
/// leading or trailing spaces are trimmed by HTTP parsers, so the vendor
/// would deduplicate on another key than ours.
pub fn validate_idempotency_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(format!("idempotency_key is longer than {MAX_IDEMPOTENCY_KEY_LEN} characters"));
    }
    if !key.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err("idempotency_key must be printable ASCII: it is sent to vendors as an HTTP header, \
                    which cannot carry control characters (\\r, \\n, NUL) or other bytes"
            .into());
    }
    if key.starts_with(' ') || key.ends_with(' ') {
        return Err("idempotency_key must not start or end with a space: HTTP trims it away".into());
    }
    Ok(())
}

/// A subject id (payout id, applicant id) is stored as text and used as the
/// Kafka key. PostgreSQL text cannot hold NUL, and other control characters
/// make ids nobody can type or search for.
pub fn validate_subject_id(field: &str, id: &str) -> Result<(), String> {
    if id.len() > MAX_SUBJECT_ID_LEN {
        return Err(format!("{field} is longer than {MAX_SUBJECT_ID_LEN} bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters (NUL, line breaks, tabs)"));
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
    use super::*;

    #[test]
    fn keys_must_survive_an_http_header_and_ids_the_store() {
        assert!(validate_ids("applicant-1", "key-1 with inner space").is_ok());
        for key in ["key\r", "key\nX-Evil: 1", "key\x0b", "key\0", "kéy", " key", "key ", &"k".repeat(65)] {
            let err = validate_ids("applicant-1", key).expect_err(key);
            assert!(err.contains("idempotency_key"), "{key:?}: {err}");
        }
        for id in ["app\0licant", "app\nlicant", &"a".repeat(129)] {
            let err = validate_ids(id, "key-1").expect_err(id);
            assert!(err.contains("subject_id"), "{id:?}: {err}");
        }
    }

    #[test]
    fn iso_dates() {
        assert!(super::is_iso_date("1990-12-10"));
        assert!(!super::is_iso_date("1990-13-10"));
        assert!(!super::is_iso_date("10-12-1990"));
    }
}
