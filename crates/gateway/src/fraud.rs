//! `/v1/fraud/scores`: a fraud score and decision for an event (onboarding,
//! login, payment, payout) as the canonical [`FraudCommand`] (`SCORE`) on
//! `fraud.commands.v1`, and its state from `fraud.outcomes.v1`.

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
use switchyard_canonical::fraud::{FraudAction, FraudCommand, FraudEvent, FraudOutcome, FraudStatus, FraudTransaction};

pub const DOMAIN: &str = "fraud";

/// `POST /v1/fraud/scores` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// The customer's id in your system (1 to 128 characters, no control
    /// characters); echoed in the score.
    #[schema(min_length = 1, max_length = 128)]
    pub subject_id: String,
    pub event: EventRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The device or session id from the bank's front-end SDK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Required for `payment` and `payout` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<TransactionRequest>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventRequest {
    Onboarding,
    Login,
    Payment,
    Payout,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionRequest {
    /// Your id of the transaction; feedback names it later.
    #[schema(min_length = 1)]
    pub transaction_id: String,
    /// Positive, in the currency's minor unit.
    #[schema(minimum = 1)]
    pub amount_minor: i64,
    /// ISO 4217, upper case.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// The score id a key stands for: `frd_` and 24 hex digits of a digest.
pub fn score_id(idempotency_key: &str) -> String {
    resource::derived_id("frd", DOMAIN, idempotency_key)
}

impl ScoreRequest {
    /// The canonical command, validated by the same rules the worker applies.
    pub fn to_command(&self, idempotency_key: &str) -> Result<FraudCommand, String> {
        let command = FraudCommand {
            subject_id: self.subject_id.clone(),
            idempotency_key: idempotency_key.to_owned(),
            flow_id: None,
            action: FraudAction::Score,
            event: match self.event {
                EventRequest::Onboarding => FraudEvent::Onboarding,
                EventRequest::Login => FraudEvent::Login,
                EventRequest::Payment => FraudEvent::Payment,
                EventRequest::Payout => FraudEvent::Payout,
            },
            email: self.email.clone(),
            phone: self.phone.clone(),
            ip: self.ip.clone(),
            session_id: self.session_id.clone(),
            transaction: self.transaction.as_ref().map(|t| FraudTransaction {
                transaction_id: t.transaction_id.clone(),
                amount_minor: t.amount_minor,
                currency: t.currency.clone(),
            }),
            feedback: None,
            requested_at_ms: switchyard_canonical::now_ms(),
        };
        command.validate()?;
        Ok(command)
    }
}

/// Where a score stands, as `GET` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ScoreView {
    pub id: String,
    pub subject_id: String,
    /// `accepted` (queued, no outcome yet), then `scored`, `rejected` or `failed`.
    pub status: String,
    /// False only for a `review` decision, which waits for an analyst.
    pub terminal: bool,
    /// `allow`, `review` or `block`, once scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// 0 to 1; higher is riskier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Why, in our words: `disposable_email`, `velocity`, ...
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ViewError>,
    pub updated_at_ms: i64,
}

fn name_of<T: Serialize>(value: &T) -> Option<String> {
    serde_json::to_value(value).ok()?.as_str().map(str::to_owned)
}

impl ScoreView {
    fn accepted(id: String, command: &FraudCommand) -> Self {
        Self {
            id,
            subject_id: command.subject_id.clone(),
            status: ACCEPTED.into(),
            terminal: false,
            decision: None,
            score: None,
            reasons: Vec::new(),
            provider: None,
            error: None,
            updated_at_ms: command.requested_at_ms,
        }
    }

    pub fn of_outcome(outcome: &FraudOutcome) -> Self {
        Self {
            id: score_id(&outcome.idempotency_key),
            subject_id: outcome.subject_id.clone(),
            status: outcome.status.as_str().to_owned(),
            terminal: outcome.terminal,
            // Canonical decisions are SCREAMING on the wire; ours are lower case.
            decision: outcome.decision.as_ref().and_then(name_of).map(|d| d.to_ascii_lowercase()),
            score: outcome.score,
            reasons: outcome.reasons.iter().filter_map(name_of).collect(),
            provider: outcome.provider.clone(),
            error: outcome.error.as_ref().map(ViewError::of),
            updated_at_ms: outcome.completed_at_ms,
        }
    }
}

/// `fraud.outcomes.v1` to each score's view.
pub(crate) struct FraudOutcomes;

impl Projects for FraudOutcomes {
    type Message = FraudOutcome;
    const DOMAIN: &'static str = DOMAIN;

