//! `/v1/payouts`: the request body, its mapping to the canonical
//! [`PayoutCommand`], and the view `GET` answers.
//!
//! The payout id is derived from the Idempotency-Key, so a retried request
//! (even one whose first try was answered 503 and may yet have landed on
//! the bus) publishes the very command of the first try: the worker's claim
//! on `(payouts, key)` then sees an honest duplicate, never a collision.

use crate::auth::Team;
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
use switchyard_canonical::{Beneficiary, Fingerprint, PayoutCommand, PayoutOutcome, PayoutRail, PayoutStatus};

pub const DOMAIN: &str = "payouts";

/// `POST /v1/payouts` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutRequest {
    /// Positive, in the currency's minor unit (cents for EUR).
    #[schema(minimum = 1)]
    pub amount_minor: i64,
    /// ISO 4217, upper case.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    pub beneficiary: BeneficiaryRequest,
    #[serde(default)]
    pub rail: RailRequest,
    /// Shown on the beneficiary's statement.
    pub reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_tier: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BeneficiaryRequest {
    pub name: String,
    pub iban: String,
    /// ISO 3166-1 alpha-2.
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RailRequest {
    #[default]
    Standard,
    Instant,
}

/// The payout id a key stands for: `po_` and 24 hex digits of a digest.
pub fn payout_id(idempotency_key: &str) -> String {
    crate::resource::derived_id("po", DOMAIN, idempotency_key)
}

impl PayoutRequest {
    /// The canonical command, validated by the same rules the worker applies.
    pub fn to_command(&self, idempotency_key: &str) -> Result<PayoutCommand, String> {
        let command = PayoutCommand {
            payout_id: payout_id(idempotency_key),
            idempotency_key: idempotency_key.to_owned(),
            amount_minor: self.amount_minor,
            currency: self.currency.clone(),
            beneficiary: Beneficiary {
                name: self.beneficiary.name.clone(),
                iban: self.beneficiary.iban.clone(),
                country: self.beneficiary.country.clone(),
            },
            rail: match self.rail {
                RailRequest::Standard => PayoutRail::Standard,
                RailRequest::Instant => PayoutRail::Instant,
            },
            reference: self.reference.clone(),
            requested_at_ms: switchyard_canonical::now_ms(),
            tenant_id: self.tenant_id.clone(),
            risk_tier: self.risk_tier.clone(),
        };
        command.validate()?;
        if command.beneficiary.country.len() != 2 || !command.beneficiary.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err("beneficiary.country must be two upper-case ISO 3166-1 letters".into());
        }
        Ok(command)
    }

    /// What makes two requests "the same": the caller and every field,
    /// in a fixed order (JSON key order and whitespace do not matter).
    pub fn digest(&self, team: &str) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        Fingerprint::of_fields(&[team.as_bytes(), &canonical]).0
    }
}

/// Where a payout stands, as `GET` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PayoutView {
    pub id: String,
    /// `accepted` (queued, no outcome yet), then the worker's status:
    /// `submitted`, `paid`, `failed`, `rejected`, `pending_unknown`, `held`.
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    /// The partner that executed it, by our catalog name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ViewError>,
    /// When the state shown was reached (ms since the epoch).
    pub updated_at_ms: i64,
}

/// An outcome's error in our vocabulary only: class and code, never a message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ViewError {
    pub class: String,
    pub code: String,
}

impl ViewError {
    /// The message is dropped: it may quote a vendor.
    pub fn of(error: &switchyard_canonical::OutcomeError) -> Self {
        Self { class: error.class.as_str().to_owned(), code: error.code.as_str().to_owned() }
    }
}

impl PayoutView {
    pub fn accepted(command: &PayoutCommand) -> Self {
        Self {
            id: command.payout_id.clone(),
            status: "accepted".into(),
            amount_minor: command.amount_minor,
            currency: command.currency.clone(),
            provider: None,
            error: None,
            updated_at_ms: command.requested_at_ms,
        }
    }

    pub fn of_outcome(outcome: &PayoutOutcome) -> Self {
        Self {
            id: outcome.payout_id.clone(),
            status: outcome.status.as_str().to_owned(),
            amount_minor: outcome.amount_minor,
            currency: outcome.currency.clone(),
            provider: outcome.provider.clone(),
            error: outcome.error.as_ref().map(ViewError::of),
            updated_at_ms: outcome.completed_at_ms,
        }
    }
}

