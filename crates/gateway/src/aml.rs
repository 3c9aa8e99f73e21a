//! `/v1/aml/screenings`: a sanctions, PEP, watchlist and adverse-media
//! screening as the canonical [`AmlCommand`] (`SCREEN`) on
//! `aml.commands.v1`, and its state from `aml.outcomes.v1`. Rescreening
//! after a list update is a system's job, not an HTTP caller's.

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
use switchyard_canonical::aml::{AmlAction, AmlCommand, AmlOutcome, AmlStatus, AmlSubject, ScreeningList, SubjectKind};

pub const DOMAIN: &str = "aml";

/// `POST /v1/aml/screenings` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScreeningRequest {
    /// The applicant's or counterparty's id in your system (1 to 128
    /// characters, no control characters); echoed in the screening.
    #[schema(min_length = 1, max_length = 128)]
    pub subject_id: String,
    pub subject: ScreenedSubject,
    /// Lists to screen; empty or absent means every list the partner offers.
    #[serde(default)]
    pub lists: Vec<ListRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScreenedSubject {
    pub kind: SubjectKindRequest,
    /// The name as written (an organisation's, or a person's full name).
    #[schema(min_length = 1)]
    pub full_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// `YYYY-MM-DD` or `YYYY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// ISO 3166-1 alpha-2 nationality or country of registration, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKindRequest {
    Person,
    Organisation,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListRequest {
    Sanctions,
    Pep,
    Watchlist,
    AdverseMedia,
}

impl ListRequest {
    fn to_canonical(self) -> ScreeningList {
        match self {
            ListRequest::Sanctions => ScreeningList::Sanctions,
            ListRequest::Pep => ScreeningList::Pep,
            ListRequest::Watchlist => ScreeningList::Watchlist,
            ListRequest::AdverseMedia => ScreeningList::AdverseMedia,
        }
    }
}

/// The screening id a key stands for: `aml_` and 24 hex digits of a digest.
pub fn screening_id(idempotency_key: &str) -> String {
    resource::derived_id("aml", DOMAIN, idempotency_key)
}

impl ScreeningRequest {
    /// The canonical command, validated by the same rules the worker applies.
    pub fn to_command(&self, idempotency_key: &str) -> Result<AmlCommand, String> {
        let s = &self.subject;
        let command = AmlCommand {
            subject_id: self.subject_id.clone(),
            idempotency_key: idempotency_key.to_owned(),
            flow_id: None,
            action: AmlAction::Screen,
            subject: AmlSubject {
                kind: match s.kind {
                    SubjectKindRequest::Person => SubjectKind::Person,
                    SubjectKindRequest::Organisation => SubjectKind::Organisation,
                },
                full_name: s.full_name.clone(),
                first_name: s.first_name.clone(),
                last_name: s.last_name.clone(),
                birth_date: s.birth_date.clone(),
                country: s.country.clone(),
            },
            lists: self.lists.iter().map(|l| l.to_canonical()).collect(),
            list_update: None,
            requested_at_ms: switchyard_canonical::now_ms(),
        };
        command.validate()?;
        Ok(command)
    }
}

/// Where a screening stands, as `GET` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ScreeningView {
    pub id: String,
    pub subject_id: String,
    /// `accepted` (queued, no outcome yet), then `clear`,
    /// `potential_match` (an analyst decides), `confirmed_match`,
    /// `rejected` or `failed`.
    pub status: String,
    /// False while a potential match waits for an analyst.
    pub terminal: bool,
    pub matches: Vec<MatchView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// `compliance_hold` on a confirmed match; the failure otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ViewError>,
    pub updated_at_ms: i64,
}

/// One list entry the subject may be.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct MatchView {
    /// `sanctions`, `pep`, `watchlist` or `adverse_media`.
    pub list: String,
    pub matched_name: String,
    /// 0 to 1; higher is closer.
    pub score: f64,
    /// `name`, `alias`, `birth_date`, `country`.
    pub matched_fields: Vec<String>,
}

fn name_of<T: Serialize>(value: &T) -> Option<String> {
    serde_json::to_value(value).ok()?.as_str().map(str::to_owned)
}

impl ScreeningView {
    fn accepted(id: String, command: &AmlCommand) -> Self {
        Self {
            id,
            subject_id: command.subject_id.clone(),
            status: ACCEPTED.into(),
            terminal: false,
            matches: Vec::new(),
            provider: None,
            error: None,
            updated_at_ms: command.requested_at_ms,
        }
    }

    pub fn of_outcome(outcome: &AmlOutcome) -> Self {
        Self {
            id: screening_id(&outcome.idempotency_key),
            subject_id: outcome.subject_id.clone(),
            status: outcome.status.as_str().to_owned(),
            terminal: outcome.terminal,
            matches: outcome
                .matches
                .iter()
                .map(|m| MatchView {
                    // Canonical lists are SCREAMING_SNAKE on the wire; ours are snake_case.
                    list: name_of(&m.list).unwrap_or_default().to_ascii_lowercase(),
                    matched_name: m.matched_name.clone(),
                    score: m.score,
                    matched_fields: m.matched_fields.iter().filter_map(name_of).collect(),
                })
                .collect(),
            provider: outcome.provider.clone(),
            error: outcome.error.as_ref().map(ViewError::of),
            updated_at_ms: outcome.completed_at_ms,
        }
    }
}