    fn project(outcome: &FraudOutcome) -> Option<Projected> {
        // A flow's step, or feedback (not a score), is not a resource of ours.
        if outcome.flow_id.is_some()
            || outcome.action != FraudAction::Score
            || refuses_another_command(outcome.status == FraudStatus::Rejected, outcome.error.as_ref())
        {
            return None;
        }
        let view = ScoreView::of_outcome(outcome);
        Some(Projected { resource_id: view.id.clone(), status: view.status.clone(), body: json(&view), observed_at_ms: outcome.completed_at_ms })
    }
}

fn prepare(app: &Gateway, team: &Team, key: &str, body: &[u8]) -> Result<Prepared, Problem> {
    let request: ScoreRequest = resource::parse(body)?;
    let command = request.to_command(key).map_err(Problem::invalid)?;
    let id = score_id(key);
    let view = ScoreView::accepted(id.clone(), &command);
    Ok(Prepared {
        domain: DOMAIN,
        location: format!("/v1/fraud/scores/{id}"),
        digest: resource::digest(&team.name, "", &request),
        record: Outbound {
            topic: app.config.topics.fraud_commands.clone(),
            key: Some(command.subject_id.clone().into_bytes()),
            payload: resource::encode(&app.encoders.fraud, &command, "score")?,
            headers: Vec::new(),
        },
        schema_id: app.encoders.fraud.schema_id(),
        answer: Answer::Created { status: ACCEPTED, body: json(&view) },
        resource_id: id,
    })
}

/// Score an event for fraud. Answered 202 once the command is on the
/// bus; follow `Location` for its state.
#[utoipa::path(
    post, path = "/v1/fraud/scores", tag = "fraud", operation_id = "createFraudScore",
    security(("api_key" = ["fraud:write"])),
    request_body = ScoreRequest,
    params(
        ("Idempotency-Key" = String, Header, description = "Required; 1 to 64 printable ASCII. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = ScoreView,
            headers(("Location" = String, description = "The score's URL")),
            links(("GetFraudScore" = (operation_id = "getFraudScore", parameters(("id" = "$response.body#/id")), description = "The score's state")))),
        (status = 403, description = "The team lacks fraud:write", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_score(
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

/// A score's current state, with `ETag`; `?wait=` holds the call until it
/// changes (or, without `If-None-Match`, until its first outcome).
#[utoipa::path(
    get, path = "/v1/fraud/scores/{id}", tag = "fraud", operation_id = "getFraudScore",
    security(("api_key" = ["fraud:read"])),
    params(
        ("id" = String, Path, description = "The id from the 202's body or Location"),
        ("wait" = Option<String>, Query, description = "Long poll: `10s`, `500ms` or seconds, capped by the gateway"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
    ),
    responses(
        (status = 200, description = "The score", body = ScoreView, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since If-None-Match"),
        (status = 400, description = "Invalid wait", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks fraud:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such score", body = Problem, content_type = "application/problem+json"),
        GetProblems,
    )
)]
pub(crate) async fn get_score(State(app): State<Arc<Gateway>>, Path(id): Path<String>, query: QueryMap, headers: HeaderMap) -> Response {
    resource::current(&app, DOMAIN, "fraud score", &id, query, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::fraud::{FraudDecision, FraudReason};

    fn request() -> ScoreRequest {
        serde_json::from_str(r#"{"subject_id":"cust-1","event":"payout","email":"a@example.com","transaction":{"transaction_id":"tx-1","amount_minor":500,"currency":"EUR"}}"#)
            .expect("parses")
    }

    #[test]
    fn a_request_becomes_a_score_command_and_its_outcome_a_view_in_our_words() {
        let command = request().to_command("key-1").expect("valid");
        assert_eq!((command.action, command.event), (FraudAction::Score, FraudEvent::Payout));
        let mut bad = request();
        bad.transaction = None;
        assert!(bad.to_command("k").is_err_and(|e| e.contains("transaction")));
        let mut outcome = FraudOutcome::new(&command, FraudStatus::Scored, Some(FraudDecision::Review));
        outcome.score = Some(0.7);
        outcome.reasons = vec![FraudReason::DisposableEmail];
        let projected = FraudOutcomes::project(&outcome).expect("projected");
        assert_eq!((projected.resource_id, projected.status.as_str()), (score_id("key-1"), "scored"));
        assert!(projected.body.contains("\"decision\":\"review\"") && projected.body.contains("\"disposable_email\""), "{}", projected.body);
        outcome.action = FraudAction::Feedback;
        assert!(FraudOutcomes::project(&outcome).is_none(), "feedback is not a score");
    }
}
