//! Who is calling: API keys per consuming team, scopes per domain and
//! action, a token bucket per team, and the audit entry every call leaves.
//!
//! Keys arrive through the secret provider and only their SHA-256 digests
//! are kept; a presented key is hashed and compared with every digest in
//! constant time, so neither the answer's timing nor its content tells a
//! caller how close a guess was. Keys never reach a log, the audit log or a
//! problem.
//!
//! Beside keys, a team may call with OAuth2 access tokens (see
//! [`crate::oauth2`]): a bearer value that opens no key and looks like a
//! JWT is verified against the issuer, its client id names the team, and
//! the call may use only scopes both the token and the team hold.

use crate::config::TeamConfig;
use crate::oauth2::{Issuer, Rejected};
use crate::problem::Problem;
use crate::resource::{valid_correlation, CORRELATION_ID};
use crate::{Gateway, GatewayError};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use switchyard_canonical::CorrelationId;
use switchyard_store::AuditEntry;

/// The audit action of every call.
pub const AUDIT_ACTION: &str = "gateway_call";
/// The actor of a call no team's key opened.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// A consuming team as the request path sees it.
pub struct Team {
    pub name: String,
    scopes: HashSet<String>,
    /// SHA-256 of each of its keys; the keys themselves are dropped.
    key_digests: Vec<[u8; 32]>,
    /// Its token bucket, shared by all its keys; none when unlimited.
    limiter: Option<governor::DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team").field("name", &self.name).field("scopes", &self.scopes).finish_non_exhaustive()
    }
}

impl Team {
    pub fn may(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// Takes a token, or says how long until one is free (whole seconds,
    /// at least 1, as `Retry-After` counts).
    pub fn admit(&self) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check().map_err(|not_until| {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            u64::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u64::MAX).max(1)
        })
    }
}

/// Every team, loaded at start-up.
#[derive(Debug, Default)]
pub struct Auth {
    teams: Vec<Arc<Team>>,
    /// Each team's OAuth2 client ids.
    clients: HashMap<String, Arc<Team>>,
    /// The OAuth2 issuer whose tokens are accepted; none: keys only.
    issuer: Option<Issuer>,
}

/// Who is calling and, for an access token, what it grants.
#[derive(Debug)]
pub struct Caller {
    pub team: Arc<Team>,
    /// The token's scopes; `None` for an API key (the team's scopes apply).
    granted: Option<HashSet<String>>,
}

impl Caller {
    /// A scope both the team and, for a token, the token hold.
    pub fn may(&self, scope: &str) -> bool {
        self.team.may(scope) && self.granted.as_ref().is_none_or(|granted| granted.contains(scope))
    }

    fn by_token(&self) -> bool {
        self.granted.is_some()
    }
}

/// Why a call was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No bearer value, or one that is neither a key nor a JWT.
    NoCredentials,
    /// A JWT that did not verify, or whose client is no team's.
    InvalidToken,
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

impl Auth {
    /// Loads every team's keys through the secret provider; a missing key
    /// stops start-up naming the team and key, never the value.
    pub fn load(teams: &[TeamConfig]) -> Result<Self, GatewayError> {
        let mut loaded = Vec::with_capacity(teams.len());
        let mut clients = HashMap::new();
        let mut seen = HashSet::new();
        for (t, team) in teams.iter().enumerate() {
            let mut key_digests = Vec::with_capacity(team.api_keys.len());
            for (k, source) in team.api_keys.iter().enumerate() {
                let field = format!("teams[{t}].api_keys[{k}]");
                let secret = source.load(&field).map_err(|e| GatewayError::Config(e.0))?;
                let hashed = digest(secret.expose().as_bytes());
                // One key opening two teams would make the caller ambiguous.
                if !seen.insert(hashed) {
                    return Err(GatewayError::Config(format!("{field}: the same key is configured twice")));
                }
                key_digests.push(hashed);
            }
            let limiter = team.rate_limit.and_then(|limit| {
                let quota = governor::Quota::per_second(NonZeroU32::new(limit.per_second)?).allow_burst(NonZeroU32::new(limit.burst)?);
                Some(governor::RateLimiter::direct(quota))
            });
            let loaded_team = Arc::new(Team { name: team.name.clone(), scopes: team.scopes.iter().cloned().collect(), key_digests, limiter });
            for client in &team.oauth2_client_ids {
                clients.insert(client.clone(), loaded_team.clone());
            }
            loaded.push(loaded_team);
        }
        Ok(Self { teams: loaded, clients, issuer: None })
    }