/// True for an outcome that says nothing about the payout it names: the
/// refusal of *another* command that reused its key. Projecting it would
/// show a payout as rejected while its first command went through.
pub fn describes_another_command(outcome: &PayoutOutcome) -> bool {
    refuses_another_command(outcome.status == PayoutStatus::Rejected, outcome.error.as_ref())
}

/// The same test for every domain's outcome: a refusal for a key collision.
pub fn refuses_another_command(rejected: bool, error: Option<&switchyard_canonical::OutcomeError>) -> bool {
    rejected && error.is_some_and(|e| e.code == switchyard_canonical::ErrorCode::IdempotencyCollision)
}

/// `GET /v1/payouts?status=` answer (documented; the handler writes the
/// stored views as they are).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PayoutList {
    pub items: Vec<PayoutView>,
}

/// Statuses `GET /v1/payouts?status=` accepts.
pub const LISTABLE_STATUSES: &[&str] = &["accepted", "submitted", "paid", "failed", "rejected", "pending_unknown", "held"];

/// The payouts projection: `payouts.outcomes.v1` to each payout's view.
pub(crate) struct PayoutOutcomes;

impl Projects for PayoutOutcomes {
    type Message = PayoutOutcome;
    const DOMAIN: &'static str = DOMAIN;

    fn project(outcome: &PayoutOutcome) -> Option<Projected> {
        if describes_another_command(outcome) {
            return None;
        }
        let view = PayoutView::of_outcome(outcome);
        Some(Projected { resource_id: view.id.clone(), status: view.status.clone(), body: json(&view), observed_at_ms: outcome.completed_at_ms })
    }
}

fn prepare(app: &Gateway, team: &Team, key: &str, body: &[u8]) -> Result<Prepared, Problem> {
    let request: PayoutRequest = resource::parse(body)?;
    let command = request.to_command(key).map_err(Problem::invalid)?;
    let view = PayoutView::accepted(&command);
    Ok(Prepared {
        domain: DOMAIN,
        location: format!("/v1/payouts/{}", command.payout_id),
        digest: request.digest(&team.name),
        record: Outbound {
            topic: app.config.topics.payout_commands.clone(),
            key: Some(command.payout_id.clone().into_bytes()),
            payload: resource::encode(&app.encoders.payouts, &command, "payout")?,
            headers: Vec::new(),
        },
        schema_id: app.encoders.payouts.schema_id(),
        answer: Answer::Created { status: ACCEPTED, body: json(&view) },
        resource_id: command.payout_id,
    })
}

