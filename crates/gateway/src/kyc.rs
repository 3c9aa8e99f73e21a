//! `/v1/kyc/checks`: an identity verification (document, and face match
//! when a selfie is given) as the canonical [`KycCommand`] on
//! `kyc.commands.v1`, and its state from `kyc.outcomes.v1`.
//!
//! Images never travel through the gateway: the request names them by
//! reference in the bank's document store, as the command does.

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
use switchyard_canonical::kyc::{DocumentKind, IdDocument, KycCommand, KycOutcome, KycStatus, Person};

pub const DOMAIN: &str = "kyc";

/// `POST /v1/kyc/checks` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KycCheckRequest {
    /// The applicant's id in your system (1 to 128 characters, no control
    /// characters); echoed in the check.
    #[schema(min_length = 1, max_length = 128)]
    pub subject_id: String,
    pub person: PersonRequest,
    pub document: DocumentRequest,
    /// Reference of a selfie in the bank's document store; without one no
    /// face match is run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selfie_ref: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonRequest {
    #[schema(min_length = 1)]
    pub first_name: String,
    #[schema(min_length = 1)]
    pub last_name: String,
    /// `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentRequest {
    pub kind: DocumentKindRequest,
    /// ISO 3166-1 alpha-3, upper case (e.g. `GBR`).
    #[schema(pattern = "^[A-Z]{3}$")]
    pub issuing_country: String,
    /// Reference of the front image in the bank's document store.
    #[schema(min_length = 1)]
    pub front_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_ref: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKindRequest {
    Passport,
    NationalIdentityCard,
    DrivingLicence,
    ResidencePermit,
}

impl PersonRequest {
    pub fn to_canonical(&self) -> Person {
        Person {
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            date_of_birth: self.date_of_birth.clone(),
            email: self.email.clone(),
        }
    }
}

impl DocumentRequest {
    /// The document rules every canonical command carrying a document
    /// applies ([`IdDocument::validate`]), checked up front so an onboarding
    /// request's document is a 400 now, not a refused command later.
    pub fn validate(&self) -> Result<(), String> {
        self.to_canonical().validate("document")
    }

    pub fn to_canonical(&self) -> IdDocument {
        IdDocument {
            kind: match self.kind {
                DocumentKindRequest::Passport => DocumentKind::Passport,
                DocumentKindRequest::NationalIdentityCard => DocumentKind::NationalIdentityCard,
                DocumentKindRequest::DrivingLicence => DocumentKind::DrivingLicence,
                DocumentKindRequest::ResidencePermit => DocumentKind::ResidencePermit,
            },
            issuing_country: self.issuing_country.clone(),
            front_ref: self.front_ref.clone(),
            back_ref: self.back_ref.clone(),
        }
    }
}

/// The check id a key stands for: `kyc_` and 24 hex digits of a digest.
pub fn check_id(idempotency_key: &str) -> String {
    resource::derived_id("kyc", DOMAIN, idempotency_key)
}

impl KycCheckRequest {
    /// The canonical command, validated by the same rules the worker applies.
    pub fn to_command(&self, idempotency_key: &str) -> Result<KycCommand, String> {
        let command = KycCommand {
            subject_id: self.subject_id.clone(),
            idempotency_key: idempotency_key.to_owned(),
            // A check of its own: a flow's checks are the orchestrator's.
            flow_id: None,
            person: self.person.to_canonical(),
            document: self.document.to_canonical(),
            selfie_ref: self.selfie_ref.clone(),
            requested_at_ms: switchyard_canonical::now_ms(),
        };
        command.validate()?;
        Ok(command)
    }
}

/// Where a check stands, as `GET` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct KycCheckView {
    pub id: String,
    pub subject_id: String,
    /// `accepted` (queued, no outcome yet), then `approved`, `declined`,
    /// `resubmit`, `step_up_required`, `manual_review`, `rejected` or `failed`.
    pub status: String,
    /// Whether the check is over; `resubmit` and `step_up_required` wait for
    /// the applicant (a new check with a new key), `manual_review` for a person.
    pub terminal: bool,
    /// Why, in our words: `document_expired`, `face_mismatch`, ...
    pub reasons: Vec<String>,
    /// The partner that ran it, by our catalog name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ViewError>,
    /// When the state shown was reached (ms since the epoch).
    pub updated_at_ms: i64,
}

impl KycCheckView {
    fn accepted(id: String, command: &KycCommand) -> Self {
        Self {
            id,
            subject_id: command.subject_id.clone(),
            status: ACCEPTED.into(),
            terminal: false,
            reasons: Vec::new(),
            provider: None,
            error: None,
            updated_at_ms: command.requested_at_ms,
        }
    }

    /// The vendor's message to the applicant is left out: it is the
    /// vendor's text, and the reasons say the same in ours.
    pub fn of_outcome(outcome: &KycOutcome) -> Self {
        Self {
            id: check_id(&outcome.idempotency_key),
            subject_id: outcome.subject_id.clone(),
            status: outcome.status.as_str().to_owned(),
            terminal: outcome.terminal,
            reasons: outcome.reasons.iter().filter_map(|r| serde_json::to_value(r).ok()?.as_str().map(str::to_owned)).collect(),
            provider: outcome.provider.clone(),
            error: outcome.error.as_ref().map(ViewError::of),
            updated_at_ms: outcome.completed_at_ms,
        }
    }
}

/// `kyc.outcomes.v1` to each check's view.
pub(crate) struct KycOutcomes;

impl Projects for KycOutcomes {
    type Message = KycOutcome;
    const DOMAIN: &'static str = DOMAIN;

