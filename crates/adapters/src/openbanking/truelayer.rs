//! TrueLayer: Payments v3 (`POST /v3/payments`, `GET /v3/payments/{id}`)
//! and the auth server (`POST /connect/token`), as TrueLayer publishes them
//! (docs.truelayer.com; field names as in TrueLayer's `truelayer-rust` SDK).
//!
//! - Every API call carries a client-credentials access token, fetched from
//!   the auth server and cached until shortly before `expires_in`. A 401
//!   drops it, fetches a new one and repeats the call once (same
//!   idempotency key, same signature inputs), then gives up as an
//!   authentication failure for ops.
//! - Every POST carries our `Idempotency-Key` and a `Tl-Signature` made by
//!   TrueLayer's own library (`truelayer-signing`: a detached ES512 JWS over
//!   method, path, the `Idempotency-Key` header and the body) with the
//!   merchant's private key; the public key is the one uploaded to
//!   TrueLayer under `signing_key_id`.
//! - Errors are RFC 7807 problem documents: 409 (a request under the key is
//!   in flight) is transient and ambiguous; 422 (the key was used with
//!   another payload) is a permanent idempotency collision and *not*
//!   ambiguous (this request was refused; whatever the first one did is
//!   the first one's); 5xx after the body was sent is ambiguous.
//! - The payment's hand-off is TrueLayer's hosted payment page:
//!   `{hpp_url}/payments#payment_id=..&resource_token=..&return_uri=..`.
//!   The resource token is the front end's, short-lived, scoped to the
//!   payment; it is never logged (outcomes carry it inside the hand-off only).
//! - Statuses map one to one onto ours; `failed` with `failure_stage`
//!   `executed` is a bank return.
//! - The consent side: the auth link (`{auth_url}/?response_type=code..`)
//!   is built here without a call, and `COMPLETE_CONSENT`'s authorization
//!   code is exchanged at `/connect/token` for the user's access and
//!   refresh tokens; the Data API (accounts, balances, transactions) and
//!   their renewal are in [`data`].
//!
//! UNCONFIRMED: `user` for a payer we know only by reference (we send
//! `{"id": payer_ref}`); the resource token's life (configured,
//! `resource_token_ttl`); the auth link's life (configured).

use super::{CreatedPayment, Granted, HandoffRequest, IssuedHandoff, ObFailure, PaymentRequest, PaymentState};
use crate::http::{send_json, traced, Transport};
use crate::{AdapterError, CallContext, Secret};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchyard_canonical::openbanking::ConsentScope;
use switchyard_canonical::openbanking_outcome::PaymentFailureReason;
use switchyard_canonical::openbanking_payment::PaymentStatus;
use switchyard_canonical::{ErrorClass, ErrorCode};

#[path = "truelayer_data.rs"]
mod data;

/// Static settings of one TrueLayer client.
#[derive(Debug, Clone)]
pub struct TrueLayerSettings {
    pub name: String,
    /// `https://auth.truelayer-sandbox.com` / `https://auth.truelayer.com`.
    pub auth_url: String,
    /// `https://api.truelayer-sandbox.com` / `https://api.truelayer.com`.
    pub api_url: String,
    /// `https://payment.truelayer-sandbox.com` / `https://payment.truelayer.com`.
    pub hpp_url: String,
    pub client_id: String,
    /// Read on every token request, so a rotated secret is used at once.
    pub client_secret: crate::secret::ApiKey,
    /// The EC P-521 private key (PEM) and the `kid` TrueLayer shows for its
    /// uploaded public half; read per request, so a rotated pair signs the
    /// next one.
    pub signing_key: crate::signing_key::SigningKey,
    /// Where the hosted payment page and the auth dialog send the user back.
    pub redirect_uri: String,
    /// Our beneficiary names -> TrueLayer merchant account ids.
    pub merchant_accounts: Vec<(String, String)>,
    pub resource_token_ttl: Duration,
    pub auth_link_ttl: Duration,
    /// A data connection's life from its code exchange (TrueLayer: 90 days).
    pub consent_ttl: Duration,
}

