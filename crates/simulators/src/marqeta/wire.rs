//! Marqeta wire shapes: the card record, its rendering, request parsing and
//! the error body. Field names follow the Core API definition
//! (`card_request`, `card_response`, `card_transition_request`,
//! `card_transition_response`; swagger 2.0 "Marqeta Core API" 3.0.0).

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::util::{iso8601, to_bytes};

/// Card tokens and other client-chosen tokens: at most 36 characters.
pub(crate) const MAX_TOKEN_LEN: usize = 36;

/// `{"error_code":"400xxx","error_message":"..."}` with its HTTP status.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "400001", message)
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "404001", format!("{what} not found"))
    }

    pub(crate) fn body(&self) -> Bytes {
        to_bytes(&json!({ "error_code": self.code, "error_message": self.message }))
    }
}

// Every field of the definition is accepted; not all are acted on.
#[allow(dead_code)]
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TextValue {
    pub(crate) value: Option<String>,
}

// Every field of the definition is accepted; not all are acted on.
#[allow(dead_code)]
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Text {
    pub(crate) name_line_1: Option<TextValue>,
}

// Every field of the definition is accepted; not all are acted on.
#[allow(dead_code)]
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Personalization {
    pub(crate) text: Option<Text>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub(crate) struct Address {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) address1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) address2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) postal_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) zip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) country: Option<String>,
}

// Every field of the definition is accepted; not all are acted on.
#[allow(dead_code)]
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Shipping {
    pub(crate) method: Option<String>,
    pub(crate) recipient_address: Option<Address>,
}

// Every field of the definition is accepted; not all are acted on.
#[allow(dead_code)]
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Fulfillment {
    pub(crate) shipping: Option<Shipping>,
    pub(crate) card_personalization: Option<Personalization>,
    pub(crate) card_fulfillment_reason: Option<String>,
}

/// `card_request`.
// Every field of the definition is accepted; not all are acted on.
#[allow(dead_code)]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CardRequest {
    pub(crate) token: Option<String>,
    pub(crate) user_token: Option<String>,
    pub(crate) card_product_token: Option<String>,
    pub(crate) metadata: Option<serde_json::Map<String, Value>>,
    pub(crate) fulfillment: Option<Fulfillment>,
    pub(crate) reissue_pan_from_card_token: Option<String>,
    pub(crate) new_pan_from_card_token: Option<String>,
    pub(crate) expedite: Option<bool>,
    pub(crate) activation_actions: Option<Value>,
    pub(crate) expiration_offset: Option<Value>,
    pub(crate) translate_pin_from_card_token: Option<String>,
    pub(crate) bulk_issuance_token: Option<String>,
}

/// `card_transition_request`.
// Every field of the definition is accepted; not all are acted on.
#[allow(dead_code)]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransitionRequest {
    pub(crate) token: Option<String>,
    pub(crate) card_token: String,
    pub(crate) channel: String,
    pub(crate) state: String,
    pub(crate) reason: Option<String>,
    pub(crate) reason_code: Option<String>,
    pub(crate) validations: Option<Value>,
    pub(crate) sync_state_with_dwts: Option<bool>,
}

pub(crate) fn check_token(field: &str, token: &str) -> Result<(), ApiError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(ApiError::bad(format!("{field} must be 1 to {MAX_TOKEN_LEN} characters")));
    }
    Ok(())
}

/// A card as the simulator keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Card {
    pub(crate) token: String,
    pub(crate) user_token: String,
    pub(crate) card_product_token: String,
    pub(crate) state: &'static str,
    pub(crate) state_reason: String,
    pub(crate) last_four: String,
    /// Never rendered unless the request asked `show_pan=true`.
    pub(crate) pan: String,
    pub(crate) pin_is_set: bool,
    pub(crate) physical: bool,
    /// Physical cards whose shipment comes back (magic address).
    pub(crate) returned: bool,
    pub(crate) metadata: Option<serde_json::Map<String, Value>>,
    pub(crate) shipping: Option<Address>,
    pub(crate) reissue_pan_from_card_token: Option<String>,
    pub(crate) created_ms: i64,
    pub(crate) modified_ms: i64,
    pub(crate) created_at: Instant,
}

