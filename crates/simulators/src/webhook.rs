//! Optional signed status-change callbacks of the payout simulators and of
//! the Onfido and Sumsub simulators (check results),
//! fire-and-forget: a lost callback is realistic (vendors retry, receivers
//! must also poll), so failures are only logged at debug. Signing is the
//! vendor's own scheme, from [`crate::callbacks::Signer`].

use std::time::Duration;

use crate::callbacks::Signer;
use crate::WebhookTarget;

/// Which vendor's signing scheme to use.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scheme {
    /// `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>`.
    Stripe,
    /// `HmacSignature: <base64 HMAC-SHA256(hex_decode(key), body)>`.
    Adyen,
    /// `X-SHA2-Signature: <hex HMAC-SHA256(token, body)>`.
    Onfido,
    /// `X-Payload-Digest: <hex HMAC-SHA256(secret, body)>` (Sumsub's default hash).
    Sumsub,
}

#[derive(Clone, Debug)]
pub(crate) struct Webhooks {
    client: reqwest::Client,
    url: std::sync::Arc<str>,
    signer: Signer,
}

impl Webhooks {
    pub(crate) fn new(target: WebhookTarget, scheme: Scheme) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let signer = match scheme {
            Scheme::Stripe => Signer::Stripe { secret: target.secret },
            Scheme::Adyen => Signer::AdyenHmac { hex_key: target.secret },
            Scheme::Onfido => Signer::OnfidoSha2 { token: target.secret },
            Scheme::Sumsub => Signer::SumsubDigest { secret: target.secret, alg: crate::callbacks::DigestAlg::Sha256 },
        };
        Self { client, url: target.url.into(), signer }
    }

    /// Posts `body` after `delay` in a spawned task.
    pub(crate) fn send(&self, body: serde_json::Value, delay: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let raw = serde_json::to_vec(&body).unwrap_or_default();
            let headers = match this.signer.headers("", crate::util::now_ms() / 1000, &raw) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook not signed; not sent");
                    return;
                }
            };
            let mut request = this.client.post(&*this.url).header("Content-Type", "application/json").body(raw);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            if let Err(e) = request.send().await {
                tracing::debug!(error = %e, "webhook delivery failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::callbacks::Signer;

    #[test]
    fn stripe_signature_matches_the_documented_recipe() {
        // Expected value computed with Python's hmac module over "1700000000.{}".
        let headers = Signer::Stripe { secret: "whsec_test".into() }.headers("", 1_700_000_000, b"{}").expect("signs");
        assert_eq!(headers[0].1, "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91");
    }

    #[test]
    fn adyen_signature_needs_a_hex_key() {
        assert!(Signer::AdyenHmac { hex_key: "zz".into() }.headers("", 0, b"{}").is_err());
        assert!(Signer::AdyenHmac { hex_key: "00ff".into() }.headers("", 0, b"{}").is_ok());
    }
}