pub struct TrueLayerAdapter {
    s: TrueLayerSettings,
    /// Replaced when the client certificate rotates ([`WithClient`](crate::tls_rotation::WithClient)).
    http: crate::tls_rotation::LiveClient,
    /// The client-credentials token and when to stop using it.
    token: Mutex<Option<(Secret, Instant)>>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    expires_in: u64,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
}

/// An RFC 7807 problem document.
#[derive(Deserialize)]
struct Problem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    trace_id: Option<String>,
}

#[derive(Serialize)]
struct CreatePayment<'a> {
    amount_in_minor: i64,
    currency: &'a str,
    payment_method: PaymentMethod<'a>,
    user: User<'a>,
    metadata: Metadata<'a>,
}

#[derive(Serialize)]
struct PaymentMethod<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    provider_selection: ProviderSelection,
    beneficiary: Beneficiary<'a>,
}

#[derive(Serialize)]
struct ProviderSelection {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Beneficiary<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    merchant_account_id: &'a str,
    reference: &'a str,
}

#[derive(Serialize)]
struct User<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct Metadata<'a> {
    switchyard_payment_id: &'a str,
}

#[derive(Deserialize)]
struct Created {
    id: String,
    resource_token: String,
    status: String,
    #[serde(default)]
    failure_stage: Option<String>,
    #[serde(default)]
    failure_reason: Option<String>,
}

#[derive(Deserialize)]
struct Payment {
    status: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    executed_at: Option<String>,
    #[serde(default)]
    settled_at: Option<String>,
    #[serde(default)]
    failed_at: Option<String>,
    #[serde(default)]
    failure_stage: Option<String>,
    #[serde(default)]
    failure_reason: Option<String>,
}

impl TrueLayerAdapter {
    pub fn new(settings: TrueLayerSettings, transport: Transport) -> Result<Self, AdapterError> {
        let mut s = settings;
        for url in [&mut s.auth_url, &mut s.api_url, &mut s.hpp_url] {
            *url = url.trim_end_matches('/').to_owned();
        }
        // A key that does not sign is a configuration error, found at start-up.
        crate::signing_key::truelayer_usable(&s.signing_key.current())
            .map_err(|e| AdapterError::new(ErrorClass::ManualRepair, ErrorCode::AuthenticationFailed, format!("signing_key: {e}")))?;
        Ok(Self { s, http: crate::http::client(transport)?.into(), token: Mutex::new(None) })
    }

    pub fn name(&self) -> &str {
        &self.s.name
    }

