//! Plaid's webhooks as Plaid signs them: a `Plaid-Verification` JWT (ES256,
//! `kid` in the header, `iat` and `request_body_sha256` in the payload) by
//! a P-256 key the simulator generates, whose public half
//! `/webhook_verification_key/get` serves as a JWK (`JWKPublicKey`: alg,
//! created_at, crv, expired_at, kid, kty, use, x, y). An unknown `key_id`
//! is answered 400 `INVALID_INPUT` / `INVALID_WEBHOOK_VERIFICATION_KEY_ID`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

/// One signing key: its id, pair, creation and (once rotated out) expiry.
pub(super) struct SigningKey {
    pub(super) kid: String,
    pair: EcdsaKeyPair,
    created_at_s: i64,
    pub(super) expired_at_s: Option<i64>,
}

impl SigningKey {
    pub(super) fn generate(now_s: i64) -> Self {
        let rng = SystemRandom::new();
        // ring fails here only without a system RNG, which no test survives.
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("system RNG");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("own key");
        Self { kid: crate::util::random_id(24).to_lowercase(), pair, created_at_s: now_s, expired_at_s: None }
    }

    /// The public key as `/webhook_verification_key/get` answers it.
    pub(super) fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "alg": "ES256",
            "created_at": self.created_at_s,
            "crv": "P-256",
            "expired_at": self.expired_at_s,
            "kid": self.kid,
            "kty": "EC",
            "use": "sig",
            "x": B64URL.encode(&point[1..33]),
            "y": B64URL.encode(&point[33..]),
        })
    }

    /// The `Plaid-Verification` value for `body`, issued at `iat_s`;
    /// `alg` other than ES256 only to test that receivers refuse it.
    pub(super) fn sign(&self, body: &[u8], iat_s: i64, alg: &str) -> String {
        let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, body));
        let header = B64URL.encode(json!({"alg": alg, "kid": self.kid, "typ": "JWT"}).to_string());
        let payload = B64URL.encode(json!({"iat": iat_s, "request_body_sha256": sha}).to_string());
        let input = format!("{header}.{payload}");
        let signature = self.pair.sign(&SystemRandom::new(), input.as_bytes()).expect("P-256 signing");
        format!("{input}.{}", B64URL.encode(signature.as_ref()))
    }
}

/// Webhook bodies as Plaid sends them (2 spaces of indentation, as Plaid's
/// guide warns the hash is over the exact bytes).
pub fn item_error(item_id: &str, error_code: &str) -> Vec<u8> {
    body(json!({
        "webhook_type": "ITEM",
        "webhook_code": "ERROR",
        "item_id": item_id,
        "error": {
            "error_type": "ITEM_ERROR",
            "error_code": error_code,
            "error_message": "the login details of this item have changed (credentials, MFA, or required user action) and a user login is required to update this information.",
            "display_message": null,
            "request_id": "",
            "causes": [],
            "status": 400,
        },
        "environment": "sandbox",
    }))
}

pub fn pending_expiration(item_id: &str, consent_expiration_time: &str) -> Vec<u8> {
    body(json!({
        "webhook_type": "ITEM",
        "webhook_code": "PENDING_EXPIRATION",
        "item_id": item_id,
        "consent_expiration_time": consent_expiration_time,
        "environment": "sandbox",
    }))
}

/// `ItemLoginRepairedWebhook`.
pub fn login_repaired(item_id: &str) -> Vec<u8> {
    body(json!({
        "webhook_type": "ITEM",
        "webhook_code": "LOGIN_REPAIRED",
        "item_id": item_id,
        "environment": "sandbox",
    }))
}

pub fn sync_updates_available(item_id: &str) -> Vec<u8> {
    body(json!({
        "webhook_type": "TRANSACTIONS",
        "webhook_code": "SYNC_UPDATES_AVAILABLE",
        "item_id": item_id,
        "initial_update_complete": true,
        "historical_update_complete": true,
        "environment": "sandbox",
    }))
}

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}
