//! A vendor's webhook sender, with the faults real senders show: delays,
//! duplicates, reordering, drops, and (for attack drills) forged signatures
//! and stale timestamps. Each vendor's signing scheme is implemented here
//! from its docs, independently of the ingester's verifiers.
//!
//! Like the vendors, a genuine delivery is retried on any non-2xx answer
//! with backoff (Stripe retries for 3 days, Adyen for 30); forged and stale
//! deliveries are attacks, sent once. [`WebhookEmitter::storm`] reports what
//! it did to each event, so tests can compare the bus with the intent.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

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

/// Faults of one storm, as ratios of events (0.0..=1.0) and a delay bound.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallbackFaults {
    /// Genuine events delivered a second time.
    pub duplicate_ratio: f64,
    /// Extra attack events signed with a wrong key (never delivered genuinely).
    pub forged_ratio: f64,
    /// Extra attack events signed correctly but 10 minutes in the past.
    pub stale_ratio: f64,
    /// Events whose later state is sent before the earlier one.
    pub reorder_ratio: f64,
    /// Genuine events never delivered (the receiver must poll to learn them).
    pub drop_ratio: f64,
    /// Each delivery waits up to this long first.
    pub max_delay_ms: u64,
    pub seed: u64,
}

/// One event to send: its id (Standard Webhooks message id) and body.
#[derive(Debug, Clone)]
pub struct Callback {
    pub id: String,
    pub body: Vec<u8>,
}

/// What a storm did, by event id.
#[derive(Debug, Clone, Default)]
pub struct StormReport {
    /// Delivered genuinely (and answered 2xx in the end).
    pub delivered: Vec<String>,
    /// Genuine events that never got a 2xx within the retry budget.
    pub undelivered: Vec<String>,
    pub duplicated: Vec<String>,
    pub dropped: Vec<String>,
    pub forged: Vec<String>,
    pub stale: Vec<String>,
    /// Attack deliveries that were answered 2xx: must stay empty.
    pub attacks_accepted: Vec<String>,
    /// Non-2xx answers to genuine deliveries that were then retried.
    pub retries: u64,
}

#[derive(Clone)]
pub struct WebhookEmitter {
    client: reqwest::Client,
    url: Arc<str>,
    signer: Signer,
    /// Genuine deliveries are retried this many times on non-2xx.
    pub max_attempts: u32,
    pub retry_backoff: Duration,
}

enum Intent {
    Genuine,
    Forged,
    Stale,
}

