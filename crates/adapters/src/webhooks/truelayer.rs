//! TrueLayer's webhook scheme, as its "Verify webhook signatures" guide and
//! its own implementation (the `truelayer-signing` crate, whose verifier
//! this module calls) define it:
//!
//! - `Tl-Signature` holds a JWS with a detached payload,
//!   `base64url(header)..base64url(signature)`. The header names `alg`
//!   `ES512` (ECDSA P-521 SHA-512; nothing else deserializes), the `kid`,
//!   `tl_version` `2`, `tl_headers` (the request headers signed, in order)
//!   and `jku`, the URL of TrueLayer's JWKS holding the key.
//! - The signed payload is `POST <path>\n`, then `<name>: <value>\n` for each
//!   header in `tl_headers`, then the raw body; the path is the one the
//!   webhook was posted to (TrueLayer's verifier also tries it with/without
//!   a trailing slash).
//! - The `jku` comes from the (unverified) request, so it is only followed
//!   when it is exactly one of the configured URLs: TrueLayer's examples
//!   accept `https://webhooks.truelayer.com/.well-known/jwks` (production)
//!   and `https://webhooks.truelayer-sandbox.com/.well-known/jwks`
//!   (sandbox), and a deployment allows the one of its environment. An
//!   attacker's own JWKS URL is never fetched. Redirects are not followed.
//! - Keys are cached per URL. A `kid` not in the cache makes the JWKS be
//!   fetched again (a rotation), at most once per [`REFETCH_MS`] per kid and
//!   at most [`MAX_FETCHES_PER_MINUTE`] times per URL whatever the kids, so
//!   forged kids cannot turn the ingester into a load generator against
//!   TrueLayer; still unknown after that, it is refused. A cached set older
//!   than [`MAX_AGE_MS`] is fetched again, so a key TrueLayer withdrew stops
//!   verifying; if that refresh fails the cached set keeps verifying.
//! - `X-TL-Webhook-Timestamp` (RFC 3339, "time that the webhook was sent")
//!   must be among the signed headers and within the provider's tolerance
//!   of our clock. TrueLayer documents no window (UNCONFIRMED); every retry
//!   is a new send with a new timestamp, so the ingester's usual five
//!   minutes refuses only replays.
//!
//! The body mapping (payment, payout, refund and mandate webhooks to
//! open-banking provider events) is here too; TrueLayer's wire types stay
//! in this module.

use super::{header, rfc3339_ms, EventFacts, Refusal, Verified};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, RwLock};
use switchyard_canonical::openbanking_payment::PaymentStatus;
use switchyard_canonical::ProviderEventKind;

pub const HEADER: &str = "tl-signature";
pub const TIMESTAMP_HEADER: &str = "x-tl-webhook-timestamp";
/// TrueLayer's production webhook JWKS (its webhook-server examples).
pub const PRODUCTION_JWKS: &str = "https://webhooks.truelayer.com/.well-known/jwks";
/// TrueLayer's sandbox webhook JWKS.
pub const SANDBOX_JWKS: &str = "https://webhooks.truelayer-sandbox.com/.well-known/jwks";
/// Least time between two fetches for one unknown `kid`.
pub const REFETCH_MS: i64 = 60_000;
/// Most fetches of one JWKS URL in a minute, whatever the kids asked for.
pub const MAX_FETCHES_PER_MINUTE: usize = 10;
/// A cached key set older than this is fetched again on the next delivery.
pub const MAX_AGE_MS: i64 = 3_600_000;
/// TrueLayer's JWKS is a few keys; anything much larger is not it.
const MAX_JWKS_BYTES: usize = 64 * 1024;

/// A key in use, as the inventory shows it (no vendor types).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerificationKey {
    /// The JWKS URL it was fetched from.
    pub jku: String,
    pub kid: String,
    pub alg: String,
    /// Listed by an earlier fetch of its JWKS and not by the latest: no
    /// longer verifies.
    pub withdrawn: bool,
}

/// The JWS header fields this module needs, read before anything is trusted.
struct Named {
    kid: String,
    jku: Option<String>,
}

