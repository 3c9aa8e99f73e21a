//! What a vendor told us by callback, in our vocabulary. The webhook ingester
//! publishes one [`ProviderEvent`] per verified, first-seen vendor event on
//! `<domain>.provider-events.v1`; wire form `schemas/events/ProviderEvent.v1.avsc`.
//!
//! Vendors deliver at least once and in no particular order, so consumers
//! fold events with [`EventProgress::apply`], which
//! ignores a regression such as `processing` after `paid` and says so.

use serde::{Deserialize, Serialize};

/// The event kinds switchyard understands. Vendor types that carry no state
/// change we act on map to [`ProviderEventKind::Other`] (kept for the audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProviderEventKind {
    PayoutCreated,
    PayoutProcessing,
    PayoutPaid,
    PayoutFailed,
    PayoutCanceled,
    /// The money came back after the payout was paid (a bank return).
    PayoutReturned,
    CardIssued,
    CardShipped,
    CardActivated,
    CardClosed,
    Other,
    /// A KYC check or review finished; the vendor's result (`clear`,
    /// `GREEN`, `RED:RETRY`, or the status when the callback carries no
    /// result) is in `reason`.
    KycCheckCompleted,
    /// A KYC review started or waits (documents in, on hold).
    KycReviewPending,
    /// Someone (an analyst, the vendor) set a screening's match status; the
    /// new status is in `reason`.
    AmlMatchUpdated,
    /// Ongoing monitoring found new or changed hits for a screened subject.
    AmlMonitorAlert,
    /// A fraud decision changed after scoring (a case decided, a level
    /// raised); the vendor's new decision is in `reason`.
    FraudDecisionUpdated,
}

impl ProviderEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PayoutCreated => "payout_created",
            Self::PayoutProcessing => "payout_processing",
            Self::PayoutPaid => "payout_paid",
            Self::PayoutFailed => "payout_failed",
            Self::PayoutCanceled => "payout_canceled",
            Self::PayoutReturned => "payout_returned",
            Self::CardIssued => "card_issued",
            Self::CardShipped => "card_shipped",
            Self::CardActivated => "card_activated",
            Self::CardClosed => "card_closed",
            Self::Other => "other",
            Self::KycCheckCompleted => "kyc_check_completed",
            Self::KycReviewPending => "kyc_review_pending",
            Self::AmlMatchUpdated => "aml_match_updated",
            Self::AmlMonitorAlert => "aml_monitor_alert",
            Self::FraudDecisionUpdated => "fraud_decision_updated",
        }
    }

    /// Position in the life of its subject; a later event never has a lower
    /// stage. Terminal kinds of the same stage contradict each other.
    ///
    /// Checks: pending (2) before completed (3). A monitoring alert (4) comes
    /// after a screening was decided, like a return after paid, so it always
    /// advances; a match-status update arriving after an alert then folds as
    /// a regression. Check kinds repeat (a match status set twice is
    /// `Repeated`): the result lives in `reason`, so consumers of check
    /// events read each event, which is published once, not only the fold.
    fn stage(self) -> u8 {
        match self {
            Self::PayoutCreated | Self::CardIssued => 1,
            Self::PayoutProcessing | Self::CardShipped | Self::KycReviewPending => 2,
            Self::PayoutPaid | Self::PayoutFailed | Self::PayoutCanceled | Self::CardActivated => 3,
            Self::KycCheckCompleted | Self::AmlMatchUpdated | Self::FraudDecisionUpdated => 3,
            Self::PayoutReturned | Self::CardClosed | Self::AmlMonitorAlert => 4,
            Self::Other => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEvent {
    /// The vendor's id for this event; `(provider, event_id)` is the dedup key.
    pub event_id: String,
    /// Partner name from the catalog (`stripe`, `adyen`, `wise`, `lithic`).
    pub provider: String,
    /// `payouts`, `cards`, ...: which `<domain>.provider-events.v1` carries it.
    pub domain: String,
    /// Our subject id (payout id, card id) when the vendor echoes it back;
    /// otherwise the vendor's object id, and consumers join on
    /// `provider_reference` instead.
    pub subject_id: String,
    /// The vendor's id of the object the event is about (`po_...`).
    pub provider_reference: String,
    pub kind: ProviderEventKind,
    /// The vendor's own event type (`payout.paid`), for support.
    pub vendor_event_type: String,
    pub amount_minor: Option<i64>,
    /// Uppercase ISO 4217.
    pub currency: Option<String>,
    /// The vendor's failure or return code, or a check's result (`clear`,
    /// `GREEN`, `potential_match`, `DECLINE`), when the event carries one.
    pub reason: Option<String>,
    /// When the vendor says it happened (its clock).
    pub occurred_at_ms: i64,
    /// When the ingester verified it (our clock); the lag metric is the difference.
    pub received_at_ms: i64,
    /// Hex SHA-256 of the raw callback body, to tell a re-sent event from a
    /// vendor reusing an id for another body.
    pub payload_sha256: String,
}

/// What folding one more event into a subject's state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The state moved forward.
    Advanced,
    /// Same kind again (a duplicate that escaped dedup, or a re-sent event).
    Repeated,
    /// An earlier stage arrived late (`processing` after `paid`): ignored.
    Regression,
    /// Another terminal state of the same stage (`failed` after `paid`):
    /// ignored here, and a discrepancy for the reconciler.
    Contradiction,
    /// Carries no state (`Other`).
    Ignored,
}

/// The provider-side state of one subject as events report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventProgress {
    pub latest: Option<ProviderEventKind>,
}

