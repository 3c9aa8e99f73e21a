//! Marqeta wire types (Core API `card_request`, `card_response`,
//! `card_transition_request`/`_response`, `control_token_*`, `pin_request`,
//! the digital wallet provision requests and responses, `chargeback_*`) and
//! their mapping to and from our vocabulary. `pan`, `cvv_number` and
//! `chip_cvv_number` are deliberately absent from every response type: serde
//! skips them, so they are never held, let alone logged.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use switchyard_canonical::card::{CardState, ShippingAddress};
use switchyard_canonical::card_dispute::{DisputeReason, DisputeState};
use switchyard_canonical::{ErrorClass, ErrorCode};

use crate::AdapterError;

/// The metadata key our card id travels under (the card oracle reads it).
pub(crate) const CARD_ID_METADATA: &str = "switchyard_card_id";
/// Marqeta tokens and most string ids: at most 36 characters.
pub(crate) const MAX_TOKEN_LEN: usize = 36;

#[derive(Debug, Serialize)]
pub(crate) struct TextValue {
    pub(crate) value: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Text {
    pub(crate) name_line_1: TextValue,
}

#[derive(Debug, Serialize)]
pub(crate) struct Personalization {
    pub(crate) text: Text,
}

#[derive(Debug, Serialize)]
pub(crate) struct Address {
    pub(crate) first_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_name: Option<String>,
    pub(crate) address1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) address2: Option<String>,
    pub(crate) city: String,
    pub(crate) postal_code: String,
    pub(crate) country: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Shipping {
    pub(crate) recipient_address: Address,
}

#[derive(Debug, Serialize)]
pub(crate) struct Fulfillment {
    pub(crate) shipping: Shipping,
    pub(crate) card_personalization: Personalization,
    pub(crate) card_fulfillment_reason: &'static str,
}

/// Cuts a string to Marqeta's field limit on a character boundary.
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Fulfillment {
    pub(crate) fn new(s: &ShippingAddress, reason: &'static str) -> Self {
        let name = s.name.trim();
        let (first, last) = match name.rsplit_once(' ') {
            Some((f, l)) => (f.trim(), Some(cut(l.trim(), 40))),
            None => (name, None),
        };
        Self {
            shipping: Shipping {
                recipient_address: Address {
                    first_name: cut(first, 40),
                    last_name: last,
                    address1: cut(&s.line1, 255),
                    address2: s.line2.as_deref().map(|l| cut(l, 255)),
                    city: cut(&s.city, 40),
                    postal_code: cut(&s.postal_code, 10),
                    country: s.country.clone(),
                },
            },
            card_personalization: Personalization { text: Text { name_line_1: TextValue { value: cut(name, 21) } } },
            card_fulfillment_reason: reason,
        }
    }
}

/// `POST /cards`. Never with `show_pan` or `show_cvv_number`.
#[derive(Debug, Serialize)]
pub(crate) struct CardRequest {
    pub(crate) token: String,
    pub(crate) user_token: String,
    pub(crate) card_product_token: String,
    pub(crate) metadata: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fulfillment: Option<Fulfillment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reissue_pan_from_card_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) new_pan_from_card_token: Option<String>,
}

pub(crate) fn card_metadata(card_id: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(CARD_ID_METADATA.to_owned(), Value::from(card_id));
    m
}

/// `card_response`, minus the PAN and CVVs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Card {
    pub(crate) token: String,
    #[serde(default)]
    pub(crate) user_token: Option<String>,
    #[serde(default)]
    pub(crate) card_product_token: Option<String>,
    #[serde(default)]
    pub(crate) last_four: Option<String>,
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) fulfillment_status: Option<String>,
    #[serde(default)]
    pub(crate) pin_is_set: Option<bool>,
    #[serde(default)]
    pub(crate) metadata: Option<Map<String, Value>>,
}

impl Card {
    pub(crate) fn card_id(&self) -> Option<&str> {
        self.metadata.as_ref()?.get(CARD_ID_METADATA)?.as_str()
    }

    pub(crate) fn our_state(&self) -> Result<CardState, AdapterError> {
        card_state(&self.state, self.fulfillment_status.as_deref())
    }
}

/// Marqeta's card state plus fulfillment status in our lifecycle's words:
/// an UNACTIVATED card is ISSUED until it ships (ORDERED, REORDERED and a
/// REJECTED shipment included), SHIPPED while in the post, and
/// PENDING_ACTIVATION once DELIVERED.
pub(crate) fn card_state(state: &str, fulfillment: Option<&str>) -> Result<CardState, AdapterError> {
    Ok(match state {
        "ACTIVE" => CardState::Active,
        "SUSPENDED" => CardState::Suspended,
        "TERMINATED" => CardState::Terminated,
        "UNACTIVATED" => match fulfillment {
            Some("SHIPPED") => CardState::Shipped,
            Some("DELIVERED") => CardState::PendingActivation,
            _ => CardState::Issued,
        },
        // LIMITED and UNSUPPORTED have no place in our lifecycle.
        other => return Err(unexpected(format!("card state {other:?}"))),
    })
}

