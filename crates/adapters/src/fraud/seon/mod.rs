//! SEON fraud API (`api.seon.io`, regional hosts).
//!
//! Score: `POST /SeonRestService/fraud-api/v2/` with `action_type`, `ip`,
//! `email`, `phone_number`, `user_id`, `transaction_id`,
//! `transaction_amount`, `transaction_currency`; the reply's
//! `data.state` APPROVE | REVIEW | DECLINE is the decision, `fraud_score`
//! (0-100) and `applied_rules` say why.
//! Feedback: label API, `PUT /SeonRestService/fraud-api/label/v1/{transaction_id}`
//! with `{label}` (UNCONFIRMED: body shape and label names; SEON documents
//! a bulk form of up to 50 and v2 labels such as
//! `fraud_detection_chargeback_fraud`).
//!
//! Auth: `X-API-KEY`. Idempotency: `transaction_id` is the natural key; we
//! send the command's transaction id, or our key when there is none
//! (onboarding, login), so a repeat names the same SEON transaction.
//! Contract: SEON publishes no machine-readable API definition (tests/contracts/README.md).

mod transformers;
pub(crate) mod webhook;

use super::{feedback_of, FraudVerdict};
use crate::http::{self, traced, Transport};
use crate::secret::ApiKey;
use crate::{AdapterError, CallContext};
use switchyard_canonical::fraud::FraudCommand;
use switchyard_canonical::{ErrorClass, ErrorCode};
use transformers::{label, map_error, ScoreRequest, SeonReply};

#[derive(Debug, Clone)]
pub struct SeonAdapter {
    name: String,
    base_url: String,
    api_key: ApiKey,
    /// Replaced when the client certificate rotates ([`WithClient`](crate::tls_rotation::WithClient)).
    http: crate::tls_rotation::LiveClient,
}

impl SeonAdapter {
    pub fn new(name: impl Into<String>, base_url: &str, api_key: impl Into<ApiKey>, transport: Transport) -> Result<Self, AdapterError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base_url).map_err(|e| AdapterError::new(ErrorClass::ManualRepair, ErrorCode::InvalidRequest, format!("base_url: {e}")))?;
        Ok(Self { name: name.into(), base_url, api_key: api_key.into(), http: http::client(transport)?.into() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn score(&self, cmd: &FraudCommand, ctx: &CallContext) -> Result<FraudVerdict, AdapterError> {
        let req = self
            .http
            .current()
            .post(format!("{}/SeonRestService/fraud-api/v2/", self.base_url))
            .header("X-API-KEY", self.api_key.current().expose())
            .json(&ScoreRequest::new(cmd));
        let reply: SeonReply = http::send_json::<_, SeonReply>(traced(req, ctx), map_error).await?;
        transformers::verdict(reply)
    }

    pub async fn feedback(&self, cmd: &FraudCommand, ctx: &CallContext) -> Result<FraudVerdict, AdapterError> {
        let f = feedback_of(cmd)?;
        let req = self
            .http
            .current()
            .put(format!("{}/SeonRestService/fraud-api/label/v1/{}", self.base_url, crate::encode::path_segment(&f.transaction_id)))
            .header("X-API-KEY", self.api_key.current().expose())
            .json(&serde_json::json!({ "label": label(f.kind) }));
        let reply: SeonReply = http::send_json::<_, SeonReply>(traced(req, ctx), map_error).await?;
        transformers::accepted(reply, &f.transaction_id)
    }
}

crate::tls_rotation::with_client_field!(SeonAdapter);