impl WebhookEmitter {
    pub fn new(url: impl Into<String>, signer: Signer) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let url: String = url.into();
        Self { client, url: url.into(), signer, max_attempts: 30, retry_backoff: Duration::from_millis(200) }
    }

    /// Sends one delivery; returns the HTTP status (0 when the connection failed).
    pub async fn send_once(&self, signer: &Signer, callback: &Callback, unix_s: i64) -> u16 {
        let Ok(headers) = signer.headers(&callback.id, unix_s, &callback.body) else { return 0 };
        let mut request = self.client.post(&*self.url).header("Content-Type", "application/json").body(callback.body.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Delivers like a vendor: retries non-2xx with backoff. True if accepted.
    pub async fn deliver(&self, callback: &Callback) -> (bool, u64) {
        let mut retries = 0;
        for attempt in 0..self.max_attempts {
            let status = self.send_once(&self.signer, callback, now_s()).await;
            if (200..300).contains(&status) {
                return (true, retries);
            }
            retries += 1;
            let backoff = self.retry_backoff * (attempt + 1).min(10);
            tokio::time::sleep(backoff).await;
        }
        (false, retries)
    }

    /// Sends `events` (in order, except where reordered) with `faults`,
    /// `concurrency` deliveries at a time. Pass the states of one object in
    /// life order: a reordered neighbour pair then arrives later-state first.
    pub async fn storm(&self, events: Vec<Callback>, faults: &CallbackFaults, concurrency: usize) -> StormReport {
        use futures::StreamExt;
        let mut rng = StdRng::seed_from_u64(faults.seed);
        let mut report = StormReport::default();
        let mut plan: Vec<(Callback, Intent)> = Vec::new();
        for e in events {
            if rng.random_bool(faults.drop_ratio.clamp(0.0, 1.0)) {
                report.dropped.push(e.id.clone());
                continue;
            }
            if rng.random_bool(faults.duplicate_ratio.clamp(0.0, 1.0)) {
                report.duplicated.push(e.id.clone());
                plan.push((e.clone(), Intent::Genuine));
            }
            plan.push((e, Intent::Genuine));
        }
        let genuine = plan.len();
        // Attack deliveries reuse genuine bodies with a new id, so they would
        // be publishable if the ingester let them through.
        for i in 0..genuine {
            let roll: f64 = rng.random();
            let intent = if roll < faults.forged_ratio {
                Intent::Forged
            } else if roll < faults.forged_ratio + faults.stale_ratio {
                Intent::Stale
            } else {
                continue;
            };
            let base = &plan[i].0;
            let id = format!("attack-{i}-{}", base.id);
            let body = String::from_utf8_lossy(&base.body).replace(&base.id, &id).into_bytes();
            match intent {
                Intent::Forged => report.forged.push(id.clone()),
                _ => report.stale.push(id.clone()),
            }
            plan.push((Callback { id, body }, intent));
        }
        // Reordering: swap neighbours; with a shuffle of attacks in between,
        // duplicates and later states overtake earlier ones.
        let mut i = 0;
        while i + 1 < plan.len() {
            if rng.random_bool(faults.reorder_ratio.clamp(0.0, 1.0)) {
                plan.swap(i, i + 1);
                i += 2;
            } else {
                i += 1;
            }
        }
        let delays: Vec<u64> = plan.iter().map(|_| if faults.max_delay_ms == 0 { 0 } else { rng.random_range(0..=faults.max_delay_ms) }).collect();
        let results: Vec<(String, Intent, bool, u64)> = futures::stream::iter(plan.into_iter().zip(delays))
            .map(|((callback, intent), delay)| {
                let this = self.clone();
                async move {
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    match intent {
                        Intent::Genuine => {
                            let (ok, retries) = this.deliver(&callback).await;
                            (callback.id, Intent::Genuine, ok, retries)
                        }
                        Intent::Forged => {
                            let status = if let Signer::WiseRsa { .. } = this.signer {
                                this.send_corrupted(&callback).await
                            } else {
                                this.send_once(&this.signer.forged(), &callback, now_s()).await
                            };
                            (callback.id, Intent::Forged, (200..300).contains(&status), 0)
                        }
                        Intent::Stale => {
                            let status = this.send_once(&this.signer, &callback, now_s() - 600).await;
                            (callback.id, Intent::Stale, (200..300).contains(&status), 0)
                        }
                    }
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        let mut seen = std::collections::HashSet::new();
        for (id, intent, ok, retries) in results {
            report.retries += retries;
            match intent {
                Intent::Genuine if ok => {
                    if seen.insert(id.clone()) {
                        report.delivered.push(id);
                    }
                }
                Intent::Genuine => report.undelivered.push(id),
                _ if ok => report.attacks_accepted.push(id),
                _ => {}
            }
        }
        report
    }

    async fn send_corrupted(&self, callback: &Callback) -> u16 {
        let Ok(headers) = self.signer.headers(&callback.id, now_s(), &callback.body) else { return 0 };
        let mut request = self.client.post(&*self.url).header("Content-Type", "application/json").body(callback.body.clone());
        for (name, value) in headers {
            let value = if name == "X-Signature-SHA256" { format!("A{}", &value[1..]) } else { value };
            request = request.header(name, value);
        }
        request.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
    }
}

fn now_s() -> i64 {
    crate::util::now_ms() / 1000
}

/// Vendor-shaped bodies for the events switchyard understands.
pub mod bodies {
    use serde_json::json;

    /// A Stripe payout event; `kind` is `payout.paid`, `payout.updated`, ...
    pub fn stripe_payout(event_id: &str, kind: &str, payout_id: &str, vendor_id: &str, amount: i64, created_s: i64) -> Vec<u8> {
        let status = match kind {
            "payout.paid" => "paid",
            "payout.failed" => "failed",
            "payout.canceled" => "canceled",
            "payout.updated" => "in_transit",
            _ => "pending",
        };
        let body = json!({
            "id": event_id, "object": "event", "api_version": "2024-06-20", "created": created_s,
            "data": {"object": {"id": vendor_id, "object": "payout", "amount": amount, "currency": "eur",
                                "status": status, "failure_code": null,
                                "metadata": {"switchyard_payout_id": payout_id}}},
            "livemode": false, "pending_webhooks": 1, "type": kind,
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// A Lithic card event (UNCONFIRMED shape, see the adapter's module doc).
    pub fn lithic_card(event_token: &str, kind: &str, card_id: &str, card_token: &str) -> Vec<u8> {
        let body = json!({
            "event_type": kind, "token": event_token, "created": crate::util::iso8601(crate::util::now_ms()),
            "payload": {"token": card_token, "memo": card_id, "state": "OPEN", "type": "VIRTUAL"},
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// An Adyen Balance Platform transfer update.
    pub fn adyen_transfer(transfer_id: &str, payout_id: &str, status: &str, sequence: i64, amount: i64) -> Vec<u8> {
        let body = json!({
            "data": {"balancePlatform": "SWITCHYARD_SIM", "id": transfer_id, "reference": payout_id, "status": status,
                     "category": "bank", "direction": "outgoing", "sequenceNumber": sequence,
                     "amount": {"currency": "EUR", "value": amount}},
            "environment": "test", "timestamp": crate::util::iso8601(crate::util::now_ms()),
            "type": "balancePlatform.transfer.updated",
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// An Onfido `check.completed` (or other `action`) callback; Onfido's
    /// callbacks carry no result, only the check's status.
    pub fn onfido_check(action: &str, check_id: &str, status: &str) -> Vec<u8> {
        let body = json!({"payload": {
            "resource_type": "check", "action": action,
            "object": {"id": check_id, "status": status,
                       "completed_at_iso8601": crate::util::iso8601(crate::util::now_ms()),
                       "href": format!("https://api.eu.onfido.com/v3.6/checks/{check_id}")},
        }});
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// A Sumsub `applicantReviewed` callback; `answer` GREEN or RED, with
    /// `reject_type` FINAL or RETRY on RED. `created_at_ms` is the event's
    /// time, kept across Sumsub's resends.
    pub fn sumsub_reviewed(applicant_id: &str, external_user_id: &str, answer: &str, reject_type: Option<&str>, created_at_ms: i64) -> Vec<u8> {
        let mut result = json!({"reviewAnswer": answer});
        if let Some(t) = reject_type {
            result["reviewRejectType"] = json!(t);
            result["rejectLabels"] = json!(["BAD_PROOF_OF_IDENTITY"]);
        }
        let body = json!({
            "applicantId": applicant_id, "inspectionId": format!("{applicant_id}-insp"),
            "correlationId": format!("req-{}", uuid::Uuid::new_v4()), "externalUserId": external_user_id,
            "levelName": "basic-kyc-level", "type": "applicantReviewed", "reviewResult": result,
            "reviewStatus": "completed", "createdAtMs": sumsub_time(created_at_ms), "sandboxMode": true,
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// Sumsub's `createdAtMs` form: `2026-11-25 10:15:00.321` (UTC).
    fn sumsub_time(ms: i64) -> String {
        let iso = crate::util::iso8601(ms);
        let base = iso.trim_end_matches('Z').replacen('T', " ", 1);
        let base = base.split('.').next().unwrap_or(&base).to_owned();
        format!("{base}.{:03}", ms.rem_euclid(1000))
    }

    /// A ComplyAdvantage `match_status_updated` for a search tagged with our subject.
    pub fn complyadvantage_match_status(search_id: i64, client_ref: &str, subject_id: &str, match_status: &str) -> Vec<u8> {
        let body = json!({"event": "match_status_updated", "data": {
            "search_id": search_id, "ref": format!("{search_id}-sim"), "client_ref": client_ref,
            "match_status": match_status, "risk_level": "high", "tags": {"switchyard_subject": subject_id},
        }});
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// A ComplyAdvantage `monitored_search_updated` with `new_hits` new entities.
    pub fn complyadvantage_monitor(search_id: i64, subject_id: &str, new_hits: usize) -> Vec<u8> {
        let new: Vec<String> = (0..new_hits).map(|i| format!("SIMHIT{search_id}{i}")).collect();
        let body = json!({"event": "monitored_search_updated", "data": {
            "search_id": search_id, "new": new, "updated": [], "removed": [], "is_suspended": false,
            "tags": {"switchyard_subject": subject_id},
        }});
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// A Sardine risk level change (UNCONFIRMED shape, see the adapter).
    pub fn sardine_risk_level(event_id: &str, session_key: &str, customer_id: &str, level: &str) -> Vec<u8> {
        let body = json!({
            "id": event_id, "type": "customer.risk_level_changed", "timestamp": crate::util::iso8601(crate::util::now_ms()),
            "data": {"sessionKey": session_key, "customer": {"id": customer_id}, "level": level},
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// A SEON transaction status update (UNCONFIRMED shape, see the adapter).
    pub fn seon_status_update(seon_id: &str, transaction_id: &str, user_id: &str, state: &str) -> Vec<u8> {
        let body = json!({
            "event": "transaction:status_update", "timestamp": crate::util::iso8601(crate::util::now_ms()),
            "data": {"id": seon_id, "transaction_id": transaction_id, "user_id": user_id, "state": state},
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// A Wise transfer state change (schema 2.0.0).
    pub fn wise_state_change(transfer_id: i64, state: &str, previous: &str) -> Vec<u8> {
        let at = crate::util::iso8601(crate::util::now_ms());
        let body = json!({
            "data": {"resource": {"type": "transfer", "id": transfer_id, "profile_id": 2201, "account_id": 77045},
                     "current_state": state, "previous_state": previous, "occurred_at": at},
            "subscription_id": "f2264fe6-6f9a-4e8e-9c9f-2a53c4e2bf3a", "event_type": "transfers#state-change",
            "schema_version": "2.0.0", "sent_at": at,
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }
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
        let body = super::bodies::sumsub_reviewed("a1", "k1", "GREEN", None, 1_713_790_518_042);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["createdAtMs"], "2024-04-22 12:55:18.042");
    }
}
