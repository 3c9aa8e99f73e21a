//! Adyen Transfers API, payouts to a bank account (`POST /btl/v4/transfers`,
//! `GET /btl/v4/transfers/{id}`).
//!
//! Auth: `X-API-Key`. Idempotency: `Idempotency-Key` (at most 64 characters),
//! under which Adyen replays the first result.
//!
//! Ambiguity: within the key's retention (at least 7 days) the status query
//! replays the create under the same key (Adyen returns the stored transfer
//! and executes nothing), then reads the transfer by id for its current
//! status. Past it a replay could pay again, so [`AdyenAdapter::find`] looks
//! the transfer up by its `reference` (our payout id) with `GET /transfers`.

mod transformers;
pub(crate) mod webhook;

use crate::http::{self, traced, Transport};
use crate::payouts::VendorPayout;
use crate::secret::ApiKey;
use crate::tls_rotation::LiveClient;
use crate::{AdapterError, CallContext};
use switchyard_canonical::PayoutCommand;
use transformers::{map_error, AdyenProblem, AdyenTransfer, AdyenTransferList, AdyenTransferRequest};

#[derive(Debug, Clone)]
pub struct AdyenAdapter {
    name: String,
    base_url: String,
    transfers_url: reqwest::Url,
    api_key: ApiKey,
    balance_account_id: String,
    /// Replaced when the client certificate rotates ([`Self::with_client`]).
    http: LiveClient,
}

impl AdyenAdapter {
    pub fn new(
        name: impl Into<String>,
        base_url: &str,
        api_key: impl Into<ApiKey>,
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
            api_key: api_key.into(),
            balance_account_id: balance_account_id.into(),
            http: http::client(transport)?.into(),
        })
    }

    /// Sends with `client` instead of the one built from the transport: a
    /// [`RotatingTls`](crate::tls_rotation::RotatingTls)'s, which follows
    /// client certificate rotations.
    pub fn with_client(self, client: LiveClient) -> Self {
        Self { http: client, ..self }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn create(&self, cmd: &PayoutCommand, provider_key: &str, ctx: &CallContext) -> Result<VendorPayout, AdapterError> {
        let body = AdyenTransferRequest::new(cmd, &self.balance_account_id);
        let req = self
            .http
            .current()
            .post(self.transfers_url.clone())
            .header("X-API-Key", self.api_key.current().expose())
            .header("Idempotency-Key", provider_key)
            .json(&body);
        self.send(traced(req, ctx)).await
    }

    pub async fn status(&self, cmd: &PayoutCommand, provider_key: &str, ctx: &CallContext) -> Result<VendorPayout, AdapterError> {
        let replayed = self.create(cmd, provider_key, ctx).await?;
        let req = self
            .http
            .current()
            .get(format!("{}/btl/v4/transfers/{}", self.base_url, replayed.vendor_reference))
            .header("X-API-Key", self.api_key.current().expose());
        Ok(self.send(traced(req, ctx)).await.unwrap_or(replayed))
    }

    /// The transfer Adyen made for `cmd`, found by `reference` among the
    /// balance account's transfers created since `since_ms`; sends nothing
    /// that could execute.
    pub async fn find(&self, cmd: &PayoutCommand, since_ms: i64, ctx: &CallContext) -> Result<Option<VendorPayout>, AdapterError> {
        let since = rfc3339(since_ms - 300_000)?;
        // Adyen allows at most six months between the bounds.
        let until = rfc3339(since_ms + 180 * 24 * 3600 * 1000)?;
        let query = [
            ("balanceAccountId", self.balance_account_id.as_str()),
            ("reference", cmd.payout_id.as_str()),
            ("createdSince", since.as_str()),
            ("createdUntil", until.as_str()),
            ("limit", "10"),
        ];
        let req = self.http.current().get(self.transfers_url.clone()).query(&query).header("X-API-Key", self.api_key.current().expose());
        let list = http::send_json::<AdyenTransferList, AdyenProblem>(traced(req, ctx), map_error).await?;
        list.into_match(cmd).map(|found| found.map(Into::into))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<VendorPayout, AdapterError> {
        http::send_json::<AdyenTransfer, AdyenProblem>(req, map_error).await.map(Into::into)
    }
}

fn rfc3339(ms: i64) -> Result<String, AdapterError> {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| AdapterError::new(switchyard_canonical::ErrorClass::Permanent, switchyard_canonical::ErrorCode::InvalidRequest, e.to_string()))?;
    at.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| AdapterError::new(switchyard_canonical::ErrorClass::Permanent, switchyard_canonical::ErrorCode::InvalidRequest, e.to_string()))
}

impl crate::tls_rotation::WithClient for AdyenAdapter {
    fn with_client(self, client: LiveClient) -> Self {
        AdyenAdapter::with_client(self, client)
    }
}
