//! Card processors' transaction webhook bodies, as their published API
//! definitions declare them: what `tests/tests/card_transactions.rs` sends
//! through the ingester, and what `tests/tests/card_contracts.rs` validates
//! against the pinned documents (Lithic's `card_transaction.updated`,
//! Marqeta's `transaction_model`), so the end-to-end test cannot drift from
//! the vendors' shapes. No PAN appears: Lithic's and Marqeta's transaction
//! objects name the card by its token only.

use serde_json::{json, Value};

/// One element of a Lithic `card_transaction`'s `events`: every field the
/// `transaction_event` schema requires. `amount` is in minor units of
/// `currency` (Lithic's integers), for the cardholder and the merchant.
pub fn lithic_transaction_event(token: &str, kind: &str, result: &str, amount: i64, currency: &str) -> Value {
    json!({
        "token": token,
        "type": kind,
        "result": result,
        "created": "2026-12-06T10:00:00Z",
        "amount": amount,
        "amounts": {
            "cardholder": {"amount": amount, "conversion_rate": "1.000000", "currency": currency},
            "merchant": {"amount": amount, "currency": currency},
            "settlement": null
        },
        "effective_polarity": if kind == "RETURN" { "CREDIT" } else { "DEBIT" },
        "detailed_results": [if result == "APPROVED" { "APPROVED" } else { result }],
        "rule_results": [],
        "network_info": null,
        "account_type": null,
        "network_specific_data": null
    })
}

/// A `card_transaction.updated` body: the whole `card_transaction` with
/// every event so far (Lithic resends the earlier ones each time).
pub fn lithic_transaction(card_token: &str, token: &str, status: &str, currency: &str, events: &[Value]) -> Value {
    let last = events.last().and_then(|e| e["amount"].as_i64()).unwrap_or(0);
    let result = events.last().and_then(|e| e["result"].as_str()).unwrap_or("APPROVED");
    json!({
        "event_type": "card_transaction.updated",
        "token": token,
        "card_token": card_token,
        "account_token": "00000000-0000-4000-8000-0000000000ac",
        "financial_account_token": null,
        "status": status,
        "result": result,
        "created": "2026-12-06T10:00:00Z",
        "updated": "2026-12-06T10:00:00Z",
        "amount": last,
        "authorization_amount": last,
        "settled_amount": if status == "SETTLED" { last } else { 0 },
        "merchant_amount": last,
        "merchant_authorization_amount": last,
        "merchant_currency": currency,
        "acquirer_fee": 0,
        "acquirer_reference_number": null,
        "authorization_code": "123456",
        "amounts": {
            "cardholder": {"amount": last, "conversion_rate": "1.000000", "currency": currency},
            "hold": {"amount": if status == "PENDING" { last } else { 0 }, "currency": currency},
            "merchant": {"amount": last, "currency": currency},
            "settlement": {"amount": if status == "SETTLED" { last } else { 0 }, "currency": currency}
        },
        "avs": null,
        "cardholder_authentication": null,
        "merchant": {
            "acceptor_id": "174030075991", "acquiring_institution_id": "191231", "city": "NEW YORK", "country": "USA",
            "descriptor": "COFFEE SHOP", "mcc": "5814", "state": "NY",
            "phone_number": null, "postal_code": "10001", "street_address": null
        },
        "service_location": null,
        "network": "VISA",
        "network_risk_score": null,
        "pos": {
            "entry_mode": {"card": "PRESENT", "cardholder": "PRESENT", "pan": "CONTACTLESS", "pin_entered": false},
            "terminal": {"attended": true, "card_retention_capable": false, "on_premise": true, "operator": "CARD_ACCEPTOR",
                         "partial_approval_capable": false, "pin_capability": "CAPABLE", "type": "POS_TERMINAL", "acceptor_terminal_id": null}
        },
        "tags": {},
        "token_info": null,
        "events": events
    })
}

/// One item of a Marqeta webhook's `transactions` (`transaction_model`),
/// as JSON text: `amount` is written as Marqeta writes it, a decimal number
/// in major units (`10.29`), which a `serde_json::Value` would hold as f64.
/// A DECLINED one answers 1016 (not sufficient funds), the others 0000.
pub fn marqeta_transaction(token: &str, kind: &str, state: &str, amount: &str, currency: &str, card_token: &str, preceding: Option<&str>) -> String {
    let code = if state == "DECLINED" { "1016" } else { "0000" };
    let memo = if state == "DECLINED" { "Not sufficient funds" } else { "Approved or completed successfully" };
    let preceding = preceding.map(|p| format!(r#","preceding_related_transaction_token":"{p}""#)).unwrap_or_default();
    format!(
        r#"{{"token":"{token}","type":"{kind}","state":"{state}","amount":{amount},"currency_code":"{currency}","card_token":"{card_token}",
        "acting_user_token":"user-1","user_token":"user-1","created_time":"2026-12-06T10:00:00Z","user_transaction_time":"2026-12-06T10:00:00Z",
        "response":{{"code":"{code}","memo":"{memo}"}}{preceding}}}"#
    )
}

/// A Marqeta delivery carrying `items` in its `transactions` array.
pub fn marqeta_transactions(items: &[String]) -> Vec<u8> {
    format!(r#"{{"transactions":[{}]}}"#, items.join(",")).into_bytes()
}
