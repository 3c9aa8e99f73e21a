//! `/v1/openbanking/consents`: a consent created, completed, refreshed and
//! revoked as the canonical [`OpenBankingCommand`] on
//! `openbanking.commands.v1`; its state from `openbanking.outcomes.v1`.
//! The commands on an existing consent are in [`crate::openbanking_actions`],
//! the payment a consent is for in [`crate::openbanking_payments`].
//!
//! The one thing of the provider's a view shows is the hand-off
//! (`handoff`): a Link token or an authorization URL, short-lived and
//! useless without the user, which the product must show the user to
//! grant the consent. It is shown only while the consent awaits the user.
//! No access or refresh token is ever in an outcome, so none can reach a
//! view; the completion's public token or authorization code goes to the
//! bus (single use, minutes long) and is never answered back.

use crate::auth::Team;
use crate::payouts::{refuses_another_command, ViewError};
use crate::problem::{GetProblems, PostProblems, Problem};
use crate::projection::{json, Projected, Projects};
use crate::resource::{self, Answer, Prepared, QueryMap, ACCEPTED};
use crate::Gateway;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use switchyard_bus::Outbound;
use switchyard_canonical::openbanking::{ConsentScope, ConsentSpec, OpenBankingAction, OpenBankingCommand, PaymentSpec};
use switchyard_canonical::openbanking_outcome::{OpenBankingKind, OpenBankingOutcome};

/// The open banking worker's domain: claims on both sides meet under it,
/// for consents and payments alike.
pub const DOMAIN: &str = "openbanking";

/// `POST /v1/openbanking/consents` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    /// What the user is asked to grant; `payment_initiation` needs `payment`.
    #[schema(min_items = 1)]
    pub scopes: Vec<ScopeRequest>,
    /// Core banking's id for the user; no personal data.
    #[schema(min_length = 1, max_length = 128)]
    pub customer_ref: String,
    /// The institution's country, ISO 3166-1 alpha-2 (e.g. `GB`).
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: String,
    /// Our catalog's institution id, when the product knows the bank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution_id: Option<String>,
    /// Where the provider sends the user back: https (http only on localhost).
    pub redirect_uri: String,
    /// How long the grant should last, when less than the provider's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 730)]
    pub access_days: Option<i32>,
    /// The one payment a `payment_initiation` consent is for; its id is
    /// the consent view's `payment_id`, made with `POST /v1/openbanking/payments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentTermsRequest>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeRequest {
    Accounts,
    Balances,
    Transactions,
    PaymentInitiation,
}

/// A payment's terms: from the user's account to one of ours.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentTermsRequest {
    /// In minor units (pence, cents).
    #[schema(minimum = 1)]
    pub amount_minor: i64,
    /// ISO 4217, upper case.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// Our name for the receiving account, as the partner catalog configures it.
    #[schema(min_length = 1)]
    pub beneficiary_ref: String,
    /// Shown on both statements.
    #[schema(min_length = 1, max_length = 140)]
    pub reference: String,
}

/// The consent id a key stands for: `con_` and 24 hex digits of a digest.
pub fn consent_id(idempotency_key: &str) -> String {
    resource::derived_id("con", DOMAIN, idempotency_key)
}

/// The id of the one payment a consent is for: derived from the consent,
/// so the payment route names it without reading anything.
pub fn payment_id(consent_id: &str) -> String {
    resource::derived_id("obpay", DOMAIN, consent_id)
}

pub(crate) fn command(consent_id: &str, idempotency_key: &str, action: OpenBankingAction) -> OpenBankingCommand {
    OpenBankingCommand {
        consent_id: consent_id.to_owned(),
        idempotency_key: idempotency_key.to_owned(),
        action,
        consent: None,
        completion: None,
        refresh: None,
        payment: None,
        reason: None,
        tenant_id: None,
        requested_at_ms: switchyard_canonical::now_ms(),
    }
}

impl PaymentTermsRequest {
    pub(crate) fn to_canonical(&self, payment_id: String) -> PaymentSpec {
        PaymentSpec {
            payment_id,
            amount_minor: self.amount_minor,
            currency: self.currency.clone(),
            beneficiary_ref: self.beneficiary_ref.clone(),
            reference: self.reference.clone(),
        }
    }
}

