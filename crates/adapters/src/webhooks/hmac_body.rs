//! Adyen's header scheme for Balance Platform webhooks:
//! `HmacSignature: <base64 HMAC-SHA256(hex-decoded key, raw body)>`.

use super::{header, hmac_matches, Refusal};
use base64::Engine as _;
use reqwest::header::HeaderMap;

const HEADER: &str = "hmacsignature";

pub(super) fn verify_adyen(headers: &HeaderMap, body: &[u8], keys: &[&[u8]]) -> Result<(), Refusal> {
    let value = header(headers, HEADER)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| Refusal::MalformedHeader(HEADER))?;
    if hmac_matches(keys, &[body], &[sig]) {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use reqwest::header::HeaderValue;

    #[test]
    fn verifies_with_the_hex_decoded_key_only() {
        let key = hex::decode("44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056").expect("hex");
        let body = br#"{"type":"balancePlatform.transfer.updated"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
        mac.update(body);
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let mut h = HeaderMap::new();
        h.insert("HmacSignature", HeaderValue::from_str(&sig).expect("ascii"));
        assert_eq!(verify_adyen(&h, body, &[&key]), Ok(()));
        // The hex text itself used as the key is a classic integration bug.
        let text_key = b"44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
        assert_eq!(verify_adyen(&h, body, &[text_key]), Err(Refusal::BadSignature));
        assert_eq!(verify_adyen(&h, b"{}", &[&key]), Err(Refusal::BadSignature));
        h.insert("HmacSignature", HeaderValue::from_static("%%%"));
        assert_eq!(verify_adyen(&h, body, &[&key]), Err(Refusal::MalformedHeader(HEADER)));
    }
}
