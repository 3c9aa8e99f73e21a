use super::*;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use reqwest::header::HeaderValue;

/// TrueLayer's own webhook test vector (`test-resources/webhook-signature.txt`
/// and `jwks.json` of TrueLayer/truelayer-signing, MIT OR Apache-2.0): a
/// `Tl-Signature` as its webhooks carry it, signed by its test key, whose
/// JWKS lists an RSA key before the P-521 one, as TrueLayer's does.
const VECTOR_SIGNATURE: &str = "eyJhbGciOiJFUzUxMiIsImtpZCI6IjQ1ZmM3NWNmLTU2NDktNDEzNC04NGIzLTE5MmMyYzc4ZTk5MCIsInRsX3ZlcnNpb24iOiIyIiwidGxfaGVhZGVycyI6IlgtVGwtV2ViaG9vay1UaW1lc3RhbXAsQ29udGVudC1UeXBlIiwiamt1IjoiaHR0cHM6Ly93ZWJob29rcy50cnVlbGF5ZXIuY29tLy53ZWxsLWtub3duL2p3a3MifQ..AB9S1dzZTmw0tofUjJNGO7Kt_jZsahPyIrBTdhfxBWOI3KoLALkMy6ka1MjpZQx06_hQUJnanu9K_LS6V9lNaNGiAX5Cos5RWQfbeBCZWqAvIpXO3FvIzyJKRaTYK8FBG4lfJYPi76_pIkCLGKWeq8__7ElpMVRcLTM5IBKWL8isVZn_";
const VECTOR_JWKS: &str = r#"{"keys":[
 {"kty":"RSA","alg":"RS512","kid":"db2e0bb4-e33d-4fc6-a8c5-645e70331127","n":"piC9AfXk1FyhocC77L42j8zWhy-jOeuxdvZCRYACPbU5DB-4zd5JLpTFuYPY5LweqT8tmBbqgXMN_35EQifHrLbBB5a5p-0z3QlVhqMP_K4nu65uIVzC-wjKBcTctqY_jFzSotFZnDNCZEUXcGrTzQifOCy1OD7zT0jm7-1ceWs375joA-KnyJj5rVKBmYrLWa6E2ukLhNBHFzO2N7Aai2w6UFmwfG27viV3_aNkDVC6vkEtZx4oZuCtQ6DKmbiQBTiS1-41wU7QN5PTuA9YUlhOU9yiwnCAG9MDWuJHT7691iLvIIgRctuSQ4HDDg49M39Un4DBt51KCoZsAwxtNw","e":"AQAB"},
 {"kty":"EC","alg":"ES512","kid":"45fc75cf-5649-4134-84b3-192c2c78e990","crv":"P-521","x":"oLuW4nFqoUuR8d7FVsUoI62libYdQlWGtLStnqdudLY92bQ0ra5eZAbkunrGTR9-w9mr4o2Etyb6pC7YB2-23WM","y":"AX1cjkGMiltikPrkX49qwuJDdcETaTsj-kyFP8jsF9W5XAB3Z4tBiQtc72DQnJYeKyAV_T6qZTtFKFr-Tp4iu-j7"}]}"#;
const VECTOR_BODY: &[u8] = br#"{"event_type":"example","event_id":"18b2842b-a57b-4887-a0a6-d3c7c36f1020"}"#;
const VECTOR_SENT: &str = "2021-11-29T11:42:55Z";
const JKU: &str = "https://webhooks.truelayer.com/.well-known/jwks";

