//! Lithic wire types (from Lithic's OpenAPI document, see the module doc)
//! and their mapping to our card vocabulary. No type here has a `pan` or
//! `cvv` field: a PCI program's card responses carry them, and serde drops
//! them unread.

use crate::cards::{CardAnswer, Provisioning};
use crate::AdapterError;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchyard_canonical::card::{CardForm, IssueSpec, PinSpec, ProvisionSpec, ReplaceReason, ShippingAddress, Wallet};
use switchyard_canonical::card_dispute::{DisputeReason, DisputeState};
use switchyard_canonical::card::CardState;
use switchyard_canonical::{ErrorClass, ErrorCode};

/// `POST /v1/cards`.
#[derive(Debug, Serialize)]
pub(super) struct CreateCard<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'a str,
    /// Our card id: how a card is found again (`GET /v1/cards?memo=`) and
    /// how the card oracle counts cards per card id.
    pub(super) memo: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) product_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) card_program_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) shipping_address: Option<LithicAddress<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) replacement_for: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) replacement_substatus: Option<&'static str>,
}

impl<'a> CreateCard<'a> {
    /// Virtual cards are created PAUSED: Lithic has no "issued, not yet
    /// active" state for them, and our lifecycle activates a virtual card
    /// with its own ACTIVATE command; nothing may authorize before that.
    /// Physical cards start PENDING_FULFILLMENT whatever is asked.
    pub(super) fn issue(card_id: &'a str, spec: &'a IssueSpec) -> Result<Self, AdapterError> {
        let (kind, state, product_id, card_program_token, shipping_address) = match spec.form {
            CardForm::Virtual => ("VIRTUAL", Some("PAUSED"), None, is_uuid(&spec.product).then_some(spec.product.as_str()), None),
            CardForm::Physical => {
                let shipping = spec.shipping.as_ref().ok_or_else(|| invalid("a physical card needs a shipping address"))?;
                ("PHYSICAL", None, Some(spec.product.as_str()), None, Some(LithicAddress::new(shipping)?))
            }
        };
        Ok(Self { kind, memo: card_id, state, product_id, card_program_token, shipping_address, replacement_for: None, replacement_substatus: None })
    }
}

/// Lithic's `shipping_address`: names split in two, ISO alpha-3 country.
#[derive(Debug, Serialize)]
pub(super) struct LithicAddress<'a> {
    first_name: &'a str,
    last_name: &'a str,
    address1: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    address2: Option<&'a str>,
    city: &'a str,
    postal_code: &'a str,
    /// Lithic requires it (0 to 24 characters); our address has no region.
    state: &'a str,
    country: &'static str,
}

impl<'a> LithicAddress<'a> {
    pub(super) fn new(a: &'a ShippingAddress) -> Result<Self, AdapterError> {
        let name = a.name.trim();
        let (first_name, last_name) = name.rsplit_once(' ').map_or((name, name), |(f, l)| (f.trim(), l.trim()));
        let country = alpha3(&a.country).ok_or_else(|| invalid(format!("lithic: no ISO alpha-3 code known for country {}", a.country)))?;
        let fits = |s: &str, max: usize| !s.is_empty() && s.chars().count() <= max;
        if !fits(first_name, 24) || !fits(last_name, 24) || !fits(&a.line1, 40) || !fits(&a.city, 30) || !fits(&a.postal_code, 12) {
            return Err(invalid("lithic: shipping name (24+24), line1 (40), city (30) or postal_code (12) too long or empty"));
        }
        Ok(Self { first_name, last_name, address1: &a.line1, address2: a.line2.as_deref().filter(|l| fits(l, 40)), city: &a.city, postal_code: &a.postal_code, state: "", country })
    }
}

/// ISO 3166 alpha-2 -> alpha-3 for the countries Lithic ships to (US
/// programs, and the EEA/UK cardholders our banks have).
fn alpha3(alpha2: &str) -> Option<&'static str> {
    const MAP: &[(&str, &str)] = &[
        ("US", "USA"), ("CA", "CAN"), ("GB", "GBR"), ("IE", "IRL"), ("DE", "DEU"), ("FR", "FRA"), ("ES", "ESP"), ("IT", "ITA"),
        ("NL", "NLD"), ("BE", "BEL"), ("LU", "LUX"), ("AT", "AUT"), ("PT", "PRT"), ("FI", "FIN"), ("SE", "SWE"), ("DK", "DNK"),
        ("NO", "NOR"), ("PL", "POL"), ("CH", "CHE"), ("GR", "GRC"), ("CZ", "CZE"), ("MX", "MEX"), ("AU", "AUS"),
    ];
    MAP.iter().find(|(a2, _)| *a2 == alpha2).map(|(_, a3)| *a3)
}