impl Card {
    /// Fulfillment moves on with time: virtual cards are `ISSUED` for good;
    /// physical ones `ISSUED`, `ORDERED` after half of `ship_after`,
    /// `SHIPPED` at `ship_after`, then `DELIVERED` at twice it, or
    /// `REJECTED` (returned to sender) for the magic address.
    pub(crate) fn fulfillment_status(&self, ship_after: Duration) -> &'static str {
        fulfillment_at(self.physical, self.returned, self.created_at.elapsed(), ship_after)
    }

    pub(crate) fn render(&self, ship_after: Duration, show_pan: bool) -> Value {
        let expiration_ms = self.created_ms + 3 * 365 * 24 * 3600 * 1000;
        let exp = iso8601(expiration_ms);
        let mut v = json!({
            "token": self.token,
            "user_token": self.user_token,
            "card_product_token": self.card_product_token,
            "created_time": iso8601(self.created_ms),
            "last_modified_time": iso8601(self.modified_ms),
            "last_four": self.last_four,
            "pan": if show_pan { self.pan.clone() } else { format!("{}______{}", &self.pan[..6], self.last_four) },
            "expiration": format!("{}{}", &exp[5..7], &exp[2..4]),
            "expiration_time": exp,
            "barcode": format!("{:0>20}", self.created_ms),
            "pin_is_set": self.pin_is_set,
            "state": self.state,
            "state_reason": self.state_reason,
            "fulfillment_status": self.fulfillment_status(ship_after),
            "instrument_type": if self.physical { "PHYSICAL_COMBO" } else { "VIRTUAL_PAN" },
            "expedite": false,
        });
        if let Some(m) = &self.metadata {
            v["metadata"] = Value::Object(m.clone());
        }
        if let Some(from) = &self.reissue_pan_from_card_token {
            v["reissue_pan_from_card_token"] = Value::from(from.clone());
        }
        if let Some(a) = &self.shipping {
            v["fulfillment"] = json!({
                "shipping": { "method": "GROUND", "recipient_address": a },
                "card_personalization": { "text": { "name_line_1": { "value": a.first_name.clone().unwrap_or_default() } } },
                "card_fulfillment_reason": "NEW",
            });
        }
        v
    }
}

pub(crate) fn fulfillment_at(physical: bool, returned: bool, age: Duration, ship_after: Duration) -> &'static str {
    if !physical {
        return "ISSUED";
    }
    if age >= ship_after * 2 {
        return if returned { "REJECTED" } else { "DELIVERED" };
    }
    if age >= ship_after {
        "SHIPPED"
    } else if age >= ship_after / 2 {
        "ORDERED"
    } else {
        "ISSUED"
    }
}

/// Marqeta's card transitions: UNACTIVATED and SUSPENDED cards may become
/// ACTIVE; UNACTIVATED and ACTIVE may be SUSPENDED; anything but a
/// TERMINATED card may be TERMINATED; TERMINATED is final.
pub(crate) fn transition_allowed(from: &str, to: &str) -> bool {
    match (from, to) {
        ("TERMINATED", _) => false,
        (_, "TERMINATED") => true,
        ("UNACTIVATED" | "SUSPENDED", "ACTIVE") => true,
        ("UNACTIVATED" | "ACTIVE", "SUSPENDED") => true,
        _ => false,
    }
}

/// The event type a state change publishes.
pub(crate) fn transition_type(from: &str, to: &str) -> &'static str {
    match to {
        "ACTIVE" if from == "SUSPENDED" => "state.reinstated",
        "ACTIVE" => "state.activated",
        "SUSPENDED" => "state.suspended",
        "TERMINATED" => "state.terminated",
        _ => "state.limited",
    }
}

pub(crate) const STATES: [&str; 3] = ["ACTIVE", "SUSPENDED", "TERMINATED"];
pub(crate) const CHANNELS: [&str; 5] = ["API", "IVR", "FRAUD", "ADMIN", "SYSTEM"];

/// A `card_transition_response` (also the body of a card transition webhook).
pub(crate) fn transition_body(token: &str, card: &Card, channel: &str, kind: &str, reason_code: Option<&str>, fulfillment: &str, at_ms: i64) -> Value {
    json!({
        "token": token,
        "card_token": card.token,
        "user_token": card.user_token,
        "card_product_token": card.card_product_token,
        "state": card.state,
        "reason": card.state_reason,
        "reason_code": reason_code.unwrap_or("00"),
        "channel": channel,
        "fulfillment_status": fulfillment,
        "type": kind,
        "created_time": iso8601(at_ms),
        "last_four": card.last_four,
        "pan": format!("{}______{}", &card.pan[..6], card.last_four),
        "expiration": "",
        "expiration_time": iso8601(card.created_ms + 3 * 365 * 24 * 3600 * 1000),
        "barcode": format!("{:0>20}", card.created_ms),
        "pin_is_set": card.pin_is_set,
    })
}
