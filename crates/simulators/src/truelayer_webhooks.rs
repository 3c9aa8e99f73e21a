//! TrueLayer's webhook sender, as TrueLayer signs its webhooks: a detached
//! ES512 JWS in `Tl-Signature` (made by TrueLayer's own `truelayer-signing`
//! crate) over `POST <path>`, the signed headers (`X-TL-Webhook-Timestamp`,
//! `Content-Type`) and the body, whose header's `jku` names the JWKS the
//! simulator serves at [`JWKS_PATH`] and whose `kid` names the current
//! P-521 key. [`TrueLayerWebhooks::rotate`] replaces the key: the JWKS then
//! lists only the new one, as after TrueLayer withdraws a key.
//!
//! Wiring: a TrueLayer simulator holds one `Arc<TrueLayerWebhooks>` made
//! with `jku = <its base URL> + JWKS_PATH`, merges [`TrueLayerWebhooks::router`]
//! into its routes, and calls [`TrueLayerWebhooks::send`] with a
//! payment's webhook body when its status moves. The ingester's provider
//! then lists that jku in `jwks_urls`.

use axum::routing::get;
use base64::Engine as _;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where TrueLayer serves its webhook JWKS.
pub const JWKS_PATH: &str = "/.well-known/jwks";

/// A P-521 signing key: its PEM for TrueLayer's signer and its public JWK.
struct SigningKey {
    kid: String,
    pem: Vec<u8>,
    jwk: String,
}

fn generate(kid: &str) -> Result<SigningKey, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::SECP521R1)?;
    let key = EcKey::generate(&group)?;
    let (mut x, mut y, mut ctx) = (BigNum::new()?, BigNum::new()?, BigNumContext::new()?);
    key.public_key().affine_coordinates(&group, &mut x, &mut y, &mut ctx)?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwk = format!(
        r#"{{"kty":"EC","alg":"ES512","use":"sig","kid":"{kid}","crv":"P-521","x":"{}","y":"{}"}}"#,
        b64.encode(x.to_vec_padded(66)?),
        b64.encode(y.to_vec_padded(66)?)
    );
    Ok(SigningKey { kid: kid.to_owned(), pem: key.private_key_to_pem()?, jwk })
}

/// Why a webhook could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("key generation: {0}")]
    Key(#[from] openssl::error::ErrorStack),
    #[error("TrueLayer's signer: {0}")]
    Sign(String),
}

/// The simulator's webhook keys and signer.
pub struct TrueLayerWebhooks {
    jku: String,
    key: Mutex<Arc<SigningKey>>,
    generation: Mutex<u32>,
}

impl TrueLayerWebhooks {
    /// `jku`: the URL this simulator's [`Self::router`] answers at.
    pub fn new(jku: &str) -> Result<Self, SignError> {
        Ok(Self { jku: jku.to_owned(), key: Mutex::new(Arc::new(generate("tl-sim-1")?)), generation: Mutex::new(1) })
    }

    fn current(&self) -> Arc<SigningKey> {
        self.key.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The kid webhooks are signed with now.
    pub fn kid(&self) -> String {
        self.current().kid.clone()
    }

    pub fn jku(&self) -> &str {
        &self.jku
    }

    /// A new key (a new kid) replaces the current one in the JWKS.
    pub fn rotate(&self) -> Result<(), SignError> {
        let mut generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        *generation += 1;
        let key = generate(&format!("tl-sim-{generation}"))?;
        *self.key.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// The JWKS document, `{"keys":[...]}`.
    pub fn jwks(&self) -> String {
        format!(r#"{{"keys":[{}]}}"#, self.current().jwk)
    }

    /// `GET /.well-known/jwks`, to merge into the simulator's router.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        let me = self.clone();
        axum::Router::new().route(
            JWKS_PATH,
            get(move || {
                let me = me.clone();
                async move { ([("content-type", "application/json")], me.jwks()) }
            }),
        )
    }

    /// The headers of a webhook posted to `path` and sent at `sent_at_ms`.
    pub fn headers(&self, path: &str, body: &[u8], sent_at_ms: i64) -> Result<Vec<(&'static str, String)>, SignError> {
        let key = self.current();
        let timestamp = crate::iso8601(sent_at_ms);
        let signature = truelayer_signing::sign_with_pem(&key.kid, &key.pem)
            .jku(&self.jku)
            .method(truelayer_signing::Method::Post)
            .path(path)
            .header("X-TL-Webhook-Timestamp", timestamp.as_bytes())
            .header("Content-Type", b"application/json")
            .body(body)
            .build_signer()
            .sign()
            .map_err(|e| SignError::Sign(e.to_string()))?;
        Ok(vec![("Tl-Signature", signature), ("X-TL-Webhook-Timestamp", timestamp), ("Content-Type", "application/json".to_owned())])
    }

    /// Posts `body` to `url` `copies` times, each delivery retried (re-signed
    /// with a new timestamp, as TrueLayer retries) while it is answered
    /// with a retryable status, at most `attempts` times. The final status
    /// of each copy; 0 when the URL could not be reached.
    pub async fn send(&self, url: &str, body: &[u8], copies: usize, attempts: usize) -> Vec<u16> {
        let http = reqwest::Client::new();
        let path = reqwest::Url::parse(url).map(|u| u.path().to_owned()).unwrap_or_else(|_| "/".to_owned());
        let mut out = Vec::with_capacity(copies);
        for _ in 0..copies {
            let mut status = 0;
            for _ in 0..attempts.max(1) {
                let Ok(headers) = self.headers(&path, body, crate::util::now_ms()) else { break };
                let mut request = http.post(url).body(body.to_vec());
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                status = request.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                if !matches!(status, 0 | 409 | 429 | 500..=599) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            out.push(status);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truelayers_verifier_accepts_the_signature_and_a_rotation_withdraws_the_old_key() {
        let hooks = TrueLayerWebhooks::new("http://127.0.0.1:1/.well-known/jwks").expect("keys");
        let body = br#"{"type":"payment_executed","event_id":"e1","payment_id":"p1"}"#;
        let headers = hooks.headers("/webhooks/truelayer", body, 1_700_000_000_000).expect("signed");
        let jwks = hooks.jwks();
        let verify = |jwks: &str| {
            let all: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
            truelayer_signing::verify_with_jwks(jwks.as_bytes())
                .method(truelayer_signing::Method::Post)
                .path("/webhooks/truelayer")
                .headers(all)
                .require_header("X-TL-Webhook-Timestamp")
                .body(body)
                .build_verifier()
                .verify(&headers[0].1)
        };
        verify(&jwks).expect("TrueLayer's verifier");
        let header = truelayer_signing::extract_jws_header(&headers[0].1).expect("header");
        assert_eq!((header.kid.as_ref(), header.jku.as_deref()), ("tl-sim-1", Some(hooks.jku())));
        hooks.rotate().expect("rotate");
        assert_eq!(hooks.kid(), "tl-sim-2");
        assert!(verify(&hooks.jwks()).is_err(), "the old kid is no longer in the JWKS");
    }
}