pub(super) fn replacement_substatus(reason: ReplaceReason) -> &'static str {
    match reason {
        ReplaceReason::Lost => "LOST",
        ReplaceReason::Stolen => "COMPROMISED",
        ReplaceReason::Damaged => "DAMAGED",
        ReplaceReason::Expiring => "EXPIRED",
    }
}

/// `PATCH /v1/cards/{token}`.
#[derive(Debug, Default, Serialize)]
pub(super) struct UpdateCard {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) substatus: Option<&'static str>,
    /// The encrypted PIN block, base64 (never a PIN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) pin: Option<String>,
}

/// Lithic takes the encrypted PIN block base64-encoded; ours arrives as
/// hex (ISO 9564 block encrypted for the processor). Same bytes, re-encoded.
/// A hosted-flow token has no Lithic equivalent.
pub(super) fn pin_block(pin: &PinSpec) -> Result<String, AdapterError> {
    match (&pin.encrypted_pin_block, &pin.hosted_flow_token) {
        (Some(block), None) => {
            let bytes = hex::decode(block).map_err(|_| invalid("lithic: the encrypted PIN block is not hex"))?;
            Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        _ => Err(invalid("lithic: SET_PIN needs an encrypted PIN block; Lithic has no hosted PIN flow token")),
    }
}

/// `POST /v1/cards/{token}/provision`.
#[derive(Debug, Serialize)]
pub(super) struct Provision<'a> {
    digital_wallet: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce_signature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_device_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_wallet_account_id: Option<&'a str>,
}

