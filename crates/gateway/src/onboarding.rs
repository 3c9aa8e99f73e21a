//! `/v1/onboarding/applications`: an onboarding flow (KYC -> AML -> fraud,
//! run by the onboarding orchestrator) started, given new evidence or an
//! analyst's decision through the canonical [`OnboardingCommand`] on
//! `onboarding.commands.v1`; its state from `onboarding.events.v1`.
//!
//! The application id is the flow id, derived from the starting request's
//! Idempotency-Key as every resource id is. Evidence and decisions act on
//! an existing application: the subject comes from its projected state,
//! because the orchestrator refuses a command for a flow of another subject.

use crate::auth::Team;
use crate::kyc::{DocumentRequest, PersonRequest};
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
use switchyard_canonical::check::FlowStep;
use switchyard_canonical::onboarding::{Applicant, Evidence, ManualDecision, ManualVerdict, OnboardingAction, OnboardingCommand, OnboardingEvent};

pub const DOMAIN: &str = "onboarding";

/// `POST /v1/onboarding/applications` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRequest {
    /// The applicant's id in your system (1 to 128 characters, no control
    /// characters).
    #[schema(min_length = 1, max_length = 128)]
    pub subject_id: String,
    pub applicant: ApplicantRequest,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicantRequest {
    pub person: PersonRequest,
    pub document: DocumentRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selfie_ref: Option<String>,
    /// ISO 3166-1 alpha-2 nationality, upper case, for screening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Z]{2}$")]
    pub nationality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Where the application came from, for fraud scoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The device or session id of the bank's front-end SDK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// `POST /v1/onboarding/applications/{id}/evidence` body: replaces the
/// document (and the selfie, if given) for the next identity check.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRequest {
    pub document: DocumentRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selfie_ref: Option<String>,
}

/// `POST /v1/onboarding/applications/{id}/decisions` body: an analyst's
/// decision on the step the application waits on.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// The step decided on; a decision for another step than the one under
    /// review leaves the application unchanged.
    pub step: StepRequest,
    pub verdict: VerdictRequest,
    /// Who decided, for the audit log.
    #[schema(min_length = 1)]
    pub reviewer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepRequest {
    Kyc,
    Aml,
    Fraud,
}

/// `approve`: the flow continues; `reject`: do not onboard; `hold`:
/// compliance hold, nothing moves.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerdictRequest {
    Approve,
    Reject,
    Hold,
}

/// The application id a key stands for: `onb_` and 24 hex digits of a
/// digest (28 characters, within the orchestrator's flow-id limit).
pub fn application_id(idempotency_key: &str) -> String {
    resource::derived_id("onb", DOMAIN, idempotency_key)
}

fn command(subject_id: &str, key: &str, flow_id: &str, action: OnboardingAction) -> OnboardingCommand {
    OnboardingCommand {
        subject_id: subject_id.to_owned(),
        idempotency_key: key.to_owned(),
        flow_id: flow_id.to_owned(),
        action,
        applicant: None,
        evidence: None,
        decision: None,
        requested_at_ms: switchyard_canonical::now_ms(),
    }
}

impl ApplicationRequest {
    /// The `START` command, validated by the same rules the orchestrator applies.
    pub fn to_command(&self, idempotency_key: &str) -> Result<OnboardingCommand, String> {
        let a = &self.applicant;
        a.document.validate()?;
        let mut start = command(&self.subject_id, idempotency_key, &application_id(idempotency_key), OnboardingAction::Start);
        start.applicant = Some(Applicant {
            person: a.person.to_canonical(),
            document: a.document.to_canonical(),
            selfie_ref: a.selfie_ref.clone(),
            nationality: a.nationality.clone(),
            phone: a.phone.clone(),
            ip: a.ip.clone(),
            session_id: a.session_id.clone(),
        });
        start.validate()?;
        Ok(start)
    }
}

/// A request about an application that already exists (evidence, a
/// decision): its command is built from the application's current view.
trait FollowUp: serde::de::DeserializeOwned + Serialize {
    fn to_command(&self, idempotency_key: &str, application: &ApplicationView) -> Result<OnboardingCommand, String>;
}

impl FollowUp for EvidenceRequest {
    fn to_command(&self, idempotency_key: &str, application: &ApplicationView) -> Result<OnboardingCommand, String> {
        self.document.validate()?;
        let mut submit = command(&application.subject_id, idempotency_key, &application.id, OnboardingAction::SubmitEvidence);
        submit.evidence = Some(Evidence { document: self.document.to_canonical(), selfie_ref: self.selfie_ref.clone() });
        submit.validate()?;
        Ok(submit)
    }
}