impl ConsentRequest {
    pub fn to_command(&self, idempotency_key: &str) -> Result<OpenBankingCommand, String> {
        let id = consent_id(idempotency_key);
        let mut c = command(&id, idempotency_key, OpenBankingAction::CreateConsent);
        c.consent = Some(ConsentSpec {
            scopes: self
                .scopes
                .iter()
                .map(|s| match s {
                    ScopeRequest::Accounts => ConsentScope::Accounts,
                    ScopeRequest::Balances => ConsentScope::Balances,
                    ScopeRequest::Transactions => ConsentScope::Transactions,
                    ScopeRequest::PaymentInitiation => ConsentScope::PaymentInitiation,
                })
                .collect(),
            customer_ref: self.customer_ref.clone(),
            country: self.country.clone(),
            institution_id: self.institution_id.clone(),
            redirect_uri: self.redirect_uri.clone(),
            access_days: self.access_days,
        });
        c.payment = self.payment.as_ref().map(|p| p.to_canonical(payment_id(&id)));
        c.validate()?;
        Ok(c)
    }
}

/// What the product shows the user to grant or renew a consent, or to
/// authorize a payment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct HandoffView {
    /// `link_token` (initialise the provider's SDK with it) or
    /// `authorization_url` (send the user's browser there).
    pub kind: String,
    pub value: String,
    /// After this, ask for a new one (create the consent again with a new key).
    pub expires_at_ms: i64,
}

impl HandoffView {
    pub(crate) fn of(outcome: &OpenBankingOutcome) -> Option<Self> {
        let handoff = outcome.handoff.as_ref().filter(|_| outcome.kind == OpenBankingKind::AuthRequired)?;
        Some(Self { kind: lower(&name_of(&handoff.kind)?), value: handoff.value.clone(), expires_at_ms: handoff.expires_at_ms })
    }
}

pub(crate) fn name_of<T: Serialize>(value: &T) -> Option<String> {
    serde_json::to_value(value).ok()?.as_str().map(str::to_owned)
}

pub(crate) fn lower(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Where a consent stands, as `GET` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ConsentView {
    pub id: String,
    /// `accepted` (queued, no outcome yet), then the consent's state:
    /// `requested`, `awaiting_user`, `active`, `expiring`, `login_required`,
    /// `expired` or `revoked`; `rejected` or `failed` when none was made.
    pub status: String,
    /// The last command's answer in our words: `auth_required` (show
    /// `handoff`), `consent_active`, `data_refreshed`, `partial_data`,
    /// `institution_unavailable`, `login_required`, `revoked`, `rejected`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// While the consent awaits the user: what to show them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<HandoffView>,
    /// The provider holding the consent, by our catalog name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution_id: Option<String>,
    /// When the grant ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// `institution_unavailable`: when asking again may help, from `updated_at_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<i64>,
    /// Pages of data the last refresh published on `openbanking.data.v1`.
    pub data_pages: i32,
    /// Why a rejected command was refused: `consent_exists`,
    /// `consent_closed`, `illegal_transition`, `scope_not_granted`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// The one payment a `payment_initiation` consent is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ViewError>,
    pub updated_at_ms: i64,
}

impl ConsentView {
    fn accepted(command: &OpenBankingCommand) -> Self {
        Self {
            id: command.consent_id.clone(),
            status: ACCEPTED.into(),
            answer: None,
            handoff: None,
            provider: None,
            institution_id: command.consent.as_ref().and_then(|c| c.institution_id.clone()),
            expires_at_ms: None,
            retry_after_ms: None,
            data_pages: 0,
            refusal: None,
            payment_id: command.payment.as_ref().map(|p| p.payment_id.clone()),
            error: None,
            updated_at_ms: command.requested_at_ms,
        }
    }

    /// `None` for an answer about no consent of ours, and for a payment's
    /// answer (the payment's view tells it).
    pub fn of_outcome(outcome: &OpenBankingOutcome) -> Option<Self> {
        if outcome.action == OpenBankingAction::InitiatePayment {
            return None;
        }
        let status = match outcome.consent_state {
            Some(state) => lower(state.as_str()),
            None if outcome.action == OpenBankingAction::CreateConsent => lower(outcome.kind.as_str()),
            None => return None,
        };
        Some(Self {
            id: outcome.consent_id.clone(),
            status,
            answer: Some(lower(outcome.kind.as_str())),
            handoff: HandoffView::of(outcome),
            provider: outcome.provider.clone(),
            institution_id: outcome.institution_id.clone(),
            expires_at_ms: outcome.consent_expires_at_ms,
            retry_after_ms: outcome.retry_after_ms,
            data_pages: outcome.data_pages,
            refusal: outcome.refusal.map(|r| r.as_str().to_owned()),
            payment_id: outcome.payment.as_ref().map(|p| p.payment_id.clone()),
            error: outcome.error.as_ref().map(ViewError::of),
            updated_at_ms: outcome.completed_at_ms,
        })
    }
}

/// `GET /v1/openbanking/consents?status=` answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConsentList {
    pub items: Vec<ConsentView>,
}