/// `aml.outcomes.v1` to each screening's view.
pub(crate) struct AmlOutcomes;

impl Projects for AmlOutcomes {
    type Message = AmlOutcome;
    const DOMAIN: &'static str = DOMAIN;

    fn project(outcome: &AmlOutcome) -> Option<Projected> {
        // A step of an onboarding flow is seen through its application.
        if outcome.flow_id.is_some() || refuses_another_command(outcome.status == AmlStatus::Rejected, outcome.error.as_ref()) {
            return None;
        }
        let view = ScreeningView::of_outcome(outcome);
        Some(Projected { resource_id: view.id.clone(), status: view.status.clone(), body: json(&view), observed_at_ms: outcome.completed_at_ms })
    }
}

fn prepare(app: &Gateway, team: &Team, key: &str, body: &[u8]) -> Result<Prepared, Problem> {
    let request: ScreeningRequest = resource::parse(body)?;
    let command = request.to_command(key).map_err(Problem::invalid)?;
    let id = screening_id(key);
    let view = ScreeningView::accepted(id.clone(), &command);
    Ok(Prepared {
        domain: DOMAIN,
        location: format!("/v1/aml/screenings/{id}"),
        digest: resource::digest(&team.name, "", &request),
        record: Outbound {
            topic: app.config.topics.aml_commands.clone(),
            key: Some(command.subject_id.clone().into_bytes()),
            payload: resource::encode(&app.encoders.aml, &command, "screening")?,
            headers: Vec::new(),
        },
        schema_id: app.encoders.aml.schema_id(),
        answer: Answer::Created { status: ACCEPTED, body: json(&view) },
        resource_id: id,
    })
}

/// Screen a person or organisation. Answered 202 once the command is on the
/// bus; follow `Location` for its state.
#[utoipa::path(
    post, path = "/v1/aml/screenings", tag = "aml", operation_id = "createAmlScreening",
    security(("api_key" = ["aml:write"])),
    request_body = ScreeningRequest,
    params(
        ("Idempotency-Key" = String, Header, description = "Required; 1 to 64 printable ASCII. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = ScreeningView,
            headers(("Location" = String, description = "The screening's URL")),
            links(("GetAmlScreening" = (operation_id = "getAmlScreening", parameters(("id" = "$response.body#/id")), description = "The screening's state")))),
        (status = 403, description = "The team lacks aml:write", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_screening(
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

/// A screening's current state, with `ETag`; `?wait=` holds the call until it
/// changes (or, without `If-None-Match`, until its first outcome).
#[utoipa::path(
    get, path = "/v1/aml/screenings/{id}", tag = "aml", operation_id = "getAmlScreening",
    security(("api_key" = ["aml:read"])),
    params(
        ("id" = String, Path, description = "The id from the 202's body or Location"),
        ("wait" = Option<String>, Query, description = "Long poll: `10s`, `500ms` or seconds, capped by the gateway"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
    ),
    responses(
        (status = 200, description = "The screening", body = ScreeningView, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since If-None-Match"),
        (status = 400, description = "Invalid wait", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks aml:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such screening", body = Problem, content_type = "application/problem+json"),
        GetProblems,
    )
)]
pub(crate) async fn get_screening(State(app): State<Arc<Gateway>>, Path(id): Path<String>, query: QueryMap, headers: HeaderMap) -> Response {
    resource::current(&app, DOMAIN, "AML screening", &id, query, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::aml::{AmlMatch, MatchedField};

    fn request() -> ScreeningRequest {
        serde_json::from_str(r#"{"subject_id":"cp-1","subject":{"kind":"person","full_name":"Ada Lovelace","birth_date":"1815","country":"GB"},"lists":["sanctions","pep"]}"#)
            .expect("parses")
    }

    #[test]
    fn a_request_becomes_a_screen_command_and_matches_are_shown_in_our_words() {
        let command = request().to_command("key-1").expect("valid");
        assert_eq!((command.action, command.lists.clone()), (AmlAction::Screen, vec![ScreeningList::Sanctions, ScreeningList::Pep]));
        let mut bad = request();
        bad.subject.country = Some("GBR".into());
        assert!(bad.to_command("k").is_err_and(|e| e.contains("subject.country")));
        let mut outcome = AmlOutcome::new(&command, AmlStatus::PotentialMatch);
        outcome.matches = vec![AmlMatch {
            list: ScreeningList::AdverseMedia,
            source: "vendor-source".into(),
            entity_id: "E1".into(),
            matched_name: "Ada Lovelace".into(),
            score: 0.9,
            matched_fields: vec![MatchedField::BirthDate],
        }];
        let projected = AmlOutcomes::project(&outcome).expect("projected");
        assert_eq!((projected.resource_id, projected.status.as_str()), (screening_id("key-1"), "potential_match"));
        assert!(projected.body.contains("\"list\":\"adverse_media\"") && projected.body.contains("\"birth_date\""), "{}", projected.body);
        outcome.flow_id = Some("flow-1".into());
        assert!(AmlOutcomes::project(&outcome).is_none(), "a flow's step is not a screening of ours");
    }
}
