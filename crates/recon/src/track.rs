//! From findings to discrepancy records: a finding already open stays one
//! record (same deterministic id), a changed one is updated, one no longer
//! found is resolved, and a resolved one found again reopens. Pure.

use crate::rules::Finding;
use switchyard_canonical::{Discrepancy, DiscrepancyStatus};

/// The records that changed, and how many are open afterwards.
pub fn track(domain: &str, subject_id: &str, previous: &[Discrepancy], open: &[Finding], now_ms: i64) -> (Vec<Discrepancy>, i64) {
    let mut changed = Vec::new();
    for f in open {
        let id = Discrepancy::id_for(domain, f.class, subject_id);
        let before = previous.iter().find(|d| d.discrepancy_id == id);
        let record = Discrepancy {
            discrepancy_id: id,
            class: f.class,
            domain: domain.to_owned(),
            subject_id: subject_id.to_owned(),
            providers: f.providers.clone(),
            expected: f.expected.clone(),
            actual: f.actual.clone(),
            status: DiscrepancyStatus::Open,
            detected_at_ms: match before {
                Some(d) if d.status == DiscrepancyStatus::Open => d.detected_at_ms,
                _ => now_ms,
            },
            resolved_at_ms: None,
        };
        if before != Some(&record) {
            changed.push(record);
        }
    }
    for d in previous.iter().filter(|d| d.status == DiscrepancyStatus::Open) {
        if open.iter().all(|f| Discrepancy::id_for(domain, f.class, subject_id) != d.discrepancy_id) {
            changed.push(Discrepancy { status: DiscrepancyStatus::Resolved, resolved_at_ms: Some(now_ms), ..d.clone() });
        }
    }
    (changed, open.len() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::DiscrepancyClass;

    fn finding(actual: &str) -> Finding {
        Finding { class: DiscrepancyClass::AmountMismatch, providers: vec!["stripe".into()], expected: "100 EUR".into(), actual: actual.into() }
    }

    #[test]
    fn open_once_update_in_place_then_resolve_and_reopen() {
        let (first, n) = track("payouts", "po-1", &[], &[finding("90 EUR")], 10);
        assert_eq!((first.len(), n), (1, 1));
        assert_eq!(first[0].discrepancy_id, "payouts:amount_mismatch:po-1");
        let (again, _) = track("payouts", "po-1", &first, &[finding("90 EUR")], 20);
        assert!(again.is_empty(), "the same drift found again is not a new record");
        let (updated, _) = track("payouts", "po-1", &first, &[finding("80 EUR")], 30);
        assert_eq!(updated.len(), 1);
        assert_eq!((updated[0].detected_at_ms, updated[0].actual.as_str()), (10, "80 EUR"));
        let (resolved, n) = track("payouts", "po-1", &updated, &[], 40);
        assert_eq!(n, 0);
        assert_eq!((resolved[0].status, resolved[0].resolved_at_ms), (DiscrepancyStatus::Resolved, Some(40)));
        let (reopened, _) = track("payouts", "po-1", &resolved, &[finding("80 EUR")], 50);
        assert_eq!((reopened[0].status, reopened[0].detected_at_ms, reopened[0].resolved_at_ms), (DiscrepancyStatus::Open, 50, None));
    }
}
