//! TrueLayer Payouts (Payments API v3): money from our merchant account at
//! TrueLayer to the command's beneficiary by bank transfer
//! (`POST /v3/payouts`, `GET /v3/payouts/{id}`).
//!
//! - Auth: a client-credentials access token (`scope=payments`) from the
//!   auth server, cached until shortly before `expires_in`; the client
//!   secret is the provider's rotating `api_key` and is read per token
//!   request. A 401 drops the token and repeats the call once.
//! - Every create carries our key as `Idempotency-Key` and a `Tl-Signature`
//!   (TrueLayer's `truelayer-signing`: detached ES512 JWS over method,
//!   path, the `Idempotency-Key` header and the body) made with the merchant
//!   private key uploaded under `signing_key_id`.
//! - The beneficiary is an external account by IBAN; our payout id travels
//!   in `metadata.switchyard_payout_id` (TrueLayer keeps metadata with the
//!   payout and echoes it in `payout_executed` / `payout_failed`).
//! - The create answers `{id}` only; one `GET` right after reads where the
//!   payout stands (`executed` -> paid, `failed` -> failed with the reason,
//!   else submitted). A failed read only loses freshness: the create's
//!   acceptance already stands.
//!
//! Ambiguity: within the key's retention the status query replays the
//! create with the same key and the same bytes, which TrueLayer answers
//! with the first payout (409 while it is in flight) and never executes
//! twice; then it reads the payout by id. TrueLayer offers no search of
//! payouts by metadata (UNCONFIRMED: the merchant account's transaction
//! list may carry it), so past retention [`TrueLayerPayoutAdapter::find`]
//! parks the payout for a person rather than guess.

mod transformers;

use crate::http::{self, traced, Transport};
use crate::payouts::VendorPayout;
use crate::secret::ApiKey;
use crate::{AdapterError, CallContext, Secret};
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_canonical::{ErrorClass, ErrorCode, PayoutCommand, PayoutStatus};
use transformers::{map_problem, CreatePayout, Created, Payout, Problem};

/// Static settings of one TrueLayer payout client.
#[derive(Debug, Clone)]
pub struct TrueLayerPayoutSettings {
    /// `https://api.truelayer-sandbox.com` / `https://api.truelayer.com`.
    pub api_url: String,
    /// `https://auth.truelayer-sandbox.com` / `https://auth.truelayer.com`.
    pub auth_url: String,
    pub client_id: String,
    /// The EC P-521 private key (PEM) and the `kid` TrueLayer shows for its
    /// uploaded public half; read per create, so a rotated pair signs the
    /// next one.
    pub signing_key: crate::signing_key::SigningKey,
    /// The merchant account payouts are drawn from.
    pub merchant_account_id: String,
}

#[derive(Debug, Clone)]
pub struct TrueLayerPayoutAdapter {
    name: String,
    s: TrueLayerPayoutSettings,
    client_secret: ApiKey,
    /// Replaced when the client certificate rotates ([`WithClient`](crate::tls_rotation::WithClient)).
    http: crate::tls_rotation::LiveClient,
    /// The access token and when to stop using it.
    token: Arc<Mutex<Option<(Secret, Instant)>>>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
}

impl TrueLayerPayoutAdapter {
    pub fn new(name: impl Into<String>, settings: TrueLayerPayoutSettings, client_secret: impl Into<ApiKey>, transport: Transport) -> Result<Self, AdapterError> {
        let mut s = settings;
        for url in [&mut s.api_url, &mut s.auth_url] {
            *url = url.trim_end_matches('/').to_owned();
        }
        let bad = |m: &str| AdapterError::new(ErrorClass::ManualRepair, ErrorCode::InvalidRequest, m.to_owned());
        reqwest::Url::parse(&s.api_url).map_err(|e| bad(&format!("base_url: {e}")))?;
        reqwest::Url::parse(&s.auth_url).map_err(|e| bad(&format!("truelayer.auth_url: {e}")))?;
        if s.merchant_account_id.trim().is_empty() {
            return Err(bad("truelayer.merchant_account_id must not be empty"));
        }
        let adapter = Self { name: name.into(), s, client_secret: client_secret.into(), http: http::client(transport)?.into(), token: Arc::new(Mutex::new(None)) };
        // A key that does not sign is a configuration error, found at start-up.
        adapter.sign("/start-up-check", "start-up", b"{}")?;
        Ok(adapter)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn create(&self, cmd: &PayoutCommand, provider_key: &str, ctx: &CallContext) -> Result<VendorPayout, AdapterError> {
        let created = self.post_create(cmd, provider_key, ctx).await?;
        let accepted = VendorPayout { status: PayoutStatus::Submitted, vendor_reference: created.id.clone(), error: None };
        Ok(self.read(&created.id, ctx).await.unwrap_or(accepted))
    }

    async fn post_create(&self, cmd: &PayoutCommand, provider_key: &str, ctx: &CallContext) -> Result<Created, AdapterError> {
        let body = serde_json::to_vec(&CreatePayout::new(cmd, &self.s.merchant_account_id)?)
            .map_err(|e| AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("payout body: {e}")))?;
        self.api(ctx, reqwest::Method::POST, "/v3/payouts", Some((provider_key, body.as_slice()))).await
    }