fn vector_headers(timestamp: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("tl-signature", HeaderValue::from_static(VECTOR_SIGNATURE));
    h.insert("x-tl-webhook-timestamp", HeaderValue::from_str(timestamp).expect("ascii"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h
}

#[test]
fn truelayers_own_test_vector_verifies_and_each_change_is_refused() {
    let sent = rfc3339_ms(VECTOR_SENT).expect("time");
    let jwks = VECTOR_JWKS.as_bytes();
    let good = vector_headers(VECTOR_SENT);
    let verified = verify_with(jwks, "/tl-webhook", &good, VECTOR_BODY, 300, sent + 10_000).expect("TrueLayer's vector");
    assert_eq!(verified.signed_at_ms, Some(sent));
    assert!(verify_with(jwks, "/tl-webhook/", &good, VECTOR_BODY, 300, sent).is_ok(), "trailing slash, as TrueLayer's verifier allows");
    let later = vector_headers("2021-12-02T14:18:00Z");
    assert_eq!(verify_with(jwks, "/tl-webhook", &later, VECTOR_BODY, 300, sent).err(), Some(Refusal::BadSignature), "a signed header changed");
    assert_eq!(verify_with(jwks, "/tl-webhook", &good, b"{}", 300, sent).err(), Some(Refusal::BadSignature), "tampered body");
    assert_eq!(verify_with(jwks, "/other", &good, VECTOR_BODY, 300, sent).err(), Some(Refusal::BadSignature), "another path");
    assert_eq!(verify_with(jwks, "/tl-webhook", &good, VECTOR_BODY, 300, sent + 301_000).err(), Some(Refusal::StaleTimestamp), "a replay");
    let mut no_sig = good.clone();
    no_sig.remove("tl-signature");
    assert_eq!(verify_with(jwks, "/tl-webhook", &no_sig, VECTOR_BODY, 300, sent).err(), Some(Refusal::MissingHeader(HEADER)));
}

/// A P-521 key: its PEM for TrueLayer's signer and its JWK.
fn key(kid: &str) -> (Vec<u8>, String) {
    let group = EcGroup::from_curve_name(Nid::SECP521R1).expect("P-521");
    let key = EcKey::generate(&group).expect("key");
    let (mut x, mut y, mut ctx) = (BigNum::new().expect("bn"), BigNum::new().expect("bn"), BigNumContext::new().expect("ctx"));
    key.public_key().affine_coordinates(&group, &mut x, &mut y, &mut ctx).expect("point");
    let coord = |n: &BigNum| B64URL.encode(n.to_vec_padded(66).expect("66 bytes"));
    let jwk = format!(r#"{{"kty":"EC","alg":"ES512","kid":"{kid}","crv":"P-521","x":"{}","y":"{}"}}"#, coord(&x), coord(&y));
    (key.private_key_to_pem().expect("pem"), jwk)
}

fn signed(pem: &[u8], kid: &str, jku: &str, path: &str, timestamp: &str, body: &[u8], sign_timestamp: bool) -> HeaderMap {
    let mut signer = truelayer_signing::sign_with_pem(kid, pem).method(truelayer_signing::Method::Post).path(path).jku(jku);
    if sign_timestamp {
        signer = signer.header("X-TL-Webhook-Timestamp", timestamp.as_bytes());
    }
    let signature = signer.body(body).build_signer().sign().expect("sign");
    let mut h = HeaderMap::new();
    h.insert("tl-signature", HeaderValue::from_str(&signature).expect("ascii"));
    h.insert("x-tl-webhook-timestamp", HeaderValue::from_str(timestamp).expect("ascii"));
    h
}

#[test]
fn forged_keys_unsigned_timestamps_other_algorithms_and_foreign_key_urls_are_refused() {
    let now = 1_700_000_000_000;
    let ts = "2023-11-14T22:13:20Z";
    let (pem, jwk) = key("k1");
    let jwks = format!(r#"{{"keys":[{jwk}]}}"#);
    let body = br#"{"type":"payment_executed","event_id":"e1","payment_id":"p1","executed_at":"2023-11-14T22:13:00Z"}"#;
    let good = signed(&pem, "k1", JKU, "/webhooks/truelayer", ts, body, true);
    assert!(verify_with(jwks.as_bytes(), "/webhooks/truelayer", &good, body, 300, now).is_ok());
    let (other_pem, _) = key("k1");
    let forged = signed(&other_pem, "k1", JKU, "/webhooks/truelayer", ts, body, true);
    assert_eq!(
        verify_with(jwks.as_bytes(), "/webhooks/truelayer", &forged, body, 300, now).err(),
        Some(Refusal::BadSignature),
        "another key, same kid"
    );
    let unsigned_ts = signed(&pem, "k1", JKU, "/webhooks/truelayer", ts, body, false);
    assert_eq!(
        verify_with(jwks.as_bytes(), "/webhooks/truelayer", &unsigned_ts, body, 300, now).err(),
        Some(Refusal::BadSignature),
        "timestamp not signed"
    );
    let mut hs = good.clone();
    let header = B64URL.encode(r#"{"alg":"HS256","kid":"k1","tl_version":"2","tl_headers":"","jku":"x"}"#);
    hs.insert("tl-signature", HeaderValue::from_str(&format!("{header}..c2ln")).expect("ascii"));
    assert_eq!(verify_with(jwks.as_bytes(), "/webhooks/truelayer", &hs, body, 300, now).err(), Some(Refusal::WrongAlgorithm));

    let keys = TrueLayerKeys::new(vec![JKU.to_owned()], 300).expect("keys");
    let elsewhere = signed(&pem, "k1", "https://attacker.example/jwks", "/webhooks/truelayer", ts, body, true);
    assert_eq!(keys.verify("/webhooks/truelayer", &elsewhere, body, now).err(), Some(Refusal::UntrustedKeyUrl));
    assert_eq!(keys.verify("/webhooks/truelayer", &good, body, now).err(), Some(Refusal::UnknownKey), "nothing fetched yet");
    keys.store(JKU.to_owned(), KeySet::parse(jwks.into_bytes(), now).expect("jwks"));
    assert!(keys.verify("/webhooks/truelayer", &good, body, now).is_ok());
    let k1 = VerificationKey { jku: JKU.to_owned(), kid: "k1".to_owned(), alg: "ES512".to_owned(), withdrawn: false };
    assert_eq!(keys.keys(), vec![k1.clone()]);
    // TrueLayer rotates: k2 replaces k1, which then no longer verifies.
    let (_, jwk2) = key("k2");
    keys.store(JKU.to_owned(), KeySet::parse(format!(r#"{{"keys":[{jwk2}]}}"#).into_bytes(), now).expect("jwks"));
    assert_eq!(keys.verify("/webhooks/truelayer", &good, body, now).err(), Some(Refusal::UnknownKey), "a withdrawn key");
    let k2 = VerificationKey { kid: "k2".to_owned(), ..k1.clone() };
    assert_eq!(keys.keys(), vec![k2, VerificationKey { withdrawn: true, ..k1 }]);
}

#[test]
fn key_urls_and_the_fetch_budget() {
    assert!(TrueLayerKeys::new(Vec::new(), 300).is_err(), "an allowlist is required");
    assert!(TrueLayerKeys::new(vec!["http://webhooks.truelayer.com/.well-known/jwks".into()], 300).is_err(), "plain http to TrueLayer");
    assert!(TrueLayerKeys::new(vec!["http://127.0.0.1:8080/jwks".into(), SANDBOX_JWKS.into(), PRODUCTION_JWKS.into()], 300).is_ok());
    let keys = TrueLayerKeys::new(vec![JKU.to_owned()], 300).expect("keys");
    for _ in 0..MAX_FETCHES_PER_MINUTE {
        assert!(keys.take_fetch(JKU, 0));
    }
    assert!(!keys.take_fetch(JKU, 59_999), "budget spent within the minute");
    assert!(keys.take_fetch(JKU, 60_000), "a minute later");
    let set = KeySet::parse(VECTOR_JWKS.as_bytes().to_vec(), 0).expect("TrueLayer's JWKS");
    assert_eq!(set.keys, vec![("45fc75cf-5649-4134-84b3-192c2c78e990".to_owned(), "ES512".to_owned())], "the RSA key is not an ES512 key");
}

#[test]
fn payment_payout_refund_and_mandate_webhooks_map_to_our_words() {
    let v = Verified { message_id: None, signed_at_ms: Some(5), verified_at_ms: 9 };
    let facts = |body: &str| map(body.as_bytes(), &v);
    let executed = facts(r#"{"type":"payment_executed","event_version":1,"event_id":"e1","payment_id":"p1","executed_at":"2021-12-25T15:00:00.000Z","payment_method":{"type":"bank_transfer"}}"#).expect("maps");
    assert_eq!((executed.event_id.as_str(), executed.subject_id.as_str(), executed.reason.as_deref()), ("e1", "p1", Some("EXECUTED")));
    assert_eq!((executed.kind, executed.occurred_at_ms), (ProviderEventKind::Other, rfc3339_ms("2021-12-25T15:00:00Z").expect("t")));
    let failed = facts(r#"{"type":"payment_failed","event_id":"e2","payment_id":"p1","failed_at":"2021-12-25T15:00:00Z","failure_stage":"authorizing","failure_reason":"authorization_failed"}"#).expect("maps");
    assert_eq!(failed.reason.as_deref(), Some("FAILED:authorization_failed"));
    for (t, word) in [("payment_authorized", "AUTHORIZED"), ("payment_settled", "SETTLED"), ("payment_settlement_stalled", "SETTLEMENT_STALLED")] {
        let f = facts(&format!(r#"{{"type":"{t}","event_id":"e","payment_id":"p"}}"#)).expect("maps");
        assert_eq!((f.reason.as_deref(), f.occurred_at_ms), (Some(word), 5), "{t}: no time in the body, the signed one");
    }
    let payout =
        facts(r#"{"type":"payout_failed","event_id":"e3","payout_id":"po1","failed_at":"2021-12-25T15:00:00Z","failure_reason":"scheme_error"}"#)
            .expect("maps");
    assert_eq!(
        (payout.kind, payout.subject_id.as_str(), payout.reason.as_deref()),
        (ProviderEventKind::PayoutFailed, "po1", Some("FAILED:scheme_error"))
    );
    assert_eq!(facts(r#"{"type":"payout_executed","event_id":"e4","payout_id":"po1"}"#).expect("maps").kind, ProviderEventKind::PayoutPaid);
    // As TrueLayer documents it ("Payout webhooks": metadata echoed):
    // keyed on our payout id, TrueLayer's id as the reference.
    let ours = facts(r#"{"type":"payout_executed","event_version":1,"event_id":"e9","payout_id":"tl-po1","executed_at":"2021-12-25T15:00:00Z","merchant_account_id":"ma1","metadata":{"switchyard_payout_id":"po-ours"},"scheme_id":"faster_payments_service"}"#).expect("maps");
    assert_eq!((ours.subject_id.as_str(), ours.provider_reference.as_str(), ours.kind), ("po-ours", "tl-po1", ProviderEventKind::PayoutPaid));
    let refund = facts(r#"{"type":"refund_executed","event_id":"e5","payment_id":"p1","refund_id":"r1"}"#).expect("maps");
    assert_eq!((refund.subject_id.as_str(), refund.provider_reference.as_str(), refund.reason.as_deref()), ("p1", "r1", Some("REFUND_EXECUTED")));
    let mandate = facts(r#"{"type":"mandate_revoked","event_id":"e6","mandate_id":"m1","revoked_at":"2021-12-25T15:00:00Z"}"#).expect("maps");
    assert_eq!((mandate.subject_id.as_str(), mandate.reason.as_deref()), ("m1", Some("MANDATE_REVOKED")));
    let other = facts(r#"{"type":"balance_notification","event_id":"e7"}"#).expect("published as what it says");
    assert_eq!((other.subject_id.as_str(), other.reason.as_deref()), ("e7", Some("BALANCE_NOTIFICATION")));
    assert!(facts(r#"{"type":"payment_executed","event_id":"e8"}"#).is_err(), "payment_id missing");
    assert!(facts(r#"{"type":"payment_executed","event_id":"","payment_id":"p"}"#).is_err(), "empty event id");
    assert!(facts("not json").is_err());
}

#[test]
fn mutated_signatures_headers_and_bodies_never_panic_or_verify() {
    // Seeded xorshift: the same inputs every run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let sent = rfc3339_ms(VECTOR_SENT).expect("time");
    let keys = TrueLayerKeys::new(vec![JKU.to_owned()], 300).expect("keys");
    keys.store(JKU.to_owned(), KeySet::parse(VECTOR_JWKS.as_bytes().to_vec(), sent).expect("jwks"));
    let seeds: [&[u8]; 3] = [
        VECTOR_SIGNATURE.as_bytes(),
        VECTOR_BODY,
        br#"{"type":"payment_failed","event_id":"e","payment_id":"p","failed_at":"2021-12-25T15:00:00Z"}"#,
    ];
    for round in 0..3000 {
        let mut input = seeds[round % seeds.len()].to_vec();
        for _ in 0..1 + next() % 3 {
            let i = (next() as usize) % input.len();
            input[i] = next() as u8;
        }
        input.truncate((next() as usize) % (input.len() + 1));
        if input == seeds[round % seeds.len()] {
            continue;
        }
        let mut headers = vector_headers(VECTOR_SENT);
        match HeaderValue::from_bytes(&input) {
            Ok(v) => headers.insert("tl-signature", v),
            Err(_) => headers.remove("tl-signature"),
        };
        assert!(keys.verify("/tl-webhook", &headers, VECTOR_BODY, sent).is_err(), "round {round}: a mutated signature verified");
        assert!(keys.verify("/tl-webhook", &vector_headers(VECTOR_SENT), &input, sent).is_err(), "round {round}: a mutated body verified");
        let _ = map(&input, &Verified::default());
    }
    assert!(keys.verify("/tl-webhook", &vector_headers(VECTOR_SENT), VECTOR_BODY, sent).is_ok(), "the unmutated vector");
}
