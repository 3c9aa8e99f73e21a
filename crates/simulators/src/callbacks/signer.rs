//! Each vendor's signing scheme, implemented from its docs and
//! independently of the ingester's verifiers.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How a vendor signs a callback, with the key it signs with.
#[derive(Clone)]
pub enum Signer {
    /// `Stripe-Signature: t=..,v1=..`; the `whsec_` secret used as raw bytes.
    Stripe { secret: String },
    /// Standard Webhooks (Lithic); `whsec_<base64>`.
    StandardWebhooks { secret: String },
    /// Adyen `HmacSignature`; the key as hex.
    AdyenHmac { hex_key: String },
    /// Wise `X-Signature-SHA256`; a PKCS#8 PEM RSA private key.
    WiseRsa { private_pem: String },
    /// Onfido `X-SHA2-Signature: <hex HMAC-SHA256(token, body)>`.
    OnfidoSha2 { token: String },
    /// Sumsub `X-Payload-Digest: <hex HMAC(secret, body)>` with
    /// `X-Payload-Digest-Alg` naming the hash.
    SumsubDigest { secret: String, alg: DigestAlg },
    /// SEON `Digest: SHA-256=<hex HMAC-SHA256(license key, body)>`
    /// (UNCONFIRMED header; see the adapter's `webhooks::digest_body`).
    SeonDigest { key: String },
}

/// The hashes Sumsub lets a webhook be signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestAlg {
    Sha1,
    Sha256,
    Sha512,
}

impl DigestAlg {
    /// The `X-Payload-Digest-Alg` value.
    pub fn header_value(self) -> &'static str {
        match self {
            DigestAlg::Sha1 => "HMAC_SHA1_HEX",
            DigestAlg::Sha256 => "HMAC_SHA256_HEX",
            DigestAlg::Sha512 => "HMAC_SHA512_HEX",
        }
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Signer::Stripe { .. } => "Stripe",
            Signer::StandardWebhooks { .. } => "StandardWebhooks",
            Signer::AdyenHmac { .. } => "AdyenHmac",
            Signer::WiseRsa { .. } => "WiseRsa",
            Signer::OnfidoSha2 { .. } => "OnfidoSha2",
            Signer::SumsubDigest { .. } => "SumsubDigest",
            Signer::SeonDigest { .. } => "SeonDigest",
        };
        write!(f, "Signer::{name}(****)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("webhook signer: {0}")]
pub struct SignerError(String);

impl Signer {
    /// The headers of one delivery of `body` signed at `unix_s`, for message `id`.
    pub fn headers(&self, id: &str, unix_s: i64, body: &[u8]) -> Result<Vec<(&'static str, String)>, SignerError> {
        type HmacSha256 = Hmac<Sha256>;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(match self {
            Signer::Stripe { secret } => {
                let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).map_err(|e| SignerError(e.to_string()))?;
                mac.update(format!("{unix_s}.").as_bytes());
                mac.update(body);
                vec![("Stripe-Signature", format!("t={unix_s},v1={}", hex::encode(mac.finalize().into_bytes())))]
            }
            Signer::StandardWebhooks { secret } => {
                let key = b64
                    .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
                    .map_err(|_| SignerError("secret is not whsec_<base64>".into()))?;
                let mut mac = HmacSha256::new_from_slice(&key).map_err(|e| SignerError(e.to_string()))?;
                mac.update(format!("{id}.{unix_s}.").as_bytes());
                mac.update(body);
                vec![
                    ("webhook-id", id.to_owned()),
                    ("webhook-timestamp", unix_s.to_string()),
                    ("webhook-signature", format!("v1,{}", b64.encode(mac.finalize().into_bytes()))),
                ]
            }
            Signer::AdyenHmac { hex_key } => {
                let key = hex::decode(hex_key).map_err(|_| SignerError("key is not hex".into()))?;
                let mut mac = HmacSha256::new_from_slice(&key).map_err(|e| SignerError(e.to_string()))?;
                mac.update(body);
                vec![("HmacSignature", b64.encode(mac.finalize().into_bytes()))]
            }
            Signer::WiseRsa { private_pem } => {
                let der = pem_body(private_pem, "PRIVATE KEY").ok_or_else(|| SignerError("no PRIVATE KEY PEM".into()))?;
                let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| SignerError(e.to_string()))?;
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), body, &mut sig)
                    .map_err(|e| SignerError(e.to_string()))?;
                vec![("X-Signature-SHA256", b64.encode(sig)), ("X-Delivery-Id", uuid::Uuid::new_v4().to_string())]
            }
            Signer::OnfidoSha2 { token } => {
                let mut mac = HmacSha256::new_from_slice(token.as_bytes()).map_err(|e| SignerError(e.to_string()))?;
                mac.update(body);
                vec![("X-SHA2-Signature", hex::encode(mac.finalize().into_bytes()))]
            }
            Signer::SumsubDigest { secret, alg } => {
                let digest = match alg {
                    DigestAlg::Sha256 => {
                        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).map_err(|e| SignerError(e.to_string()))?;
                        mac.update(body);
                        hex::encode(mac.finalize().into_bytes())
                    }
                    DigestAlg::Sha512 => {
                        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).map_err(|e| SignerError(e.to_string()))?;
                        mac.update(body);
                        hex::encode(mac.finalize().into_bytes())
                    }
                    // No SHA-1 crate here; ring has it for legacy uses like this one.
                    DigestAlg::Sha1 => {
                        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
                        hex::encode(ring::hmac::sign(&key, body).as_ref())
                    }
                };
                vec![("X-Payload-Digest", digest), ("X-Payload-Digest-Alg", alg.header_value().to_owned())]
            }
            Signer::SeonDigest { key } => {
                let mut mac = HmacSha256::new_from_slice(key.as_bytes()).map_err(|e| SignerError(e.to_string()))?;
                mac.update(body);
                vec![("Digest", format!("SHA-256={}", hex::encode(mac.finalize().into_bytes())))]
            }
        })
    }

    /// The same scheme under a key nobody configured: a forger's signer.
    pub fn forged(&self) -> Signer {
        match self {
            Signer::Stripe { .. } => Signer::Stripe { secret: "whsec_forged".into() },
            Signer::StandardWebhooks { .. } => Signer::StandardWebhooks { secret: "whsec_Zm9yZ2VkLWtleS1mb3JnZWQta2V5".into() },
            Signer::AdyenHmac { .. } => Signer::AdyenHmac { hex_key: "00".repeat(32) },
            // Signing with the wrong RSA key needs a second key pair; a
            // corrupted signature forges just as well.
            Signer::WiseRsa { private_pem } => Signer::WiseRsa { private_pem: private_pem.clone() },
            Signer::OnfidoSha2 { .. } => Signer::OnfidoSha2 { token: "forged-token".into() },
            Signer::SumsubDigest { alg, .. } => Signer::SumsubDigest { secret: "forged-secret".into(), alg: *alg },
            Signer::SeonDigest { .. } => Signer::SeonDigest { key: "forged-license".into() },
        }
    }
}

fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod check_vendor_signers {
    //! Known answers computed with Python's `hmac` (stdlib).
    use super::{DigestAlg, Signer};

    fn sign(signer: Signer, body: &[u8]) -> Vec<(&'static str, String)> {
        signer.headers("", 0, body).expect("signs")
    }

    #[test]
    fn onfido_sumsub_and_seon_sign_as_documented() {
        let onfido = br#"{"payload":{"resource_type":"check","action":"check.completed","object":{"id":"chk-1","status":"complete"}}}"#;
        assert_eq!(
            sign(Signer::OnfidoSha2 { token: "onfido-webhook-token".into() }, onfido),
            [("X-SHA2-Signature", "db2a05b85315e97e6d657fbd208e5267bbf08df02d6dd3156d171d8e92bccb99".to_owned())]
        );
        let sumsub = br#"{"type":"applicantReviewed","applicantId":"a1"}"#;
        for (alg, digest) in [
            (DigestAlg::Sha1, "89e31baf186ece6fafec826129558e2d8284192b"),
            (DigestAlg::Sha256, "78a492c4d854ae5fa2643797c254fccd9e530356a001e204590c5de1e5ab788d"),
        ] {
            let headers = sign(Signer::SumsubDigest { secret: "sumsub-secret".into(), alg }, sumsub);
            assert_eq!(headers[0], ("X-Payload-Digest", digest.to_owned()));
            assert_eq!(headers[1], ("X-Payload-Digest-Alg", alg.header_value().to_owned()));
        }
        let sha512 = sign(Signer::SumsubDigest { secret: "sumsub-secret".into(), alg: DigestAlg::Sha512 }, sumsub);
        assert!(sha512[0].1.starts_with("2fba14f3e2a7ee8070907ff8b822"));
        assert_eq!(
            sign(Signer::SeonDigest { key: "seon-license-key".into() }, br#"{"event":"transaction:status_update"}"#),
            [("Digest", "SHA-256=34c2eb5da9b25141da0313f23242137bd2148710c99aed4f2b1fa57ed7681c4f".to_owned())]
        );
    }

    #[test]
    fn sumsub_times_have_sumsubs_shape() {
        let body = crate::callbacks::bodies::sumsub_reviewed("a1", "k1", "GREEN", None, 1_713_790_518_042);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["createdAtMs"], "2024-04-22 12:55:18.042");
    }
}