    async fn read(&self, id: &str, ctx: &CallContext) -> Result<VendorPayout, AdapterError> {
        let path = format!("/v3/payouts/{}", crate::encode::path_segment(id));
        self.api::<Payout>(ctx, reqwest::Method::GET, &path, None).await.map(Into::into)
    }

    /// What TrueLayer did under `provider_key`: the create replayed (same
    /// key, same bytes: the first payout, never a second), then read.
    pub async fn status(&self, cmd: &PayoutCommand, provider_key: &str, ctx: &CallContext) -> Result<VendorPayout, AdapterError> {
        let created = self.post_create(cmd, provider_key, ctx).await?;
        let accepted = VendorPayout { status: PayoutStatus::Submitted, vendor_reference: created.id.clone(), error: None };
        Ok(self.read(&created.id, ctx).await.unwrap_or(accepted))
    }

    /// Past the key's retention: no lookup TrueLayer documents finds a
    /// payout by our reference, so a person looks (never a second create).
    pub async fn find(&self, cmd: &PayoutCommand, _since_ms: i64, _ctx: &CallContext) -> Result<Option<VendorPayout>, AdapterError> {
        Err(AdapterError::new(
            ErrorClass::ManualRepair,
            ErrorCode::Unknown,
            format!(
                "TrueLayer has no payout search by reference; look for metadata.switchyard_payout_id = {:?} among merchant account {}'s payouts in TrueLayer's console",
                cmd.payout_id, self.s.merchant_account_id
            ),
        ))
    }

    /// The cached client-credentials token, or a new one.
    async fn access_token(&self, ctx: &CallContext) -> Result<Secret, AdapterError> {
        if let Some((token, until)) = lock(&self.token).as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let secret = self.client_secret.current();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.s.client_id.as_str()),
            ("client_secret", secret.expose()),
            ("scope", "payments"),
        ];
        let req = traced(self.http.current().post(format!("{}/connect/token", self.s.auth_url)), ctx).form(&form);
        let reply = http::send_json::<TokenReply, OAuthError>(req, |status, wait, error| match error {
            Some(e) if matches!(e.error.as_str(), "invalid_client" | "unauthorized_client") => {
                AdapterError::new(ErrorClass::ManualRepair, ErrorCode::AuthenticationFailed, format!("TrueLayer auth: {}", e.error))
            }
            // Nothing was sent that could move money: never ambiguous.
            Some(e) => AdapterError { ambiguous: false, ..AdapterError::from_status(status, wait, &format!("TrueLayer auth: {}", e.error)) },
            None => AdapterError { ambiguous: false, ..AdapterError::from_status(status, wait, "TrueLayer auth server") },
        })
        .await
        .map_err(|e| AdapterError { ambiguous: false, ..e })?;
        // Renewed a minute early (or at half-life for short tokens).
        let life = Duration::from_secs(reply.expires_in);
        let until = Instant::now() + life.saturating_sub(Duration::from_secs(60)).max(life / 2);
        let token = Secret::new(reply.access_token);
        *lock(&self.token) = Some((token.clone(), until));
        Ok(token)
    }

    /// One API call with the bearer token; a 401 renews the token and
    /// repeats the call once (same key, same signature).
    async fn api<T: serde::de::DeserializeOwned>(&self, ctx: &CallContext, method: reqwest::Method, path: &str, post: Option<(&str, &[u8])>) -> Result<T, AdapterError> {
        let url = format!("{}{path}", self.s.api_url);
        // The signature covers the path as the server sees it, prefix included.
        let signed_path = reqwest::Url::parse(&url).map(|u| u.path().to_owned()).unwrap_or_else(|_| path.to_owned());
        let signature = match post {
            Some((key, body)) => Some(self.sign(&signed_path, key, body)?),
            None => None,
        };
        for attempt in 0..2 {
            let token = self.access_token(ctx).await?;
            let mut req = traced(self.http.current().request(method.clone(), &url), ctx).bearer_auth(token.expose());
            if let (Some((key, body)), Some(sig)) = (post, signature.as_deref()) {
                req = req.header("Idempotency-Key", key).header("Tl-Signature", sig).header("Content-Type", "application/json").body(body.to_vec());
            }
            match http::send_json::<T, Problem>(req, map_problem).await {
                Err(e) if e.http_status == Some(401) && attempt == 0 => {
                    tracing::info!(provider = %self.name, "TrueLayer refused the access token; renewing it once");
                    *lock(&self.token) = None;
                }
                other => return other,
            }
        }
        Err(AdapterError::new(ErrorClass::ManualRepair, ErrorCode::AuthenticationFailed, "TrueLayer refused a fresh access token"))
    }

    fn sign(&self, path: &str, idempotency_key: &str, body: &[u8]) -> Result<String, AdapterError> {
        let key = self.s.signing_key.current();
        truelayer_signing::sign_with_pem(&key.kid, key.private_pem.expose().as_bytes())
            .method(truelayer_signing::Method::Post)
            .path(path)
            .header("Idempotency-Key", idempotency_key.as_bytes())
            .body(body)
            .build_signer()
            .sign()
            .map_err(|_| AdapterError::new(ErrorClass::ManualRepair, ErrorCode::AuthenticationFailed, "request signing failed (signing_key is not a usable EC P-521 private key)"))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

crate::tls_rotation::with_client_field!(TrueLayerPayoutAdapter);