fn named(signature: &str) -> Result<Named, Refusal> {
    match truelayer_signing::extract_jws_header(signature) {
        Ok(h) => Ok(Named { kid: h.kid.into_owned(), jku: h.jku.map(|j| j.into_owned()) }),
        // The crate refuses any `alg` but ES512 while decoding; tell that
        // apart from a header that is not a JWS at all.
        Err(_) => {
            #[derive(Deserialize)]
            struct Alg {
                alg: String,
            }
            let encoded = signature.split('.').next().unwrap_or_default();
            let alg = B64URL.decode(encoded.trim()).ok().and_then(|h| serde_json::from_slice::<Alg>(&h).ok());
            match alg {
                Some(a) if a.alg != "ES512" => Err(Refusal::WrongAlgorithm),
                _ => Err(Refusal::MalformedHeader(HEADER)),
            }
        }
    }
}

/// A JWKS as fetched: the raw document (handed to TrueLayer's verifier as
/// is) and the P-521 keys it holds.
struct KeySet {
    raw: Vec<u8>,
    keys: Vec<(String, String)>,
    fetched_at_ms: i64,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    #[serde(default)]
    kid: String,
    #[serde(default)]
    kty: String,
    #[serde(default)]
    crv: String,
    alg: Option<String>,
}

impl KeySet {
    fn parse(raw: Vec<u8>, now_ms: i64) -> Result<Self, String> {
        let jwks: Jwks = serde_json::from_slice(&raw).map_err(|e| format!("not a JWKS: {e}"))?;
        // TrueLayer's JWKS also lists RSA keys; only EC P-521 verifies ES512.
        let keys = jwks
            .keys
            .into_iter()
            .filter(|k| k.kty == "EC" && k.crv == "P-521" && !k.kid.is_empty())
            .map(|k| (k.kid, k.alg.unwrap_or_else(|| "ES512".to_owned())))
            .collect();
        Ok(Self { raw, keys, fetched_at_ms: now_ms })
    }

    fn has(&self, kid: &str) -> bool {
        self.keys.iter().any(|(k, _)| k == kid)
    }
}

/// Why a JWKS could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum KeyFetchError {
    #[error("JWKS endpoint answered {0}")]
    Refused(u16),
    #[error("JWKS endpoint unreachable: {0}")]
    Unreachable(String),
    #[error("JWKS endpoint answered a document we cannot use: {0}")]
    BadKeys(String),
}

/// TrueLayer's webhook keys, per allowed JWKS URL: fetched on demand, cached.
pub struct TrueLayerKeys {
    allowed: Vec<String>,
    tolerance_s: i64,
    http: reqwest::Client,
    cache: RwLock<HashMap<String, KeySet>>,
    /// (jku, kid) -> when it was last fetched for.
    misses: Mutex<HashMap<(String, String), i64>>,
    /// jku -> its fetches within the last minute.
    fetches: Mutex<HashMap<String, VecDeque<i64>>>,
    /// Keys a later fetch no longer listed, newest last (for the inventory).
    withdrawn: Mutex<VecDeque<VerificationKey>>,
}

impl std::fmt::Debug for TrueLayerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrueLayerKeys").field("allowed", &self.allowed).field("cached", &self.keys().len()).finish()
    }
}

/// Checks a configured JWKS URL: https, or http to a loopback host (tests,
/// the local simulator). An allowed URL is compared as written.
pub fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!("{url:?}: TrueLayer's JWKS is served over https")),
    }
}