impl FollowUp for DecisionRequest {
    fn to_command(&self, idempotency_key: &str, application: &ApplicationView) -> Result<OnboardingCommand, String> {
        let mut decide = command(&application.subject_id, idempotency_key, &application.id, OnboardingAction::Decide);
        decide.decision = Some(ManualDecision {
            step: match self.step {
                StepRequest::Kyc => FlowStep::Kyc,
                StepRequest::Aml => FlowStep::Aml,
                StepRequest::Fraud => FlowStep::Fraud,
            },
            verdict: match self.verdict {
                VerdictRequest::Approve => ManualVerdict::Approve,
                VerdictRequest::Reject => ManualVerdict::Reject,
                VerdictRequest::Hold => ManualVerdict::Hold,
            },
            reviewer: self.reviewer.clone(),
            note: self.note.clone(),
        });
        decide.validate()?;
        Ok(decide)
    }
}

/// Where an application stands, as `GET` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ApplicationView {
    pub id: String,
    pub subject_id: String,
    /// `accepted` (queued, not started yet), then `kyc_pending`,
    /// `awaiting_evidence`, `kyc_review`, `aml_pending`, `aml_review`,
    /// `fraud_pending`, `fraud_review`, and at the end `approved`,
    /// `rejected`, `compliance_hold`, `fraud_blocked`, `expired` or `failed`.
    pub status: String,
    pub terminal: bool,
    /// The step the application is on (`kyc`, `aml`, `fraud`), once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// What moved it last, in our words: `start`, `kyc:approved`,
    /// `decision:approve`, `timeout`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Grows by one per transition; 0 before the first.
    pub version: i64,
    pub updated_at_ms: i64,
}

/// Statuses `GET /v1/onboarding/applications?status=` accepts.
pub const LISTABLE_STATUSES: &[&str] = &[
    "accepted",
    "kyc_pending",
    "awaiting_evidence",
    "kyc_review",
    "aml_pending",
    "aml_review",
    "fraud_pending",
    "fraud_review",
    "approved",
    "rejected",
    "compliance_hold",
    "fraud_blocked",
    "expired",
    "failed",
];

/// `GET /v1/onboarding/applications?status=` answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApplicationList {
    pub items: Vec<ApplicationView>,
}

impl ApplicationView {
    fn accepted(command: &OnboardingCommand) -> Self {
        Self {
            id: command.flow_id.clone(),
            subject_id: command.subject_id.clone(),
            status: ACCEPTED.into(),
            terminal: false,
            step: None,
            trigger: None,
            version: 0,
            updated_at_ms: command.requested_at_ms,
        }
    }

    /// The event's `reason` is left out: it may quote a vendor's error.
    pub fn of_event(event: &OnboardingEvent) -> Self {
        let step = serde_json::to_value(event.step).ok().and_then(|v| v.as_str().map(str::to_ascii_lowercase));
        Self {
            id: event.flow_id.clone(),
            subject_id: event.subject_id.clone(),
            status: event.state.as_str().to_owned(),
            terminal: event.terminal,
            step,
            trigger: Some(event.trigger.clone()),
            version: event.version,
            updated_at_ms: event.occurred_at_ms,
        }
    }
}

/// `onboarding.events.v1` to each application's view.
pub(crate) struct OnboardingEvents;

impl Projects for OnboardingEvents {
    type Message = OnboardingEvent;
    const DOMAIN: &'static str = DOMAIN;

    fn project(event: &OnboardingEvent) -> Option<Projected> {
        let view = ApplicationView::of_event(event);
        Some(Projected { resource_id: view.id.clone(), status: view.status.clone(), body: json(&view), observed_at_ms: event.occurred_at_ms })
    }
}

fn start(app: &Gateway, team: &Team, key: &str, body: &[u8]) -> Result<Prepared, Problem> {
    let request: ApplicationRequest = resource::parse(body)?;
    let command = request.to_command(key).map_err(Problem::invalid)?;
    let view = ApplicationView::accepted(&command);
    prepared(app, resource::digest(&team.name, "", &request), &command, Answer::Created { status: ACCEPTED, body: json(&view) })
}

fn prepared(app: &Gateway, digest: String, command: &OnboardingCommand, answer: Answer) -> Result<Prepared, Problem> {
    Ok(Prepared {
        domain: DOMAIN,
        resource_id: command.flow_id.clone(),
        location: format!("/v1/onboarding/applications/{}", command.flow_id),
        digest,
        record: Outbound {
            topic: app.config.topics.onboarding_commands.clone(),
            // The orchestrator keys every message of a flow by its subject.
            key: Some(command.subject_id.clone().into_bytes()),
            payload: resource::encode(&app.encoders.onboarding, command, "onboarding")?,
            headers: Vec::new(),
        },
        schema_id: app.encoders.onboarding.schema_id(),
        answer,
    })
}

