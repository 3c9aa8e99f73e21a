//! OAuth2 client credentials: JWT access tokens (RFC 9068) from one
//! configured issuer, verified against the issuer's JSON Web Key Set.
//!
//! A token is accepted when its header names an allowed `alg` (never
//! `none`, never HMAC) and a `kid` from the key set, its signature verifies
//! with that key, `exp` is in the future (required), `nbf` is past, `iss`
//! is the issuer exactly and `aud` holds our audience. The caller is the
//! token's `client_id` (else `azp`, else `sub`); its scopes are the `scope`
//! claim, which [`crate::auth`] intersects with the team's.
//!
//! The key set is fetched at start-up, every `jwks_refresh_s`, and when a
//! token names a `kid` not in it (the issuer rotated), at most once per
//! [`MIN_REFETCH`] however many such tokens arrive, so forged `kid`s cannot
//! make us flood the issuer. Keys are only ever taken from `jwks_url`, never
//! from a token's own `jku`, `jwk` or `x5u`. Tokens never reach a log.

use crate::config::OAuth2Config;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The shortest time between two fetches triggered by unknown `kid`s.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// A key set fetch that takes longer has failed (the tokens waiting on it are refused).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A key set holds a handful of keys; anything this large is not one.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Algorithms a public key set can verify; `none` and HS* are not among them.
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn algorithms(config: &OAuth2Config) -> Result<Vec<Algorithm>, String> {
    if config.algorithms.is_empty() {
        return Err("oauth2.algorithms must name at least one algorithm".to_owned());
    }
    config
        .algorithms
        .iter()
        .map(|name| {
            Algorithm::from_str(name).ok().filter(|a| ASYMMETRIC.contains(a)).ok_or_else(|| {
                format!("oauth2.algorithms: {name} is not accepted; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA (never none or HS*)")
            })
        })
        .collect()
}

/// Start-up checks of the `oauth2` section, each message naming its field.
pub fn check_config(config: &OAuth2Config) -> Result<(), String> {
    if config.issuer.trim().is_empty() {
        return Err("oauth2.issuer must be set (the tokens' iss, exactly)".to_owned());
    }
    if config.audience.trim().is_empty() {
        return Err("oauth2.audience must be set (the aud the issuer puts in tokens for this API)".to_owned());
    }
    let url = reqwest::Url::parse(&config.jwks_url).map_err(|e| format!("oauth2.jwks_url: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    // Keys fetched in clear could be swapped on the way: https, but for a
    // local issuer.
    if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
        return Err(format!("oauth2.jwks_url ({url}) must be https (http only on a loopback host)"));
    }
    algorithms(config)?;
    if config.leeway_s > 300 {
        return Err(format!("oauth2.leeway_s ({}) must be at most 300", config.leeway_s));
    }
    if !(10..=86_400).contains(&config.jwks_refresh_s) {
        return Err(format!("oauth2.jwks_refresh_s ({}) must be between 10 and 86400", config.jwks_refresh_s));
    }
    Ok(())
}

/// Why a token was refused: logged as a category, answered as one 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("not a JWS, or its header cannot be read")]
    Malformed,
    #[error("alg not accepted")]
    Algorithm,
    #[error("typ is not at+jwt or JWT")]
    Type,
    #[error("a crit header extension")]
    Critical,
    #[error("no kid")]
    NoKeyId,
    #[error("kid not in the issuer's key set")]
    UnknownKey,
    #[error("signature does not verify")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    Immature,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("claims missing or malformed")]
    Claims,
    #[error("no client_id, azp or sub")]
    NoClient,
}

/// What a verified token says about its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub client_id: String,
    /// The `scope` claim's entries; the team's configured scopes still bound them.
    pub scopes: HashSet<String>,
}

/// The claims we read beyond what [`Validation`] checks.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    /// Space-separated (RFC 9068 section 2.2.3, RFC 8693 section 4.2).
    #[serde(default)]
    scope: Option<String>,
}

/// One key of the set.
struct Key {
    decoding: DecodingKey,
    /// The JWK's own `alg`, when it names one: a token must then use it.
    alg: Option<Algorithm>,
}

/// The issuer: its key set, cached, and how tokens are checked.
#[derive(Clone)]
pub struct Issuer {
    inner: Arc<Inner>,
}