/// Request a payout. Answered 202 once the command is on the bus; follow
/// `Location` for its state.
#[utoipa::path(
    post, path = "/v1/payouts", tag = "payouts", operation_id = "createPayout",
    security(("api_key" = ["payouts:write"])),
    request_body = PayoutRequest,
    params(
        ("Idempotency-Key" = String, Header, description = "Required. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = PayoutView,
            headers(("Location" = String, description = "The payout's URL")),
            links(("GetPayout" = (operation_id = "getPayout", parameters(("id" = "$response.body#/id")), description = "The payout's state")))),
        (status = 403, description = "The team lacks payouts:write", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_payout(
    State(app): State<Arc<Gateway>>,
    Extension(team): Extension<Arc<Team>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    resource::submit(&app, &team, &headers, body, |key, body| {
        let prepared = prepare(&app, &team, &key, &body);
        async move { prepared }
    })
    .await
}

/// A payout's current state, with `ETag`; `?wait=` holds the call until it
/// changes (or, without `If-None-Match`, until its first outcome).
#[utoipa::path(
    get, path = "/v1/payouts/{id}", tag = "payouts", operation_id = "getPayout",
    security(("api_key" = ["payouts:read"])),
    params(
        ("id" = String, Path, description = "The id from the 202's body or Location"),
        ("wait" = Option<String>, Query, description = "Long poll: `10s`, `500ms` or seconds, capped by the gateway"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
    ),
    responses(
        (status = 200, description = "The payout", body = PayoutView, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since If-None-Match"),
        (status = 400, description = "Invalid wait", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks payouts:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payout", body = Problem, content_type = "application/problem+json"),
        GetProblems,
    )
)]
pub(crate) async fn get_payout(State(app): State<Arc<Gateway>>, Path(id): Path<String>, query: QueryMap, headers: HeaderMap) -> Response {
    resource::current(&app, DOMAIN, "payout", &id, query, &headers).await
}

/// Payouts in one status, oldest change first (ops lists such as
/// `status=pending_unknown`).
#[utoipa::path(
    get, path = "/v1/payouts", tag = "payouts", operation_id = "listPayouts",
    security(("api_key" = ["payouts:read"])),
    params(
        ("status" = String, Query, description = "One of accepted, submitted, paid, failed, rejected, pending_unknown, held"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "The payouts", body = PayoutList),
        (status = 400, description = "Missing or unknown status, or limit out of range", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks payouts:read", body = Problem, content_type = "application/problem+json"),
        GetProblems,
    )
)]
pub(crate) async fn list_payouts(State(app): State<Arc<Gateway>>, query: QueryMap) -> Response {
    resource::list(&app, DOMAIN, LISTABLE_STATUSES, query).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PayoutRequest {
        serde_json::from_str(
            r#"{"amount_minor":1250,"currency":"EUR","reference":"invoice 42",
                "beneficiary":{"name":"Ada Lovelace","iban":"DE89370400440532013000","country":"DE"}}"#,
        )
        .expect("parses")
    }

    #[test]
    fn a_request_becomes_the_canonical_command_under_a_key_derived_id() {
        let command = request().to_command("key-1").expect("valid");
        assert_eq!(command.payout_id, payout_id("key-1"));
        assert_eq!(command.idempotency_key, "key-1");
        assert_eq!(command.rail, PayoutRail::Standard);
        assert_ne!(payout_id("key-1"), payout_id("key-2"));
        assert!(payout_id("key-1").starts_with("po_") && payout_id("key-1").len() == 27);
    }

    #[test]
    fn invalid_requests_name_the_field() {
        let mut bad = request();
        bad.currency = "eur".into();
        assert!(bad.to_command("k").is_err_and(|e| e.contains("ISO 4217")));
        let mut bad = request();
        bad.amount_minor = 0;
        assert!(bad.to_command("k").is_err_and(|e| e.contains("positive")));
        let mut bad = request();
        bad.beneficiary.country = "Germany".into();
        let err = bad.to_command("k").expect_err("country");
        assert!(err.contains("beneficiary.country"), "{err}");
        assert!(request().to_command("key ").is_err_and(|e| e.contains("idempotency_key")));
        let unknown = serde_json::from_str::<PayoutRequest>(r#"{"amount_minor":1,"currency":"EUR","reference":"r","beneficiary":{"name":"a","iban":"b","country":"DE"},"fee":1}"#);
        assert!(unknown.is_err_and(|e| e.to_string().contains("fee")));
    }

    #[test]
    fn only_a_collision_refusal_is_about_another_command() {
        use switchyard_canonical::{ErrorClass, ErrorCode, OutcomeError};
        let command = request().to_command("k").expect("valid");
        let error = |code| OutcomeError { class: ErrorClass::Permanent, code, message: String::new() };
        assert!(describes_another_command(&PayoutOutcome::rejected(&command, error(ErrorCode::IdempotencyCollision))));
        assert!(!describes_another_command(&PayoutOutcome::rejected(&command, error(ErrorCode::InvalidRequest))));
        let mut failed = PayoutOutcome::rejected(&command, error(ErrorCode::IdempotencyCollision));
        failed.status = PayoutStatus::Failed;
        assert!(!describes_another_command(&failed));
        let view = PayoutView::of_outcome(&PayoutOutcome::rejected(&command, OutcomeError { message: "vendor said: card 4242".into(), ..error(ErrorCode::InvalidRequest) }));
        let json = serde_json::to_string(&view).expect("json");
        assert!(json.contains("\"code\":\"invalid_request\"") && !json.contains("vendor said"), "{json}");
    }

    #[test]
    fn the_digest_depends_on_content_and_caller_not_on_key_order() {
        let reordered: PayoutRequest = serde_json::from_str(
            r#"{"beneficiary":{"country":"DE","iban":"DE89370400440532013000","name":"Ada Lovelace"},
                "reference":"invoice 42","currency":"EUR","amount_minor":1250}"#,
        )
        .expect("parses");
        assert_eq!(request().digest("team-a"), reordered.digest("team-a"));
        assert_ne!(request().digest("team-a"), request().digest("team-b"));
        let mut other = request();
        other.amount_minor += 1;
        assert_ne!(request().digest("team-a"), other.digest("team-a"));
    }
}
