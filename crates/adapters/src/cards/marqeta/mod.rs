//! Marqeta Core API (v3) card processor, built from Marqeta's published
//! OpenAPI document "Marqeta Core API" 3.0.0 (swagger 2.0, served at
//! `https://sandbox-api.marqeta.com/v3/swagger.json`; pinned from the
//! 2024-01-19 archive, see `tests/contracts/marqeta/core.json`). The base
//! URL includes `/v3`.
//!
//! Auth: HTTP Basic, application token as user, access token as password.
//!
//! Idempotency: Marqeta has no idempotency header; a create is made
//! idempotent by the client-chosen `token` (at most 36 characters). We
//! derive it from our idempotency key ([`MarqetaAdapter::provider_key`]):
//! `sy` + 34 lowercase hex digits of SHA-256(key): 36 characters (the
//! definition's `maxLength`), lowercase letters and digits only (whatever
//! exact charset Marqeta enforces, which its definition does not state,
//! admits these), and the same on every retry.
//! Our keys can be longer than 36 and carry characters Marqeta may refuse,
//! so they are hashed rather than sent. The same token names the card
//! (ISSUE, REPLACE), the card transition (ACTIVATE, SUSPEND, ...) and the
//! chargeback (OPEN_DISPUTE).
//!
//! The idempotent path: a retry after a crash sends the same token again
//! and Marqeta answers 409 "token already associated". For a card or a
//! chargeback the adapter then GETs it by that token: found (and, for a
//! card, carrying our card id in `metadata.switchyard_card_id`) it is the
//! answer; not found means the first request is still executing, which is
//! ambiguous and transient ([`AdapterError::in_flight`]), never a refusal.
//! For a transition the card is read back and the answer is its state when
//! it is the requested one.
//!
//! Calls:
//! - ISSUE: `POST /cards` (`user_token` = our cardholder reference, which
//!   must already be a Marqeta user token; `card_product_token` from the
//!   configured product map, else our product name; `fulfillment.shipping`
//!   for a physical card). Marqeta starts cards UNACTIVATED.
//! - ACTIVATE / SUSPEND / REINSTATE / TERMINATE: `POST /cardtransitions`,
//!   channel `API`, reason codes `00` (first activation) and `01` (our
//!   request); UNCONFIRMED beyond the enum in the definition.
//! - SET_PIN: with an encrypted PIN block, `POST /pins/controltoken`
//!   (SET_PIN) then `PUT /pins` with the block as `pin` (UNCONFIRMED: the
//!   definition types `pin` as a string; a program must be set up for PIN
//!   blocks). With a hosted-flow token the cardholder set the PIN through
//!   Marqeta's widget: the card is read and `pin_is_set` must be true.
//! - REPLACE: damaged or expiring, `POST /cards` with
//!   `reissue_pan_from_card_token` (same PAN; Marqeta retires the old card
//!   when the new one is activated); lost or stolen, the old card is
//!   terminated first (reason `10` lost / `11` stolen, UNCONFIRMED), then
//!   `POST /cards` with `new_pan_from_card_token`.
//! - PROVISION_TOKEN: `POST /digitalwalletprovisionrequests/applepay` or
//!   `androidpay`; the payload is passed through as
//!   [`Provisioning::Requested`]: the token's decision is not in the
//!   synchronous answer. It comes with the wallet token's transition
//!   (`digitalwallettokentransitions`, its `fulfillment_status`), mapped in
//!   [`webhook::callback`]: `DECISION_GREEN` provisioned, `DECISION_YELLOW`
//!   step-up (Marqeta's "Managing the digital wallet token lifecycle").
//! - OPEN_DISPUTE: `POST /chargebacks` (amount in major units, channel
//!   ISSUER, credit_user true, our dispute id as `memo`).
//! - SUBMIT_DISPUTE_EVIDENCE: the Core API has no evidence upload (Marqeta
//!   takes documents in its dispute tooling): a manual-repair error.
//!
//! The PAN is never requested (`show_pan` is never set) and never
//! deserialized: the response types have no `pan` field.

