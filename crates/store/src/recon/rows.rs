//! Column lists and row decoding of the recon tables.

use super::{EventFact, OutcomeFact, PostingFact};
use crate::StoreError;
use sqlx::any::AnyRow;
use sqlx::Row;
use switchyard_canonical::{Discrepancy, DiscrepancyClass, DiscrepancyStatus, PayoutStatus, PostingKind, ProviderEventKind};

pub(super) const OUTCOME_COLUMNS: &str =
    "subject_id, idempotency_key, status, provider, provider_reference, amount_minor, currency, correlation_id, completed_at_ms";
pub(super) const POSTING_COLUMNS: &str =
    "posting_id, subject_id, idempotency_key, correlation_id, kind, amount_minor, currency, posted_at_ms";
pub(super) const EVENT_COLUMNS: &str =
    "provider, event_id, subject_id, provider_reference, kind, amount_minor, currency, occurred_at_ms, received_at_ms";
pub(super) const DISCREPANCY_COLUMNS: &str =
    "discrepancy_id, class, domain, subject_id, providers, expected, actual, status, detected_at_ms, resolved_at_ms";

pub(super) fn protocol(message: String) -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(message))
}

pub(super) fn outcome_from_row(r: &AnyRow) -> Result<OutcomeFact, StoreError> {
    let status: String = r.try_get("status")?;
    Ok(OutcomeFact {
        subject_id: r.try_get("subject_id")?,
        idempotency_key: r.try_get("idempotency_key")?,
        status: parse_payout_status(&status).ok_or_else(|| protocol(format!("stored status {status:?}")))?,
        provider: r.try_get("provider")?,
        provider_reference: r.try_get("provider_reference")?,
        amount_minor: r.try_get("amount_minor")?,
        currency: r.try_get("currency")?,
        correlation_id: r.try_get("correlation_id")?,
        completed_at_ms: r.try_get("completed_at_ms")?,
    })
}

pub(super) fn posting_from_row(r: &AnyRow) -> Result<PostingFact, StoreError> {
    let kind: String = r.try_get("kind")?;
    Ok(PostingFact {
        posting_id: r.try_get("posting_id")?,
        subject_id: r.try_get("subject_id")?,
        idempotency_key: r.try_get("idempotency_key")?,
        correlation_id: r.try_get("correlation_id")?,
        kind: PostingKind::parse(&kind).ok_or_else(|| protocol(format!("stored posting kind {kind:?}")))?,
        amount_minor: r.try_get("amount_minor")?,
        currency: r.try_get("currency")?,
        posted_at_ms: r.try_get("posted_at_ms")?,
    })
}

pub(super) fn event_from_row(r: &AnyRow) -> Result<EventFact, StoreError> {
    let kind: String = r.try_get("kind")?;
    Ok(EventFact {
        provider: r.try_get("provider")?,
        event_id: r.try_get("event_id")?,
        subject_id: r.try_get("subject_id")?,
        provider_reference: r.try_get("provider_reference")?,
        kind: parse_event_kind(&kind),
        amount_minor: r.try_get("amount_minor")?,
        currency: r.try_get("currency")?,
        occurred_at_ms: r.try_get("occurred_at_ms")?,
        received_at_ms: r.try_get("received_at_ms")?,
    })
}

pub(super) fn discrepancy_from_row(r: &AnyRow) -> Result<Discrepancy, StoreError> {
    let class: String = r.try_get("class")?;
    let status: String = r.try_get("status")?;
    let providers: String = r.try_get("providers")?;
    Ok(Discrepancy {
        discrepancy_id: r.try_get("discrepancy_id")?,
        class: DiscrepancyClass::parse(&class),
        domain: r.try_get("domain")?,
        subject_id: r.try_get("subject_id")?,
        providers: providers.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect(),
        expected: r.try_get("expected")?,
        actual: r.try_get("actual")?,
        status: parse_status(&status),
        detected_at_ms: r.try_get("detected_at_ms")?,
        resolved_at_ms: r.try_get("resolved_at_ms")?,
    })
}

pub(super) fn parse_status(s: &str) -> DiscrepancyStatus {
    if s == "resolved" {
        DiscrepancyStatus::Resolved
    } else {
        DiscrepancyStatus::Open
    }
}

pub(super) fn parse_payout_status(s: &str) -> Option<PayoutStatus> {
    use PayoutStatus::*;
    [Submitted, Paid, Failed, Rejected, PendingUnknown, Held].into_iter().find(|p| p.as_str() == s)
}

pub(super) fn parse_event_kind(s: &str) -> ProviderEventKind {
    use ProviderEventKind::*;
    [
        PayoutCreated, PayoutProcessing, PayoutPaid, PayoutFailed, PayoutCanceled, PayoutReturned, CardIssued,
        CardShipped, CardActivated, CardClosed,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
    .unwrap_or(Other)
}