    /// The auth dialog's link: built here, no call.
    pub fn auth_link(&self, req: &HandoffRequest<'_>) -> Result<IssuedHandoff, ObFailure> {
        let mut scopes: Vec<&str> = vec!["info", "offline_access"];
        for scope in req.scopes {
            match scope {
                ConsentScope::Accounts => scopes.push("accounts"),
                ConsentScope::Balances => scopes.push("balance"),
                ConsentScope::Transactions => scopes.push("transactions"),
                // A v3 payment is authorized on its own hand-off.
                ConsentScope::PaymentInitiation => {}
            }
        }
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.s.client_id.as_str()),
            ("scope", scopes.join(" ").as_str()),
            ("redirect_uri", self.s.redirect_uri.as_str()),
            ("providers", "uk-ob-all uk-oauth-all"),
            ("state", req.consent_id),
        ])
        .map_err(|e| ObFailure::Call(AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, e.to_string())))?;
        let ttl = i64::try_from(self.s.auth_link_ttl.as_millis()).unwrap_or(i64::MAX);
        Ok(IssuedHandoff { value: format!("{}/?{query}", self.s.auth_url), expires_at_ms: now_ms().saturating_add(ttl) })
    }

    /// COMPLETE_CONSENT: the authorization code for the user's tokens. A
    /// consent to data (not only to a payment) ends `consent_ttl` later:
    /// TrueLayer names no end in the token answer, and documents the
    /// connection as active for 90 days from its creation.
    pub async fn exchange_code(&self, ctx: &CallContext, code: &str, scopes: &[ConsentScope]) -> Result<Granted, ObFailure> {
        let client_secret = self.s.client_secret.current();
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", self.s.client_id.as_str()),
            ("client_secret", client_secret.expose()),
            ("redirect_uri", self.s.redirect_uri.as_str()),
            ("code", code),
        ];
        let reply = self.token_call(ctx, &form).await?;
        // The refresh token is what outlives the access token's hour: both
        // travel as one sealed grant ([`data`]). TrueLayer names no grant
        // end here and returns no connection id (that is in /data/v1/me).
        let mut granted = Self::grant_from(reply.access_token, reply.refresh_token, reply.expires_in, None)?;
        if scopes.iter().any(|s| *s != ConsentScope::PaymentInitiation) {
            let ttl = i64::try_from(self.s.consent_ttl.as_millis()).unwrap_or(i64::MAX);
            granted.expires_at_ms = Some(now_ms().saturating_add(ttl));
        }
        Ok(granted)
    }

    async fn token_call(&self, ctx: &CallContext, form: &[(&str, &str)]) -> Result<TokenReply, ObFailure> {
        let req = traced(self.http.current().post(format!("{}/connect/token", self.s.auth_url)), ctx).form(form);
        send_json::<TokenReply, OAuthError>(req, |status, wait, error| match error {
            Some(e) if matches!(e.error.as_str(), "invalid_client" | "unauthorized_client") => {
                AdapterError::new(ErrorClass::ManualRepair, ErrorCode::AuthenticationFailed, format!("TrueLayer auth: {}", e.error))
            }
            Some(e) => AdapterError::from_status(status, wait, &format!("TrueLayer auth: {}", e.error)),
            None => AdapterError::from_status(status, wait, "TrueLayer auth server"),
        })
        .await
        .map_err(ObFailure::Call)
    }

    /// The cached client-credentials token, or a new one.
    async fn access_token(&self, ctx: &CallContext) -> Result<Secret, ObFailure> {
        if let Some((token, until)) = self.token.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let client_secret = self.s.client_secret.current();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.s.client_id.as_str()),
            ("client_secret", client_secret.expose()),
            ("scope", "payments"),
        ];
        let reply = self.token_call(ctx, &form).await?;
        // Renewed a minute early (or at half-life for short tokens), so no
        // call sets out with a token about to lapse.
        let life = Duration::from_secs(reply.expires_in);
        let until = Instant::now() + life.saturating_sub(Duration::from_secs(60)).max(life / 2);
        let token = Secret::new(reply.access_token);
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some((token.clone(), until));
        Ok(token)
    }

    fn forget_token(&self) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// One API call with the bearer token; a 401 renews the token and
    /// repeats the call once.
    async fn api<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &CallContext,
        method: reqwest::Method,
        path: &str,
        post: Option<(&str, &[u8])>,
    ) -> Result<T, ObFailure> {
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
            let reply = send_json::<T, Problem>(req, map_problem).await;
            match reply {
                Err(e) if e.http_status == Some(401) && attempt == 0 => {
                    tracing::info!(provider = %self.s.name, "TrueLayer refused the access token; renewing it once");
                    self.forget_token();
                }
                other => return other.map_err(ObFailure::Call),
            }
        }
        Err(ObFailure::Call(AdapterError::new(ErrorClass::ManualRepair, ErrorCode::AuthenticationFailed, "TrueLayer refused a fresh access token")))
    }

    fn sign(&self, path: &str, idempotency_key: &str, body: &[u8]) -> Result<String, ObFailure> {
        let key = self.s.signing_key.current();
        truelayer_signing::sign_with_pem(&key.kid, key.private_pem.expose().as_bytes())
            .method(truelayer_signing::Method::Post)
            .path(path)
            .header("Idempotency-Key", idempotency_key.as_bytes())
            .body(body)
            .build_signer()
            .sign()
            .map_err(|_| ObFailure::Call(AdapterError::new(ErrorClass::ManualRepair, ErrorCode::AuthenticationFailed, "request signing failed (signing_key)")))
    }

    pub async fn create_payment(&self, ctx: &CallContext, req: &PaymentRequest<'_>) -> Result<CreatedPayment, ObFailure> {
        let Some((_, merchant_account_id)) = self.s.merchant_accounts.iter().find(|(ours, _)| ours == req.beneficiary_ref) else {
            return Err(ObFailure::Call(AdapterError::new(
                ErrorClass::Permanent,
                ErrorCode::InvalidBeneficiary,
                format!("no TrueLayer merchant account is configured for beneficiary {:?}", req.beneficiary_ref),
            )));
        };
        let body = CreatePayment {
            amount_in_minor: req.amount_minor,
            currency: req.currency,
            payment_method: PaymentMethod {
                kind: "bank_transfer",
                provider_selection: ProviderSelection { kind: "user_selected" },
                beneficiary: Beneficiary { kind: "merchant_account", merchant_account_id, reference: req.reference },
            },
            user: User { id: req.payer_ref },
            metadata: Metadata { switchyard_payment_id: req.payment_id },
        };
        let bytes =
            serde_json::to_vec(&body).map_err(|e| ObFailure::Call(AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, e.to_string())))?;
        let created: Created = self.api(ctx, reqwest::Method::POST, "/v3/payments", Some((req.idempotency_key, &bytes))).await?;
        let status = map_status(&created.status)?;
        let failure = (status == PaymentStatus::Failed).then(|| failure_reason(created.failure_stage.as_deref(), created.failure_reason.as_deref()));
        let handoff = (status == PaymentStatus::AuthorizationRequired).then(|| {
            let fragment = serde_urlencoded::to_string([
                ("payment_id", created.id.as_str()),
                ("resource_token", created.resource_token.as_str()),
                ("return_uri", self.s.redirect_uri.as_str()),
            ])
            .unwrap_or_default();
            let ttl = i64::try_from(self.s.resource_token_ttl.as_millis()).unwrap_or(i64::MAX);
            IssuedHandoff { value: format!("{}/payments#{fragment}", self.s.hpp_url), expires_at_ms: now_ms().saturating_add(ttl) }
        });
        Ok(CreatedPayment { provider_payment_id: created.id, status, handoff, at_ms: now_ms(), failure })
    }

    pub async fn payment_status(&self, ctx: &CallContext, provider_payment_id: &str) -> Result<PaymentState, ObFailure> {
        if provider_payment_id.is_empty() || !provider_payment_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ObFailure::Call(AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, "not a TrueLayer payment id")));
        }
        let p: Payment = self.api(ctx, reqwest::Method::GET, &format!("/v3/payments/{provider_payment_id}"), None).await?;
        let status = map_status(&p.status)?;
        let stamp = match status {
            PaymentStatus::Executed => p.executed_at.as_deref(),
            PaymentStatus::Settled => p.settled_at.as_deref(),
            PaymentStatus::Failed => p.failed_at.as_deref(),
            _ => p.created_at.as_deref(),
        };
        let at_ms = stamp.and_then(parse_rfc3339_ms).unwrap_or_else(now_ms);
        let (failure, failure_code) = if status == PaymentStatus::Failed {
            let code = format!("{}/{}", p.failure_stage.as_deref().unwrap_or("-"), p.failure_reason.as_deref().unwrap_or("-"));
            (Some(failure_reason(p.failure_stage.as_deref(), p.failure_reason.as_deref())), Some(code))
        } else {
            (None, None)
        };
        Ok(PaymentState { status, at_ms, failure, failure_code })
    }
}

