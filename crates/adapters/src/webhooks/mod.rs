//! Webhook authenticity and payload mapping: what the webhook ingester asks
//! of a vendor callback before anything reaches the bus.
//!
//! Each vendor signs in its own way ([`Scheme`]); each vendor's body maps to
//! the canonical [`ProviderEvent`] in its own module (`payouts::stripe::webhook`,
//! `payouts::adyen::webhook`, `payouts::wise::webhook`, `cards::lithic::webhook`,
//! `cards::marqeta::webhook` (a delivery is a batch of up to ten events),
//! `plaid` and `truelayer` (open banking: scheme and mapping in one module each),
//! and for the check vendors `kyc::{onfido,sumsub}::webhook`,
//! `aml::comply_advantage::webhook`, `fraud::{sardine,seon}::webhook`).
//! Vendor JSON types never leave those modules. OpenSanctions answers
//! synchronously only and sends no callbacks.
//!
//! Replay protection: schemes that sign a delivery timestamp (Stripe,
//! Standard Webhooks: Lithic, ComplyAdvantage, Sardine) are refused outside
//! the tolerance window. Schemes that sign only the body (Adyen, Wise,
//! Onfido, Sumsub, SEON) cannot tell a replay from the vendor's own
//! retry days later, so for them the dedup store is the replay protection: a
//! replayed body carries an event id already seen and is never republished.
//!
//! Rotation: every scheme holds a list of keys, each with an optional
//! `not_after`; during an overlap any unexpired key verifies.

mod der;
mod helpers;
mod digest_body;
mod hmac_body;
pub mod plaid;
mod rsa_body;
mod standard;
mod stripe_signature;
pub mod truelayer;

use crate::secret::Secret;
use reqwest::header::HeaderMap;
use switchyard_canonical::{ProviderEvent, ProviderEventKind};

pub use rsa_body::RsaPublicKey;

/// Why a callback was refused. Never carries secrets or the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    #[error("header {0} is malformed")]
    MalformedHeader(&'static str),
    #[error("no signature matches any current key")]
    BadSignature,
    #[error("timestamp is outside the tolerance window")]
    StaleTimestamp,
    #[error("payload: {0}")]
    MalformedPayload(String),
    /// An asymmetric scheme's token names another algorithm than the vendor's.
    #[error("signing algorithm is not the vendor's")]
    WrongAlgorithm,
    /// The key the token names is not known to the vendor's key endpoint.
    #[error("unknown signing key")]
    UnknownKey,
    /// The key the token names has expired.
    #[error("signing key has expired")]
    ExpiredKey,
    /// The signature points at a key URL (TrueLayer's `jku`) that is not
    /// one of the vendor's configured ones; it is never fetched.
    #[error("key URL is not the vendor's")]
    UntrustedKeyUrl,
}

impl Refusal {
    /// Low-cardinality label for the refused-callbacks metric.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::MissingHeader(_) => "missing_header",
            Refusal::MalformedHeader(_) => "malformed_header",
            Refusal::BadSignature => "bad_signature",
            Refusal::StaleTimestamp => "stale_timestamp",
            Refusal::MalformedPayload(_) => "malformed_payload",
            Refusal::WrongAlgorithm => "wrong_algorithm",
            Refusal::UnknownKey => "unknown_key",
            Refusal::ExpiredKey => "expired_key",
            Refusal::UntrustedKeyUrl => "untrusted_key_url",
        }
    }
}

/// A key with the instant after which it no longer verifies (Unix ms).
#[derive(Clone, Debug)]
pub struct Timed<K> {
    pub key: K,
    pub not_after_ms: Option<i64>,
}

impl<K> Timed<K> {
    fn live(&self, now_ms: i64) -> bool {
        self.not_after_ms.is_none_or(|t| now_ms <= t)
    }
}

