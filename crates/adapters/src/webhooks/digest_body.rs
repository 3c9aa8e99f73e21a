//! The check vendors' body-only HMAC headers. None of them signs a delivery
//! time, so, as for Adyen, the dedup store is the replay protection.
//!
//! - Onfido: `X-SHA2-Signature: <hex HMAC-SHA256(webhook token, raw body)>`
//!   (Onfido's webhook docs; the token is used as its UTF-8 bytes).
//! - Sumsub: `X-Payload-Digest: <hex HMAC(secret, raw body)>` with
//!   `X-Payload-Digest-Alg` `HMAC_SHA1_HEX` | `HMAC_SHA256_HEX` (the default
//!   when the header is absent) | `HMAC_SHA512_HEX` (Sumsub's webhook docs).
//!   The sender picks the algorithm per webhook in the dashboard; all three
//!   are accepted because an HMAC, SHA-1 included, cannot be forged without
//!   the secret whichever hash it uses.
//! - SEON: `Digest: SHA-256=<HMAC-SHA256(license key, raw body)>` from SEON's
//!   older docs. UNCONFIRMED: the header name for the newer webhooks and
//!   whether the value is hex or base64; both encodings are accepted (they
//!   differ in length, so neither can pass for the other).

use super::{header, hmac_matches_with, Refusal};
use base64::Engine as _;
use reqwest::header::HeaderMap;
use ring::hmac::{Algorithm, HMAC_SHA1_FOR_LEGACY_USE_ONLY, HMAC_SHA256, HMAC_SHA512};

const ONFIDO: &str = "x-sha2-signature";
const SUMSUB_DIGEST: &str = "x-payload-digest";
const SUMSUB_ALG: &str = "x-payload-digest-alg";
const SEON: &str = "digest";

fn hex_sig(headers: &HeaderMap, name: &'static str) -> Result<Vec<u8>, Refusal> {
    hex::decode(header(headers, name)?.trim()).map_err(|_| Refusal::MalformedHeader(name))
}