fn map_status(s: &str) -> Result<PaymentStatus, ObFailure> {
    Ok(match s {
        "authorization_required" => PaymentStatus::AuthorizationRequired,
        "authorizing" => PaymentStatus::Authorizing,
        "authorized" => PaymentStatus::Authorized,
        "executed" => PaymentStatus::Executed,
        "settled" => PaymentStatus::Settled,
        "failed" => PaymentStatus::Failed,
        other => {
            // A status we do not know says nothing we may act on; asked again later.
            let mut e = AdapterError::new(ErrorClass::Transient, ErrorCode::Unknown, format!("unknown TrueLayer payment status {other:?}"));
            e.retry_after = Some(Duration::from_secs(5));
            return Err(ObFailure::Call(e));
        }
    })
}

/// TrueLayer's failure stage and reason in our words. Any failure after
/// execution is a return: the money had left.
fn failure_reason(stage: Option<&str>, reason: Option<&str>) -> PaymentFailureReason {
    if matches!(stage, Some("executed" | "settled")) {
        return PaymentFailureReason::Returned;
    }
    match reason.unwrap_or("") {
        "authorization_failed" | "user_canceled_at_provider" | "canceled" | "expired" | "provider_expired" | "not_authorized" => {
            PaymentFailureReason::AuthorizationFailed
        }
        "insufficient_funds" => PaymentFailureReason::InsufficientFunds,
        "provider_rejected" | "blocked" | "payment_limit_exceeded" | "verification_declined" => PaymentFailureReason::RejectedByBank,
        _ => PaymentFailureReason::ProviderError,
    }
}