mod client;
mod transformers;
pub mod webhook;

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use switchyard_canonical::card::{IssueSpec, ReplaceReason, ShippingAddress, Wallet};
use switchyard_canonical::{ErrorClass, ErrorCode};

use super::{CardAnswer, CardCall, CardRef, Provisioning};
use crate::http::Transport;
use crate::secret::ApiKey;
use crate::{AdapterError, CallContext};
use client::Client;
use transformers as t;

/// Sent as `provisioning_app_version` on wallet provisioning requests.
const APP_VERSION: &str = "switchyard-1";

#[derive(Debug, Clone)]
pub struct MarqetaAdapter {
    name: String,
    client: Client,
    /// Our card product -> Marqeta `card_product_token`.
    card_products: HashMap<String, String>,
}

impl MarqetaAdapter {
    pub fn new(name: impl Into<String>, base_url: &str, application_token: impl Into<ApiKey>, access_token: impl Into<ApiKey>, transport: Transport) -> Result<Self, AdapterError> {
        Ok(Self { name: name.into(), client: Client::new(base_url, application_token, access_token, transport)?, card_products: HashMap::new() })
    }

    /// Maps our card products to Marqeta card product tokens; a product not
    /// in the map is sent as its own token.
    pub fn with_card_products(mut self, products: HashMap<String, String>) -> Self {
        self.card_products = products;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Marqeta token for our idempotency key (see the module doc).
    pub fn provider_key(&self, idempotency_key: &str) -> String {
        token_for(idempotency_key)
    }

    pub async fn call(&self, call: &CardCall<'_>, provider_key: &str, ctx: &CallContext) -> Result<CardAnswer, AdapterError> {
        match call {
            CardCall::Issue { card_id, spec } => self.issue(card_id, spec, provider_key, ctx).await,
            CardCall::Activate { card } => self.transition(card, "ACTIVE", "00", provider_key, ctx).await,
            CardCall::Suspend { card } => self.transition(card, "SUSPENDED", "01", provider_key, ctx).await,
            CardCall::Reinstate { card } => self.transition(card, "ACTIVE", "01", provider_key, ctx).await,
            CardCall::Terminate { card } => self.transition(card, "TERMINATED", "01", provider_key, ctx).await,
            CardCall::SetPin { card, pin } => match (&pin.encrypted_pin_block, &pin.hosted_flow_token) {
                (Some(block), _) => self.set_pin(card, block, ctx).await,
                (None, Some(_)) => self.hosted_pin(card, ctx).await,
                (None, None) => Err(invalid("SET_PIN without a PIN block or hosted-flow token")),
            },
            CardCall::Replace { card, new_card_id, reason, shipping } => self.replace(card, new_card_id, *reason, *shipping, provider_key, ctx).await,
            CardCall::ProvisionToken { card, spec } => self.provision(card, spec, ctx).await,
            CardCall::OpenDispute { card: _, spec } => self.open_dispute(spec, provider_key, ctx).await,
            CardCall::SubmitDisputeEvidence { .. } => Err(AdapterError::new(
                ErrorClass::ManualRepair,
                ErrorCode::InvalidRequest,
                "Marqeta's Core API takes no dispute evidence: submit the document through Marqeta's dispute tooling",
            )),
        }
    }

    /// What Marqeta did with `call` after an ambiguous attempt, asked by the
    /// token that attempt sent (the card's or the chargeback's own token),
    /// without sending it again: `Some` when Marqeta shows it done, `None`
    /// when it does not (yet), and the same token may be sent again (a
    /// second create under it is Marqeta's 409, never a second card). A
    /// transition is read back from the card. REPLACE answers `None`: the
    /// old card's termination is only made sure of by sending it again. A
    /// PIN or provisioning request leaves nothing to read back by token.
    pub async fn settle(&self, call: &CardCall<'_>, provider_key: &str, ctx: &CallContext) -> Result<Option<CardAnswer>, AdapterError> {
        let (card, state) = match call {
            CardCall::Issue { card_id, .. } => {
                return match self.client.get::<t::Card>("cards", provider_key, ctx).await {
                    Ok(card) if card.card_id() == Some(*card_id) => card_answer(&card).map(Some),
                    Ok(_) => Err(AdapterError::new(
                        ErrorClass::ManualRepair,
                        ErrorCode::IdempotencyCollision,
                        format!("Marqeta card {provider_key} exists for another card id than {card_id}"),
                    )),
                    Err(e) if e.http_status == Some(404) => Ok(None),
                    Err(e) => Err(e),
                };
            }
            CardCall::OpenDispute { .. } => {
                return match self.client.get::<t::Chargeback>("chargebacks", provider_key, ctx).await {
                    Ok(cb) => Ok(Some(CardAnswer { dispute_state: Some(t::dispute_state(&cb.state)?), dispute_reference: Some(cb.token), ..CardAnswer::default() })),
                    Err(e) if e.http_status == Some(404) => Ok(None),
                    Err(e) => Err(e),
                };
            }
            CardCall::Activate { card } | CardCall::Reinstate { card } => (card, "ACTIVE"),
            CardCall::Suspend { card } => (card, "SUSPENDED"),
            CardCall::Terminate { card } => (card, "TERMINATED"),
            CardCall::Replace { .. } | CardCall::SetPin { .. } | CardCall::ProvisionToken { .. } | CardCall::SubmitDisputeEvidence { .. } => return Ok(None),
        };
        let now: t::Card = self.client.get("cards", card.processor_reference, ctx).await?;
        if now.state != state {
            return Ok(None);
        }
        Ok(Some(CardAnswer {
            processor_reference: Some(card.processor_reference.to_owned()),
            state: Some(t::card_state(&now.state, now.fulfillment_status.as_deref())?),
            ..CardAnswer::default()
        }))
    }

    async fn issue(&self, card_id: &str, spec: &IssueSpec, token: &str, ctx: &CallContext) -> Result<CardAnswer, AdapterError> {
        let fulfillment = spec.shipping.as_ref().map(|s| t::Fulfillment::new(s, "NEW"));
        let request = t::CardRequest {
            token: token.to_owned(),
            user_token: checked_token("cardholder_ref", &spec.cardholder_ref)?,
            card_product_token: checked_token("product", self.card_products.get(&spec.product).unwrap_or(&spec.product))?,
            metadata: t::card_metadata(card_id),
            fulfillment,
            reissue_pan_from_card_token: None,
            new_pan_from_card_token: None,
        };
        self.create_card(card_id, &request, ctx).await
    }

    /// `POST /cards`; on Marqeta's 409 for our token, the card by GET.
    async fn create_card(&self, card_id: &str, request: &t::CardRequest, ctx: &CallContext) -> Result<CardAnswer, AdapterError> {
        let created: Result<t::Card, _> = self.client.post("cards", request, ctx).await;
        let card = match created {
            Ok(card) => card,
            Err(e) if t::is_token_conflict(&e) => self.existing_card(card_id, &request.token, e, ctx).await?,
            Err(e) => return Err(e),
        };
        card_answer(&card)
    }

    /// The card a previous attempt created under `token`.
    async fn existing_card(&self, card_id: &str, token: &str, conflict: AdapterError, ctx: &CallContext) -> Result<t::Card, AdapterError> {
        match self.client.get::<t::Card>("cards", token, ctx).await {
            Ok(card) if card.card_id() == Some(card_id) => Ok(card),
            Ok(_) => Err(AdapterError::new(
                ErrorClass::ManualRepair,
                ErrorCode::IdempotencyCollision,
                format!("Marqeta card {token} exists for another card id than {card_id}"),
            )),
            // Not there yet: the first request is still executing.
            Err(e) if e.http_status == Some(404) => Err(conflict),
            Err(e) => Err(e),
        }
    }

    async fn transition(&self, card: &CardRef<'_>, state: &'static str, reason_code: &'static str, token: &str, ctx: &CallContext) -> Result<CardAnswer, AdapterError> {
        let request = t::TransitionRequest { token: token.to_owned(), card_token: card.processor_reference, channel: "API", state, reason_code };
        let done: Result<t::Transition, _> = self.client.post("cardtransitions", &request, ctx).await;
        let (state_now, fulfillment) = match done {
            Ok(tr) => (tr.state, tr.fulfillment_status),
            Err(e) if t::is_token_conflict(&e) => {
                // Our transition token exists: it was applied if the card is there now.
                let now: t::Card = self.client.get("cards", card.processor_reference, ctx).await?;
                if now.state != state {
                    return Err(e);
                }
                (now.state, now.fulfillment_status)
            }
            Err(e) => return Err(e),
        };
        Ok(CardAnswer {
            processor_reference: Some(card.processor_reference.to_owned()),
            state: Some(t::card_state(&state_now, fulfillment.as_deref())?),
            ..CardAnswer::default()
        })
    }

    async fn set_pin(&self, card: &CardRef<'_>, block: &str, ctx: &CallContext) -> Result<CardAnswer, AdapterError> {
        let request = t::ControlTokenRequest { card_token: card.processor_reference, controltoken_type: "SET_PIN" };
        let control: t::ControlToken = self.client.post("pins/controltoken", &request, ctx).await?;
        self.client.put_empty("pins", &t::PinRequest { control_token: &control.control_token, pin: block }, ctx).await?;
        Ok(CardAnswer { processor_reference: Some(card.processor_reference.to_owned()), ..CardAnswer::default() })
    }

    async fn hosted_pin(&self, card: &CardRef<'_>, ctx: &CallContext) -> Result<CardAnswer, AdapterError> {
        let now: t::Card = self.client.get("cards", card.processor_reference, ctx).await?;
        if now.pin_is_set != Some(true) {
            return Err(invalid("the hosted PIN flow has not set a PIN on this card"));
        }
        card_answer(&now)
    }

    async fn replace(
        &self,
        old: &CardRef<'_>,
        new_card_id: &str,
        reason: ReplaceReason,
        shipping: Option<&ShippingAddress>,
        token: &str,
        ctx: &CallContext,
    ) -> Result<CardAnswer, AdapterError> {
        let current: t::Card = self.client.get("cards", old.processor_reference, ctx).await?;
        let user_token = current_user(&current, old)?;
        let product = current_product(&current, old)?;
        let (reissue, new_pan, fulfillment_reason) = match reason {
            ReplaceReason::Lost | ReplaceReason::Stolen => {
                if current.state != "TERMINATED" {
                    let code = if reason == ReplaceReason::Lost { "10" } else { "11" };
                    self.transition(old, "TERMINATED", code, &token_for(&format!("{token}:terminate")), ctx).await?;
                }
                (None, Some(old.processor_reference.to_owned()), "LOST_STOLEN")
            }
            ReplaceReason::Damaged | ReplaceReason::Expiring => {
                let why = if reason == ReplaceReason::Expiring { "EXPIRED" } else { "NEW" };
                (Some(old.processor_reference.to_owned()), None, why)
            }
        };
        let request = t::CardRequest {
            token: token.to_owned(),
            user_token,
            card_product_token: product,
            metadata: t::card_metadata(new_card_id),
            fulfillment: shipping.map(|s| t::Fulfillment::new(s, fulfillment_reason)),
            reissue_pan_from_card_token: reissue,
            new_pan_from_card_token: new_pan,
        };
        self.create_card(new_card_id, &request, ctx).await
    }

    async fn provision(&self, card: &CardRef<'_>, spec: &switchyard_canonical::card::ProvisionSpec, ctx: &CallContext) -> Result<CardAnswer, AdapterError> {
        let missing = |what: &str| invalid(&format!("provisioning needs {what}"));
        let provisioning = match spec.wallet {
            Wallet::ApplePay => {
                let request = t::ApplePayRequest {
                    card_token: card.processor_reference,
                    device_type: "MOBILE_PHONE",
                    provisioning_app_version: APP_VERSION,
                    certificates: &spec.certificates,
                    nonce: spec.nonce.as_deref().ok_or_else(|| missing("nonce"))?,
                    nonce_signature: spec.nonce_signature.as_deref().ok_or_else(|| missing("nonce_signature"))?,
                };
                let r: t::ApplePayResponse = self.client.post("digitalwalletprovisionrequests/applepay", &request, ctx).await?;
                Provisioning::Requested { activation_data: r.activation_data, encrypted_data: Some(r.encrypted_pass_data), ephemeral_public_key: Some(r.ephemeral_public_key) }
            }
            Wallet::GooglePay => {
                let device_id = spec.device_id.as_deref().ok_or_else(|| missing("device_id"))?;
                let wallet_account_id = spec.wallet_account_id.as_deref().ok_or_else(|| missing("wallet_account_id"))?;
                if device_id.len() > 24 || wallet_account_id.len() > 50 {
                    return Err(invalid("device_id (<= 24) or wallet_account_id (<= 50) too long for Marqeta"));
                }
                let request = t::GooglePayRequest {
                    card_token: card.processor_reference,
                    device_type: "MOBILE_PHONE",
                    provisioning_app_version: APP_VERSION,
                    device_id,
                    wallet_account_id,
                };
                let r: t::GooglePayResponse = self.client.post("digitalwalletprovisionrequests/androidpay", &request, ctx).await?;
                Provisioning::Requested { activation_data: r.push_tokenize_request_data.opaque_payment_card, encrypted_data: None, ephemeral_public_key: None }
            }
        };
        Ok(CardAnswer { processor_reference: Some(card.processor_reference.to_owned()), provisioning: Some(provisioning), ..CardAnswer::default() })
    }

    async fn open_dispute(&self, spec: &switchyard_canonical::card::DisputeSpec, token: &str, ctx: &CallContext) -> Result<CardAnswer, AdapterError> {
        let request = t::ChargebackRequest {
            token: token.to_owned(),
            transaction_token: &checked_token("transaction_ref", &spec.transaction_ref)?,
            amount: t::major_units(spec.amount_minor, &spec.currency),
            channel: "ISSUER",
            reason_description: t::reason_description(spec.reason),
            memo: &spec.dispute_id,
            credit_user: true,
        };
        let created: Result<t::Chargeback, _> = self.client.post("chargebacks", &request, ctx).await;
        let cb = match created {
            Ok(cb) => cb,
            Err(e) if t::is_token_conflict(&e) => match self.client.get::<t::Chargeback>("chargebacks", token, ctx).await {
                Ok(cb) => cb,
                Err(g) if g.http_status == Some(404) => return Err(e),
                Err(g) => return Err(g),
            },
            Err(e) => return Err(e),
        };
        Ok(CardAnswer { dispute_state: Some(t::dispute_state(&cb.state)?), dispute_reference: Some(cb.token), ..CardAnswer::default() })
    }
}

/// `sy` + 34 hex digits of SHA-256(key): 36 characters, deterministic.
fn token_for(key: &str) -> String {
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    format!("sy{}", &digest[..t::MAX_TOKEN_LEN - 2])
}

fn invalid(message: &str) -> AdapterError {
    AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, message.to_owned())
}