/// Statuses `GET /v1/openbanking/consents?status=` accepts.
pub const LISTABLE_STATUSES: &[&str] =
    &["accepted", "requested", "awaiting_user", "active", "expiring", "login_required", "expired", "revoked", "rejected", "failed"];

/// `openbanking.outcomes.v1` to each consent's view and each payment's.
pub(crate) struct OpenBankingOutcomes;

impl Projects for OpenBankingOutcomes {
    type Message = OpenBankingOutcome;
    const DOMAIN: &'static str = DOMAIN;

    fn project(outcome: &OpenBankingOutcome) -> Option<Projected> {
        if refuses_another_command(outcome.kind == OpenBankingKind::Rejected, outcome.error.as_ref()) {
            return None;
        }
        let view = ConsentView::of_outcome(outcome)?;
        Some(Projected { resource_id: view.id.clone(), status: view.status.clone(), body: json(&view), observed_at_ms: outcome.completed_at_ms })
    }

    fn project_all(outcome: &OpenBankingOutcome) -> Vec<(&'static str, Projected)> {
        let consent = Self::project(outcome).map(|state| (DOMAIN, state));
        let payment = crate::openbanking_payments::project_outcome(outcome).map(|state| (crate::openbanking_payments::DOMAIN, state));
        consent.into_iter().chain(payment).collect()
    }
}

pub(crate) fn prepared(app: &Gateway, digest: String, command: &OpenBankingCommand, location: String, resource_id: String, answer: Answer) -> Result<Prepared, Problem> {
    Ok(Prepared {
        domain: DOMAIN,
        resource_id,
        location,
        digest,
        record: Outbound {
            topic: app.config.topics.openbanking_commands.clone(),
            // Everything about a consent, its payment included, is keyed by it.
            key: Some(command.consent_id.clone().into_bytes()),
            payload: resource::encode(&app.encoders.openbanking, command, "open banking")?,
            headers: Vec::new(),
        },
        schema_id: app.encoders.openbanking.schema_id(),
        answer,
    })
}

fn create(app: &Gateway, team: &Team, key: &str, body: &[u8]) -> Result<Prepared, Problem> {
    let request: ConsentRequest = resource::parse(body)?;
    let command = request.to_command(key).map_err(Problem::invalid)?;
    let view = ConsentView::accepted(&command);
    let answer = Answer::Created { status: ACCEPTED, body: json(&view) };
    prepared(app, resource::digest(&team.name, "", &request), &command, format!("/v1/openbanking/consents/{}", command.consent_id), command.consent_id.clone(), answer)
}

/// A consent's view as last projected, or 404.
pub(crate) async fn consent(app: &Gateway, id: &str) -> Result<String, Problem> {
    // PostgreSQL text cannot hold NUL: no consent has such an id.
    if id.contains('\0') {
        return Err(Problem::not_found("consent"));
    }
    match app.store.resource(DOMAIN, id).await {
        Ok(Some(state)) => Ok(state.body),
        Ok(None) => Err(Problem::not_found("consent")),
        Err(e) => {
            tracing::warn!(error = %e, "consent not read");
            Err(Problem::store_unavailable())
        }
    }
}