    fn project(outcome: &KycOutcome) -> Option<Projected> {
        // A step of an onboarding flow is seen through its application.
        if outcome.flow_id.is_some() || refuses_another_command(outcome.status == KycStatus::Rejected, outcome.error.as_ref()) {
            return None;
        }
        let view = KycCheckView::of_outcome(outcome);
        Some(Projected { resource_id: view.id.clone(), status: view.status.clone(), body: json(&view), observed_at_ms: outcome.completed_at_ms })
    }
}

fn prepare(app: &Gateway, team: &Team, key: &str, body: &[u8]) -> Result<Prepared, Problem> {
    let request: KycCheckRequest = resource::parse(body)?;
    let command = request.to_command(key).map_err(Problem::invalid)?;
    let id = check_id(key);
    let view = KycCheckView::accepted(id.clone(), &command);
    Ok(Prepared {
        domain: DOMAIN,
        location: format!("/v1/kyc/checks/{id}"),
        digest: resource::digest(&team.name, "", &request),
        record: Outbound {
            topic: app.config.topics.kyc_commands.clone(),
            // The worker keys a subject's messages by it, so they stay in order.
            key: Some(command.subject_id.clone().into_bytes()),
            payload: resource::encode(&app.encoders.kyc, &command, "KYC check")?,
            headers: Vec::new(),
        },
        schema_id: app.encoders.kyc.schema_id(),
        answer: Answer::Created { status: ACCEPTED, body: json(&view) },
        resource_id: id,
    })
}

/// Verify an applicant's identity. Answered 202 once the command is on the
/// bus; follow `Location` for its state.
#[utoipa::path(
    post, path = "/v1/kyc/checks", tag = "kyc", operation_id = "createKycCheck",
    security(("api_key" = ["kyc:write"])),
    request_body = KycCheckRequest,
    params(
        ("Idempotency-Key" = String, Header, description = "Required; 1 to 64 printable ASCII. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = KycCheckView,
            headers(("Location" = String, description = "The check's URL")),
            links(("GetKycCheck" = (operation_id = "getKycCheck", parameters(("id" = "$response.body#/id")), description = "The check's state")))),
        (status = 403, description = "The team lacks kyc:write", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_check(
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

/// A check's current state, with `ETag`; `?wait=` holds the call until it
/// changes (or, without `If-None-Match`, until its first outcome).
#[utoipa::path(
    get, path = "/v1/kyc/checks/{id}", tag = "kyc", operation_id = "getKycCheck",
    security(("api_key" = ["kyc:read"])),
    params(
        ("id" = String, Path, description = "The id from the 202's body or Location"),
        ("wait" = Option<String>, Query, description = "Long poll: `10s`, `500ms` or seconds, capped by the gateway"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
    ),
    responses(
        (status = 200, description = "The check", body = KycCheckView, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since If-None-Match"),
        (status = 400, description = "Invalid wait", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks kyc:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such check", body = Problem, content_type = "application/problem+json"),
        GetProblems,
    )
)]
pub(crate) async fn get_check(State(app): State<Arc<Gateway>>, Path(id): Path<String>, query: QueryMap, headers: HeaderMap) -> Response {
    resource::current(&app, DOMAIN, "KYC check", &id, query, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn request() -> KycCheckRequest {
        serde_json::from_str(
            r#"{"subject_id":"app-1","person":{"first_name":"Ada","last_name":"Lovelace","date_of_birth":"1990-12-10"},
                "document":{"kind":"national_identity_card","issuing_country":"GBR","front_ref":"doc://1/front","back_ref":"doc://1/back"}}"#,
        )
        .expect("parses")
    }

    #[test]
    fn a_request_becomes_the_canonical_command_and_invalid_ones_name_the_field() {
        let command = request().to_command("key-1").expect("valid");
        assert_eq!((command.idempotency_key.as_str(), command.flow_id.as_deref()), ("key-1", None));
        assert_eq!(command.document.kind, DocumentKind::NationalIdentityCard);
        let mut bad = request();
        bad.document.issuing_country = "GB".into();
        assert!(bad.to_command("k").is_err_and(|e| e.contains("issuing_country")));
        assert!(request().to_command(&"k".repeat(65)).is_err_and(|e| e.contains("idempotency_key")));
        assert!(check_id("key-1").starts_with("kyc_") && check_id("key-1") != check_id("key-2"));
    }

    #[test]
    fn outcomes_of_flows_and_collisions_are_not_projected_and_no_vendor_text_is() {
        use switchyard_canonical::kyc::KycReason;
        use switchyard_canonical::{ErrorClass, ErrorCode, OutcomeError};
        let command = request().to_command("key-1").expect("valid");
        let mut outcome = KycOutcome::new(&command, KycStatus::Declined);
        outcome.reasons = vec![KycReason::DocumentExpired];
        outcome.applicant_message = Some("vendor says: expired".into());
        let projected = KycOutcomes::project(&outcome).expect("projected");
        assert_eq!((projected.resource_id.as_str(), projected.status.as_str()), (check_id("key-1").as_str(), "declined"));
        assert!(projected.body.contains("\"document_expired\"") && !projected.body.contains("vendor says"), "{}", projected.body);
        let mut flow = outcome.clone();
        flow.flow_id = Some("flow-1".into());
        assert!(KycOutcomes::project(&flow).is_none());
        let mut collision = KycOutcome::new(&command, KycStatus::Rejected);
        collision.error = Some(OutcomeError { class: ErrorClass::Permanent, code: ErrorCode::IdempotencyCollision, message: String::new() });
        assert!(KycOutcomes::project(&collision).is_none());
    }
}