fn unexpected(what: String) -> AdapterError {
    let mut e = AdapterError::new(ErrorClass::ManualRepair, ErrorCode::Unknown, format!("Marqeta answered an unexpected {what}"));
    // The call went through: what it did is known only to Marqeta.
    e.ambiguous = true;
    e
}

/// `POST /cardtransitions`.
#[derive(Debug, Serialize)]
pub(crate) struct TransitionRequest<'a> {
    pub(crate) token: String,
    pub(crate) card_token: &'a str,
    pub(crate) channel: &'static str,
    pub(crate) state: &'static str,
    pub(crate) reason_code: &'static str,
}

/// `card_transition_response` (the fields we read).
#[derive(Debug, Deserialize)]
pub(crate) struct Transition {
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) fulfillment_status: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ControlTokenRequest<'a> {
    pub(crate) card_token: &'a str,
    pub(crate) controltoken_type: &'static str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ControlToken {
    pub(crate) control_token: String,
}

/// `PUT /pins`: `pin` carries the processor-encrypted PIN block, never a
/// clear PIN (see the module doc).
#[derive(Serialize)]
pub(crate) struct PinRequest<'a> {
    pub(crate) control_token: &'a str,
    pub(crate) pin: &'a str,
}

#[derive(Debug, Serialize)]
pub(crate) struct ApplePayRequest<'a> {
    pub(crate) card_token: &'a str,
    pub(crate) device_type: &'static str,
    pub(crate) provisioning_app_version: &'static str,
    pub(crate) certificates: &'a [String],
    pub(crate) nonce: &'a str,
    pub(crate) nonce_signature: &'a str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApplePayResponse {
    pub(crate) activation_data: String,
    pub(crate) encrypted_pass_data: String,
    pub(crate) ephemeral_public_key: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct GooglePayRequest<'a> {
    pub(crate) card_token: &'a str,
    pub(crate) device_type: &'static str,
    pub(crate) provisioning_app_version: &'static str,
    pub(crate) device_id: &'a str,
    pub(crate) wallet_account_id: &'a str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PushTokenizeData {
    pub(crate) opaque_payment_card: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GooglePayResponse {
    pub(crate) push_tokenize_request_data: PushTokenizeData,
}

/// `POST /chargebacks`.
#[derive(Debug, Serialize)]
pub(crate) struct ChargebackRequest<'a> {
    pub(crate) token: String,
    pub(crate) transaction_token: &'a str,
    /// Major units, as Marqeta takes amounts.
    pub(crate) amount: f64,
    pub(crate) channel: &'static str,
    pub(crate) reason_description: &'static str,
    pub(crate) memo: &'a str,
    pub(crate) credit_user: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Chargeback {
    pub(crate) token: String,
    pub(crate) state: String,
}

pub(crate) fn reason_description(reason: DisputeReason) -> &'static str {
    match reason {
        DisputeReason::Fraud => "FRAUD_TRANSACTION",
        DisputeReason::NotReceived => "SERVICE_NOT_PROVIDED_MERCHANDISE_NOT_RECEIVED",
        DisputeReason::NotAsDescribed => "NOT_AS_DESCRIBED_OR_DEFECTIVE_MERCHANDISE",
        DisputeReason::Duplicate => "DUPLICATE_PROCESSING_OR_PAID_BY_OTHER_MEANS",
        DisputeReason::IncorrectAmount => "INCORRECT_TRANSACTION_AMOUNT_OR_ACCOUNT_NUMBER",
        DisputeReason::Cancelled => "CANCELLED_RECURRING_TRANSACTION",
        DisputeReason::Other => "TRANSACTION_NOT_RECOGNIZED",
    }
}

/// Marqeta chargeback states in our dispute vocabulary. INITIATED means
/// filed with the network (our SUBMITTED); a write-off leaves the cardholder
/// their credit (WON for them); a network rejection loses the case.
pub(crate) fn dispute_state(state: &str) -> Result<DisputeState, AdapterError> {
    Ok(match state {
        "PRE_INITIATED" => DisputeState::Opened,
        "INITIATED" => DisputeState::Submitted,
        "REPRESENTMENT" => DisputeState::Representment,
        "PREARBITRATION" | "PREARB_RESPONDED" => DisputeState::PreArbitration,
        "ARBITRATION" => DisputeState::Arbitration,
        "CASE_WON" | "WRITTEN_OFF_ISSUER" | "WRITTEN_OFF_PROGRAM" => DisputeState::Won,
        "CASE_LOST" | "NETWORK_REJECTED" => DisputeState::Lost,
        "WITHDRAWN" => DisputeState::Withdrawn,
        other => return Err(unexpected(format!("chargeback state {other:?}"))),
    })
}