impl<'a> Provision<'a> {
    /// Apple Pay: Lithic takes the leaf certificate only (the first).
    pub(super) fn new(spec: &'a ProvisionSpec) -> Self {
        match spec.wallet {
            Wallet::ApplePay => Self {
                digital_wallet: "APPLE_PAY",
                certificate: spec.certificates.first().map(String::as_str),
                nonce: spec.nonce.as_deref(),
                nonce_signature: spec.nonce_signature.as_deref(),
                client_device_id: None,
                client_wallet_account_id: None,
            },
            Wallet::GooglePay => Self {
                digital_wallet: "GOOGLE_PAY",
                certificate: None,
                nonce: None,
                nonce_signature: None,
                client_device_id: spec.device_id.as_deref(),
                client_wallet_account_id: spec.wallet_account_id.as_deref(),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ProvisionReply {
    #[serde(default)]
    provisioning_payload: Option<ProvisioningPayload>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ProvisioningPayload {
    Opaque(String),
    ApplePay {
        #[serde(rename = "activationData", default)]
        activation_data: Option<String>,
        #[serde(rename = "encryptedData", default)]
        encrypted_data: Option<String>,
        #[serde(rename = "ephemeralPublicKey", default)]
        ephemeral_public_key: Option<String>,
    },
}

impl ProvisionReply {
    /// No activation data: the wallet cannot add the card without the
    /// issuer stepping the cardholder up (Apple's "yellow path").
    pub(super) fn into_provisioning(self) -> Provisioning {
        match self.provisioning_payload {
            Some(ProvisioningPayload::Opaque(s)) if !s.is_empty() => Provisioning::Ready { activation_data: s, encrypted_data: None, ephemeral_public_key: None },
            Some(ProvisioningPayload::ApplePay { activation_data: Some(a), encrypted_data, ephemeral_public_key }) if !a.is_empty() => {
                Provisioning::Ready { activation_data: a, encrypted_data, ephemeral_public_key }
            }
            _ => Provisioning::StepUpRequired,
        }
    }
}

/// A card as Lithic answers it (`non_pci_card_response`), minus what we
/// never read.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct LithicCard {
    pub(super) token: String,
    pub(super) last_four: String,
    pub(super) state: String,
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) memo: Option<String>,
    #[serde(default)]
    pub(super) product_id: Option<String>,
}

impl LithicCard {
    /// `issued_paused`: the card was just created PAUSED by us (a virtual
    /// card awaiting ACTIVATE), so PAUSED means issued, not suspended.
    pub(super) fn answer(&self, issued_paused: bool) -> CardAnswer {
        let state = match (self.state.as_str(), issued_paused) {
            ("PAUSED", true) => Some(CardState::Issued),
            (s, _) => card_state(s),
        };
        CardAnswer { processor_reference: Some(self.token.clone()), last_four: Some(self.last_four.clone()), state, ..CardAnswer::default() }
    }
}

/// Lithic card states in our vocabulary. SHIPPED has no Lithic state: it is
/// the `card.shipped` event (the card is PENDING_ACTIVATION by then).
pub(super) fn card_state(lithic: &str) -> Option<CardState> {
    Some(match lithic {
        "OPEN" => CardState::Active,
        "PAUSED" => CardState::Suspended,
        "CLOSED" => CardState::Terminated,
        "PENDING_FULFILLMENT" => CardState::Issued,
        "PENDING_ACTIVATION" => CardState::PendingActivation,
        _ => return None,
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct CardList {
    pub(super) data: Vec<LithicCard>,
    #[serde(default)]
    pub(super) has_more: bool,
}

/// `POST /v1/disputes`.
#[derive(Debug, Serialize)]
pub(super) struct CreateDispute<'a> {
    pub(super) amount: i64,
    pub(super) reason: &'static str,
    pub(super) transaction_token: &'a str,
    /// Our dispute id, for the person reading the case at Lithic.
    pub(super) customer_note: String,
}

pub(super) fn dispute_reason(reason: DisputeReason) -> &'static str {
    match reason {
        DisputeReason::Fraud => "FRAUD_CARD_NOT_PRESENT",
        DisputeReason::NotReceived => "GOODS_SERVICES_NOT_RECEIVED",
        DisputeReason::NotAsDescribed => "GOODS_SERVICES_NOT_AS_DESCRIBED",
        DisputeReason::Duplicate => "DUPLICATED",
        DisputeReason::IncorrectAmount => "INCORRECT_AMOUNT",
        DisputeReason::Cancelled => "CANCELLED",
        DisputeReason::Other => "OTHER",
    }
}

/// `dispute-v1`, the fields we read.
#[derive(Debug, Deserialize)]
pub(super) struct LithicDispute {
    pub(super) token: String,
    pub(super) status: String,
    #[serde(default)]
    pub(super) resolution_reason: Option<String>,
}

impl LithicDispute {
    pub(super) fn answer(&self) -> CardAnswer {
        CardAnswer { dispute_reference: Some(self.token.clone()), dispute_state: dispute_state(&self.status, self.resolution_reason.as_deref()), ..CardAnswer::default() }
    }
}

pub(super) fn dispute_state(status: &str, resolution: Option<&str>) -> Option<DisputeState> {
    Some(match status {
        // PENDING_CUSTOMER: Lithic waits for the cardholder's information
        // before it files with the network: not submitted yet.
        "NEW" | "PENDING_CUSTOMER" => DisputeState::Opened,
        "SUBMITTED" => DisputeState::Submitted,
        "REPRESENTMENT" => DisputeState::Representment,
        "PREARBITRATION" => DisputeState::PreArbitration,
        "ARBITRATION" => DisputeState::Arbitration,
        "CASE_WON" => DisputeState::Won,
        "CASE_CLOSED" => match resolution {
            Some("WITHDRAWN") => DisputeState::Withdrawn,
            Some(r) if r.starts_with("WON_") || r.starts_with("REFUNDED") => DisputeState::Won,
            _ => DisputeState::Lost,
        },
        _ => return None,
    })
}

/// `POST /v1/disputes/{token}/evidences`: Lithic answers with an upload URL
/// for the document itself (see the module doc).
#[derive(Debug, Serialize)]
pub(super) struct CreateEvidence<'a> {
    pub(super) filename: &'a str,
}

#[derive(Debug, Deserialize)]
pub(super) struct LithicEvidence {
    pub(super) dispute_token: String,
}

/// Lithic's `error`: `{"debugging_request_id","message"}`.
#[derive(Debug, Deserialize)]
pub(super) struct LithicError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    debugging_request_id: Option<String>,
}

pub(super) fn map_error(status: u16, retry_after: Option<Duration>, body: Option<LithicError>) -> AdapterError {
    let message = body.as_ref().and_then(|b| b.message.clone()).unwrap_or_default();
    let request = body.as_ref().and_then(|b| b.debugging_request_id.clone()).map(|id| format!(" (debugging_request_id {id})")).unwrap_or_default();
    let detail = format!("lithic: {message}{request}");
    let idempotency = message.to_ascii_lowercase().contains("idempotency");
    let mut err = match status {
        // Another request under our key is executing at Lithic: it may
        // complete. Never a refusal, never a reason to fail over.
        409 | 425 => AdapterError::in_flight(status, retry_after, &detail),
        // Our keys are derived from the command, so other parameters under
        // one key means our mapping changed between attempts.
        400 | 422 if idempotency => AdapterError::new(ErrorClass::ManualRepair, ErrorCode::IdempotencyCollision, detail),
        // A refusal of the request as such (declined issuance, a card in
        // the wrong state): permanent, nothing executed.
        422 => AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, detail),
        _ => AdapterError::from_status(status, retry_after, &detail),
    };
    err.http_status = Some(status);
    err.retry_after = err.retry_after.or(retry_after);
    err
}

pub(super) fn invalid(message: impl Into<String>) -> AdapterError {
    AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, message)
}

pub(super) fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
}