/// Create a consent. Answered 202 once the command is on the bus; follow
/// `Location` until `answer` is `auth_required` and show the user `handoff`.
#[utoipa::path(
    post, path = "/v1/openbanking/consents", tag = "openbanking", operation_id = "createConsent",
    security(("api_key" = ["openbanking:write"])),
    request_body = ConsentRequest,
    params(
        ("Idempotency-Key" = String, Header, description = "Required; 1 to 64 printable ASCII. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = ConsentView,
            headers(("Location" = String, description = "The consent's URL")),
            links(("GetConsent" = (operation_id = "getConsent", parameters(("id" = "$response.body#/id")), description = "The consent's state and hand-off")))),
        (status = 403, description = "The team lacks openbanking:write", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_consent(
    State(app): State<Arc<Gateway>>,
    Extension(team): Extension<Arc<Team>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    resource::submit(&app, &team, &headers, body, |key, body| {
        let prepared = create(&app, &team, &key, &body);
        async move { prepared }
    })
    .await
}

/// A consent's current state, with `ETag`; `?wait=` holds the call until it
/// changes (or, without `If-None-Match`, until its first outcome).
#[utoipa::path(
    get, path = "/v1/openbanking/consents/{id}", tag = "openbanking", operation_id = "getConsent",
    security(("api_key" = ["openbanking:read"])),
    params(
        ("id" = String, Path, description = "The id from the 202's body or Location"),
        ("wait" = Option<String>, Query, description = "Long poll: `10s`, `500ms` or seconds, capped by the gateway"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
    ),
    responses(
        (status = 200, description = "The consent", body = ConsentView, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since If-None-Match"),
        (status = 400, description = "Invalid wait", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks openbanking:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such consent", body = Problem, content_type = "application/problem+json"),
        GetProblems,
    )
)]
pub(crate) async fn get_consent(State(app): State<Arc<Gateway>>, Path(id): Path<String>, query: QueryMap, headers: HeaderMap) -> Response {
    resource::current(&app, DOMAIN, "consent", &id, query, &headers).await
}

/// Consents in one status, oldest change first.
#[utoipa::path(
    get, path = "/v1/openbanking/consents", tag = "openbanking", operation_id = "listConsents",
    security(("api_key" = ["openbanking:read"])),
    params(
        ("status" = String, Query, description = "One of accepted, requested, awaiting_user, active, expiring, login_required, expired, revoked, rejected, failed"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "The consents", body = ConsentList),
        (status = 400, description = "Missing or unknown status, or limit out of range", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks openbanking:read", body = Problem, content_type = "application/problem+json"),
        GetProblems,
    )
)]
pub(crate) async fn list_consents(State(app): State<Arc<Gateway>>, query: QueryMap) -> Response {
    resource::list(&app, DOMAIN, LISTABLE_STATUSES, query).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openbanking_actions::{CompletionRequest, RefreshRequest};
    use switchyard_canonical::openbanking_consent::ConsentState;
    use switchyard_canonical::openbanking_outcome::{Handoff, HandoffKind};

    fn request() -> ConsentRequest {
        serde_json::from_str(r#"{"scopes":["accounts","transactions"],"customer_ref":"cust-1","country":"GB","redirect_uri":"https://app.example.com/cb"}"#)
            .expect("parses")
    }

    #[test]
    fn requests_become_canonical_commands_and_a_long_lived_token_is_refused() {
        let command = request().to_command("key-1").expect("valid");
        assert_eq!((command.consent_id.as_str(), command.action), (consent_id("key-1").as_str(), OpenBankingAction::CreateConsent));
        assert!(command.consent_id.len() <= switchyard_canonical::openbanking::MAX_CONSENT_ID_LEN);
        let mut pays = request();
        pays.scopes.push(ScopeRequest::PaymentInitiation);
        assert!(pays.to_command("k").is_err_and(|e| e.contains("payment")));
        pays.payment = Some(PaymentTermsRequest { amount_minor: 500, currency: "GBP".into(), beneficiary_ref: "main-gbp".into(), reference: "inv 1".into() });
        let c = pays.to_command("k").expect("valid");
        assert_eq!(c.payment.map(|p| p.payment_id), Some(payment_id(&consent_id("k"))));
        let leaked = CompletionRequest { public_token: Some("access-sandbox-1234".into()), authorization_code: None };
        assert!(leaked.to_command("con_1", "k").is_err_and(|e| e.contains("access token")));
        let refresh: RefreshRequest = serde_json::from_str("{}").expect("parses");
        assert!(refresh.to_command("con_1", "k").expect("valid").refresh.is_some_and(|r| r.datasets.is_empty()));
    }

    #[test]
    fn the_hand_off_is_shown_while_the_user_is_awaited_and_no_provider_reference_ever() {
        let command = request().to_command("key-1").expect("valid");
        let mut outcome = OpenBankingOutcome::new(&command, OpenBankingKind::AuthRequired, 10);
        outcome.consent_state = Some(ConsentState::AwaitingUser);
        outcome.handoff = Some(Handoff { kind: HandoffKind::LinkToken, value: "link-sandbox-1".into(), expires_at_ms: 99 });
        outcome.provider_reference = Some("item-secret-ish".into());
        let states = OpenBankingOutcomes::project_all(&outcome);
        assert_eq!(states.len(), 1, "a consent, no payment");
        let (domain, state) = &states[0];
        assert_eq!((*domain, state.status.as_str()), (DOMAIN, "awaiting_user"));
        assert!(state.body.contains("\"kind\":\"link_token\"") && state.body.contains("link-sandbox-1"), "{}", state.body);
        assert!(!state.body.contains("item-secret-ish"), "{}", state.body);
        outcome.kind = OpenBankingKind::ConsentActive;
        outcome.consent_state = Some(ConsentState::Active);
        let view = ConsentView::of_outcome(&outcome).expect("view");
        assert_eq!((view.status.as_str(), view.handoff), ("active", None), "no hand-off once granted");
    }
}
