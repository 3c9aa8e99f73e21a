//! Plaid's scheme, as its "Verify webhooks" guide and the OpenAPI document
//! (`/webhook_verification_key/get`, `JWKPublicKey`) define it:
//!
//! - `Plaid-Verification` holds a compact JWT. Its header's `alg` must be
//!   `ES256` (anything else is refused before a key is looked at: no `none`,
//!   no HMAC with the public key as secret); its `kid` names the key.
//! - The key is a JWK (`kty` EC, `crv` P-256, `x`, `y`, `created_at`,
//!   `expired_at`) that `/webhook_verification_key/get` returns for
//!   `client_id`, `secret`, `key_id`. Keys are cached; a `kid` not in the
//!   cache is fetched (at most once per [`REFETCH_MS`], so forged kids cannot
//!   turn the ingester into a load generator against Plaid); after a new kid
//!   the cached keys not yet expired are fetched again, as Plaid's guide
//!   does, to learn of a rotation; a key whose `expired_at` is set and past
//!   is refused.
//! - The signature is ECDSA P-256 SHA-256 over `header.payload` (the JOSE
//!   fixed 64-byte r||s form, ring's `ECDSA_P256_SHA256_FIXED`).
//! - The payload's `iat` must be no older than five minutes, and its
//!   `request_body_sha256` must equal the hex SHA-256 of the raw body,
//!   compared in constant time.
//!
//! The body mapping (`ITEM`/`TRANSACTIONS` webhooks to open-banking
//! provider events) is in this module too; Plaid's wire types stay here.

use super::{body_sha256_hex, derived_event_id, header, EventFacts, Refusal, Verified};
use crate::secret::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use reqwest::header::HeaderMap;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use switchyard_canonical::ProviderEventKind;

pub const HEADER: &str = "plaid-verification";
/// Plaid: "reject the webhook if iat is more than 5 minutes old".
pub const MAX_AGE_S: i64 = 300;
/// Least time between two fetches of one unknown `kid`.
pub const REFETCH_MS: i64 = 60_000;

/// A verification key as the inventory shows it (no vendor types).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerificationKey {
    pub kid: String,
    pub alg: String,
    pub created_at_s: Option<i64>,
    /// Set by Plaid once the key is rotated out.
    pub expired_at_s: Option<i64>,
    /// Uncompressed SEC1 point (0x04 || x || y).
    point: Vec<u8>,
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iat: i64,
    request_body_sha256: String,
}

#[derive(Deserialize)]
struct Jwk {
    alg: String,
    crv: String,
    kid: String,
    kty: String,
    x: String,
    y: String,
    created_at: Option<i64>,
    expired_at: Option<i64>,
}

#[derive(Deserialize)]
struct KeyGetResponse {
    key: Jwk,
}

impl TryFrom<Jwk> for VerificationKey {
    type Error = String;
    fn try_from(k: Jwk) -> Result<Self, String> {
        if k.kty != "EC" || k.crv != "P-256" || k.alg != "ES256" {
            return Err(format!("key {} is {}/{}/{}, not EC/P-256/ES256", k.kid, k.kty, k.crv, k.alg));
        }
        let (x, y) = (B64URL.decode(&k.x).map_err(|_| "x is not base64url")?, B64URL.decode(&k.y).map_err(|_| "y is not base64url")?);
        if x.len() != 32 || y.len() != 32 {
            return Err("x and y must be 32 bytes".to_owned());
        }
        let mut point = vec![4u8];
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        Ok(Self { kid: k.kid, alg: k.alg, created_at_s: k.created_at, expired_at_s: k.expired_at, point })
    }
}

/// The three parts of a compact JWT, its header read without trusting it.
struct Token<'a> {
    header: JwtHeader,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

fn parse(token: &str) -> Result<Token<'_>, Refusal> {
    let bad = || Refusal::MalformedHeader(HEADER);
    let mut parts = token.trim().split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let header: JwtHeader = serde_json::from_slice(&B64URL.decode(h).map_err(|_| bad())?).map_err(|_| bad())?;
    let payload = B64URL.decode(p).map_err(|_| bad())?;
    let signature = B64URL.decode(s).map_err(|_| bad())?;
    let signing_input = &token.trim()[..h.len() + 1 + p.len()];
    Ok(Token { header, signing_input, payload, signature })
}

/// When Plaid signed this delivery (the JWT's `iat`, Unix seconds): read
/// after [`verify_with`] accepted it. Plaid signs each delivery attempt, so
/// this is the only thing that tells one sending of a body from another.
pub fn signed_at_s(headers: &HeaderMap) -> Option<i64> {
    let token = parse(header(headers, HEADER).ok()?).ok()?;
    serde_json::from_slice::<Claims>(&token.payload).ok().map(|c| c.iat)
}