/// Minor units to Marqeta's major-unit number by the ISO 4217 exponent.
pub(crate) fn major_units(minor: i64, currency: &str) -> f64 {
    let exponent = match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" | "XAF" | "XOF" | "UGX" | "PYG" => 0,
        "BHD" | "KWD" | "JOD" | "OMR" | "TND" | "IQD" | "LYD" => 3,
        _ => 2,
    };
    minor as f64 / 10f64.powi(exponent)
}

/// `{"error_code":"400xxx","error_message":"..."}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) error_code: Option<String>,
    #[serde(default)]
    pub(crate) error_message: Option<String>,
}

/// Marqeta's HTTP status and error body to the taxonomy. A 409 is another
/// request under the same token: ambiguous, never a refusal (the callers
/// that own a token resolve it with a GET first). 404 on a card we hold is
/// drift between our store and Marqeta: ops, not a retry. 400/412/422
/// (bad input, weak PIN, inactive cardholder, velocity) are final.
pub(crate) fn map_error(status: u16, retry_after: Option<Duration>, body: Option<ErrorBody>) -> AdapterError {
    let detail = match &body {
        Some(b) => format!("{} {}", b.error_code.as_deref().unwrap_or("-"), b.error_message.as_deref().unwrap_or("")),
        None => "no error body".to_owned(),
    };
    let detail = format!("marqeta: {}", cut(&detail, 300));
    match status {
        409 => AdapterError::in_flight(status, retry_after, &detail),
        404 => {
            let mut e = AdapterError::new(ErrorClass::ManualRepair, ErrorCode::InvalidRequest, format!("HTTP 404: {detail}"));
            e.http_status = Some(404);
            e
        }
        400 | 412 | 422 => {
            let mut e = AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("HTTP {status}: {detail}"));
            e.http_status = Some(status);
            e
        }
        _ => AdapterError::from_status(status, retry_after, &detail),
    }
}

/// Whether the error is Marqeta's "token already used" conflict.
pub(crate) fn is_token_conflict(e: &AdapterError) -> bool {
    e.http_status == Some(409)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marqeta_states_and_fulfillment_map_onto_our_lifecycle() {
        let s = |st, f| card_state(st, f).expect("maps");
        assert_eq!(s("UNACTIVATED", Some("ISSUED")), CardState::Issued);
        assert_eq!(s("UNACTIVATED", Some("ORDERED")), CardState::Issued);
        assert_eq!(s("UNACTIVATED", Some("SHIPPED")), CardState::Shipped);
        assert_eq!(s("UNACTIVATED", Some("DELIVERED")), CardState::PendingActivation);
        assert_eq!(s("UNACTIVATED", Some("REJECTED")), CardState::Issued);
        assert_eq!(s("ACTIVE", Some("SHIPPED")), CardState::Active);
        assert_eq!(s("SUSPENDED", None), CardState::Suspended);
        assert_eq!(s("TERMINATED", None), CardState::Terminated);
        assert_eq!(card_state("LIMITED", None).expect_err("not ours").class, ErrorClass::ManualRepair);
    }

    #[test]
    fn marqeta_errors_map_to_the_taxonomy() {
        let body = |c: &str| Some(ErrorBody { error_code: Some(c.into()), error_message: Some("x".into()) });
        let conflict = map_error(409, None, body("409001"));
        assert!(conflict.ambiguous && !conflict.is_definite_refusal() && conflict.class == ErrorClass::Transient);
        assert_eq!(map_error(400, None, body("400011")).class, ErrorClass::Permanent);
        assert_eq!(map_error(412, None, body("412001")).class, ErrorClass::Permanent);
        assert_eq!(map_error(404, None, body("404001")).class, ErrorClass::ManualRepair);
        assert_eq!(map_error(401, None, None).code, ErrorCode::AuthenticationFailed);
        assert!(map_error(503, None, None).is_definite_refusal());
        assert!(map_error(500, None, None).ambiguous);
        assert_eq!(map_error(429, Some(Duration::from_secs(2)), None).code, ErrorCode::RateLimited);
        assert!((major_units(1234, "USD") - 12.34).abs() < 1e-9);
        assert!((major_units(1234, "JPY") - 1234.0).abs() < 1e-9);
    }
}