fn checked_token(field: &str, value: &str) -> Result<String, AdapterError> {
    if value.is_empty() || value.len() > t::MAX_TOKEN_LEN {
        return Err(invalid(&format!("{field} must be 1 to {} characters for Marqeta", t::MAX_TOKEN_LEN)));
    }
    Ok(value.to_owned())
}

fn card_answer(card: &t::Card) -> Result<CardAnswer, AdapterError> {
    Ok(CardAnswer {
        processor_reference: Some(card.token.clone()),
        last_four: card.last_four.clone(),
        state: Some(card.our_state()?),
        ..CardAnswer::default()
    })
}

fn current_user(card: &t::Card, old: &CardRef<'_>) -> Result<String, AdapterError> {
    card.user_token.clone().ok_or_else(|| invalid(&format!("Marqeta card {} has no user_token", old.processor_reference)))
}

fn current_product(card: &t::Card, old: &CardRef<'_>) -> Result<String, AdapterError> {
    card.card_product_token.clone().ok_or_else(|| invalid(&format!("Marqeta card {} has no card_product_token", old.processor_reference)))
}

impl crate::tls_rotation::WithClient for MarqetaAdapter {
    fn with_client(self, client: crate::tls_rotation::LiveClient) -> Self {
        Self { client: self.client.with_http(client), ..self }
    }
}

#[cfg(test)]
mod tests;
