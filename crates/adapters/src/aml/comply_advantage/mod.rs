//! ComplyAdvantage (legacy REST API, `api.complyadvantage.com`).
//!
//! `POST /searches` with `search_term` (string, or `{first_name,
//! last_name}` for persons), `client_ref`, `fuzziness`, `filters {types,
//! birth_year, country_codes, entity_type}`; the reply carries the search
//! with `match_status`, `risk_level` and `hits` synchronously.
//!
//! Auth: `Authorization: Token <api key>`.
//! Idempotency: UNCONFIRMED that ComplyAdvantage deduplicates; we send our
//! key as `client_ref` and the simulator answers a repeated `client_ref` with
//! the same search. A duplicate search at the real vendor costs a search,
//! nothing else.
//! Re-screening: ComplyAdvantage monitors searches and re-screens on list
//! updates itself (webhook `monitored_search_updated`, another engineer's
//! ingester); a `RESCREEN` command runs a fresh search tagged with the
//! list update.
//! Contract: ComplyAdvantage publishes no machine-readable API definition (tests/contracts/README.md).

mod transformers;
pub(crate) mod webhook;

use super::AmlVerdict;
use crate::http::{self, traced, Transport};
use crate::secret::ApiKey;
use crate::{AdapterError, CallContext};
use switchyard_canonical::aml::AmlCommand;
use switchyard_canonical::{ErrorClass, ErrorCode};
use transformers::{map_error, CaEnvelope, CaError, SearchRequest};

#[derive(Debug, Clone)]
pub struct ComplyAdvantageAdapter {
    name: String,
    searches_url: reqwest::Url,
    api_key: ApiKey,
    /// Replaced when the client certificate rotates ([`WithClient`](crate::tls_rotation::WithClient)).
    http: crate::tls_rotation::LiveClient,
}

impl ComplyAdvantageAdapter {
    pub fn new(name: impl Into<String>, base_url: &str, api_key: impl Into<ApiKey>, transport: Transport) -> Result<Self, AdapterError> {
        let url = format!("{}/searches", base_url.trim_end_matches('/'));
        let searches_url =
            reqwest::Url::parse(&url).map_err(|e| AdapterError::new(ErrorClass::ManualRepair, ErrorCode::InvalidRequest, format!("base_url: {e}")))?;
        Ok(Self { name: name.into(), searches_url, api_key: api_key.into(), http: http::client(transport)?.into() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn screen(&self, cmd: &AmlCommand, key: &str, ctx: &CallContext) -> Result<AmlVerdict, AdapterError> {
        let req = self
            .http
            .current()
            .post(self.searches_url.clone())
            .header("Authorization", format!("Token {}", self.api_key.current().expose()))
            .json(&SearchRequest::new(cmd, key));
        let reply: CaEnvelope = http::send_json::<_, CaError>(traced(req, ctx), map_error).await?;
        transformers::verdict(reply)
    }
}

crate::tls_rotation::with_client_field!(ComplyAdvantageAdapter);
