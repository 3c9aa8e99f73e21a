//! Adyen Transfers API, payouts to a bank account (`POST /btl/v4/transfers`,
//! `GET /btl/v4/transfers/{id}`).
//!
//! Auth: `X-API-Key`. Idempotency: `Idempotency-Key` (at most 64 characters),
//! under which Adyen replays the first result.
//!
//! Ambiguity: the status query replays the create under the same key (Adyen
//! returns the stored transfer and executes nothing), then reads the
//! transfer by id for its current status.

mod transformers;
pub(crate) mod webhook;

use crate::http::{self, traced, Transport};
use crate::payouts::VendorPayout;
use crate::{AdapterError, CallContext, Secret};
use switchyard_canonical::PayoutCommand;
use transformers::{map_error, AdyenProblem, AdyenTransfer, AdyenTransferRequest};

#[derive(Debug, Clone)]
pub struct AdyenAdapter {
    name: String,
    base_url: String,
    transfers_url: reqwest::Url,
    api_key: Secret,
    balance_account_id: String,
    http: reqwest::Client,
}

impl AdyenAdapter {
    pub fn new(
        name: impl Into<String>,
        base_url: &str,
        api_key: Secret,
        balance_account_id: impl Into<String>,
        transport: Transport,
    ) -> Result<Self, AdapterError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let transfers_url = reqwest::Url::parse(&format!("{base_url}/btl/v4/transfers")).map_err(|e| {
            AdapterError::new(switchyard_canonical::ErrorClass::ManualRepair, switchyard_canonical::ErrorCode::InvalidRequest, format!("base_url: {e}"))
        })?;
        Ok(Self {
            name: name.into(),
            base_url,
            transfers_url,
            api_key,
            balance_account_id: balance_account_id.into(),
            http: http::client(transport)?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn create(&self, cmd: &PayoutCommand, provider_key: &str, ctx: &CallContext) -> Result<VendorPayout, AdapterError> {
        let body = AdyenTransferRequest::new(cmd, &self.balance_account_id);
        let req = self
            .http
            .post(self.transfers_url.clone())
            .header("X-API-Key", self.api_key.expose())
            .header("Idempotency-Key", provider_key)
            .json(&body);
        self.send(traced(req, ctx)).await
    }

    pub async fn status(&self, cmd: &PayoutCommand, provider_key: &str, ctx: &CallContext) -> Result<VendorPayout, AdapterError> {
        let replayed = self.create(cmd, provider_key, ctx).await?;
        let req = self
            .http
            .get(format!("{}/btl/v4/transfers/{}", self.base_url, replayed.vendor_reference))
            .header("X-API-Key", self.api_key.expose());
        Ok(self.send(traced(req, ctx)).await.unwrap_or(replayed))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<VendorPayout, AdapterError> {
        http::send_json::<AdyenTransfer, AdyenProblem>(req, map_error).await.map(Into::into)
    }
}
