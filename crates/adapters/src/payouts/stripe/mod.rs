//! Stripe Connect payouts to the command's beneficiary.
//!
//! Stripe pays out only to bank accounts attached to an account, so each
//! payout is two calls on the configured connected account
//! (`Stripe-Account: acct_...`):
//! 1. `POST /v1/accounts/{acct}/external_accounts`: the beneficiary's IBAN
//!    and holder as a bank account (Stripe takes the IBAN as
//!    `account_number`). Its idempotency key is derived from the account
//!    details, and the `ba_...` id is cached per worker, so a beneficiary is
//!    registered once, not once per payout. Stripe refusing it (a bad IBAN,
//!    a country it cannot pay) is a permanent `invalid_beneficiary` before
//!    any money call.
//! 2. `POST /v1/payouts` with `destination = ba_...` under the payout's own
//!    `Idempotency-Key`. Without `destination` Stripe would pay the
//!    account's *default* bank account, not the beneficiary: never omitted.
//!
//! Auth: the secret key as HTTP Basic user. Bodies are form-encoded.
//!
//! Ambiguity: Stripe has no lookup by idempotency key, so within the key's
//! retention (24 h) the status query replays the create with the same key
//! and parameters, which returns the stored result (or 409 while the first
//! is in flight) and never executes twice. Past retention a replay would pay
//! again, so [`StripeAdapter::find`] lists the account's payouts created
//! since the claim and matches `metadata[switchyard_payout_id]`.

mod transformers;
pub(crate) mod webhook;

use crate::http::{self, traced, Transport};
use crate::payouts::VendorPayout;
use crate::secret::ApiKey;
use crate::{AdapterError, CallContext};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use switchyard_canonical::{ErrorClass, ErrorCode, PayoutCommand};
use transformers::{map_error, BankAccountRequest, StripeBankAccount, StripeErrorBody, StripePayout, StripePayoutList, StripePayoutRequest};

/// Pages of 100 payouts [`StripeAdapter::find`] reads before giving up.
const MAX_FIND_PAGES: usize = 50;
/// Registered beneficiaries remembered per worker.
const MAX_CACHED_BENEFICIARIES: usize = 100_000;

#[derive(Debug, Clone)]
pub struct StripeAdapter {
    name: String,
    base_url: String,
    /// Parsed once: URL parsing showed up in the benchmark profile.
    payouts_url: reqwest::Url,
    external_accounts_url: reqwest::Url,
    connected_account: String,
    api_key: ApiKey,
    /// Replaced when the client certificate rotates ([`WithClient`](crate::tls_rotation::WithClient)).
    http: crate::tls_rotation::LiveClient,
    /// Beneficiary fingerprint -> `ba_...` on the connected account. One
    /// cell per beneficiary, so concurrent payouts to a new beneficiary wait
    /// for one registration instead of racing into Stripe's 409.
    bank_accounts: Arc<Mutex<HashMap<String, Arc<tokio::sync::OnceCell<String>>>>>,
}

