//! Sardine risk API (`api.sardine.ai`, sandbox `api.sandbox.sardine.ai`).
//!
//! Score: `POST /v1/customers` with `sessionKey`, `flow`, `customer`,
//! `transaction`, `checkpoints`; the reply's `level` (low | medium | high |
//! very_high) is the decision field, `customer.score` and `signals` say why.
//! Feedback: `POST /v1/feedbacks` (UNCONFIRMED: Sardine's feedback API is not
//! publicly documented; shape modelled on its customer payload).
//!
//! Auth: HTTP Basic `clientId:clientSecret`.
//! Idempotency: UNCONFIRMED; our key is the `sessionKey`, which the
//! simulator deduplicates on. Re-scoring at the real vendor is harmless.
//! Decision policy (ours): low/medium allow, high review, very_high block.
//! Contract: Sardine publishes no machine-readable API definition (tests/contracts/README.md).

mod transformers;
pub(crate) mod webhook;

use super::{feedback_of, FraudVerdict};
use crate::http::{self, traced, Transport};
use crate::secret::ApiKey;
use crate::{AdapterError, CallContext};
use switchyard_canonical::fraud::FraudCommand;
use switchyard_canonical::{ErrorClass, ErrorCode};
use transformers::{map_error, FeedbackRequest, SardineError, SardineReply, ScoreRequest};

#[derive(Debug, Clone)]
pub struct SardineAdapter {
    name: String,
    base_url: String,
    client_id: ApiKey,
    client_secret: ApiKey,
    /// Replaced when the client certificate rotates ([`WithClient`](crate::tls_rotation::WithClient)).
    http: crate::tls_rotation::LiveClient,
}

impl SardineAdapter {
    pub fn new(name: impl Into<String>, base_url: &str, client_id: impl Into<ApiKey>, client_secret: impl Into<ApiKey>, transport: Transport) -> Result<Self, AdapterError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base_url).map_err(|e| AdapterError::new(ErrorClass::ManualRepair, ErrorCode::InvalidRequest, format!("base_url: {e}")))?;
        Ok(Self { name: name.into(), base_url, client_id: client_id.into(), client_secret: client_secret.into(), http: http::client(transport)?.into() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn post(&self, path: &str, ctx: &CallContext) -> reqwest::RequestBuilder {
        let req = self.http.current().post(format!("{}{path}", self.base_url)).basic_auth(self.client_id.current().expose(), Some(self.client_secret.current().expose()));
        traced(req, ctx)
    }

    pub async fn score(&self, cmd: &FraudCommand, key: &str, ctx: &CallContext) -> Result<FraudVerdict, AdapterError> {
        let reply: SardineReply = http::send_json::<_, SardineError>(self.post("/v1/customers", ctx).json(&ScoreRequest::new(cmd, key)), map_error).await?;
        transformers::verdict(reply, key)
    }

    pub async fn feedback(&self, cmd: &FraudCommand, key: &str, ctx: &CallContext) -> Result<FraudVerdict, AdapterError> {
        let body = FeedbackRequest::new(cmd, feedback_of(cmd)?, key);
        http::send_json::<serde_json::Value, SardineError>(self.post("/v1/feedbacks", ctx).json(&body), map_error).await?;
        Ok(FraudVerdict::feedback_accepted(key.to_owned()))
    }
}

crate::tls_rotation::with_client_field!(SardineAdapter);