/// The application a follow-up acts on, as last projected.
/// Reads the application, builds the request's command from it, and answers
/// with the application's current state.
async fn follow_up<R: FollowUp>(app: &Gateway, team: &Team, id: &str, key: String, body: Bytes) -> Result<Prepared, Problem> {
    let request: R = resource::parse(&body)?;
    let (current, answer) = application(app, id).await?;
    let command = request.to_command(&key, &current).map_err(Problem::invalid)?;
    prepared(app, resource::digest(&team.name, id, &request), &command, Answer::Current { body: answer })
}

async fn application(app: &Gateway, id: &str) -> Result<(ApplicationView, String), Problem> {
    match app.store.resource(DOMAIN, id).await {
        Ok(Some(state)) => {
            let view = serde_json::from_str(&state.body).map_err(|e| {
                tracing::error!(error = %e, "stored application unreadable");
                Problem::store_unavailable()
            })?;
            Ok((view, state.body))
        }
        Ok(None) => Err(Problem::not_found("application")),
        Err(e) => {
            tracing::warn!(error = %e, "application not read");
            Err(Problem::store_unavailable())
        }
    }
}

/// Start an onboarding application. Answered 202 once the command is on
/// the bus; follow `Location` for its state.
#[utoipa::path(
    post, path = "/v1/onboarding/applications", tag = "onboarding", operation_id = "createOnboardingApplication",
    security(("api_key" = ["onboarding:write"])),
    request_body = ApplicationRequest,
    params(
        ("Idempotency-Key" = String, Header, description = "Required; 1 to 64 printable ASCII. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = ApplicationView,
            headers(("Location" = String, description = "The application's URL")),
            links(("GetApplication" = (operation_id = "getOnboardingApplication", parameters(("id" = "$response.body#/id")), description = "The application's state")))),
        (status = 403, description = "The team lacks onboarding:write", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_application(
    State(app): State<Arc<Gateway>>,
    Extension(team): Extension<Arc<Team>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    resource::submit(&app, &team, &headers, body, |key, body| {
        let prepared = start(&app, &team, &key, &body);
        async move { prepared }
    })
    .await
}

/// Hand in new identity evidence after the application asked for it
/// (`awaiting_evidence`). Answered 202 with the application's state once
/// the command is on the bus.
#[utoipa::path(
    post, path = "/v1/onboarding/applications/{id}/evidence", tag = "onboarding", operation_id = "submitOnboardingEvidence",
    security(("api_key" = ["onboarding:write"])),
    request_body = EvidenceRequest,
    params(
        ("id" = String, Path, description = "The application's id"),
        ("Idempotency-Key" = String, Header, description = "Required; 1 to 64 printable ASCII. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = ApplicationView,
            headers(("Location" = String, description = "The application's URL")),
            links(("GetApplication" = (operation_id = "getOnboardingApplication", parameters(("id" = "$request.path.id")), description = "The application's state")))),
        (status = 403, description = "The team lacks onboarding:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_evidence(
    State(app): State<Arc<Gateway>>,
    Extension(team): Extension<Arc<Team>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    resource::submit(&app, &team, &headers, body, |key, body| follow_up::<EvidenceRequest>(&app, &team, &id, key, body)).await
}

/// Record an analyst's decision on the step an application waits on
/// (`kyc_review`, `aml_review`, `fraud_review`). Needs `onboarding:decide`.
/// Answered 202 with the application's state once the command is on the bus.
#[utoipa::path(
    post, path = "/v1/onboarding/applications/{id}/decisions", tag = "onboarding", operation_id = "decideOnboardingApplication",
    security(("api_key" = ["onboarding:decide"])),
    request_body = DecisionRequest,
    params(
        ("id" = String, Path, description = "The application's id"),
        ("Idempotency-Key" = String, Header, description = "Required; 1 to 64 printable ASCII. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = ApplicationView,
            headers(("Location" = String, description = "The application's URL")),
            links(("GetApplication" = (operation_id = "getOnboardingApplication", parameters(("id" = "$request.path.id")), description = "The application's state")))),
        (status = 403, description = "The team lacks onboarding:decide", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_decision(
    State(app): State<Arc<Gateway>>,
    Extension(team): Extension<Arc<Team>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    resource::submit(&app, &team, &headers, body, |key, body| follow_up::<DecisionRequest>(&app, &team, &id, key, body)).await
}

/// An application's current state, with `ETag`; `?wait=` holds the call until it
/// changes (or, without `If-None-Match`, until its first event).
#[utoipa::path(
    get, path = "/v1/onboarding/applications/{id}", tag = "onboarding", operation_id = "getOnboardingApplication",
    security(("api_key" = ["onboarding:read"])),
    params(
        ("id" = String, Path, description = "The id from the 202's body or Location"),
        ("wait" = Option<String>, Query, description = "Long poll: `10s`, `500ms` or seconds, capped by the gateway"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
    ),
    responses(
        (status = 200, description = "The application", body = ApplicationView, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since If-None-Match"),
        (status = 400, description = "Invalid wait", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks onboarding:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = Problem, content_type = "application/problem+json"),
        GetProblems,
    )
)]
pub(crate) async fn get_application(State(app): State<Arc<Gateway>>, Path(id): Path<String>, query: QueryMap, headers: HeaderMap) -> Response {
    resource::current(&app, DOMAIN, "application", &id, query, &headers).await
}


/// Applications in one status, oldest change first (ops queues such as
/// `status=aml_review`).
#[utoipa::path(
    get, path = "/v1/onboarding/applications", tag = "onboarding", operation_id = "listOnboardingApplications",
    security(("api_key" = ["onboarding:read"])),
    params(
        ("status" = String, Query, description = "One of accepted, kyc_pending, awaiting_evidence, kyc_review, aml_pending, aml_review, fraud_pending, fraud_review, approved, rejected, compliance_hold, fraud_blocked, expired, failed"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "The applications", body = ApplicationList),
        (status = 400, description = "Missing or unknown status, or limit out of range", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks onboarding:read", body = Problem, content_type = "application/problem+json"),
        GetProblems,
    )
)]
pub(crate) async fn list_applications(State(app): State<Arc<Gateway>>, query: QueryMap) -> Response {
    resource::list(&app, DOMAIN, LISTABLE_STATUSES, query).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::onboarding::OnboardingState;

    fn request() -> ApplicationRequest {
        serde_json::from_str(
            r#"{"subject_id":"app-1","applicant":{"person":{"first_name":"Ada","last_name":"Lovelace"},
                "document":{"kind":"passport","issuing_country":"GBR","front_ref":"doc://f"},"nationality":"GB"}}"#,
        )
        .expect("parses")
    }

    #[test]
    fn a_start_names_the_flow_by_the_key_and_follow_ups_the_application_and_its_subject() {
        let start = request().to_command("key-1").expect("valid");
        assert_eq!((start.flow_id.clone(), start.action), (application_id("key-1"), OnboardingAction::Start));
        assert!(start.flow_id.len() <= switchyard_canonical::onboarding::MAX_FLOW_ID_LEN);
        let mut bad = request();
        bad.applicant.nationality = Some("GBR".into());
        assert!(bad.to_command("k").is_err_and(|e| e.contains("nationality")));
        let view = ApplicationView::accepted(&start);
        let decision: DecisionRequest = serde_json::from_str(r#"{"step":"aml","verdict":"approve","reviewer":"analyst-7"}"#).expect("parses");
        let decide = decision.to_command("key-2", &view).expect("valid");
        assert_eq!((decide.flow_id.as_str(), decide.subject_id.as_str(), decide.action), (start.flow_id.as_str(), "app-1", OnboardingAction::Decide));
        assert_eq!(decide.decision.as_ref().map(|d| (d.step, d.verdict)), Some((FlowStep::Aml, ManualVerdict::Approve)));
        let evidence: EvidenceRequest = serde_json::from_str(r#"{"document":{"kind":"passport","issuing_country":"IBN*","front_ref":"doc://f2"}}"#).expect("parses");
        assert!(evidence.to_command("key-4", &view).is_err_and(|e| e.contains("issuing_country")), "checked as the KYC step will");
        let mut bad = request();
        bad.applicant.document.front_ref = " ".into();
        assert!(bad.to_command("k").is_err_and(|e| e.contains("front_ref")));
        let unsigned: DecisionRequest = serde_json::from_str(r#"{"step":"aml","verdict":"hold","reviewer":" "}"#).expect("parses");
        assert!(unsigned.to_command("key-3", &view).is_err_and(|e| e.contains("reviewer")));
    }

    #[test]
    fn an_event_becomes_the_view_without_its_reason() {
        let event = OnboardingEvent {
            event_id: "onb_1:2".into(),
            subject_id: "app-1".into(),
            flow_id: "onb_1".into(),
            version: 2,
            previous_state: Some(OnboardingState::KycPending),
            state: OnboardingState::Failed,
            terminal: true,
            trigger: "kyc:failed".into(),
            step: FlowStep::Kyc,
            attempt: 1,
            reason: Some("provider_error: vendor says boom".into()),
            compensate: Vec::new(),
            occurred_at_ms: 5,
        };
        let projected = OnboardingEvents::project(&event).expect("projected");
        assert_eq!((projected.resource_id.as_str(), projected.status.as_str(), projected.observed_at_ms), ("onb_1", "failed", 5));
        assert!(projected.body.contains("\"step\":\"kyc\"") && !projected.body.contains("vendor says"), "{}", projected.body);
    }
}
