use super::*;
use reqwest::header::HeaderValue;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

const NOW_MS: i64 = 1_700_000_000_000;

fn pair() -> (EcdsaKeyPair, VerificationKey) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("pkcs8");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("pair");
    let point = pair.public_key().as_ref();
    let jwk = Jwk {
        alg: "ES256".into(),
        crv: "P-256".into(),
        kid: "k1".into(),
        kty: "EC".into(),
        x: B64URL.encode(&point[1..33]),
        y: B64URL.encode(&point[33..]),
        created_at: Some(1),
        expired_at: None,
    };
    (pair, VerificationKey::try_from(jwk).expect("key"))
}

fn token(pair: &EcdsaKeyPair, alg: &str, iat_s: i64, body: &[u8]) -> HeaderMap {
    let h = B64URL.encode(format!(r#"{{"alg":"{alg}","kid":"k1","typ":"JWT"}}"#));
    let p = B64URL.encode(format!(r#"{{"iat":{iat_s},"request_body_sha256":"{}"}}"#, body_sha256_hex(body)));
    let input = format!("{h}.{p}");
    let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).expect("sign");
    let mut headers = HeaderMap::new();
    headers.insert(HEADER, HeaderValue::from_str(&format!("{input}.{}", B64URL.encode(sig.as_ref()))).expect("ascii"));
    headers
}

#[test]
fn verifies_a_signed_delivery_and_refuses_each_forgery() {
    let (pair, key) = pair();
    let body = br#"{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"i1","error":{"error_code":"ITEM_LOGIN_REQUIRED"}}"#;
    let good = token(&pair, "ES256", NOW_MS / 1000, body);
    assert_eq!(verify_with(&good, body, Some(&key), NOW_MS), Ok(()));
    assert_eq!(verify_with(&good, b"{}", Some(&key), NOW_MS), Err(Refusal::BadSignature), "tampered body");
    let old = token(&pair, "ES256", NOW_MS / 1000 - MAX_AGE_S - 1, body);
    assert_eq!(verify_with(&old, body, Some(&key), NOW_MS), Err(Refusal::StaleTimestamp));
    assert_eq!(verify_with(&token(&pair, "HS256", NOW_MS / 1000, body), body, Some(&key), NOW_MS), Err(Refusal::WrongAlgorithm));
    assert_eq!(verify_with(&good, body, None, NOW_MS), Err(Refusal::UnknownKey));
    let expired = VerificationKey { expired_at_s: Some(NOW_MS / 1000 - 1), ..key.clone() };
    assert_eq!(verify_with(&good, body, Some(&expired), NOW_MS), Err(Refusal::ExpiredKey));
    let (other, _) = self::pair();
    assert_eq!(verify_with(&token(&other, "ES256", NOW_MS / 1000, body), body, Some(&key), NOW_MS), Err(Refusal::BadSignature));
    assert_eq!(signed_at_s(&good), Some(NOW_MS / 1000), "the signing time is the JWT's iat");
    let sent = |at_s: i64| Verified { signed_at_ms: Some(at_s * 1000), verified_at_ms: NOW_MS, ..Verified::default() };
    let facts = map(body, &sent(NOW_MS / 1000)).expect("maps");
    assert_eq!((facts.subject_id.as_str(), facts.reason.as_deref()), ("i1", Some("LOGIN_REQUIRED")));
    assert_eq!(facts.occurred_at_ms, NOW_MS / 1000 * 1000, "the signing time, not when we verified");
    // The same delivery posted twice is one event; the same body signed
    // again (Plaid's retry, or the item failing again after a repair) is
    // another, never dropped as a duplicate.
    assert_eq!(map(body, &sent(NOW_MS / 1000)).expect("maps").event_id, facts.event_id);
    assert_ne!(map(body, &sent(NOW_MS / 1000 + 30)).expect("maps").event_id, facts.event_id);
}