impl TrueLayerKeys {
    /// `allowed`: the JWKS URLs a `jku` may name (see [`PRODUCTION_JWKS`],
    /// [`SANDBOX_JWKS`]); `tolerance_s`: accepted distance of
    /// `X-TL-Webhook-Timestamp` from our clock.
    pub fn new(allowed: Vec<String>, tolerance_s: i64) -> Result<Self, String> {
        if allowed.is_empty() {
            return Err(format!("no JWKS URL allowed; TrueLayer's are {PRODUCTION_JWKS} (production) and {SANDBOX_JWKS} (sandbox)"));
        }
        for url in &allowed {
            check_jwks_url(url)?;
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            allowed,
            tolerance_s,
            http,
            cache: RwLock::new(HashMap::new()),
            misses: Mutex::new(HashMap::new()),
            fetches: Mutex::new(HashMap::new()),
            withdrawn: Mutex::new(VecDeque::new()),
        })
    }

    /// Every key of the cached sets, then those withdrawn since (for the
    /// inventory metric).
    pub fn keys(&self) -> Vec<VerificationKey> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<VerificationKey> = cache
            .iter()
            .flat_map(|(jku, set)| {
                set.keys.iter().map(|(kid, alg)| VerificationKey { jku: jku.clone(), kid: kid.clone(), alg: alg.clone(), withdrawn: false })
            })
            .collect();
        out.sort_by(|a, b| (&a.jku, &a.kid).cmp(&(&b.jku, &b.kid)));
        out.extend(self.withdrawn.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned());
        out
    }

    /// Replaces the cached set of `jku`, remembering the keys it dropped.
    fn store(&self, jku: String, set: KeySet) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let mut withdrawn = self.withdrawn.lock().unwrap_or_else(|e| e.into_inner());
        withdrawn.retain(|w| !(w.jku == jku && set.has(&w.kid)));
        if let Some(old) = cache.get(&jku) {
            for (kid, alg) in old.keys.iter().filter(|(kid, _)| !set.has(kid)) {
                withdrawn.push_back(VerificationKey { jku: jku.clone(), kid: kid.clone(), alg: alg.clone(), withdrawn: true });
            }
        }
        // A bound on what the inventory remembers; verification never reads it.
        while withdrawn.len() > 16 {
            withdrawn.pop_front();
        }
        cache.insert(jku, set);
    }

    /// The `jku` of a delivery if it is one we may fetch.
    fn allowed_jku(&self, headers: &HeaderMap) -> Result<(String, String), Refusal> {
        let n = named(header(headers, HEADER)?)?;
        let jku = n.jku.ok_or(Refusal::MalformedHeader(HEADER))?;
        if !self.allowed.contains(&jku) {
            return Err(Refusal::UntrustedKeyUrl);
        }
        Ok((jku, n.kid))
    }

    /// Makes sure the delivery's key is cached if TrueLayer's JWKS holds it.
    /// An error only when the JWKS could not be fetched and no cached key
    /// can decide (the caller answers 503 so TrueLayer retries); an unknown
    /// kid or a disallowed `jku` is left for [`Self::verify`] to refuse.
    pub async fn prepare(&self, headers: &HeaderMap, now_ms: i64) -> Result<(), KeyFetchError> {
        let Ok((jku, kid)) = self.allowed_jku(headers) else { return Ok(()) };
        let (known, fresh) = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            cache.get(&jku).map_or((false, false), |s| (s.has(&kid), now_ms - s.fetched_at_ms < MAX_AGE_MS))
        };
        if known && fresh {
            return Ok(());
        }
        if !known {
            let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
            let key = (jku.clone(), kid.clone());
            if misses.get(&key).is_some_and(|at| now_ms - at < REFETCH_MS) {
                return Ok(());
            }
            misses.retain(|_, at| now_ms - *at < REFETCH_MS);
            misses.insert(key, now_ms);
        }
        if !self.take_fetch(&jku, now_ms) {
            tracing::warn!(jku = %jku, "TrueLayer JWKS fetch budget spent; unknown kids refused for now");
            return Ok(());
        }
        match self.fetch(&jku, now_ms).await {
            Ok(set) => {
                self.store(jku, set);
                Ok(())
            }
            // Stale but cached: keep verifying with it rather than refuse.
            Err(e) if known => {
                tracing::warn!(error = %e, "TrueLayer JWKS not refreshed; the cached keys stay");
                Ok(())
            }
            Err(KeyFetchError::Refused(_) | KeyFetchError::BadKeys(_)) => Ok(()),
            Err(e) => {
                // Not a verdict on the kid: let the next delivery ask again.
                self.misses.lock().unwrap_or_else(|e| e.into_inner()).remove(&(jku, kid));
                Err(e)
            }
        }
    }

    /// One more fetch of `jku` within the minute, if the budget allows.
    fn take_fetch(&self, jku: &str, now_ms: i64) -> bool {
        let mut fetches = self.fetches.lock().unwrap_or_else(|e| e.into_inner());
        let recent = fetches.entry(jku.to_owned()).or_default();
        while recent.front().is_some_and(|at| now_ms - at >= 60_000) {
            recent.pop_front();
        }
        if recent.len() >= MAX_FETCHES_PER_MINUTE {
            return false;
        }
        recent.push_back(now_ms);
        true
    }

    /// GETs one allowed JWKS URL, bounded in size.
    async fn fetch(&self, jku: &str, now_ms: i64) -> Result<KeySet, KeyFetchError> {
        let unreachable = |e: reqwest::Error| KeyFetchError::Unreachable(e.without_url().to_string());
        let mut reply = self.http.get(jku).send().await.map_err(unreachable)?;
        let status = reply.status();
        if status.is_server_error() {
            return Err(KeyFetchError::Unreachable(format!("status {}", status.as_u16())));
        }
        if !status.is_success() {
            return Err(KeyFetchError::Refused(status.as_u16()));
        }
        let mut raw = Vec::new();
        while let Some(chunk) = reply.chunk().await.map_err(unreachable)? {
            if raw.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(KeyFetchError::BadKeys(format!("larger than {MAX_JWKS_BYTES} bytes")));
            }
            raw.extend_from_slice(&chunk);
        }
        KeySet::parse(raw, now_ms).map_err(KeyFetchError::BadKeys)
    }

    /// Verifies a delivery posted to `path` against the cache (after
    /// [`Self::prepare`]).
    pub fn verify(&self, path: &str, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<Verified, Refusal> {
        let (jku, kid) = self.allowed_jku(headers)?;
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let set = cache.get(&jku).filter(|s| s.has(&kid)).ok_or(Refusal::UnknownKey)?;
        verify_with(&set.raw, path, headers, body, self.tolerance_s, now_ms)
    }
}

