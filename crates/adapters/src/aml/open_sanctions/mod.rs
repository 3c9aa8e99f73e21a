//! OpenSanctions match API (`api.opensanctions.org`, or a self-hosted yente).
//!
//! `POST /match/{dataset}?threshold=..` with `{queries: {q: {schema,
//! properties}}}`; the reply scores candidate entities, `match: true` above
//! the threshold. Synchronous and stateless: a repeated call is harmless,
//! so there is no idempotency key and no vendor reference.
//!
//! Auth: `Authorization: ApiKey <key>`.
//! Decisions: OpenSanctions scores, it does not adjudicate. Our policy: a
//! match scoring at least [`CONFIRM_SCORE`] on the name *and* agreeing on
//! the birth date is confirmed; any other match is potential.
//! Contract: checked against the OpenAPI document yente serves
//! (tests/contracts/opensanctions, tests/tests/kyc_contracts.rs).

mod transformers;

pub use transformers::CONFIRM_SCORE;

use super::AmlVerdict;
use crate::http::{self, traced, Transport};
use crate::secret::ApiKey;
use crate::{AdapterError, CallContext};
use switchyard_canonical::aml::AmlCommand;
use switchyard_canonical::{ErrorClass, ErrorCode};
use transformers::{map_error, MatchRequest, OsError, OsReply};

#[derive(Debug, Clone)]
pub struct OpenSanctionsAdapter {
    name: String,
    match_url: reqwest::Url,
    api_key: ApiKey,
    /// Replaced when the client certificate rotates ([`WithClient`](crate::tls_rotation::WithClient)).
    http: crate::tls_rotation::LiveClient,
}

impl OpenSanctionsAdapter {
    pub fn new(name: impl Into<String>, base_url: &str, api_key: impl Into<ApiKey>, dataset: &str, transport: Transport) -> Result<Self, AdapterError> {
        let url = format!("{}/match/{dataset}?threshold=0.7", base_url.trim_end_matches('/'));
        let match_url =
            reqwest::Url::parse(&url).map_err(|e| AdapterError::new(ErrorClass::ManualRepair, ErrorCode::InvalidRequest, format!("base_url: {e}")))?;
        Ok(Self { name: name.into(), match_url, api_key: api_key.into(), http: http::client(transport)?.into() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn screen(&self, cmd: &AmlCommand, ctx: &CallContext) -> Result<AmlVerdict, AdapterError> {
        let req = self
            .http
            .current()
            .post(self.match_url.clone())
            .header("Authorization", format!("ApiKey {}", self.api_key.current().expose()))
            .json(&MatchRequest::new(cmd));
        let reply: OsReply = http::send_json::<_, OsError>(traced(req, ctx), map_error).await?;
        transformers::verdict(cmd, reply)
    }
}

crate::tls_rotation::with_client_field!(OpenSanctionsAdapter);
