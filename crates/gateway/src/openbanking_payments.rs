//! `/v1/openbanking/payments`: the payment a `payment_initiation` consent
//! is for, as INITIATE_PAYMENT on `openbanking.commands.v1` (keyed by the
//! consent, like everything about it). Its state comes from the command's
//! answer on `openbanking.outcomes.v1` and, as the bank moves it for days
//! after, from PAYMENT_UPDATED on `openbanking.events.v1`.
//!
//! A payment consent is for one payment, so the payment's id is derived
//! from the consent's ([`crate::openbanking::payment_id`]): the route names
//! it without reading the consent's terms, and a retry names the same one.

use crate::auth::Team;
use crate::openbanking::{self, lower, HandoffView, PaymentTermsRequest};
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
use switchyard_canonical::openbanking::{OpenBankingAction, OpenBankingCommand};
use switchyard_canonical::openbanking_event::OpenBankingEvent;
use switchyard_canonical::openbanking_outcome::{OpenBankingKind, OpenBankingOutcome};

/// The store's namespace of payment views; their keys are claimed under
/// [`openbanking::DOMAIN`], as on the bus.
pub const DOMAIN: &str = "openbanking_payments";

/// `POST /v1/openbanking/payments` body: the consent's payment, with the
/// terms it was created with.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// The `payment_initiation` consent the payment is made under.
    #[schema(min_length = 1)]
    pub consent_id: String,
    /// The terms the consent was created with, in minor units.
    #[schema(minimum = 1)]
    pub amount_minor: i64,
    /// ISO 4217, upper case.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    #[schema(min_length = 1)]
    pub beneficiary_ref: String,
    #[schema(min_length = 1, max_length = 140)]
    pub reference: String,
}

impl PaymentRequest {
    pub fn to_command(&self, idempotency_key: &str) -> Result<OpenBankingCommand, String> {
        let mut c = openbanking::command(&self.consent_id, idempotency_key, OpenBankingAction::InitiatePayment);
        let terms = PaymentTermsRequest {
            amount_minor: self.amount_minor,
            currency: self.currency.clone(),
            beneficiary_ref: self.beneficiary_ref.clone(),
            reference: self.reference.clone(),
        };
        c.payment = Some(terms.to_canonical(openbanking::payment_id(&self.consent_id)));
        c.validate()?;
        Ok(c)
    }
}

/// Where a payment stands, as `GET` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PaymentView {
    pub id: String,
    pub consent_id: String,
    /// `accepted` (queued, no answer yet), then `authorization_required`
    /// (show `handoff`), `authorizing`, `authorized`, `executed`, `settled`
    /// or `failed`; `rejected` when it was not made (see `answer`).
    pub status: String,
    /// Whether the payment is over (settled, failed, rejected).
    pub terminal: bool,
    /// The last answer in our words when no payment was made:
    /// `login_required`, `consent_expired`, `rejected`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// While the user must authorize it: what to show them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<HandoffView>,
    /// Why it failed: `authorization_failed`, `insufficient_funds`, `returned`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ViewError>,
    pub updated_at_ms: i64,
}

impl PaymentView {
    fn accepted(id: String, command: &OpenBankingCommand) -> Self {
        Self {
            id,
            consent_id: command.consent_id.clone(),
            status: ACCEPTED.into(),
            terminal: false,
            answer: None,
            amount_minor: command.payment.as_ref().map(|p| p.amount_minor),
            currency: command.payment.as_ref().map(|p| p.currency.clone()),
            handoff: None,
            failure: None,
            refusal: None,
            provider: None,
            error: None,
            updated_at_ms: command.requested_at_ms,
        }
    }
}

/// An INITIATE_PAYMENT's answer as its payment's view; `None` for any
/// other command's answer and for a key collision.
pub(crate) fn project_outcome(outcome: &OpenBankingOutcome) -> Option<Projected> {
    if outcome.action != OpenBankingAction::InitiatePayment || refuses_another_command(outcome.kind == OpenBankingKind::Rejected, outcome.error.as_ref()) {
        return None;
    }
    let id = outcome.payment.as_ref().map_or_else(|| openbanking::payment_id(&outcome.consent_id), |p| p.payment_id.clone());
    let (status, terminal, answer) = match &outcome.payment {
        Some(p) => (lower(p.status.as_str()), p.status.terminal(), None),
        // The consent could not make it (not usable, not granted, refused).
        None => ("rejected".to_owned(), true, Some(lower(outcome.kind.as_str()))),
    };
    let view = PaymentView {
        id,
        consent_id: outcome.consent_id.clone(),
        status,
        terminal,
        answer,
        amount_minor: outcome.payment.as_ref().map(|p| p.amount_minor),
        currency: outcome.payment.as_ref().map(|p| p.currency.clone()),
        handoff: HandoffView::of(outcome),
        failure: outcome.payment.as_ref().and_then(|p| p.failure).and_then(|f| openbanking::name_of(&f)).map(|f| lower(&f)),
        refusal: outcome.refusal.map(|r| r.as_str().to_owned()),
        provider: outcome.provider.clone(),
        error: outcome.error.as_ref().map(ViewError::of),
        updated_at_ms: outcome.completed_at_ms,
    };
    Some(Projected { resource_id: view.id.clone(), status: view.status.clone(), body: json(&view), observed_at_ms: outcome.completed_at_ms })
}

/// `openbanking.events.v1` to each payment's view: the moves after the
/// command's answer. Consent changes are told by the outcomes.
pub(crate) struct PaymentEvents;

