//! Standard Webhooks (standardwebhooks.com, used by Lithic and others):
//! `webhook-id`, `webhook-timestamp` (Unix seconds), and `webhook-signature`,
//! a space-separated list of `v1,<base64 HMAC-SHA256(key, "id.ts.body")>`.
//! Secrets are `whsec_<base64 key>`. Versions other than `v1` are skipped.

use super::{header, hmac_matches, Refusal};
use base64::Engine as _;
use reqwest::header::HeaderMap;

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";
const MAX_SIGNATURES: usize = 8;

pub(super) fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.trim().strip_prefix("whsec_").unwrap_or(secret.trim());
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "not a whsec_<base64> secret".to_owned())?;
    if key.is_empty() {
        return Err("empty webhook secret".to_owned());
    }
    Ok(key)
}

/// The `webhook-signature` value for one delivery: `v1,<base64
/// HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`. The signing half of
/// [`verify`], so what we send is checked by the very code that checks
/// what vendors send us.
pub(super) fn sign(key: &[u8], id: &str, timestamp_s: i64, body: &[u8]) -> String {
    let mut ctx = ring::hmac::Context::with_key(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key));
    for part in [id.as_bytes(), b".", timestamp_s.to_string().as_bytes(), b".", body] {
        ctx.update(part);
    }
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(ctx.sign().as_ref()))
}

/// Returns the verified `webhook-id` and `webhook-timestamp` (Unix seconds).
pub(super) fn verify(headers: &HeaderMap, body: &[u8], keys: &[&[u8]], tolerance_s: i64, now_s: i64) -> Result<(String, i64), Refusal> {
    let id = header(headers, ID)?;
    let ts_text = header(headers, TIMESTAMP)?;
    let signatures = header(headers, SIGNATURE)?;
    if id.is_empty() || id.len() > 256 {
        return Err(Refusal::MalformedHeader(ID));
    }
    let ts: i64 = ts_text.parse().map_err(|_| Refusal::MalformedHeader(TIMESTAMP))?;
    let candidates: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|s| s.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| base64::engine::general_purpose::STANDARD.decode(sig).ok())
        .take(MAX_SIGNATURES)
        .collect();
    if candidates.is_empty() {
        return Err(Refusal::BadSignature);
    }
    if !hmac_matches(keys, &[id.as_bytes(), b".", ts_text.as_bytes(), b".", body], &candidates) {
        return Err(Refusal::BadSignature);
    }
    if (now_s - ts).abs() > tolerance_s {
        return Err(Refusal::StaleTimestamp);
    }
    Ok((id.to_owned(), ts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ID, HeaderValue::from_str(id).expect("ascii"));
        h.insert(TIMESTAMP, HeaderValue::from_str(ts).expect("ascii"));
        h.insert(SIGNATURE, HeaderValue::from_str(sig).expect("ascii"));
        h
    }

    /// The example from the Standard Webhooks specification's test vectors.
    #[test]
    fn verifies_the_specification_example() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let body = br#"{"test": 2432232314}"#;
        let h = headers("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(verify(&h, body, &[&key], 300, 1614265330), Ok(("msg_p5jXN8AQM9LWM0D4loKWxJek".to_owned(), 1614265330)));
        assert_eq!(verify(&h, body, &[&key], 300, 1614265330 + 301), Err(Refusal::StaleTimestamp));
        assert_eq!(verify(&h, br#"{"test": 1}"#, &[&key], 300, 1614265330), Err(Refusal::BadSignature));
        let other = headers("msg_other", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(verify(&other, body, &[&key], 300, 1614265330), Err(Refusal::BadSignature));
    }

    #[test]
    fn signs_the_specification_example_and_verifies_its_own_signatures() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let h = headers("msg_x", "1700000000", &sign(&key, "msg_x", 1_700_000_000, b"{}"));
        assert_eq!(verify(&h, b"{}", &[&key], 300, 1_700_000_000), Ok(("msg_x".to_owned(), 1_700_000_000)));
    }

    #[test]
    fn refuses_missing_and_malformed_headers() {
        let key = [1u8; 24];
        assert_eq!(verify(&HeaderMap::new(), b"{}", &[&key], 300, 0), Err(Refusal::MissingHeader(ID)));
        assert_eq!(verify(&headers("m", "soon", "v1,AA=="), b"{}", &[&key], 300, 0), Err(Refusal::MalformedHeader(TIMESTAMP)));
        assert_eq!(verify(&headers("m", "0", "v2,AA=="), b"{}", &[&key], 300, 0), Err(Refusal::BadSignature));
        assert!(decode_secret("whsec_!!!").is_err());
    }
}
