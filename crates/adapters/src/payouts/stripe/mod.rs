//! Stripe Payouts (`POST /v1/payouts`, `GET /v1/payouts/{id}`).
//!
//! Auth: the secret key as HTTP Basic user. Bodies are form-encoded.
//! Idempotency: `Idempotency-Key`; Stripe stores the first reply and returns
//! it for the same key and parameters without executing again.
//!
//! Ambiguity: Stripe has no lookup by idempotency key, so the status query
//! replays the create with the *same* key and parameters, which by Stripe's
//! contract returns the stored result (or 409 while the first is in flight)
//! and never executes twice; then it reads the payout by id for the current
//! status.

mod transformers;
pub(crate) mod webhook;

use crate::http::{self, traced, Transport};
use crate::payouts::VendorPayout;
use crate::{AdapterError, CallContext, Secret};
use switchyard_canonical::PayoutCommand;
use transformers::{map_error, StripeErrorBody, StripePayout, StripePayoutRequest};

#[derive(Debug, Clone)]
pub struct StripeAdapter {
    name: String,
    base_url: String,
    /// Parsed once: URL parsing showed up in the benchmark profile.
    payouts_url: reqwest::Url,
    api_key: Secret,
    http: reqwest::Client,
}

impl StripeAdapter {
    pub fn new(name: impl Into<String>, base_url: &str, api_key: Secret, transport: Transport) -> Result<Self, AdapterError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let payouts_url = reqwest::Url::parse(&format!("{base_url}/v1/payouts")).map_err(|e| {
            AdapterError::new(switchyard_canonical::ErrorClass::ManualRepair, switchyard_canonical::ErrorCode::InvalidRequest, format!("base_url: {e}"))
        })?;
        Ok(Self { name: name.into(), base_url, payouts_url, api_key, http: http::client(transport)? })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn create(&self, cmd: &PayoutCommand, provider_key: &str, ctx: &CallContext) -> Result<VendorPayout, AdapterError> {
        let form = StripePayoutRequest::from(cmd).into_form()?;
        let req = self
            .http
            .post(self.payouts_url.clone())
            .basic_auth(self.api_key.expose(), Some(""))
            .header("Idempotency-Key", provider_key)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form);
        self.send(traced(req, ctx)).await
    }

    pub async fn status(&self, cmd: &PayoutCommand, provider_key: &str, ctx: &CallContext) -> Result<VendorPayout, AdapterError> {
        let replayed = self.create(cmd, provider_key, ctx).await?;
        let req = self
            .http
            .get(format!("{}/v1/payouts/{}", self.base_url, replayed.vendor_reference))
            .basic_auth(self.api_key.expose(), Some(""));
        match self.send(traced(req, ctx)).await {
            Ok(current) => Ok(current),
            // The replay already proved what happened; a failed read only
            // loses freshness.
            Err(_) => Ok(replayed),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<VendorPayout, AdapterError> {
        http::send_json::<StripePayout, StripeErrorBody>(req, map_error).await.map(Into::into)
    }
}
