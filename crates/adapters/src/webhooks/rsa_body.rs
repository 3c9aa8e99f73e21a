//! Wise's scheme: `X-Signature-SHA256: <base64 RSA PKCS#1 v1.5 SHA-256 over
//! the raw body>`, verified with Wise's published public key (one per
//! environment). Asymmetric: switchyard holds no secret that could sign.

use super::{der, header, Refusal};
use base64::Engine as _;
use reqwest::header::HeaderMap;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

const HEADER: &str = "x-signature-sha256";

/// An RSA public key (PKCS#1 DER) parsed from a PEM.
#[derive(Clone)]
pub struct RsaPublicKey(Vec<u8>);

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublicKey({} bytes)", self.0.len())
    }
}

impl RsaPublicKey {
    /// Accepts `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo, as Wise
    /// publishes it) or `-----BEGIN RSA PUBLIC KEY-----` (PKCS#1).
    pub fn from_pem(text: &str) -> Result<Self, String> {
        if let Some(spki) = der::pem_block(text, "PUBLIC KEY") {
            let key = der::rsa_public_key_from_spki(&spki).ok_or("PUBLIC KEY is not an RSA SubjectPublicKeyInfo")?;
            return Ok(Self(key.to_vec()));
        }
        der::pem_block(text, "RSA PUBLIC KEY").map(Self).ok_or_else(|| "no PUBLIC KEY PEM block".to_owned())
    }
}

pub(super) fn verify_wise(headers: &HeaderMap, body: &[u8], keys: &[&RsaPublicKey]) -> Result<(), Refusal> {
    let value = header(headers, HEADER)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| Refusal::MalformedHeader(HEADER))?;
    let signed = keys
        .iter()
        .any(|key| UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &key.0).verify(body, &sig).is_ok());
    if signed {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const PUBLIC: &str = include_str!("../../tests/fixtures/webhooks/wise-dev-public.pem");
    /// Signed with `openssl dgst -sha256 -sign wise-dev-private.pem` over
    /// `tests/fixtures/webhooks/wise-state-change.json`: an independent signer.
    const BODY: &[u8] = include_bytes!("../../tests/fixtures/webhooks/wise-state-change.json");
    const SIGNATURE: &str = include_str!("../../tests/fixtures/webhooks/wise-state-change.sig");

    #[test]
    fn verifies_an_openssl_signature_and_refuses_a_changed_body() {
        let key = RsaPublicKey::from_pem(PUBLIC).expect("key");
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(SIGNATURE.trim()).expect("ascii"));
        assert_eq!(verify_wise(&h, BODY, &[&key]), Ok(()));
        let mut changed = BODY.to_vec();
        changed.push(b' ');
        assert_eq!(verify_wise(&h, &changed, &[&key]), Err(Refusal::BadSignature));
        assert!(RsaPublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
    }
}