/// A vendor's signing scheme with its current keys.
#[derive(Clone, Debug)]
pub enum Scheme {
    /// `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>`.
    StripeSignature { secrets: Vec<Timed<Secret>>, tolerance_s: i64 },
    /// Standard Webhooks `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature: v1,<base64 HMAC-SHA256(key, "id.ts.body")>`,
    /// `whsec_<base64 key>` secrets.
    StandardWebhooks { keys: Vec<Timed<Vec<u8>>>, tolerance_s: i64 },
    /// Adyen `HmacSignature: <base64 HMAC-SHA256(hex-decoded key, body)>`.
    AdyenHmac { keys: Vec<Timed<Vec<u8>>> },
    /// Wise `X-Signature-SHA256: <base64 RSA PKCS#1 v1.5 SHA-256 over body>`.
    WiseRsa { keys: Vec<Timed<RsaPublicKey>> },
    /// Onfido `X-SHA2-Signature: <hex HMAC-SHA256(token, body)>`.
    OnfidoSha2 { keys: Vec<Timed<Vec<u8>>> },
    /// Sumsub `X-Payload-Digest: <hex HMAC(secret, body)>`, the hash named by
    /// `X-Payload-Digest-Alg` (SHA-1, SHA-256 by default, SHA-512).
    SumsubDigest { keys: Vec<Timed<Vec<u8>>> },
    /// SEON `Digest: SHA-256=<HMAC-SHA256(license key, body)>` (UNCONFIRMED
    /// header, see `digest_body`).
    SeonDigest { keys: Vec<Timed<Vec<u8>>> },
    /// Marqeta: HTTP Basic credentials configured on the webhook
    /// (`username:password` keys). Nothing signs a timestamp, so the dedup
    /// store is the replay protection, as for the body-only schemes.
    MarqetaBasic { credentials: Vec<Timed<BasicCredentials>> },
    /// Plaid `Plaid-Verification: <ES256 JWT>` with keys from
    /// `/webhook_verification_key/get` (see [`plaid`]); the caller runs
    /// [`plaid::PlaidKeys::prepare`] first, as fetching is async.
    PlaidJwt { keys: std::sync::Arc<plaid::PlaidKeys> },
    /// TrueLayer `Tl-Signature: <detached ES512 JWS>` over method, path,
    /// signed headers and body, keys from the JWKS its `jku` names when
    /// that URL is allowed (see [`truelayer`]); the caller runs
    /// [`truelayer::TrueLayerKeys::prepare`] first and verifies with
    /// [`Scheme::verify_at`], as the request path is signed.
    TrueLayerJws { keys: std::sync::Arc<truelayer::TrueLayerKeys> },
}

/// A `username:password` pair a vendor presents as HTTP Basic auth.
#[derive(Clone)]
pub struct BasicCredentials {
    pub username: String,
    pub password: Secret,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials").field("username", &self.username).field("password", &"***").finish()
    }
}

/// Parses a `username:password` webhook key.
pub fn basic_credentials(secret: &str) -> Result<BasicCredentials, String> {
    match secret.trim().split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => {
            Ok(BasicCredentials { username: user.to_owned(), password: Secret::new(password.to_owned()) })
        }
        _ => Err("expected username:password (the webhook's Basic credentials)".to_owned()),
    }
}

/// What a verified callback proved beyond its body.
#[derive(Debug, Default)]
pub struct Verified {
    /// Standard Webhooks: the message id, stable across the vendor's retries.
    pub message_id: Option<String>,
    /// Standard Webhooks: the signed send time (Unix ms), for bodies that
    /// say nothing of when.
    pub signed_at_ms: Option<i64>,
    /// When the callback was verified (our clock): the last resort for a
    /// body with no time at all (an Onfido `check.started`).
    pub verified_at_ms: i64,
}