/// Verifies a delivery with a JWKS document already in hand: TrueLayer's
/// verifier over method, path, the signed headers and the body, then the
/// signed timestamp's age.
pub fn verify_with(jwks: &[u8], path: &str, headers: &HeaderMap, body: &[u8], tolerance_s: i64, now_ms: i64) -> Result<Verified, Refusal> {
    let signature = header(headers, HEADER)?;
    named(signature)?;
    if !path.starts_with('/') {
        // TrueLayer's builder asserts this; a request path always has it.
        return Err(Refusal::MalformedPayload("request path must start with '/'".into()));
    }
    let all: Vec<(&str, &[u8])> = headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes())).collect();
    truelayer_signing::verify_with_jwks(jwks)
        .method(truelayer_signing::Method::Post)
        .path(path)
        .headers(all)
        // Unsigned, the timestamp would be the attacker's to choose.
        .require_header("X-TL-Webhook-Timestamp")
        .body(body)
        .build_verifier()
        .verify(signature)
        .map_err(|_| Refusal::BadSignature)?;
    let sent_at_ms = rfc3339_ms(header(headers, TIMESTAMP_HEADER)?.trim()).ok_or(Refusal::MalformedHeader(TIMESTAMP_HEADER))?;
    if (now_ms - sent_at_ms).abs() > tolerance_s.saturating_mul(1000) {
        return Err(Refusal::StaleTimestamp);
    }
    Ok(Verified { message_id: None, signed_at_ms: Some(sent_at_ms), verified_at_ms: now_ms })
}

/// The metadata key our payout id travels under in a TrueLayer payout
/// (written by the payout adapter, `payouts::truelayer`).
pub const PAYOUT_ID_METADATA: &str = "switchyard_payout_id";

