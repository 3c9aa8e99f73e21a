//! Lithic (card issuing), from Lithic's OpenAPI document
//! (github.com/lithic-com/lithic-openapi `lithic-openapi.yml` @ `225e0708`,
//! 2026-08-20; the operations used are trimmed in
//! `tests/contracts/lithic/cards.json`). Webhooks follow Standard Webhooks
//! (`crate::webhooks::Scheme::StandardWebhooks`), mapped in [`webhook`].
//!
//! Auth: the API key as the bare `Authorization` value.
//!
//! | call | Lithic |
//! |---|---|
//! | ISSUE | `POST /v1/cards` {type, memo = our card id, product_id + shipping_address (physical), state PAUSED (virtual)} |
//! | ACTIVATE / SUSPEND / REINSTATE / TERMINATE | `PATCH /v1/cards/{token}` state OPEN / PAUSED / OPEN / CLOSED |
//! | SET_PIN | `PATCH /v1/cards/{token}` {pin: the encrypted PIN block, base64} |
//! | REPLACE | `GET` the old card, `POST /v1/cards` {replacement_for, replacement_substatus, memo = new card id}, then for lost/stolen `PATCH` the old card CLOSED |
//! | PROVISION_TOKEN | `POST /v1/cards/{token}/provision` {digital_wallet, ...} |
//! | OPEN_DISPUTE | `POST /v1/disputes` {amount, reason, transaction_token} |
//! | SUBMIT_DISPUTE_EVIDENCE | `POST /v1/disputes/{token}/evidences` {filename} |
//!
//! Virtual cards are created PAUSED and opened by ACTIVATE, because our
//! lifecycle has an ISSUED state for them and Lithic has none; the ISSUE
//! answer then reports ISSUED, not SUSPENDED. REPLACE always makes a new card
//! (a new token for the new card id): Lithic's `reissue`/`renew` keep the old
//! token and PAN, which our model of two linked card ids cannot express.
//!
//! Idempotency: Lithic documents `Idempotency-Key` (a UUID, kept 24 h) on
//! `POST /v1/cards`; it is also sent on the other POSTs (harmless if
//! ignored). Our keys are free text, so [`LithicAdapter::provider_key`]
//! derives a name-based UUID (v5, SHA-1) from a key that is not already a
//! UUID: the same key always gives the same UUID, so a retry is recognised.
//! `PATCH` carries no key: setting a state is idempotent by nature, and a
//! refusal because the card already is in the target state (a retry after
//! an ambiguous first attempt) is resolved by reading the card.
//! Past the key's retention, [`LithicAdapter::find`] looks the card up by
//! `memo` (`GET /v1/cards?memo=`), never creating anything.
//!
//! The PAN and CVV: never requested and never deserialized (no wire type has
//! the fields); request and response bodies are never logged.
//!
//! UNCONFIRMED: the hex -> base64 re-encoding of our PIN block (Lithic
//! documents its own encrypted PIN block format); evidence upload (Lithic
//! returns an `upload_url` for the document bytes, which the holder of the
//! document must PUT; the adapter registers the evidence under the
//! document reference's file name only).

mod transformers;
pub(crate) mod webhook;

#[cfg(test)]
mod tests;

use crate::cards::{CardAnswer, CardCall, CardRef};
use crate::http::{self, traced, Transport};
use crate::secret::ApiKey;
use crate::{AdapterError, CallContext};
use serde::Serialize;
use switchyard_canonical::card::ReplaceReason;
use switchyard_canonical::{ErrorClass, ErrorCode};
use transformers::{invalid, map_error, CardList, CreateCard, CreateDispute, CreateEvidence, LithicAddress, LithicCard, LithicDispute, LithicError, LithicEvidence, Provision, ProvisionReply, UpdateCard};

/// Namespace of the UUIDs derived from our idempotency keys (a v4 UUID
/// chosen once for switchyard; changing it would change every derived key).
const KEY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_2a4e_8b7d_4c3a_9e51_d2a7_0b3f_58c1);
/// Pages of 100 cards [`LithicAdapter::find`] reads.
const MAX_FIND_PAGES: usize = 10;

#[derive(Debug, Clone)]
pub struct LithicAdapter {
    name: String,
    base_url: String,
    api_key: ApiKey,
    /// Replaced when the client certificate rotates ([`WithClient`](crate::tls_rotation::WithClient)).
    http: crate::tls_rotation::LiveClient,
}