impl Projects for PaymentEvents {
    type Message = OpenBankingEvent;
    const DOMAIN: &'static str = DOMAIN;

    fn project(event: &OpenBankingEvent) -> Option<Projected> {
        let (OpenBankingKind::PaymentUpdated, Some(id), Some(to)) = (event.kind, event.payment_id.as_ref(), event.to_payment_status) else {
            return None;
        };
        let view = PaymentView {
            id: id.clone(),
            consent_id: event.consent_id.clone(),
            status: lower(to.as_str()),
            terminal: to.terminal(),
            answer: None,
            amount_minor: event.amount_minor,
            currency: event.currency.clone(),
            handoff: None,
            failure: event.payment_failure.and_then(|f| openbanking::name_of(&f)).map(|f| lower(&f)),
            refusal: None,
            provider: Some(event.provider.clone()),
            error: None,
            updated_at_ms: event.occurred_at_ms,
        };
        Some(Projected { resource_id: view.id.clone(), status: view.status.clone(), body: json(&view), observed_at_ms: event.occurred_at_ms })
    }
}

async fn initiate(app: &Gateway, team: &Team, key: String, body: Bytes) -> Result<Prepared, Problem> {
    let request: PaymentRequest = resource::parse(&body)?;
    openbanking::consent(app, &request.consent_id).await?;
    let command = request.to_command(&key).map_err(Problem::invalid)?;
    let id = openbanking::payment_id(&request.consent_id);
    let view = PaymentView::accepted(id.clone(), &command);
    let answer = Answer::CreatedIn { domain: DOMAIN, status: ACCEPTED, body: json(&view) };
    openbanking::prepared(app, resource::digest(&team.name, "", &request), &command, format!("/v1/openbanking/payments/{id}"), id, answer)
}

/// Make the payment a `payment_initiation` consent is for, once the consent
/// is active. Answered 202 once the command is on the bus; follow
/// `Location` (and show the user `handoff` when one is asked for).
#[utoipa::path(
    post, path = "/v1/openbanking/payments", tag = "openbanking", operation_id = "createOpenBankingPayment",
    security(("api_key" = ["openbanking:write"])),
    request_body = PaymentRequest,
    params(
        ("Idempotency-Key" = String, Header, description = "Required; 1 to 64 printable ASCII. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = PaymentView,
            headers(("Location" = String, description = "The payment's URL")),
            links(("GetPayment" = (operation_id = "getOpenBankingPayment", parameters(("id" = "$response.body#/id")), description = "The payment's state")))),
        (status = 403, description = "The team lacks openbanking:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such consent", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_payment(
    State(app): State<Arc<Gateway>>,
    Extension(team): Extension<Arc<Team>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    resource::submit(&app, &team, &headers, body, |key, body| initiate(&app, &team, key, body)).await
}

/// A payment's current state, with `ETag`; `?wait=` holds the call until it
/// changes (or, without `If-None-Match`, until its first answer).
#[utoipa::path(
    get, path = "/v1/openbanking/payments/{id}", tag = "openbanking", operation_id = "getOpenBankingPayment",
    security(("api_key" = ["openbanking:read"])),
    params(
        ("id" = String, Path, description = "The id from the 202's body or Location"),
        ("wait" = Option<String>, Query, description = "Long poll: `10s`, `500ms` or seconds, capped by the gateway"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
    ),
    responses(
        (status = 200, description = "The payment", body = PaymentView, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since If-None-Match"),
        (status = 400, description = "Invalid wait", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks openbanking:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payment", body = Problem, content_type = "application/problem+json"),
        GetProblems,
    )
)]
pub(crate) async fn get_payment(State(app): State<Arc<Gateway>>, Path(id): Path<String>, query: QueryMap, headers: HeaderMap) -> Response {
    resource::current(&app, DOMAIN, "payment", &id, query, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::openbanking_outcome::PaymentResult;
    use switchyard_canonical::openbanking_payment::PaymentStatus;

    fn request() -> PaymentRequest {
        serde_json::from_str(r#"{"consent_id":"con_1","amount_minor":500,"currency":"GBP","beneficiary_ref":"main-gbp","reference":"inv 1"}"#).expect("parses")
    }

    #[test]
    fn a_payment_names_its_consents_payment_and_its_answers_and_moves_project_to_it() {
        let command = request().to_command("key-1").expect("valid");
        let id = openbanking::payment_id("con_1");
        assert_eq!(command.payment.as_ref().map(|p| p.payment_id.as_str()), Some(id.as_str()));
        let mut outcome = OpenBankingOutcome::new(&command, OpenBankingKind::PaymentUpdated, 5);
        outcome.payment = Some(PaymentResult { payment_id: id.clone(), status: PaymentStatus::Authorized, amount_minor: 500, currency: "GBP".into(), provider_reference: Some("pr-1".into()), failure: None });
        let states = crate::openbanking::OpenBankingOutcomes::project_all(&outcome);
        assert_eq!(states.iter().map(|(d, s)| (*d, s.status.as_str())).collect::<Vec<_>>(), [(DOMAIN, "authorized")], "the payment only");
        assert!(!states[0].1.body.contains("pr-1"), "{}", states[0].1.body);
        outcome.payment = None;
        outcome.kind = OpenBankingKind::LoginRequired;
        let refused = project_outcome(&outcome).expect("projected");
        assert_eq!((refused.resource_id.as_str(), refused.status.as_str()), (id.as_str(), "rejected"));
        assert!(refused.body.contains("\"answer\":\"login_required\""), "{}", refused.body);
    }
}