#[derive(Deserialize)]
struct Webhook {
    #[serde(rename = "type")]
    event_type: String,
    event_id: String,
    payment_id: Option<String>,
    payout_id: Option<String>,
    refund_id: Option<String>,
    mandate_id: Option<String>,
    failure_reason: Option<String>,
    /// The rest, among which the event's own time (`executed_at`, ...).
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// Our vocabulary for what a TrueLayer webhook says. Payment statuses carry
/// the [`PaymentStatus`] word in `reason` (then `:failure_reason` for a
/// failure), kind `Other` since the provider-event schema has no payment
/// kinds; payouts use the payout kinds; refunds and mandates a word of
/// their own; any other type its name upper-cased.
pub fn map(body: &[u8], verified: &Verified) -> Result<EventFacts, Refusal> {
    let w: Webhook = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(format!("not a TrueLayer webhook: {e}")))?;
    if w.event_id.trim().is_empty() {
        return Err(Refusal::MalformedPayload("event_id is empty".into()));
    }
    let failed = |word: &str| match w.failure_reason.as_deref() {
        Some(r) if !r.is_empty() => format!("{word}:{r}"),
        _ => word.to_owned(),
    };
    let need = |id: &Option<String>, name: &str| -> Result<String, Refusal> {
        id.clone().filter(|s| !s.is_empty()).ok_or_else(|| Refusal::MalformedPayload(format!("{name} missing")))
    };
    let t = w.event_type.as_str();
    let (kind, reason, subject, reference) = match t {
        "payment_authorized" | "payment_executed" | "payment_settled" | "payment_failed" => {
            let status = match t {
                "payment_authorized" => PaymentStatus::Authorized,
                "payment_executed" => PaymentStatus::Executed,
                "payment_settled" => PaymentStatus::Settled,
                _ => PaymentStatus::Failed,
            };
            let id = need(&w.payment_id, "payment_id")?;
            (ProviderEventKind::Other, failed(status.as_str()), id.clone(), id)
        }
        "payment_creditable" | "payment_settlement_stalled" => {
            let id = need(&w.payment_id, "payment_id")?;
            (ProviderEventKind::Other, t["payment_".len()..].to_ascii_uppercase(), id.clone(), id)
        }
        "payout_executed" | "payout_failed" => {
            let id = need(&w.payout_id, "payout_id")?;
            let (kind, reason) = if t == "payout_executed" {
                (ProviderEventKind::PayoutPaid, "EXECUTED".to_owned())
            } else {
                (ProviderEventKind::PayoutFailed, failed("FAILED"))
            };
            // Keyed on our payout id, which the payout carried in its
            // metadata (TrueLayer echoes metadata in payout webhooks), so
            // the reconciler meets it with the command and the ledger.
            let ours = w
                .rest
                .get("metadata")
                .and_then(|m| m.get(PAYOUT_ID_METADATA))
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
            (kind, reason, ours.unwrap_or_else(|| id.clone()), id)
        }
        // A refund belongs to its payment, so it keys on it.
        "refund_executed" | "refund_failed" => {
            let word = if t == "refund_executed" { "REFUND_EXECUTED".to_owned() } else { failed("REFUND_FAILED") };
            (ProviderEventKind::Other, word, need(&w.payment_id, "payment_id")?, need(&w.refund_id, "refund_id")?)
        }
        "mandate_authorized" | "mandate_revoked" | "mandate_failed" => {
            let id = need(&w.mandate_id, "mandate_id")?;
            let word = t.to_ascii_uppercase();
            let word = if t == "mandate_failed" { failed(&word) } else { word };
            (ProviderEventKind::Other, word, id.clone(), id)
        }
        _ => {
            // A type we do not map yet: published as what it says, keyed
            // on the resource it names (or the event), never refused, which
            // would have TrueLayer retry it for 72 hours.
            let id = [&w.payment_id, &w.payout_id, &w.mandate_id, &w.refund_id]
                .into_iter()
                .flatten()
                .find(|s| !s.is_empty())
                .cloned()
                .unwrap_or_else(|| w.event_id.clone());
            (ProviderEventKind::Other, t.to_ascii_uppercase(), id.clone(), id)
        }
    };
    Ok(EventFacts {
        event_id: w.event_id.clone(),
        subject_id: subject,
        provider_reference: reference,
        kind,
        vendor_event_type: w.event_type.clone(),
        amount_minor: None,
        currency: None,
        reason: Some(reason),
        occurred_at_ms: occurred_at(&w).or(verified.signed_at_ms).unwrap_or(verified.verified_at_ms),
    })
}

/// The event's own time: `<verb>_at` for `<resource>_<verb>`
/// (`payment_executed` -> `executed_at`), else any `*_at` the body has.
fn occurred_at(w: &Webhook) -> Option<i64> {
    let at = |v: &serde_json::Value| v.as_str().and_then(rfc3339_ms);
    let verb = w.event_type.split_once('_').map_or("", |(_, v)| v);
    w.rest.get(&format!("{verb}_at")).and_then(at).or_else(|| w.rest.iter().filter(|(k, _)| k.ends_with("_at")).find_map(|(_, v)| at(v)))
}

#[cfg(test)]
#[path = "truelayer_tests.rs"]
mod tests;