impl LithicAdapter {
    pub fn new(name: impl Into<String>, base_url: &str, api_key: impl Into<ApiKey>, transport: Transport) -> Result<Self, AdapterError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base_url)
            .map_err(|e| AdapterError::new(ErrorClass::ManualRepair, ErrorCode::InvalidRequest, format!("base_url: {e}")))?;
        Ok(Self { name: name.into(), base_url, api_key: api_key.into(), http: http::client(transport)?.into() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Our key as the UUID Lithic wants: itself if it is one, else a
    /// deterministic v5 UUID of it.
    pub fn provider_key(&self, idempotency_key: &str) -> String {
        if transformers::is_uuid(idempotency_key) {
            return idempotency_key.to_ascii_lowercase();
        }
        uuid_v5(idempotency_key).to_string()
    }

    pub async fn call(&self, call: &CardCall<'_>, provider_key: &str, ctx: &CallContext) -> Result<CardAnswer, AdapterError> {
        match call {
            CardCall::Issue { card_id, spec } => {
                let body = CreateCard::issue(card_id, spec)?;
                let paused = body.state == Some("PAUSED");
                let card: LithicCard = self.send(self.post("/v1/cards", provider_key, &body), ctx).await?;
                Ok(card.answer(paused))
            }
            CardCall::Activate { card } | CardCall::Reinstate { card } => self.set_state(card, "OPEN", None, ctx).await,
            CardCall::Suspend { card } => self.set_state(card, "PAUSED", None, ctx).await,
            CardCall::Terminate { card } => self.set_state(card, "CLOSED", None, ctx).await,
            CardCall::SetPin { card, pin } => {
                let body = UpdateCard { pin: Some(transformers::pin_block(pin)?), ..UpdateCard::default() };
                let updated: LithicCard = self.send(self.patch(card, &body), ctx).await?;
                Ok(updated.answer(false))
            }
            CardCall::Replace { card, new_card_id, reason, shipping } => self.replace(card, new_card_id, *reason, *shipping, provider_key, ctx).await,
            CardCall::ProvisionToken { card, spec } => {
                let path = format!("/v1/cards/{}/provision", seg(card.processor_reference));
                let reply: ProvisionReply = self.send(self.post(&path, provider_key, &Provision::new(spec)), ctx).await?;
                Ok(CardAnswer { processor_reference: Some(card.processor_reference.to_owned()), provisioning: Some(reply.into_provisioning()), ..CardAnswer::default() })
            }
            CardCall::OpenDispute { spec, .. } => {
                let body = CreateDispute {
                    amount: spec.amount_minor,
                    reason: transformers::dispute_reason(spec.reason),
                    transaction_token: &spec.transaction_ref,
                    customer_note: format!("switchyard dispute {}", spec.dispute_id),
                };
                let dispute: LithicDispute = self.send(self.post("/v1/disputes", provider_key, &body), ctx).await?;
                Ok(dispute.answer())
            }
            CardCall::SubmitDisputeEvidence { dispute_reference, spec, .. } => {
                let filename = spec.document_ref.rsplit(['/', ':']).next().filter(|f| !f.is_empty()).unwrap_or(&spec.document_ref);
                let path = format!("/v1/disputes/{}/evidences", seg(dispute_reference));
                let ev: LithicEvidence = self.send(self.post(&path, provider_key, &CreateEvidence { filename }), ctx).await?;
                Ok(CardAnswer { dispute_reference: Some(ev.dispute_token), ..CardAnswer::default() })
            }
        }
    }

    /// What Lithic did with `call` after an ambiguous attempt (a timeout, a
    /// reset connection, a 5xx that may have executed), asked without
    /// sending it again: `Some` when Lithic shows it done, `None` when it
    /// does not (yet); then the same key may be sent again, Lithic replays
    /// or refuses it while the first is in flight. A card is found by the
    /// `memo` we set (our card id), a state by reading the card. A REPLACE
    /// answers `None` although its new card could be found: for a lost or
    /// stolen card the old one must be closed too, which only sending it
    /// again (replayed by key, the close idempotent) makes sure of. PIN,
    /// provisioning and disputes leave nothing we could read back by our
    /// key, so they answer `None`.
    pub async fn settle(&self, call: &CardCall<'_>, ctx: &CallContext) -> Result<Option<CardAnswer>, AdapterError> {
        let target = match call {
            CardCall::Issue { card_id, .. } => return self.find_issued(card_id, ctx).await,
            CardCall::Activate { card } | CardCall::Reinstate { card } => (card, "OPEN"),
            CardCall::Suspend { card } => (card, "PAUSED"),
            CardCall::Terminate { card } => (card, "CLOSED"),
            CardCall::Replace { .. } | CardCall::SetPin { .. } | CardCall::ProvisionToken { .. } | CardCall::OpenDispute { .. } | CardCall::SubmitDisputeEvidence { .. } => {
                return Ok(None)
            }
        };
        let (card, state) = target;
        let current: LithicCard = self.send(self.authed(self.http.current().get(self.card_url(card))), ctx).await?;
        Ok((current.state == state).then(|| current.answer(false)))
    }

    /// The card Lithic holds for our card id (its `memo`), without creating
    /// anything: what a worker asks once Lithic may have forgotten our key.
    /// Two cards for one card id is a double issuance: a person must look.
    pub async fn find(&self, card_id: &str, ctx: &CallContext) -> Result<Option<CardAnswer>, AdapterError> {
        self.find_card(card_id, false, ctx).await
    }

    /// [`Self::find`] for an ISSUE we never saw answered: a virtual card
    /// still PAUSED is the one we created paused, awaiting ACTIVATE (issued,
    /// not suspended), as in the ISSUE's own answer.
    pub async fn find_issued(&self, card_id: &str, ctx: &CallContext) -> Result<Option<CardAnswer>, AdapterError> {
        self.find_card(card_id, true, ctx).await
    }

    async fn find_card(&self, card_id: &str, as_issued: bool, ctx: &CallContext) -> Result<Option<CardAnswer>, AdapterError> {
        let mut found: Vec<LithicCard> = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_FIND_PAGES {
            let mut query = vec![("memo", card_id.to_owned()), ("page_size", "100".to_owned())];
            if let Some(a) = &after {
                query.push(("starting_after", a.clone()));
            }
            let req = self.authed(self.http.current().get(format!("{}/v1/cards", self.base_url)).query(&query));
            let page: CardList = self.send(req, ctx).await?;
            after = page.data.last().map(|c| c.token.clone());
            found.extend(page.data.into_iter().filter(|c| c.memo.as_deref() == Some(card_id)));
            if !page.has_more || after.is_none() {
                return match found.as_slice() {
                    [] => Ok(None),
                    [one] => Ok(Some(one.answer(as_issued && one.kind != "PHYSICAL"))),
                    many => Err(AdapterError::new(
                        ErrorClass::ManualRepair,
                        ErrorCode::Unknown,
                        format!("lithic holds {} cards for card {card_id}: {}", many.len(), many.iter().map(|c| c.token.as_str()).collect::<Vec<_>>().join(", ")),
                    )),
                };
            }
        }
        Err(AdapterError::new(ErrorClass::ManualRepair, ErrorCode::Unknown, format!("more than {} cards listed for memo {card_id}", MAX_FIND_PAGES * 100)))
    }

    async fn replace(
        &self,
        card: &CardRef<'_>,
        new_card_id: &str,
        reason: ReplaceReason,
        shipping: Option<&switchyard_canonical::card::ShippingAddress>,
        provider_key: &str,
        ctx: &CallContext,
    ) -> Result<CardAnswer, AdapterError> {
        let old: LithicCard = self.send(self.authed(self.http.current().get(self.card_url(card))), ctx).await?;
        let physical = old.kind == "PHYSICAL";
        let shipping_address = match (physical, shipping) {
            (true, Some(s)) => Some(LithicAddress::new(s)?),
            (true, None) => return Err(invalid("lithic: replacing a physical card needs a shipping address")),
            (false, _) => None,
        };
        let body = CreateCard {
            kind: &old.kind,
            memo: new_card_id,
            // A virtual replacement waits for ACTIVATE like a new card.
            state: (!physical).then_some("PAUSED"),
            product_id: if physical { old.product_id.as_deref() } else { None },
            card_program_token: None,
            shipping_address,
            replacement_for: Some(card.processor_reference),
            replacement_substatus: Some(transformers::replacement_substatus(reason)),
        };
        let new: LithicCard = self.send(self.post("/v1/cards", provider_key, &body), ctx).await?;
        if reason.closes_old_card_now() {
            self.set_state(card, "CLOSED", Some(transformers::replacement_substatus(reason)), ctx).await?;
        }
        Ok(new.answer(!physical))
    }

    /// PATCHes the state; a refusal because the card already is in `state`
    /// (our own earlier attempt went through) is success.
    async fn set_state(&self, card: &CardRef<'_>, state: &'static str, substatus: Option<&'static str>, ctx: &CallContext) -> Result<CardAnswer, AdapterError> {
        let body = UpdateCard { state: Some(state), substatus, pin: None };
        match self.send::<LithicCard>(self.patch(card, &body), ctx).await {
            Ok(updated) => Ok(updated.answer(false)),
            Err(e) if matches!(e.http_status, Some(400 | 422)) => {
                let current: LithicCard = self.send(self.authed(self.http.current().get(self.card_url(card))), ctx).await?;
                if current.state == state {
                    Ok(current.answer(false))
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header(reqwest::header::AUTHORIZATION, self.api_key.current().expose())
    }

    fn card_url(&self, card: &CardRef<'_>) -> String {
        format!("{}/v1/cards/{}", self.base_url, seg(card.processor_reference))
    }

    fn post<B: Serialize>(&self, path: &str, provider_key: &str, body: &B) -> reqwest::RequestBuilder {
        self.authed(self.http.current().post(format!("{}{path}", self.base_url))).header("Idempotency-Key", provider_key).json(body)
    }

    fn patch<B: Serialize>(&self, card: &CardRef<'_>, body: &B) -> reqwest::RequestBuilder {
        self.authed(self.http.current().patch(self.card_url(card))).json(body)
    }

    async fn send<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder, ctx: &CallContext) -> Result<T, AdapterError> {
        http::send_json::<T, LithicError>(traced(req, ctx), map_error).await
    }
}

/// A processor token in a URL path.
fn seg(s: &str) -> String {
    crate::encode::path_segment(s)
}

/// RFC 9562 name-based UUID (version 5, SHA-1) of `name` in [`KEY_NAMESPACE`].
fn uuid_v5(name: &str) -> uuid::Uuid {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(KEY_NAMESPACE.as_bytes());
    ctx.update(name.as_bytes());
    let digest = ctx.finish();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes)
}

crate::tls_rotation::with_client_field!(LithicAdapter);