/// The `kid` a delivery names, after its algorithm is checked.
pub fn kid(headers: &HeaderMap) -> Result<String, Refusal> {
    let token = parse(header(headers, HEADER)?)?;
    if token.header.alg != "ES256" {
        return Err(Refusal::WrongAlgorithm);
    }
    token.header.kid.ok_or(Refusal::MalformedHeader(HEADER))
}

/// Verifies a delivery with an already resolved key.
pub fn verify_with(headers: &HeaderMap, body: &[u8], key: Option<&VerificationKey>, now_ms: i64) -> Result<(), Refusal> {
    let token = parse(header(headers, HEADER)?)?;
    if token.header.alg != "ES256" {
        return Err(Refusal::WrongAlgorithm);
    }
    let key = key.ok_or(Refusal::UnknownKey)?;
    if key.expired_at_s.is_some_and(|t| t * 1000 <= now_ms) {
        return Err(Refusal::ExpiredKey);
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.point)
        .verify(token.signing_input.as_bytes(), &token.signature)
        .map_err(|_| Refusal::BadSignature)?;
    let claims: Claims = serde_json::from_slice(&token.payload).map_err(|_| Refusal::MalformedHeader(HEADER))?;
    // Only age is bounded, as Plaid documents; a little future skew passes.
    if now_ms / 1000 - claims.iat > MAX_AGE_S || claims.iat - now_ms / 1000 > MAX_AGE_S {
        return Err(Refusal::StaleTimestamp);
    }
    use subtle::ConstantTimeEq;
    let ours = body_sha256_hex(body);
    if bool::from(ours.as_bytes().ct_eq(claims.request_body_sha256.as_bytes())) {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

/// Why a key could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum KeyFetchError {
    /// Plaid answered but does not know the kid (or refused our credentials).
    #[error("key endpoint answered {0}")]
    Refused(u16),
    #[error("key endpoint unreachable: {0}")]
    Unreachable(String),
    #[error("key endpoint answered a key we cannot use: {0}")]
    BadKey(String),
}

/// Plaid's verification keys for one `client_id`: fetched on demand, cached.
pub struct PlaidKeys {
    url: String,
    client_id: String,
    secret: Secret,
    http: reqwest::Client,
    cache: RwLock<HashMap<String, VerificationKey>>,
    /// kid -> when it was last fetched without success.
    misses: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for PlaidKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaidKeys").field("url", &self.url).field("cached", &self.keys().len()).finish()
    }
}

impl PlaidKeys {
    /// `base_url` is Plaid's API host (`https://production.plaid.com`).
    pub fn new(base_url: &str, client_id: &str, secret: Secret) -> Self {
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build().unwrap_or_default();
        Self {
            url: format!("{}/webhook_verification_key/get", base_url.trim_end_matches('/')),
            client_id: client_id.to_owned(),
            secret,
            http,
            cache: RwLock::new(HashMap::new()),
            misses: Mutex::new(HashMap::new()),
        }
    }

    /// Every key fetched so far (for the inventory metric).
    pub fn keys(&self) -> Vec<VerificationKey> {
        let mut keys: Vec<_> = self.cache.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        keys
    }

    /// Makes sure the delivery's key is cached if Plaid knows it. Returns an
    /// error only when Plaid could not be asked (the caller answers 503 so
    /// Plaid retries); an unknown kid is left for [`Self::verify`] to refuse.
    pub async fn prepare(&self, headers: &HeaderMap, now_ms: i64) -> Result<(), KeyFetchError> {
        let Ok(kid) = kid(headers) else { return Ok(()) };
        if self.cache.read().unwrap_or_else(|e| e.into_inner()).contains_key(&kid) {
            return Ok(());
        }
        {
            let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
            if misses.get(&kid).is_some_and(|at| now_ms - at < REFETCH_MS) {
                return Ok(());
            }
            misses.retain(|_, at| now_ms - *at < REFETCH_MS);
            misses.insert(kid.clone(), now_ms);
        }
        match self.fetch(&kid).await {
            Ok(key) => {
                self.misses.lock().unwrap_or_else(|e| e.into_inner()).remove(&kid);
                self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(kid.clone(), key);
                // A new kid means Plaid may have rotated: as its guide says,
                // refetch the cached keys not yet expired to learn their
                // `expired_at` (Plaid has no list endpoint).
                let live: Vec<String> = self.keys().into_iter().filter(|k| k.expired_at_s.is_none() && k.kid != kid).map(|k| k.kid).collect();
                for other in live {
                    if let Ok(fresh) = self.fetch(&other).await {
                        self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(other, fresh);
                    }
                }
                Ok(())
            }
            Err(KeyFetchError::Refused(_) | KeyFetchError::BadKey(_)) => Ok(()),
            Err(e) => {
                // Not a verdict on the kid: let the next delivery ask again.
                self.misses.lock().unwrap_or_else(|e| e.into_inner()).remove(&kid);
                Err(e)
            }
        }
    }