struct Inner {
    jwks_url: String,
    /// One per accepted algorithm: `jsonwebtoken` wants every algorithm of
    /// a `Validation` in the key's family, and an issuer may mix RSA and EC.
    validations: Vec<(Algorithm, Validation)>,
    refresh: Duration,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, Arc<Key>>>,
    /// When an unknown `kid` last caused a fetch; held while it runs, so
    /// concurrent tokens with that `kid` wait for one fetch.
    refetched: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("jwks_url", &self.inner.jwks_url).field("algorithms", &self.inner.validations.iter().map(|(a, _)| a).collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl Issuer {
    /// Checks the section and builds the client; no fetch yet.
    pub fn new(config: &OAuth2Config) -> Result<Self, String> {
        check_config(config)?;
        crate::jwt_ring::install();
        let validations = algorithms(config)?
            .into_iter()
            .map(|alg| {
                let mut validation = Validation::new(alg);
                validation.leeway = config.leeway_s;
                validation.validate_nbf = true;
                validation.set_issuer(&[&config.issuer]);
                validation.set_audience(&[&config.audience]);
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
                (alg, validation)
            })
            .collect();
        let https = config.jwks_url.starts_with("https:");
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // A redirect may not downgrade the key set to clear text.
            .https_only(https)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("oauth2.jwks_url: HTTP client: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                jwks_url: config.jwks_url.clone(),
                validations,
                refresh: Duration::from_secs(config.jwks_refresh_s),
                http,
                keys: RwLock::new(HashMap::new()),
                refetched: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Fetches the key set and replaces the cached one (a key the issuer
    /// withdrew goes with it); on failure the cached one stays.
    pub async fn refresh(&self) -> Result<usize, String> {
        let mut response = self.inner.http.get(&self.inner.jwks_url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        let set: Set = serde_json::from_slice(&body).map_err(|e| format!("not a JWK set: {e}"))?;
        // A key we cannot use (encryption, another type, no kid) is skipped,
        // not a reason to drop the whole set.
        let keys: HashMap<String, Arc<Key>> = set.keys.into_iter().filter_map(|value| usable(serde_json::from_value(value).ok()?)).collect();
        let count = keys.len();
        *self.inner.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(count)
    }

    /// Refreshes every `jwks_refresh_s` until `shutdown`; every
    /// [`MIN_REFETCH`] while no key is known (the issuer was down at start).
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let empty = self.inner.keys.read().unwrap_or_else(|e| e.into_inner()).is_empty();
            let wait = if empty { MIN_REFETCH } else { self.inner.refresh };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(url = %self.inner.jwks_url, error = %e, "OAuth2 key set not refreshed; keeping the cached keys");
            }
        }
    }

    fn key(&self, kid: &str) -> Option<Arc<Key>> {
        self.inner.keys.read().unwrap_or_else(|e| e.into_inner()).get(kid).cloned()
    }

    /// The key `kid` names, fetching the set again if it is unknown and no
    /// such fetch ran in the last [`MIN_REFETCH`].
    async fn key_or_refetch(&self, kid: &str) -> Result<Arc<Key>, Rejected> {
        if let Some(key) = self.key(kid) {
            return Ok(key);
        }
        let mut last = self.inner.refetched.lock().await;
        // Another request may have fetched it while this one waited.
        if let Some(key) = self.key(kid) {
            return Ok(key);
        }
        if last.is_some_and(|at| at.elapsed() < MIN_REFETCH) {
            return Err(Rejected::UnknownKey);
        }
        *last = Some(Instant::now());
        if let Err(e) = self.refresh().await {
            tracing::warn!(url = %self.inner.jwks_url, error = %e, "OAuth2 key set not fetched for an unknown kid");
        }
        self.key(kid).ok_or(Rejected::UnknownKey)
    }

    /// Verifies `token` and says who it is for and what it grants.
    pub async fn verify(&self, token: &str) -> Result<Grant, Rejected> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejected::Malformed)?;
        let validation = self.inner.validations.iter().find(|(alg, _)| *alg == header.alg).map(|(_, v)| v).ok_or(Rejected::Algorithm)?;
        // RFC 9068 section 4 asks for `at+jwt`; many issuers still send
        // `JWT` or nothing. Any other type (an ID token's, a logout token's)
        // is a token for something else.
        if !header.typ.as_deref().is_none_or(|t| ["at+jwt", "application/at+jwt", "jwt"].iter().any(|ok| t.eq_ignore_ascii_case(ok))) {
            return Err(Rejected::Type);
        }
        // RFC 7515 section 4.1.11: we understand no extension, so none may be critical.
        if header.crit.is_some() {
            return Err(Rejected::Critical);
        }
        let kid = header.kid.as_deref().ok_or(Rejected::NoKeyId)?;
        let key = self.key_or_refetch(kid).await?;
        if key.alg.is_some_and(|alg| alg != header.alg) {
            return Err(Rejected::Algorithm);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, validation).map_err(|e| classify(e.kind()))?;
        let Claims { client_id, azp, sub, scope } = data.claims;
        let client_id = client_id.or(azp).or(sub).filter(|c| !c.is_empty()).ok_or(Rejected::NoClient)?;
        let scopes = scope.unwrap_or_default().split_ascii_whitespace().map(str::to_owned).collect();
        Ok(Grant { client_id, scopes })
    }
}

/// A JWK as a verification key, or `None` when it is not one for us.
fn usable(jwk: Jwk) -> Option<(String, Arc<Key>)> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))) {
        return None;
    }
    // A shared secret in a public key set would verify anyone's HS* token.
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        // An encryption algorithm (RSA-OAEP, ...) is no signing key.
        Some(named) => Some(Algorithm::from_str(&named.to_string()).ok().filter(|a| ASYMMETRIC.contains(a))?),
    };
    let kid = jwk.common.key_id.clone()?;
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    Some((kid, Arc::new(Key { decoding, alg })))
}

fn classify(kind: &jsonwebtoken::errors::ErrorKind) -> Rejected {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => Rejected::Signature,
        K::ExpiredSignature => Rejected::Expired,
        K::ImmatureSignature => Rejected::Immature,
        K::InvalidIssuer => Rejected::Issuer,
        K::InvalidAudience => Rejected::Audience,
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm | K::InvalidKeyFormat => Rejected::Algorithm,
        K::MissingRequiredClaim(_) | K::InvalidClaimFormat(_) | K::Json(_) | K::Utf8(_) | K::InvalidSubject => Rejected::Claims,
        _ => Rejected::Malformed,
    }
}

#[cfg(test)]
#[path = "oauth2_tests.rs"]
mod tests;