fn checked(matches: bool) -> Result<(), Refusal> {
    if matches {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

pub(super) fn verify_onfido(headers: &HeaderMap, body: &[u8], keys: &[&[u8]]) -> Result<(), Refusal> {
    let sig = hex_sig(headers, ONFIDO)?;
    checked(hmac_matches_with(HMAC_SHA256, keys, &[body], &[sig]))
}

pub(super) fn verify_sumsub(headers: &HeaderMap, body: &[u8], keys: &[&[u8]]) -> Result<(), Refusal> {
    let alg: Algorithm = match headers.get(SUMSUB_ALG).map(|v| v.to_str()) {
        None => HMAC_SHA256,
        Some(Ok(name)) => match name.trim() {
            "HMAC_SHA256_HEX" => HMAC_SHA256,
            "HMAC_SHA512_HEX" => HMAC_SHA512,
            "HMAC_SHA1_HEX" => HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            _ => return Err(Refusal::MalformedHeader(SUMSUB_ALG)),
        },
        Some(Err(_)) => return Err(Refusal::MalformedHeader(SUMSUB_ALG)),
    };
    let sig = hex_sig(headers, SUMSUB_DIGEST)?;
    checked(hmac_matches_with(alg, keys, &[body], &[sig]))
}

pub(super) fn verify_seon(headers: &HeaderMap, body: &[u8], keys: &[&[u8]]) -> Result<(), Refusal> {
    let value = header(headers, SEON)?.trim();
    let encoded = value
        .split_once('=')
        .filter(|(alg, _)| alg.eq_ignore_ascii_case("SHA-256"))
        .map(|(_, sig)| sig)
        .ok_or(Refusal::MalformedHeader(SEON))?;
    let sig = if encoded.len() == 64 {
        hex::decode(encoded).map_err(|_| Refusal::MalformedHeader(SEON))?
    } else {
        base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| Refusal::MalformedHeader(SEON))?
    };
    checked(hmac_matches_with(HMAC_SHA256, keys, &[body], &[sig]))
}

#[cfg(test)]
mod tests {
    //! Known answers computed with Python's `hmac` (stdlib), independent of
    //! ring: `hmac.new(key, body, hashlib.sha256).hexdigest()`.
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("ascii"));
        }
        h
    }

    #[test]
    fn onfido_known_answer_and_tampering() {
        let body = br#"{"payload":{"resource_type":"check","action":"check.completed","object":{"id":"chk-1","status":"complete"}}}"#;
        let key: &[u8] = b"onfido-webhook-token";
        let h = headers(&[("X-SHA2-Signature", "db2a05b85315e97e6d657fbd208e5267bbf08df02d6dd3156d171d8e92bccb99")]);
        assert_eq!(verify_onfido(&h, body, &[b"old-token", key]), Ok(()));
        assert_eq!(verify_onfido(&h, &body[1..], &[key]), Err(Refusal::BadSignature));
        assert_eq!(verify_onfido(&h, body, &[b"other"]), Err(Refusal::BadSignature));
        assert_eq!(verify_onfido(&HeaderMap::new(), body, &[key]), Err(Refusal::MissingHeader(ONFIDO)));
        assert_eq!(verify_onfido(&headers(&[(ONFIDO, "zz")]), body, &[key]), Err(Refusal::MalformedHeader(ONFIDO)));
    }

    #[test]
    fn sumsub_known_answers_for_each_algorithm_and_the_sha256_default() {
        let body = br#"{"type":"applicantReviewed","applicantId":"a1"}"#;
        let key: &[u8] = b"sumsub-secret";
        let sha1 = "89e31baf186ece6fafec826129558e2d8284192b";
        let sha256 = "78a492c4d854ae5fa2643797c254fccd9e530356a001e204590c5de1e5ab788d";
        let sha512 = "2fba14f3e2a7ee8070907ff8b8220e118aec3be038f01c831cfe7136136c91afa1540cb52059972ac8e41a831cd83423a5fd6cee9ac9c231871120f1c1ea183b";
        for (alg, sig) in [("HMAC_SHA1_HEX", sha1), ("HMAC_SHA256_HEX", sha256), ("HMAC_SHA512_HEX", sha512)] {
            let h = headers(&[("X-Payload-Digest", sig), ("X-Payload-Digest-Alg", alg)]);
            assert_eq!(verify_sumsub(&h, body, &[key]), Ok(()), "{alg}");
            assert_eq!(verify_sumsub(&h, b"{}", &[key]), Err(Refusal::BadSignature), "{alg}");
        }
        assert_eq!(verify_sumsub(&headers(&[("X-Payload-Digest", sha256)]), body, &[key]), Ok(()), "SHA-256 by default");
        // A digest under another algorithm than the header names fails.
        let wrong = headers(&[("X-Payload-Digest", sha256), ("X-Payload-Digest-Alg", "HMAC_SHA512_HEX")]);
        assert_eq!(verify_sumsub(&wrong, body, &[key]), Err(Refusal::BadSignature));
        let unknown = headers(&[("X-Payload-Digest", sha256), ("X-Payload-Digest-Alg", "MD5_HEX")]);
        assert_eq!(verify_sumsub(&unknown, body, &[key]), Err(Refusal::MalformedHeader(SUMSUB_ALG)));
    }

    #[test]
    fn seon_known_answer_in_hex_and_base64() {
        let body = br#"{"event":"transaction:status_update"}"#;
        let key: &[u8] = b"seon-license-key";
        for value in ["SHA-256=34c2eb5da9b25141da0313f23242137bd2148710c99aed4f2b1fa57ed7681c4f", "SHA-256=NMLrXamyUUHaAxPyMkITe9IUhxDJmu1PKx+lftdoHE8="] {
            assert_eq!(verify_seon(&headers(&[("Digest", value)]), body, &[key]), Ok(()), "{value}");
            assert_eq!(verify_seon(&headers(&[("Digest", value)]), b"{}", &[key]), Err(Refusal::BadSignature));
        }
        let other_alg = headers(&[("Digest", "SHA-512=NMLrXamyUUHaAxPyMkITe9IUhxDJmu1PKx+lftdoHE8=")]);
        assert_eq!(verify_seon(&other_alg, body, &[key]), Err(Refusal::MalformedHeader(SEON)));
    }
}