impl EventProgress {
    /// Folds `next` in; the state changes only on [`Transition::Advanced`].
    pub fn apply(&mut self, next: ProviderEventKind) -> Transition {
        if next == ProviderEventKind::Other {
            return Transition::Ignored;
        }
        let Some(current) = self.latest else {
            self.latest = Some(next);
            return Transition::Advanced;
        };
        if current == next {
            return Transition::Repeated;
        }
        match next.stage().cmp(&current.stage()) {
            std::cmp::Ordering::Greater => {
                self.latest = Some(next);
                Transition::Advanced
            }
            std::cmp::Ordering::Less => Transition::Regression,
            std::cmp::Ordering::Equal => Transition::Contradiction,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ProviderEventKind::*;
    use super::*;

    #[test]
    fn late_processing_after_paid_is_a_regression_and_keeps_paid() {
        let mut p = EventProgress::default();
        assert_eq!(p.apply(PayoutProcessing), Transition::Advanced);
        assert_eq!(p.apply(PayoutPaid), Transition::Advanced);
        assert_eq!(p.apply(PayoutProcessing), Transition::Regression);
        assert_eq!(p.apply(PayoutCreated), Transition::Regression);
        assert_eq!(p.latest, Some(PayoutPaid));
    }

    #[test]
    fn failed_after_paid_is_a_contradiction_and_returned_after_paid_advances() {
        let mut p = EventProgress::default();
        p.apply(PayoutPaid);
        assert_eq!(p.apply(PayoutFailed), Transition::Contradiction);
        assert_eq!(p.apply(PayoutPaid), Transition::Repeated);
        assert_eq!(p.apply(PayoutReturned), Transition::Advanced);
        assert_eq!(p.latest, Some(PayoutReturned));
    }

    #[test]
    fn a_late_pending_review_after_the_result_is_a_regression_and_an_alert_after_a_decision_advances() {
        let mut kyc = EventProgress::default();
        assert_eq!(kyc.apply(KycCheckCompleted), Transition::Advanced);
        assert_eq!(kyc.apply(KycReviewPending), Transition::Regression);
        assert_eq!(kyc.latest, Some(KycCheckCompleted));
        let mut aml = EventProgress::default();
        assert_eq!(aml.apply(AmlMatchUpdated), Transition::Advanced);
        assert_eq!(aml.apply(AmlMonitorAlert), Transition::Advanced);
        assert_eq!(aml.latest, Some(AmlMonitorAlert));
        assert_eq!(KycCheckCompleted.as_str(), "kyc_check_completed");
    }

    #[test]
    fn other_events_carry_no_state() {
        let mut p = EventProgress::default();
        assert_eq!(p.apply(Other), Transition::Ignored);
        assert_eq!(p.latest, None);
    }
}