impl Scheme {
    /// Verifies a callback posted to `path` (the request's path, without
    /// the query): only TrueLayer signs it; the others ignore it.
    pub fn verify_at(&self, path: &str, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<Verified, Refusal> {
        match self {
            Scheme::TrueLayerJws { keys } => keys.verify(path, headers, body, now_ms),
            _ => self.verify(headers, body, now_ms),
        }
    }

    /// Verifies a callback whose scheme does not sign the request path.
    /// TrueLayer's does: it is refused here; use [`Scheme::verify_at`].
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<Verified, Refusal> {
        let plain = Verified { verified_at_ms: now_ms, ..Verified::default() };
        match self {
            Scheme::StripeSignature { secrets, tolerance_s } => {
                let live: Vec<&[u8]> =
                    secrets.iter().filter(|s| s.live(now_ms)).map(|s| s.key.expose().as_bytes()).collect();
                stripe_signature::verify(headers, body, &live, *tolerance_s, now_ms / 1000)?;
                Ok(plain)
            }
            Scheme::StandardWebhooks { keys, tolerance_s } => {
                let live: Vec<&[u8]> = keys.iter().filter(|k| k.live(now_ms)).map(|k| k.key.as_slice()).collect();
                let (id, signed_at_s) = standard::verify(headers, body, &live, *tolerance_s, now_ms / 1000)?;
                Ok(Verified { message_id: Some(id), signed_at_ms: Some(signed_at_s.saturating_mul(1000)), ..plain })
            }
            Scheme::AdyenHmac { keys } => {
                let live: Vec<&[u8]> = keys.iter().filter(|k| k.live(now_ms)).map(|k| k.key.as_slice()).collect();
                hmac_body::verify_adyen(headers, body, &live)?;
                Ok(plain)
            }
            Scheme::WiseRsa { keys } => {
                let live: Vec<&RsaPublicKey> = keys.iter().filter(|k| k.live(now_ms)).map(|k| &k.key).collect();
                rsa_body::verify_wise(headers, body, &live)?;
                Ok(plain)
            }
            Scheme::OnfidoSha2 { keys } | Scheme::SumsubDigest { keys } | Scheme::SeonDigest { keys } => {
                let live: Vec<&[u8]> = keys.iter().filter(|k| k.live(now_ms)).map(|k| k.key.as_slice()).collect();
                match self {
                    Scheme::OnfidoSha2 { .. } => digest_body::verify_onfido(headers, body, &live)?,
                    Scheme::SumsubDigest { .. } => digest_body::verify_sumsub(headers, body, &live)?,
                    _ => digest_body::verify_seon(headers, body, &live)?,
                }
                Ok(plain)
            }
            Scheme::MarqetaBasic { credentials } => {
                let authorization = header(headers, "authorization").ok();
                let mut outcome = Err(Refusal::BadSignature);
                for c in credentials.iter().filter(|c| c.live(now_ms)) {
                    outcome = crate::cards::marqeta::webhook::verify(authorization, None, &c.key.username, c.key.password.expose(), None, body);
                    if outcome.is_ok() || matches!(outcome, Err(Refusal::MissingHeader(_) | Refusal::MalformedHeader(_))) {
                        break;
                    }
                }
                outcome.map(|()| plain)
            }
            Scheme::PlaidJwt { keys } => keys
                .verify(headers, body, now_ms)
                .map(|()| Verified { signed_at_ms: plaid::signed_at_s(headers).map(|s| s.saturating_mul(1000)), ..plain }),
            Scheme::TrueLayerJws { .. } => Err(Refusal::MalformedPayload("TrueLayer signs the request path; verify with verify_at".into())),
        }
    }
}

/// Decodes a Standard Webhooks `whsec_<base64>` secret into its key bytes.
pub fn standard_webhooks_key(secret: &str) -> Result<Vec<u8>, String> {
    standard::decode_secret(secret)
}

/// Standard Webhooks' `webhook-signature` value (`v1,<base64>`) of one
/// delivery: what the gateway signs its own callbacks with.
pub fn standard_webhooks_signature(key: &[u8], id: &str, timestamp_s: i64, body: &[u8]) -> String {
    standard::sign(key, id, timestamp_s, body)
}

/// Decodes an Adyen HMAC key (hex) into its bytes.
pub fn adyen_hmac_key(hex_key: &str) -> Result<Vec<u8>, String> {
    hex::decode(hex_key.trim()).map_err(|_| "not a hex HMAC key".to_owned()).and_then(|k| {
        if k.is_empty() {
            Err("empty HMAC key".to_owned())
        } else {
            Ok(k)
        }
    })
}

/// A secret used as its UTF-8 bytes (Onfido webhook token, Sumsub webhook
/// secret, SEON license key), trimmed of surrounding whitespace.
pub fn plain_secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let key = secret.trim();
    if key.is_empty() {
        return Err("empty webhook secret".to_owned());
    }
    Ok(key.as_bytes().to_vec())
}

/// The facts a vendor body states, before the ingester stamps its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFacts {
    pub event_id: String,
    pub subject_id: String,
    pub provider_reference: String,
    pub kind: ProviderEventKind,
    pub vendor_event_type: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub reason: Option<String>,
    pub occurred_at_ms: i64,
}

impl EventFacts {
    pub fn into_event(self, provider: &str, domain: &str, received_at_ms: i64, payload_sha256: String) -> ProviderEvent {
        ProviderEvent {
            event_id: self.event_id,
            provider: provider.to_owned(),
            domain: domain.to_owned(),
            subject_id: self.subject_id,
            provider_reference: self.provider_reference,
            kind: self.kind,
            vendor_event_type: self.vendor_event_type,
            amount_minor: self.amount_minor,
            currency: self.currency,
            reason: self.reason,
            occurred_at_ms: self.occurred_at_ms,
            received_at_ms,
            payload_sha256,
        }
    }
}