    /// Accepts the issuer's access tokens beside the keys.
    pub fn accept_tokens(&mut self, issuer: Issuer) {
        self.issuer = Some(issuer);
    }

    /// The caller behind a bearer value: a key first (so a key is never
    /// parsed as a token), then, when an issuer is configured and the value
    /// has a JWS's three parts, an access token.
    pub async fn identify(&self, presented: &[u8]) -> Result<Caller, Refused> {
        if let Some(team) = self.authenticate(presented) {
            return Ok(Caller { team, granted: None });
        }
        let Some(issuer) = &self.issuer else { return Err(Refused::NoCredentials) };
        let Some(token) = std::str::from_utf8(presented).ok().filter(|t| t.split('.').count() == 3) else {
            return Err(Refused::NoCredentials);
        };
        let grant = issuer.verify(token).await.map_err(|reason| {
            // The category only: never the token, nor a claim from it.
            tracing::info!(%reason, "access token refused");
            Refused::InvalidToken
        })?;
        let Some(team) = self.clients.get(&grant.client_id) else {
            tracing::info!(reason = %Rejected::NoClient, "access token refused: its client is no team's");
            return Err(Refused::InvalidToken);
        };
        Ok(Caller { team: team.clone(), granted: Some(grant.scopes) })
    }

    /// The team holding `presented`, comparing it with every key (no early
    /// exit) in constant time.
    pub fn authenticate(&self, presented: &[u8]) -> Option<Arc<Team>> {
        let hashed = digest(presented);
        let mut found = None;
        for team in &self.teams {
            let mut matched = subtle::Choice::from(0u8);
            for key in &team.key_digests {
                matched |= key.ct_eq(&hashed);
            }
            if bool::from(matched) {
                found = Some(team.clone());
            }
        }
        found
    }
}

/// The scope a call needs: `<domain>:write` to change, `<domain>:read` to
/// look, `<domain>:decide` to record an analyst's decision; `None` outside
/// `/v1/<domain>`.
pub fn required_scope(method: &Method, path: &str) -> Option<String> {
    let domain = path.strip_prefix("/v1/")?.split('/').next().filter(|d| !d.is_empty())?;
    let action = if method == Method::GET || method == Method::HEAD {
        "read"
    } else if path.ends_with("/decisions") {
        "decide"
    } else {
        "write"
    };
    Some(format!("{domain}:{action}"))
}

fn bearer(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token).filter(|t| !t.is_empty())
}

/// Runs around every `/v1` route: gives the call a correlation id,
/// authenticates, takes a token from the team's bucket, checks the scope, hands the team to the handler as an
/// extension, and audits the call with its answer's status.
pub(crate) async fn layer(State(app): State<Arc<Gateway>>, mut request: Request, next: Next) -> Response {
    let correlation = match request.headers().get(CORRELATION_ID) {
        None => {
            let fresh = CorrelationId::new_random().0;
            if let Ok(value) = HeaderValue::from_str(&fresh) {
                request.headers_mut().insert(CORRELATION_ID, value);
            }
            fresh
        }
        // The handler refuses a malformed one; the audit entry gets its own.
        Some(value) => valid_correlation(value).map(str::to_owned).unwrap_or_else(|| CorrelationId::new_random().0),
    };
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let caller = match bearer(&request) {
        None => Err(Refused::NoCredentials),
        Some(presented) => app.auth.identify(presented).await,
    };
    let mut response = match &caller {
        Err(Refused::NoCredentials) => Problem::unauthenticated().into_response(),
        Err(Refused::InvalidToken) => challenge(Problem::invalid_token().into_response(), "error=\"invalid_token\""),
        Ok(caller) => match (caller.team.admit(), required_scope(&method, &path)) {
            (Err(seconds), _) => Problem::rate_limited(seconds).into_response(),
            (Ok(()), Some(scope)) if !caller.may(&scope) => {
                let response = Problem::forbidden(&scope).into_response();
                // RFC 6750 section 3.1: a token holder is told which scope to ask its issuer for.
                if caller.by_token() { challenge(response, &format!("error=\"insufficient_scope\", scope=\"{scope}\"")) } else { response }
            }
            (Ok(()), _) => {
                request.extensions_mut().insert(caller.team.clone());
                next.run(request).await
            }
        },
    };
    if let Ok(value) = HeaderValue::from_str(&correlation) {
        response.headers_mut().insert(CORRELATION_ID, value);
    }
    let actor = caller.as_ref().map_or(UNAUTHENTICATED, |c| c.team.name.as_str());
    // Method, path and status only: no body, no query, no key.
    let detail = serde_json::json!({ "method": method.as_str(), "status": response.status().as_u16() }).to_string();
    app.audit
        .audit_later(AuditEntry { actor, action: AUDIT_ACTION, subject_id: &path, correlation_id: &correlation, detail: &detail })
        .await;
    response
}