/// A problem document (or its absence) to the taxonomy. The 401 is handled
/// by the caller (renew the token once); the rest follows the HTTP status,
/// with 422 on the idempotency key named as the collision it is.
fn map_problem(status: u16, wait: Option<Duration>, problem: Option<Problem>) -> AdapterError {
    let detail = match &problem {
        Some(p) => format!("TrueLayer {} ({}; trace {})", p.title, p.kind.rsplit('#').next().unwrap_or(""), p.trace_id.as_deref().unwrap_or("-")),
        None => "TrueLayer: no problem document".to_owned(),
    };
    if status == 422 && problem.as_ref().is_some_and(|p| p.kind.contains("idempotency")) {
        let mut e = AdapterError::new(ErrorClass::Permanent, ErrorCode::IdempotencyCollision, detail);
        e.http_status = Some(status);
        return e;
    }
    AdapterError::from_status(status, wait, &detail)
}

fn now_ms() -> i64 {
    switchyard_canonical::now_ms()
}

/// `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]` to epoch milliseconds.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(10).map(|c| c.to_ascii_uppercase()) != Some(b'T') {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i)?;
        ms = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?;
    }
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let v = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset_s) * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_failures_map_as_truelayer_writes_them() {
        assert_eq!(parse_rfc3339_ms("2024-04-22T12:55:18Z"), Some(1_713_790_518_000));
        assert_eq!(parse_rfc3339_ms("2024-04-22T14:55:18.1234+02:00"), Some(1_713_790_518_123));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        assert_eq!(failure_reason(Some("executed"), Some("provider_rejected")), PaymentFailureReason::Returned);
        assert_eq!(failure_reason(Some("authorizing"), Some("authorization_failed")), PaymentFailureReason::AuthorizationFailed);
        assert_eq!(failure_reason(Some("authorized"), Some("insufficient_funds")), PaymentFailureReason::InsufficientFunds);
        assert!(map_status("attempt_failed").is_err());
    }

    #[test]
    fn a_key_reused_with_another_payload_is_a_permanent_collision_not_an_ambiguity() {
        let p = |kind: &str| Some(Problem { kind: format!("https://docs.truelayer.com/docs/error-types#{kind}"), title: "t".into(), trace_id: None });
        let reuse = map_problem(422, None, p("idempotency-key-reuse"));
        assert_eq!((reuse.class, reuse.code, reuse.ambiguous), (ErrorClass::Permanent, ErrorCode::IdempotencyCollision, false));
        let in_flight = map_problem(409, None, p("idempotency-key-concurrency-conflict"));
        assert_eq!((in_flight.class, in_flight.ambiguous), (ErrorClass::Transient, true));
        let down = map_problem(500, None, None);
        assert!(down.ambiguous && down.class == ErrorClass::Transient);
    }
}

crate::tls_rotation::with_client_field!(TrueLayerAdapter);
