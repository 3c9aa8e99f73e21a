//! Vendor-shaped callback bodies for the events switchyard understands.

use serde_json::json;

/// A Stripe payout event; `kind` is `payout.paid`, `payout.updated`, ...
pub fn stripe_payout(event_id: &str, kind: &str, payout_id: &str, vendor_id: &str, amount: i64, created_s: i64) -> Vec<u8> {
    let status = match kind {
        "payout.paid" => "paid",
        "payout.failed" => "failed",
        "payout.canceled" => "canceled",
        "payout.updated" => "in_transit",
        _ => "pending",
    };
    let body = json!({
        "id": event_id, "object": "event", "api_version": "2024-06-20", "created": created_s,
        "data": {"object": {"id": vendor_id, "object": "payout", "amount": amount, "currency": "eur",
                            "status": status, "failure_code": null,
                            "metadata": {"switchyard_payout_id": payout_id}}},
        "livemode": false, "pending_webhooks": 1, "type": kind,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A Lithic card event (UNCONFIRMED shape, see the adapter's module doc).
pub fn lithic_card(event_token: &str, kind: &str, card_id: &str, card_token: &str) -> Vec<u8> {
    let body = json!({
        "event_type": kind, "token": event_token, "created": crate::util::iso8601(crate::util::now_ms()),
        "payload": {"token": card_token, "memo": card_id, "state": "OPEN", "type": "VIRTUAL"},
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// An Adyen Balance Platform transfer update.
pub fn adyen_transfer(transfer_id: &str, payout_id: &str, status: &str, sequence: i64, amount: i64) -> Vec<u8> {
    let body = json!({
        "data": {"balancePlatform": "SWITCHYARD_SIM", "id": transfer_id, "reference": payout_id, "status": status,
                 "category": "bank", "direction": "outgoing", "sequenceNumber": sequence,
                 "amount": {"currency": "EUR", "value": amount}},
        "environment": "test", "timestamp": crate::util::iso8601(crate::util::now_ms()),
        "type": "balancePlatform.transfer.updated",
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// An Onfido `check.completed` (or other `action`) callback; Onfido's
/// callbacks carry no result, only the check's status.
pub fn onfido_check(action: &str, check_id: &str, status: &str) -> Vec<u8> {
    let body = json!({"payload": {
        "resource_type": "check", "action": action,
        "object": {"id": check_id, "status": status,
                   "completed_at_iso8601": crate::util::iso8601(crate::util::now_ms()),
                   "href": format!("https://api.eu.onfido.com/v3.6/checks/{check_id}")},
    }});
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A Sumsub `applicantReviewed` callback; `answer` GREEN or RED, with
/// `reject_type` FINAL or RETRY on RED. `created_at_ms` is the event's
/// time, kept across Sumsub's resends.
pub fn sumsub_reviewed(applicant_id: &str, external_user_id: &str, answer: &str, reject_type: Option<&str>, created_at_ms: i64) -> Vec<u8> {
    let mut result = json!({"reviewAnswer": answer});
    if let Some(t) = reject_type {
        result["reviewRejectType"] = json!(t);
        result["rejectLabels"] = json!(["BAD_PROOF_OF_IDENTITY"]);
    }
    let body = json!({
        "applicantId": applicant_id, "inspectionId": format!("{applicant_id}-insp"),
        "correlationId": format!("req-{}", uuid::Uuid::new_v4()), "externalUserId": external_user_id,
        "levelName": "basic-kyc-level", "type": "applicantReviewed", "reviewResult": result,
        "reviewStatus": "completed", "createdAtMs": sumsub_time(created_at_ms), "sandboxMode": true,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Sumsub's `createdAtMs` form: `2026-11-25 10:15:00.321` (UTC).
fn sumsub_time(ms: i64) -> String {
    let iso = crate::util::iso8601(ms);
    let base = iso.trim_end_matches('Z').replacen('T', " ", 1);
    let base = base.split('.').next().unwrap_or(&base).to_owned();
    format!("{base}.{:03}", ms.rem_euclid(1000))
}

/// A ComplyAdvantage `match_status_updated` for a search tagged with our subject.
pub fn complyadvantage_match_status(search_id: i64, client_ref: &str, subject_id: &str, match_status: &str) -> Vec<u8> {
    let body = json!({"event": "match_status_updated", "data": {
        "search_id": search_id, "ref": format!("{search_id}-sim"), "client_ref": client_ref,
        "match_status": match_status, "risk_level": "high", "tags": {"switchyard_subject": subject_id},
    }});
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A ComplyAdvantage `monitored_search_updated` with `new_hits` new entities.
pub fn complyadvantage_monitor(search_id: i64, subject_id: &str, new_hits: usize) -> Vec<u8> {
    let new: Vec<String> = (0..new_hits).map(|i| format!("SIMHIT{search_id}{i}")).collect();
    let body = json!({"event": "monitored_search_updated", "data": {
        "search_id": search_id, "new": new, "updated": [], "removed": [], "is_suspended": false,
        "tags": {"switchyard_subject": subject_id},
    }});
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A Sardine risk level change (UNCONFIRMED shape, see the adapter).
pub fn sardine_risk_level(event_id: &str, session_key: &str, customer_id: &str, level: &str) -> Vec<u8> {
    let body = json!({
        "id": event_id, "type": "customer.risk_level_changed", "timestamp": crate::util::iso8601(crate::util::now_ms()),
        "data": {"sessionKey": session_key, "customer": {"id": customer_id}, "level": level},
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A SEON transaction status update (UNCONFIRMED shape, see the adapter).
pub fn seon_status_update(seon_id: &str, transaction_id: &str, user_id: &str, state: &str) -> Vec<u8> {
    let body = json!({
        "event": "transaction:status_update", "timestamp": crate::util::iso8601(crate::util::now_ms()),
        "data": {"id": seon_id, "transaction_id": transaction_id, "user_id": user_id, "state": state},
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A Wise transfer state change (schema 2.0.0).
pub fn wise_state_change(transfer_id: i64, state: &str, previous: &str) -> Vec<u8> {
    let at = crate::util::iso8601(crate::util::now_ms());
    let body = json!({
        "data": {"resource": {"type": "transfer", "id": transfer_id, "profile_id": 2201, "account_id": 77045},
                 "current_state": state, "previous_state": previous, "occurred_at": at},
        "subscription_id": "f2264fe6-6f9a-4e8e-9c9f-2a53c4e2bf3a", "event_type": "transfers#state-change",
        "schema_version": "2.0.0", "sent_at": at,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}