/// The vendors whose callbacks switchyard understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookVendor {
    Stripe,
    Adyen,
    Wise,
    Lithic,
    Onfido,
    Sumsub,
    ComplyAdvantage,
    Sardine,
    Seon,
    Marqeta,
    Plaid,
    TrueLayer,
}

impl WebhookVendor {
    /// Every vendor name [`WebhookVendor::parse`] knows, for error messages.
    pub const NAMES: &'static [&'static str] =
        &["stripe", "adyen", "wise", "lithic", "onfido", "sumsub", "complyadvantage", "sardine", "seon", "marqeta", "plaid", "truelayer"];

    pub const ALL: [WebhookVendor; 12] = [
        Self::Stripe,
        Self::Adyen,
        Self::Wise,
        Self::Lithic,
        Self::Onfido,
        Self::Sumsub,
        Self::ComplyAdvantage,
        Self::Sardine,
        Self::Seon,
        Self::Marqeta,
        Self::Plaid,
        Self::TrueLayer,
    ];

    /// The digest the ingester's dedup compares for one event of a
    /// delivery. Lithic repeats every earlier transaction event in each
    /// later `card_transaction.updated` body, so the body's digest would
    /// call each repeat a reused id; the event's own facts are digested
    /// instead. Everything else: the delivery's body.
    pub fn digest(self, body: &[u8], facts: &EventFacts) -> String {
        match self {
            Self::Lithic if facts.vendor_event_type.starts_with(crate::cards::lithic::webhook::TRANSACTION_UPDATED) => {
                let stated = format!(
                    "{}|{}|{}|{:?}|{:?}|{:?}|{}",
                    facts.event_id, facts.provider_reference, facts.vendor_event_type, facts.amount_minor, facts.currency, facts.reason, facts.occurred_at_ms
                );
                body_sha256_hex(stated.as_bytes())
            }
            _ => body_sha256_hex(body),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "stripe" => Some(Self::Stripe),
            "adyen" => Some(Self::Adyen),
            "wise" => Some(Self::Wise),
            "lithic" => Some(Self::Lithic),
            "onfido" => Some(Self::Onfido),
            "sumsub" => Some(Self::Sumsub),
            "complyadvantage" => Some(Self::ComplyAdvantage),
            "sardine" => Some(Self::Sardine),
            "seon" => Some(Self::Seon),
            "marqeta" => Some(Self::Marqeta),
            "plaid" => Some(Self::Plaid),
            "truelayer" => Some(Self::TrueLayer),
            _ => None,
        }
    }

    /// Maps a verified delivery to the events it carries: one for most
    /// vendors, up to ten for Marqeta's batches, one per transaction event
    /// for Lithic's `card_transaction.updated`.
    pub fn map_all(self, body: &[u8], verified: &Verified) -> Result<Vec<EventFacts>, Refusal> {
        match self {
            Self::Marqeta => crate::cards::marqeta::webhook::map_batch(body, verified),
            Self::Lithic => crate::cards::lithic::webhook::map_all(body, verified),
            _ => self.map(body, verified).map(|facts| vec![facts]),
        }
    }

    /// Maps a verified single-event body to the facts it states. Marqeta's
    /// batches and Lithic's card transactions are refused here unless they
    /// hold exactly one event: use [`WebhookVendor::map_all`].
    pub fn map(self, body: &[u8], verified: &Verified) -> Result<EventFacts, Refusal> {
        match self {
            Self::Marqeta | Self::Lithic => {
                let mut all = self.map_all(body, verified)?;
                match (all.pop(), all.is_empty()) {
                    (Some(only), true) => Ok(only),
                    _ => Err(Refusal::MalformedPayload("a delivery with other than one event; map it with map_all".into())),
                }
            }
            Self::Stripe => crate::payouts::stripe::webhook::map(body),
            Self::Adyen => crate::payouts::adyen::webhook::map(body),
            Self::Wise => crate::payouts::wise::webhook::map(body),
            Self::Onfido => crate::kyc::onfido::webhook::map(body, verified),
            Self::Sumsub => crate::kyc::sumsub::webhook::map(body),
            Self::ComplyAdvantage => crate::aml::comply_advantage::webhook::map(body, verified),
            Self::Sardine => crate::fraud::sardine::webhook::map(body, verified),
            Self::Seon => crate::fraud::seon::webhook::map(body, verified),
            Self::Plaid => plaid::map(body, verified),
            Self::TrueLayer => truelayer::map(body, verified),
        }
    }
}

pub use helpers::{body_sha256_hex, rfc3339_ms};
pub(crate) use helpers::{derived_event_id, header, hmac_matches, hmac_matches_with};

#[cfg(test)]
mod tests;
