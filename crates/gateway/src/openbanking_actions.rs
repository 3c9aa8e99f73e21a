//! The commands on an existing consent: `/v1/openbanking/consents/{id}`
//! `/completion`, `/refresh` and `/revocation`, each answered 202 with the
//! consent's current view (see [`crate::openbanking`]).

use crate::auth::Team;
use crate::openbanking::{command, consent, prepared, ConsentView};
use crate::problem::{PostProblems, Problem};
use crate::resource::{self, Answer, Prepared};
use crate::Gateway;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use switchyard_canonical::openbanking::{CompletionSpec, Dataset, OpenBankingAction, OpenBankingCommand, RefreshSpec, RefreshTrigger};

/// `POST .../consents/{id}/completion` body: what the user's browser came
/// back with, exactly one of the two.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    /// Plaid Link's `public_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_token: Option<String>,
    /// An OAuth authorization code (TrueLayer, bank redirects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_code: Option<String>,
}

/// `POST .../consents/{id}/refresh` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// Empty or absent: every data set the consent grants. The data goes
    /// to `openbanking.data.v1`, not to this API.
    #[serde(default)]
    pub datasets: Vec<DatasetRequest>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatasetRequest {
    Accounts,
    Balances,
    Transactions,
}

/// `POST .../consents/{id}/revocation` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationRequest {
    /// Why, in your words, for the audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl CompletionRequest {
    pub fn to_command(&self, consent_id: &str, idempotency_key: &str) -> Result<OpenBankingCommand, String> {
        let mut c = command(consent_id, idempotency_key, OpenBankingAction::CompleteConsent);
        c.completion = Some(CompletionSpec { public_token: self.public_token.clone(), authorization_code: self.authorization_code.clone() });
        c.validate()?;
        Ok(c)
    }
}

impl RefreshRequest {
    pub fn to_command(&self, consent_id: &str, idempotency_key: &str) -> Result<OpenBankingCommand, String> {
        let mut c = command(consent_id, idempotency_key, OpenBankingAction::Refresh);
        let datasets = self
            .datasets
            .iter()
            .map(|d| match d {
                DatasetRequest::Accounts => Dataset::Accounts,
                DatasetRequest::Balances => Dataset::Balances,
                DatasetRequest::Transactions => Dataset::Transactions,
            })
            .collect();
        c.refresh = Some(RefreshSpec { datasets, trigger: RefreshTrigger::OnDemand });
        c.validate()?;
        Ok(c)
    }
}

impl RevocationRequest {
    pub fn to_command(&self, consent_id: &str, idempotency_key: &str) -> Result<OpenBankingCommand, String> {
        let mut c = command(consent_id, idempotency_key, OpenBankingAction::RevokeConsent);
        c.reason = self.reason.clone();
        c.validate()?;
        Ok(c)
    }
}

/// A command on an existing consent: the consent's current view is the answer.
trait FollowUp: serde::de::DeserializeOwned + Serialize {
    fn to_command(&self, consent_id: &str, idempotency_key: &str) -> Result<OpenBankingCommand, String>;
}

impl FollowUp for CompletionRequest {
    fn to_command(&self, consent_id: &str, idempotency_key: &str) -> Result<OpenBankingCommand, String> {
        CompletionRequest::to_command(self, consent_id, idempotency_key)
    }
}
impl FollowUp for RefreshRequest {
    fn to_command(&self, consent_id: &str, idempotency_key: &str) -> Result<OpenBankingCommand, String> {
        RefreshRequest::to_command(self, consent_id, idempotency_key)
    }
}
impl FollowUp for RevocationRequest {
    fn to_command(&self, consent_id: &str, idempotency_key: &str) -> Result<OpenBankingCommand, String> {
        RevocationRequest::to_command(self, consent_id, idempotency_key)
    }
}

async fn follow_up<R: FollowUp>(app: &Gateway, team: &Team, id: &str, key: String, body: Bytes) -> Result<Prepared, Problem> {
    let request: R = resource::parse(&body)?;
    let current = consent(app, id).await?;
    let command = request.to_command(id, &key).map_err(Problem::invalid)?;
    // The digest covers the completion's exchange material, hashed: the
    // request record never holds it in clear.
    prepared(app, resource::digest(&team.name, id, &request), &command, format!("/v1/openbanking/consents/{id}"), id.to_owned(), Answer::Current { body: current })
}

/// Hand in what the user's browser came back with from the hand-off.
/// Answered 202 with the consent's current state once the command is on the bus.
#[utoipa::path(
    post, path = "/v1/openbanking/consents/{id}/completion", tag = "openbanking", operation_id = "completeConsent",
    security(("api_key" = ["openbanking:write"])),
    request_body = CompletionRequest,
    params(
        ("id" = String, Path, description = "The consent's id"),
        ("Idempotency-Key" = String, Header, description = "Required; 1 to 64 printable ASCII. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = ConsentView,
            headers(("Location" = String, description = "The consent's URL")),
            links(("GetConsent" = (operation_id = "getConsent", parameters(("id" = "$request.path.id")), description = "The consent's state")))),
        (status = 403, description = "The team lacks openbanking:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such consent", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_completion(
    State(app): State<Arc<Gateway>>,
    Extension(team): Extension<Arc<Team>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    resource::submit(&app, &team, &headers, body, |key, body| follow_up::<CompletionRequest>(&app, &team, &id, key, body)).await
}

/// Pull the consent's data again (to `openbanking.data.v1`). Answered 202
/// with the consent's current state once the command is on the bus.
#[utoipa::path(
    post, path = "/v1/openbanking/consents/{id}/refresh", tag = "openbanking", operation_id = "refreshConsent",
    security(("api_key" = ["openbanking:write"])),
    request_body = RefreshRequest,
    params(
        ("id" = String, Path, description = "The consent's id"),
        ("Idempotency-Key" = String, Header, description = "Required; 1 to 64 printable ASCII. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = ConsentView,
            headers(("Location" = String, description = "The consent's URL")),
            links(("GetConsent" = (operation_id = "getConsent", parameters(("id" = "$request.path.id")), description = "The consent's state")))),
        (status = 403, description = "The team lacks openbanking:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such consent", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_refresh(
    State(app): State<Arc<Gateway>>,
    Extension(team): Extension<Arc<Team>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    resource::submit(&app, &team, &headers, body, |key, body| follow_up::<RefreshRequest>(&app, &team, &id, key, body)).await
}

/// Revoke the consent, at the provider too. Answered 202 with the
/// consent's current state once the command is on the bus.
#[utoipa::path(
    post, path = "/v1/openbanking/consents/{id}/revocation", tag = "openbanking", operation_id = "revokeConsent",
    security(("api_key" = ["openbanking:write"])),
    request_body = RevocationRequest,
    params(
        ("id" = String, Path, description = "The consent's id"),
        ("Idempotency-Key" = String, Header, description = "Required; 1 to 64 printable ASCII. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = ConsentView,
            headers(("Location" = String, description = "The consent's URL")),
            links(("GetConsent" = (operation_id = "getConsent", parameters(("id" = "$request.path.id")), description = "The consent's state")))),
        (status = 403, description = "The team lacks openbanking:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such consent", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_revocation(
    State(app): State<Arc<Gateway>>,
    Extension(team): Extension<Arc<Team>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    resource::submit(&app, &team, &headers, body, |key, body| follow_up::<RevocationRequest>(&app, &team, &id, key, body)).await
}