    /// Asks Plaid for one key.
    pub async fn fetch(&self, kid: &str) -> Result<VerificationKey, KeyFetchError> {
        let body = serde_json::json!({"client_id": self.client_id, "secret": self.secret.expose(), "key_id": kid});
        let reply = self.http.post(&self.url).json(&body).send().await.map_err(|e| KeyFetchError::Unreachable(e.without_url().to_string()))?;
        let status = reply.status();
        if status.is_server_error() {
            return Err(KeyFetchError::Unreachable(format!("status {}", status.as_u16())));
        }
        if !status.is_success() {
            return Err(KeyFetchError::Refused(status.as_u16()));
        }
        let parsed: KeyGetResponse = reply.json().await.map_err(|e| KeyFetchError::BadKey(e.without_url().to_string()))?;
        if parsed.key.kid != kid {
            return Err(KeyFetchError::BadKey("answered another kid".to_owned()));
        }
        VerificationKey::try_from(parsed.key).map_err(KeyFetchError::BadKey)
    }

    /// Verifies against the cache (after [`Self::prepare`]).
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<(), Refusal> {
        let kid = kid(headers)?;
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        verify_with(headers, body, cache.get(&kid), now_ms)
    }
}

#[derive(Deserialize)]
struct Webhook {
    webhook_type: String,
    webhook_code: String,
    item_id: Option<String>,
    error: Option<PlaidError>,
}

#[derive(Deserialize)]
struct PlaidError {
    error_code: String,
}

/// Our vocabulary for what an Item webhook says, carried in `reason`
/// (the provider-event schema has no open-banking kinds yet).
pub fn map(body: &[u8], verified: &Verified) -> Result<EventFacts, Refusal> {
    let w: Webhook = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(format!("not a Plaid webhook: {e}")))?;
    let item_id = w.item_id.clone().ok_or_else(|| Refusal::MalformedPayload("item_id missing".into()))?;
    let reason = match (w.webhook_type.as_str(), w.webhook_code.as_str()) {
        ("ITEM", "ERROR") => match w.error.as_ref().map(|e| e.error_code.as_str()) {
            Some("ITEM_LOGIN_REQUIRED") => "LOGIN_REQUIRED".to_owned(),
            Some(code) => format!("ITEM_ERROR:{code}"),
            None => "ITEM_ERROR".to_owned(),
        },
        ("ITEM", "PENDING_EXPIRATION") | ("ITEM", "PENDING_DISCONNECT") => "CONSENT_EXPIRING".to_owned(),
        ("ITEM", "LOGIN_REPAIRED") => "LOGIN_REPAIRED".to_owned(),
        ("ITEM", "USER_PERMISSION_REVOKED") | ("ITEM", "USER_ACCOUNT_REVOKED") => "REVOKED".to_owned(),
        ("TRANSACTIONS", "SYNC_UPDATES_AVAILABLE") => "REFRESH_AVAILABLE".to_owned(),
        (t, c) => format!("{t}:{c}"),
    };
    // A webhook states no time of its own; when Plaid signed it is the
    // nearest, when we verified it the last resort.
    let occurred_at_ms = verified.signed_at_ms.unwrap_or(verified.verified_at_ms);
    // Plaid's webhooks carry no id, and the same body recurs for new facts:
    // every SYNC_UPDATES_AVAILABLE of an item is byte-identical, and so is an
    // ITEM_LOGIN_REQUIRED after a repair. Keyed by the body alone, every such
    // later webhook was taken for a retry and dropped for as long as its
    // dedup row lived (for ever). The signing time is part of the id, so a
    // delivery re-posted as it was is one event, and a body sent again
    // (Plaid's retry re-signs it, and so does a new fact) is another: Plaid
    // asks receivers to act idempotently on duplicates, and the consumer
    // does (a consent already in a state stays; a refresh runs from the
    // stored cursor), whereas a dropped webhook is lost.
    let signed_at = verified.signed_at_ms.map(|ms| ms.to_string()).unwrap_or_default();
    let event_id = derived_event_id(&["plaid", &w.webhook_type, &w.webhook_code, &item_id, &body_sha256_hex(body), &signed_at]);
    Ok(EventFacts {
        event_id,
        subject_id: item_id.clone(),
        provider_reference: item_id,
        kind: ProviderEventKind::Other,
        vendor_event_type: format!("{}:{}", w.webhook_type, w.webhook_code),
        amount_minor: None,
        currency: None,
        reason: Some(reason),
        occurred_at_ms,
    })
}

#[cfg(test)]
#[path = "plaid_tests.rs"]
mod tests;