/// An RFC 6750 `WWW-Authenticate: Bearer` challenge with an error code.
fn challenge(mut response: Response, error: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer realm=\"switchyard\", {error}")) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_adapters::secret::SecretSource;

    fn team(name: &str, keys: &[&str], scopes: &[&str]) -> TeamConfig {
        TeamConfig {
            name: name.into(),
            api_keys: keys.iter().map(|k| SecretSource::inline(k)).collect(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            rate_limit: None,
            oauth2_client_ids: Vec::new(),
            callback: None,
        }
    }

    #[test]
    fn a_team_past_its_burst_waits_whole_seconds_and_other_teams_do_not() {
        let mut slow = team("slow", &["key-s"], &["payouts:read"]);
        slow.rate_limit = Some(crate::config::RateLimitConfig { per_second: 1, burst: 3 });
        let auth = Auth::load(&[slow, team("free", &["key-f"], &["payouts:read"])]).expect("loads");
        let (slow, free) = (auth.authenticate(b"key-s").expect("slow"), auth.authenticate(b"key-f").expect("free"));
        for n in 0..3 {
            assert_eq!(slow.admit(), Ok(()), "burst token {n}");
        }
        assert_eq!(slow.admit(), Err(1), "one token a second: retry after 1 s");
        assert!((0..1_000).all(|_| free.admit().is_ok()), "an unlimited team is not slowed");
    }

    #[test]
    fn a_token_may_use_only_scopes_both_it_and_its_team_hold() {
        let app = TeamConfig { oauth2_client_ids: vec!["app-client".into()], ..team("app", &[], &["payouts:write", "payouts:read"]) };
        let auth = Auth::load(&[app]).expect("loads");
        let team = auth.clients.get("app-client").expect("client").clone();
        let caller = Caller { team: team.clone(), granted: Some(HashSet::from(["payouts:read".to_owned(), "kyc:write".to_owned()])) };
        assert!(caller.may("payouts:read"));
        assert!(!caller.may("payouts:write"), "the team holds it, the token does not");
        assert!(!caller.may("kyc:write"), "the token holds it, the team does not");
        assert!(Caller { team, granted: None }.may("payouts:write"), "a key: the team's scopes");
    }

    #[test]
    fn a_key_opens_its_own_team_only_and_scopes_follow_method_and_domain() {
        let auth = Auth::load(&[team("app", &["key-a1", "key-a2"], &["payouts:write"]), team("ops", &["key-o"], &["payouts:read"])])
            .expect("loads");
        assert_eq!(auth.authenticate(b"key-a2").map(|t| t.name.clone()).as_deref(), Some("app"));
        assert_eq!(auth.authenticate(b"key-o").map(|t| t.name.clone()).as_deref(), Some("ops"));
        assert!(auth.authenticate(b"key-a").is_none(), "a prefix is not a key");
        assert!(auth.authenticate(b"").is_none());
        assert_eq!(required_scope(&Method::POST, "/v1/payouts").as_deref(), Some("payouts:write"));
        assert_eq!(required_scope(&Method::GET, "/v1/payouts/po_1").as_deref(), Some("payouts:read"));
        assert_eq!(required_scope(&Method::GET, "/openapi.json"), None);
        assert_eq!(required_scope(&Method::POST, "/v1/kyc/checks").as_deref(), Some("kyc:write"));
        assert_eq!(required_scope(&Method::POST, "/v1/onboarding/applications/onb_1/evidence").as_deref(), Some("onboarding:write"));
        assert_eq!(required_scope(&Method::POST, "/v1/onboarding/applications/onb_1/decisions").as_deref(), Some("onboarding:decide"));
        assert_eq!(required_scope(&Method::GET, "/v1/onboarding/applications/onb_1").as_deref(), Some("onboarding:read"));
        let ops = auth.authenticate(b"key-o").expect("ops");
        assert!(ops.may("payouts:read") && !ops.may("payouts:write"));
        assert!(!format!("{ops:?}").contains("key-o"));
        let twice = Auth::load(&[team("a", &["shared-value-1"], &[]), team("b", &["shared-value-1"], &[])]).expect_err("shared key");
        assert!(twice.to_string().contains("teams[1].api_keys[0]") && !twice.to_string().contains("shared-value-1"), "{twice}");
    }
}
