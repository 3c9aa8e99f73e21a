//! OAuth2 client credentials at the gateway, end to end: real broker, real
//! PostgreSQL, the payout worker over the Stripe simulator, and an issuer
//! played by the test: it makes RSA keys (openssl), serves their JWKS over
//! loopback HTTP, and mints RS256 access tokens by hand, so the gateway's
//! verifier (jsonwebtoken with ring) is checked against an independent
//! signer.

use anyhow::{Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use switchyard_adapters::secret::SecretSource;
use switchyard_e2e::TestEnv;
use switchyard_gateway::config::{GatewayConfig, GatewayTopics, OAuth2Config, TeamConfig};
use switchyard_gateway::payouts::payout_id;
use switchyard_gateway::start_gateway;
use switchyard_simulators::stripe;
use tokio_util::sync::CancellationToken;

const ISSUER: &str = "https://login.bank.test/";
const AUDIENCE: &str = "https://switchyard.bank.test/v1";
const OPS_KEY: &str = "sk-test-ops-oauth2-4e1d";

/// The test's authorization server: its keys, by kid, and a JWKS endpoint
/// counting its fetches.
struct Issuer {
    url: String,
    published: Arc<RwLock<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

fn rsa_key() -> Result<PKey<Private>> {
    Ok(PKey::from_rsa(Rsa::generate(2048)?)?)
}

fn jwk(key: &PKey<Private>, kid: &str) -> Result<Value> {
    let rsa = key.rsa()?;
    Ok(json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": B64URL.encode(rsa.n().to_vec()), "e": B64URL.encode(rsa.e().to_vec())}))
}

async fn serve_jwks(keys: Vec<Value>) -> Result<Issuer> {
    let published = Arc::new(RwLock::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (p, f) = (published.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (p, f) = (p.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                let keys = p.read().map(|k| k.clone()).unwrap_or_default();
                axum::Json(json!({ "keys": keys }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Issuer { url: format!("http://{addr}/.well-known/jwks.json"), published, fetches })
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// An access token as an RFC 9068 issuer makes one for `client_id`.
fn claims(client_id: &str, scope: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now() + 300, "iat": now(), "jti": uuid::Uuid::new_v4().to_string(), "client_id": client_id, "sub": client_id, "scope": scope})
}

fn mint(key: &PKey<Private>, kid: &str, claims: &Value) -> Result<String> {
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": kid});
    let input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
    let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), key)?;
    let signature = signer.sign_oneshot_to_vec(input.as_bytes())?;
    Ok(format!("{input}.{}", B64URL.encode(signature)))
}

fn team(name: &str, clients: &[&str], keys: &[&str], scopes: &[&str]) -> TeamConfig {
    TeamConfig {
        name: name.into(),
        api_keys: keys.iter().map(|k| SecretSource::inline(k)).collect(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        rate_limit: None,
        oauth2_client_ids: clients.iter().map(|c| (*c).to_owned()).collect(),
        callback: None,
    }
}

fn gateway_config(env: &TestEnv, jwks_url: &str) -> GatewayConfig {
    let mut kafka = env.kafka.clone();
    kafka.group_id = format!("{}gateway", env.prefix);
    GatewayConfig {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: switchyard_localstack::database_url(),
        topics: GatewayTopics::with_prefix(&env.prefix),
        max_body_bytes: 16 * 1024,
        publish_timeout_ms: 5_000,
        lease_ms: 10_000,
        max_wait_ms: 10_000,
        oauth2: Some(OAuth2Config {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_url: jwks_url.into(),
            algorithms: vec!["RS256".into(), "ES256".into()],
            leeway_s: 30,
            jwks_refresh_s: 300,
        }),
        teams: vec![
            team("payments", &["payments-client"], &[], &["payouts:write", "payouts:read"]),
            // Its tokens may ask for payouts:write; the team does not hold it.
            team("viewer", &["viewer-client"], &[], &["payouts:read"]),
            // Keys keep working beside tokens.
            team("ops", &[], &[OPS_KEY], &["payouts:read"]),
        ],
    }
}

fn body(amount_minor: i64) -> Value {
    json!({
        "amount_minor": amount_minor,
        "currency": "EUR",
        "beneficiary": {"name": "Ada Lovelace", "iban": "DE89370400440532013000", "country": "DE"},
        "rail": "instant",
        "reference": "invoice 7",
    })
}

struct Call {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Call {
    fn challenge(&self) -> &str {
        self.headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

struct Gateway {
    http: reqwest::Client,
    base: String,
}

impl Gateway {
    async fn post(&self, bearer: &str, idempotency_key: &str, amount_minor: i64) -> Result<Call> {
        let request = self.http.post(format!("{}/v1/payouts", self.base)).bearer_auth(bearer).header("Idempotency-Key", idempotency_key).json(&body(amount_minor));
        Self::call(request).await
    }

    async fn get(&self, bearer: &str, path: &str) -> Result<Call> {
        Self::call(self.http.get(format!("{}{path}", self.base)).bearer_auth(bearer)).await
    }

    async fn call(request: reqwest::RequestBuilder) -> Result<Call> {
        let response = request.send().await?;
        let (status, headers) = (response.status(), response.headers().clone());
        Ok(Call { status, headers, body: response.text().await? })
    }
}

/// A 401 for a token: the problem shape, RFC 6750's `invalid_token`, and
/// not a byte of the token in the answer.
fn assert_invalid_token(case: &str, call: &Call, token: &str) {
    assert_eq!(call.status, StatusCode::UNAUTHORIZED, "{case}: {}", call.body);
    assert_eq!(call.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"), "{case}");
    let problem = call.json();
    assert_eq!((problem["status"].as_u64(), problem["code"].as_str()), (Some(401), Some("unauthenticated")), "{case}: {problem}");
    assert!(call.challenge().starts_with("Bearer ") && call.challenge().contains("error=\"invalid_token\""), "{case}: {}", call.challenge());
    let signature = token.rsplit('.').next().unwrap_or_default();
    assert!(!call.body.contains(token) && (signature.len() < 8 || !call.body.contains(signature)), "{case}: the token is echoed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_tokens_are_verified_against_the_issuers_keys_and_scoped_per_team_and_token() -> Result<()> {
    let env = TestEnv::new("gw-oauth2").await?;
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let (k1, k2, stranger) = (rsa_key()?, rsa_key()?, rsa_key()?);
    let issuer = serve_jwks(vec![jwk(&k1, "k1")?]).await?;
    let shutdown = CancellationToken::new();
    let worker = switchyard_worker::start_payout_worker(env.worker_config(&sim.base_url(), None, "stripe"), shutdown.clone()).await?;
    let running = start_gateway(gateway_config(&env, &issuer.url), shutdown.clone()).await?;
    let gateway = Gateway { http: reqwest::Client::new(), base: format!("http://{}", running.addr) };
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1, "the key set is fetched at start-up");

    // A valid token with payouts:write: accepted, executed, and its outcome served.
    let writer = mint(&k1, "k1", &claims("payments-client", "payouts:write payouts:read"))?;
    let key = format!("{}po-1", env.prefix);
    let accepted = gateway.post(&writer, &key, 4200).await?;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let id = payout_id(&key);
    let view = gateway.get(&writer, &format!("/v1/payouts/{id}?wait=10s")).await?;
    assert_eq!((view.status, view.json()["status"].as_str()), (StatusCode::OK, Some("submitted")), "{}", view.body);
    assert_eq!(sim.ledger().len(), 1, "executed once");

    // Scopes: the token's and the team's, both needed.
    let reader = mint(&k1, "k1", &claims("payments-client", "payouts:read"))?;
    let refused = gateway.post(&reader, &format!("{}po-2", env.prefix), 100).await?;
    assert_eq!((refused.status, refused.json()["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{}", refused.body);
    assert!(refused.challenge().contains("error=\"insufficient_scope\"") && refused.challenge().contains("scope=\"payouts:write\""), "{}", refused.challenge());
    assert_eq!(gateway.get(&reader, &format!("/v1/payouts/{id}")).await?.status, StatusCode::OK, "payouts:read is granted");
    let viewer = mint(&k1, "k1", &claims("viewer-client", "payouts:write payouts:read"))?;
    let refused = gateway.post(&viewer, &format!("{}po-3", env.prefix), 100).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "a team without payouts:write: {}", refused.body);
    assert_eq!(refused.json()["detail"], "this call needs the scope payouts:write");
    // An API key beside tokens.
    assert_eq!(gateway.get(OPS_KEY, &format!("/v1/payouts/{id}")).await?.status, StatusCode::OK);
    let unknown = gateway.get("sk-test-nobody", &format!("/v1/payouts/{id}")).await?;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(!unknown.challenge().contains("invalid_token"), "not a token: {}", unknown.challenge());

    // Every refused token: 401 invalid_token, nothing published.
    let mut expired = claims("payments-client", "payouts:write");
    expired["exp"] = json!(now() - 120);
    let mut other_audience = claims("payments-client", "payouts:write");
    other_audience["aud"] = json!("https://another.api.test");
    let mut other_issuer = claims("payments-client", "payouts:write");
    other_issuer["iss"] = json!("https://login.bank.test");
    let unsigned = format!(
        "{}.{}.",
        B64URL.encode(json!({"alg": "none", "typ": "at+jwt", "kid": "k1"}).to_string()),
        B64URL.encode(claims("payments-client", "payouts:write").to_string())
    );
    let cases = [
        ("expired", mint(&k1, "k1", &expired)?),
        ("forged: another key under kid k1", mint(&stranger, "k1", &claims("payments-client", "payouts:write"))?),
        ("wrong audience", mint(&k1, "k1", &other_audience)?),
        ("wrong issuer", mint(&k1, "k1", &other_issuer)?),
        ("alg none", unsigned),
        ("a client of no team", mint(&k1, "k1", &claims("stranger-client", "payouts:write"))?),
    ];
    for (n, (case, token)) in cases.iter().enumerate() {
        let call = gateway.post(token, &format!("{}bad-{n}", env.prefix), 100).await?;
        assert_invalid_token(case, &call, token);
    }
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1, "known kids fetch nothing");

    // The issuer rotates: k2 appears in its set; a token under k2 is
    // accepted after one fetch.
    issuer.published.write().map_err(|_| anyhow::anyhow!("lock"))?.push(jwk(&k2, "k2")?);
    let rotated = mint(&k2, "k2", &claims("payments-client", "payouts:read"))?;
    let call = gateway.get(&rotated, &format!("/v1/payouts/{id}")).await?;
    assert_eq!(call.status, StatusCode::OK, "{}", call.body);
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2, "one fetch for the new kid");
    // Unknown kids right after: refused without asking the issuer again.
    for n in 0..10 {
        let token = mint(&stranger, &format!("kid-{n}"), &claims("payments-client", "payouts:read"))?;
        assert_invalid_token("unknown kid", &gateway.get(&token, &format!("/v1/payouts/{id}")).await?, &token);
    }
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2, "unknown kids are rate limited");

    let reader = switchyard_e2e::TopicReader::new(&env.kafka, &env.topic("payouts.commands.v1"))?;
    let records = reader.read_up_to(10, std::time::Duration::from_secs(3)).await?;
    assert_eq!(records.len(), 1, "only the accepted payout was published");
    assert_eq!(sim.ledger().len(), 1, "and executed once");
    shutdown.cancel();
    worker.join.await??;
    running.join.await?.context("gateway")?;
    Ok(())
}
