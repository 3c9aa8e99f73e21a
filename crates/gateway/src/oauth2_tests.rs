//! Claim and key checks of [`Issuer::verify`], with tokens minted here by
//! hand (ring signs; the gateway's verifier is not used to make them) and a
//! key set served over loopback HTTP.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "https://api.switchyard.test";

fn key_pair() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("pkcs8");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("pair")
}

fn jwk(pair: &EcdsaKeyPair, kid: &str) -> Value {
    let point = pair.public_key().as_ref();
    json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid, "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..])})
}

fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).expect("time")
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now() + 300, "iat": now(), "client_id": "payments-app", "scope": "payouts:write payouts:read"})
}

fn mint(pair: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
    let signature = pair.sign(&SystemRandom::new(), input.as_bytes()).expect("sign");
    format!("{input}.{}", B64URL.encode(signature.as_ref()))
}

/// A case: its name, how it changes the claims or the config, what it expects.
type ClaimsCase<'a> = (&'a str, &'a dyn Fn(&mut Value), Rejected);
type ConfigCase<'a> = (&'a str, &'a dyn Fn(&mut OAuth2Config));

fn es256(kid: &str) -> Value {
    json!({"alg": "ES256", "typ": "at+jwt", "kid": kid})
}

/// A key set served on loopback that the test can change, counting fetches.
struct Jwks {
    url: String,
    keys: Arc<RwLock<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

async fn serve(keys: Vec<Value>) -> Jwks {
    let keys = Arc::new(RwLock::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (k, f) = (keys.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (k, f) = (k.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                let keys = k.read().expect("keys").clone();
                axum::Json(json!({ "keys": keys }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Jwks { url: format!("http://{addr}/jwks"), keys, fetches }
}

fn config(jwks_url: &str) -> OAuth2Config {
    OAuth2Config {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks_url: jwks_url.into(),
        algorithms: vec!["RS256".into(), "ES256".into()],
        leeway_s: 30,
        jwks_refresh_s: 300,
    }
}

async fn issuer(jwks: &Jwks) -> Issuer {
    let issuer = Issuer::new(&config(&jwks.url)).expect("config");
    issuer.refresh().await.expect("first fetch");
    issuer
}

#[tokio::test]
async fn a_valid_token_names_its_client_and_scopes_and_each_bad_claim_is_refused() {
    let pair = key_pair();
    let jwks = serve(vec![jwk(&pair, "k1")]).await;
    let issuer = issuer(&jwks).await;
    let grant = issuer.verify(&mint(&pair, &es256("k1"), &claims())).await.expect("valid");
    assert_eq!(grant.client_id, "payments-app");
    assert_eq!(grant.scopes, HashSet::from(["payouts:write".to_owned(), "payouts:read".to_owned()]));

    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims();
        edit(&mut c);
        mint(&pair, &es256("k1"), &c)
    };
    // `aud` as an array holding ours is fine (RFC 7519 section 4.1.3).
    assert!(issuer.verify(&with(&|c| c["aud"] = json!(["other", AUDIENCE]))).await.is_ok());
    // Within the leeway (30 s) an expired token still passes; past it, not.
    assert!(issuer.verify(&with(&|c| c["exp"] = json!(now() - 10))).await.is_ok());
    let cases: [ClaimsCase<'_>; 11] = [
        ("expired", &|c| c["exp"] = json!(now() - 120), Rejected::Expired),
        ("no exp", &|c| drop(c.as_object_mut().map(|o| o.remove("exp"))), Rejected::Claims),
        ("not yet valid", &|c| c["nbf"] = json!(now() + 600), Rejected::Immature),
        // Refused, not taken as absent (jsonwebtoken 10.3's "type confusion with exp/nbf" fix).
        ("exp as a string", &|c| c["exp"] = json!((now() - 120).to_string()), Rejected::Claims),
        ("nbf as a string", &|c| c["nbf"] = json!((now() + 600).to_string()), Rejected::Claims),
        ("other issuer", &|c| c["iss"] = json!("https://issuer.test"), Rejected::Issuer),
        ("no issuer", &|c| drop(c.as_object_mut().map(|o| o.remove("iss"))), Rejected::Claims),
        ("other audience", &|c| c["aud"] = json!("https://another.api"), Rejected::Audience),
        ("no audience", &|c| drop(c.as_object_mut().map(|o| o.remove("aud"))), Rejected::Claims),
        ("scope not a string", &|c| c["scope"] = json!(["payouts:write"]), Rejected::Claims),
        ("no client", &|c| drop(c.as_object_mut().and_then(|o| o.remove("client_id"))), Rejected::NoClient),
    ];
    for (case, edit, expected) in cases {
        assert_eq!(issuer.verify(&with(edit)).await, Err(expected), "{case}");
    }
    // Fallbacks for issuers without `client_id`: `azp`, then `sub`.
    let grant = issuer.verify(&with(&|c| {
        let o = c.as_object_mut().expect("object");
        o.remove("client_id");
        o.insert("azp".into(), json!("azp-client"));
        o.insert("sub".into(), json!("sub-client"));
    })).await.expect("azp");
    assert_eq!(grant.client_id, "azp-client");
    let grant = issuer.verify(&with(&|c| {
        let o = c.as_object_mut().expect("object");
        o.remove("client_id");
        o.insert("sub".into(), json!("sub-client"));
        o.remove("scope");
    })).await.expect("sub");
    assert_eq!((grant.client_id.as_str(), grant.scopes.len()), ("sub-client", 0));
}

#[tokio::test]
async fn forged_unsigned_and_mistyped_tokens_are_refused() {
    let (pair, other) = (key_pair(), key_pair());
    let jwks = serve(vec![jwk(&pair, "k1")]).await;
    let issuer = issuer(&jwks).await;
    let good = mint(&pair, &es256("k1"), &claims());
    assert!(issuer.verify(&good).await.is_ok());
    assert_eq!(issuer.verify(&mint(&other, &es256("k1"), &claims())).await, Err(Rejected::Signature), "another key, same kid");
    // The signature of a token over other claims.
    let mut richer = claims();
    richer["scope"] = json!("payouts:write cards:write");
    let spliced = format!("{}.{}", mint(&pair, &es256("k1"), &richer).rsplit_once('.').expect("parts").0, good.rsplit_once('.').expect("parts").1);
    assert_eq!(issuer.verify(&spliced).await, Err(Rejected::Signature));
    // alg none, with and without a signature part.
    let none = format!("{}.{}.", B64URL.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#), B64URL.encode(claims().to_string()));
    assert_eq!(issuer.verify(&none).await, Err(Rejected::Malformed));
    // HS256 keyed with anything a caller might guess (the public key's bytes).
    let hs = mint(&pair, &json!({"alg": "HS256", "kid": "k1"}), &claims());
    assert_eq!(issuer.verify(&hs).await, Err(Rejected::Algorithm));
    // An allowed alg the key is not for.
    assert_eq!(issuer.verify(&mint(&pair, &json!({"alg": "RS256", "kid": "k1"}), &claims())).await, Err(Rejected::Algorithm));
    for typ in ["JWT", "at+JWT", "application/at+jwt"] {
        assert!(issuer.verify(&mint(&pair, &json!({"alg": "ES256", "typ": typ, "kid": "k1"}), &claims())).await.is_ok(), "typ {typ}");
    }
    assert!(issuer.verify(&mint(&pair, &json!({"alg": "ES256", "kid": "k1"}), &claims())).await.is_ok(), "no typ");
    assert_eq!(issuer.verify(&mint(&pair, &json!({"alg": "ES256", "typ": "logout+jwt", "kid": "k1"}), &claims())).await, Err(Rejected::Type));
    assert_eq!(issuer.verify(&mint(&pair, &json!({"alg": "ES256", "kid": "k1", "crit": ["exp"]}), &claims())).await, Err(Rejected::Critical));
    assert_eq!(issuer.verify(&mint(&pair, &json!({"alg": "ES256"}), &claims())).await, Err(Rejected::NoKeyId));
    // A key carried in the token itself is never trusted.
    let embedded = json!({"alg": "ES256", "kid": "mine", "jwk": jwk(&other, "mine"), "jku": "http://127.0.0.1:9/jwks"});
    assert_eq!(issuer.verify(&mint(&other, &embedded, &claims())).await, Err(Rejected::UnknownKey));
    for junk in ["", "a.b.c", "not a token", "e30.e30.e30"] {
        assert!(issuer.verify(junk).await.is_err(), "{junk:?}");
    }
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_set_once_per_interval_and_a_withdrawn_key_goes() {
    let (old, new) = (key_pair(), key_pair());
    let jwks = serve(vec![jwk(&old, "k1")]).await;
    let issuer = issuer(&jwks).await;
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1);
    // The issuer rotates: k2 appears, and a token signed with it passes after one fetch.
    jwks.keys.write().expect("keys").push(jwk(&new, "k2"));
    assert!(issuer.verify(&mint(&new, &es256("k2"), &claims())).await.is_ok());
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);
    // Unknown kids within MIN_REFETCH: refused without fetching again.
    for n in 0..20 {
        assert_eq!(issuer.verify(&mint(&new, &es256(&format!("forged-{n}")), &claims())).await, Err(Rejected::UnknownKey));
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2, "at most one fetch per {MIN_REFETCH:?}");
    // k1 withdrawn: gone at the next refresh.
    jwks.keys.write().expect("keys").remove(0);
    assert_eq!(issuer.refresh().await, Ok(1));
    assert_eq!(issuer.verify(&mint(&old, &es256("k1"), &claims())).await, Err(Rejected::UnknownKey));
    // Encryption and symmetric keys in the set are skipped, not trusted.
    let mut encryption = jwk(&old, "enc");
    encryption["use"] = json!("enc");
    let mut oaep = jwk(&old, "oaep");
    oaep["alg"] = json!("RSA-OAEP");
    jwks.keys.write().expect("keys").extend([json!({"kty": "oct", "kid": "hmac", "k": B64URL.encode("secret")}), encryption, oaep]);
    assert_eq!(issuer.refresh().await, Ok(1), "only k2 is a verification key");
}

#[test]
fn a_malformed_section_names_its_field() {
    let ok = config("https://issuer.test/.well-known/jwks.json");
    assert_eq!(check_config(&ok), Ok(()));
    assert_eq!(check_config(&config("http://localhost:8080/jwks")), Ok(()));
    assert_eq!(check_config(&config("http://[::1]:8080/jwks")), Ok(()));
    let cases: [ConfigCase<'_>; 8] = [
        ("oauth2.jwks_url", &|c| c.jwks_url = "not a url".into()),
        ("oauth2.jwks_url", &|c| c.jwks_url = "http://issuer.test/jwks".into()),
        ("oauth2.issuer", &|c| c.issuer = " ".into()),
        ("oauth2.audience", &|c| c.audience = String::new()),
        ("oauth2.algorithms: none", &|c| c.algorithms = vec!["none".into()]),
        ("oauth2.algorithms: HS256", &|c| c.algorithms = vec!["ES256".into(), "HS256".into()]),
        ("oauth2.leeway_s", &|c| c.leeway_s = 3_600),
        ("oauth2.jwks_refresh_s", &|c| c.jwks_refresh_s = 1),
    ];
    for (field, edit) in cases {
        let mut c = ok.clone();
        edit(&mut c);
        let err = check_config(&c).expect_err(field);
        assert!(err.starts_with(field), "{field}: {err}");
    }
}
