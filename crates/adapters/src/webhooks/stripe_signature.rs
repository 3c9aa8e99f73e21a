//! Stripe's scheme: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`
//! where each `v1` is HMAC-SHA256(secret, "<t>.<raw body>"). Several `v1`
//! appear while the vendor rolls a secret; any match verifies. `v0` and other
//! schemes are ignored, as Stripe's own libraries do.

use super::{header, hmac_matches, Refusal};
use reqwest::header::HeaderMap;

const HEADER: &str = "stripe-signature";
/// More than this many candidate signatures is not a real delivery.
const MAX_SIGNATURES: usize = 8;

pub(super) fn verify(headers: &HeaderMap, body: &[u8], secrets: &[&[u8]], tolerance_s: i64, now_s: i64) -> Result<(), Refusal> {
    let value = header(headers, HEADER)?;
    let mut timestamp: Option<i64> = None;
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for item in value.split(',') {
        let Some((k, v)) = item.trim().split_once('=') else {
            return Err(Refusal::MalformedHeader(HEADER));
        };
        match k {
            "t" => timestamp = Some(v.parse().map_err(|_| Refusal::MalformedHeader(HEADER))?),
            "v1" if candidates.len() < MAX_SIGNATURES => {
                // A v1 that is not hex cannot match; skip it rather than refuse
                // the whole header, another v1 may be good.
                if let Ok(sig) = hex::decode(v) {
                    candidates.push(sig);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(Refusal::MalformedHeader(HEADER))?;
    if candidates.is_empty() {
        return Err(Refusal::BadSignature);
    }
    let t_text = t.to_string();
    if !hmac_matches(secrets, &[t_text.as_bytes(), b".", body], &candidates) {
        return Err(Refusal::BadSignature);
    }
    // Checked after the signature so a forged header is counted as forged.
    if (now_s - t).abs() > tolerance_s {
        return Err(Refusal::StaleTimestamp);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use reqwest::header::HeaderValue;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(value).expect("ascii"));
        h
    }

    #[test]
    fn accepts_any_matching_v1_and_any_live_secret() {
        let body = br#"{"id":"evt_1"}"#;
        let sig = sign("whsec_new", 1000, body);
        let h = headers(&format!("t=1000,v1=deadbeef,v1={sig},v0=00"));
        assert_eq!(verify(&h, body, &[b"whsec_old", b"whsec_new"], 300, 1100), Ok(()));
        assert_eq!(verify(&h, body, &[b"whsec_old"], 300, 1100), Err(Refusal::BadSignature));
    }

    #[test]
    fn refuses_stale_tampered_and_malformed() {
        let body = br#"{"id":"evt_1"}"#;
        let sig = sign("s", 1000, body);
        let h = headers(&format!("t=1000,v1={sig}"));
        assert_eq!(verify(&h, body, &[b"s"], 300, 1301), Err(Refusal::StaleTimestamp));
        assert_eq!(verify(&h, br#"{"id":"evt_2"}"#, &[b"s"], 300, 1000), Err(Refusal::BadSignature));
        assert_eq!(verify(&headers("garbage"), body, &[b"s"], 300, 1000), Err(Refusal::MalformedHeader(HEADER)));
        assert_eq!(verify(&headers("v1=00"), body, &[b"s"], 300, 1000), Err(Refusal::MalformedHeader(HEADER)));
        assert_eq!(verify(&HeaderMap::new(), body, &[b"s"], 300, 1000), Err(Refusal::MissingHeader(HEADER)));
        // The timestamp is signed: moving it breaks the signature.
        let moved = headers(&format!("t=1200,v1={sig}"));
        assert_eq!(verify(&moved, body, &[b"s"], 300, 1200), Err(Refusal::BadSignature));
    }
}