impl StripeAdapter {
    pub fn new(name: impl Into<String>, base_url: &str, api_key: impl Into<ApiKey>, connected_account: &str, transport: Transport) -> Result<Self, AdapterError> {
        let bad = |what: &str, e: String| AdapterError::new(ErrorClass::ManualRepair, ErrorCode::InvalidRequest, format!("{what}: {e}"));
        if !connected_account.starts_with("acct_") {
            return Err(bad("connected_account", format!("{connected_account:?} is not a Stripe account id (acct_...)")));
        }
        let base_url = base_url.trim_end_matches('/').to_owned();
        let payouts_url = reqwest::Url::parse(&format!("{base_url}/v1/payouts")).map_err(|e| bad("base_url", e.to_string()))?;
        let external_accounts_url = reqwest::Url::parse(&format!("{base_url}/v1/accounts/{connected_account}/external_accounts"))
            .map_err(|e| bad("base_url", e.to_string()))?;
        Ok(Self {
            name: name.into(),
            base_url,
            payouts_url,
            external_accounts_url,
            connected_account: connected_account.to_owned(),
            api_key: api_key.into(),
            http: http::client(transport)?.into(),
            bank_accounts: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.basic_auth(self.api_key.current().expose(), Some("")).header("Stripe-Account", &self.connected_account)
    }

    pub async fn create(&self, cmd: &PayoutCommand, provider_key: &str, ctx: &CallContext) -> Result<VendorPayout, AdapterError> {
        let destination = self.bank_account(cmd, ctx).await?;
        let form = StripePayoutRequest::new(cmd, &destination).into_form()?;
        let req = self
            .authed(self.http.current().post(self.payouts_url.clone()))
            .header("Idempotency-Key", provider_key)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form);
        self.send(traced(req, ctx)).await
    }

    /// The beneficiary as a bank account on the connected account.
    async fn bank_account(&self, cmd: &PayoutCommand, ctx: &CallContext) -> Result<String, AdapterError> {
        let request = BankAccountRequest::new(cmd)?;
        let fingerprint = request.fingerprint(&self.connected_account);
        let cell = {
            let mut cache = lock(&self.bank_accounts);
            if cache.len() >= MAX_CACHED_BENEFICIARIES && !cache.contains_key(&fingerprint) {
                cache.clear();
            }
            cache.entry(fingerprint.clone()).or_default().clone()
        };
        let id = cell
            .get_or_try_init(|| async {
                let req = self
                    .authed(self.http.current().post(self.external_accounts_url.clone()))
                    .header("Idempotency-Key", format!("beneficiary-{fingerprint}"))
                    .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(request.into_form()?);
                let account = http::send_json::<StripeBankAccount, StripeErrorBody>(traced(req, ctx), transformers::map_beneficiary_error).await?;
                Ok::<_, AdapterError>(account.id)
            })
            .await?;
        Ok(id.clone())
    }

    pub async fn status(&self, cmd: &PayoutCommand, provider_key: &str, ctx: &CallContext) -> Result<VendorPayout, AdapterError> {
        let replayed = self.create(cmd, provider_key, ctx).await?;
        let req = self.authed(self.http.current().get(format!("{}/v1/payouts/{}", self.base_url, replayed.vendor_reference)));
        match self.send(traced(req, ctx)).await {
            Ok(current) => Ok(current),
            // The replay already proved what happened; a failed read only
            // loses freshness.
            Err(_) => Ok(replayed),
        }
    }

    /// The payout Stripe made for `cmd`, looked up without sending anything
    /// that could execute: the connected account's payouts created since
    /// `since_ms`, matched on `metadata[switchyard_payout_id]`.
    pub async fn find(&self, cmd: &PayoutCommand, since_ms: i64, ctx: &CallContext) -> Result<Option<VendorPayout>, AdapterError> {
        let created_gte = (since_ms / 1000 - 300).max(0).to_string();
        let mut starting_after: Option<String> = None;
        for _ in 0..MAX_FIND_PAGES {
            let mut query = vec![("created[gte]", created_gte.clone()), ("limit", "100".to_owned())];
            if let Some(after) = &starting_after {
                query.push(("starting_after", after.clone()));
            }
            let req = self.authed(self.http.current().get(self.payouts_url.clone()).query(&query));
            let page = http::send_json::<StripePayoutList, StripeErrorBody>(traced(req, ctx), map_error).await?;
            if let Some(found) = page.data.iter().find(|p| p.is_for(&cmd.payout_id)) {
                return found.check_matches(cmd).map(Some);
            }
            match (page.has_more, page.data.last()) {
                (true, Some(last)) => starting_after = Some(last.id().to_owned()),
                _ => return Ok(None),
            }
        }
        Err(AdapterError::new(
            ErrorClass::ManualRepair,
            ErrorCode::Unknown,
            format!("more than {} payouts since the claim; look payout {} up in the Stripe dashboard", MAX_FIND_PAGES * 100, cmd.payout_id),
        ))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<VendorPayout, AdapterError> {
        http::send_json::<StripePayout, StripeErrorBody>(req, map_error).await.map(Into::into)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

crate::tls_rotation::with_client_field!(StripeAdapter);
