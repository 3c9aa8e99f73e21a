//! Marqeta webhooks: events are grouped by category
//! (`{"cardtransitions":[...],"chargebacktransitions":[...]}`), at most
//! [`MAX_BATCH`] events per POST, with HTTP Basic auth and, when a secret is
//! configured, `X-Marqeta-Signature: <hex HMAC-SHA256(secret, raw body)>`
//! (UNCONFIRMED: the docs also mention SHA-1; SHA-256 chosen). A non-200
//! answer is retried up to `max_attempts` times with powers-of-4 backoff
//! (`backoff`, 4x, 16x, ...), as Marqeta retries failed deliveries.
//! `duplicate_ratio` delivers a batch a second time and `max_jitter` delays
//! each event by up to that much, so events arrive twice, late and out of
//! order, as at-least-once callbacks do.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::mpsc;

/// Marqeta sends at most ten events per webhook request.
pub const MAX_BATCH: usize = 10;

/// Where the Marqeta simulator posts its events.
#[derive(Clone, Debug)]
pub struct MarqetaWebhook {
    pub url: String,
    /// Basic auth credentials Marqeta presents on every delivery.
    pub username: String,
    pub password: String,
    /// Optional HMAC secret for `X-Marqeta-Signature`.
    pub secret: Option<String>,
    /// Deliveries per batch before giving up (Marqeta: 10 retries).
    pub max_attempts: u32,
    /// First retry delay; each next one is four times longer.
    pub backoff: Duration,
    /// Share of batches delivered twice.
    pub duplicate_ratio: f64,
    /// Extra random delay per event (reorders events).
    pub max_jitter: Duration,
}

impl MarqetaWebhook {
    pub fn new(url: impl Into<String>, username: impl Into<String>, password: impl Into<String>) -> Self {
        Self { url: url.into(), username: username.into(), password: password.into(), secret: None,
            max_attempts: 11,
            backoff: Duration::from_millis(200),
            duplicate_ratio: 0.0,
            max_jitter: Duration::ZERO,
        }
    }
}

/// The signature of a body: lowercase hex HMAC-SHA256.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// One event waiting for its batch: its category and body.
type Queued = (&'static str, Value);

#[derive(Clone, Debug)]
pub(crate) struct Hooks {
    tx: mpsc::UnboundedSender<Queued>,
    max_jitter: Duration,
}

impl Hooks {
    pub(crate) fn start(target: MarqetaWebhook) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let max_jitter = target.max_jitter;
        tokio::spawn(run(target, rx));
        Self { tx, max_jitter }
    }

    /// Queues an event after `delay`.
    pub(crate) fn send(&self, category: &'static str, event: Value, delay: Duration) {
        let tx = self.tx.clone();
        let delay = if self.max_jitter.is_zero() {
            delay
        } else {
            use rand::Rng;
            delay + Duration::from_millis(rand::rng().random_range(0..=self.max_jitter.as_millis() as u64))
        };
        if delay.is_zero() {
            let _ = tx.send((category, event));
            return;
        }
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send((category, event));
        });
    }
}

async fn run(target: MarqetaWebhook, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_else(|_| reqwest::Client::new());
    while let Some(first) = rx.recv().await {
        // Events arriving together travel together, up to ten.
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                _ => break,
            }
        }
        let mut body = serde_json::Map::new();
        for (category, event) in batch {
            if let Value::Array(list) = body.entry(category).or_insert_with(|| Value::Array(Vec::new())) {
                list.push(event);
            }
        }
        let raw = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
        let twice = target.duplicate_ratio > 0.0 && {
            use rand::Rng;
            rand::rng().random::<f64>() < target.duplicate_ratio
        };
        if twice {
            tokio::spawn(deliver(client.clone(), target.clone(), raw.clone()));
        }
        tokio::spawn(deliver(client.clone(), target.clone(), raw));
    }
}

async fn deliver(client: reqwest::Client, target: MarqetaWebhook, raw: Vec<u8>) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", target.username, target.password));
    let mut wait = target.backoff;
    for attempt in 1..=target.max_attempts.max(1) {
        let mut req = client
            .post(&target.url)
            .header("Content-Type", "application/json")
            .header("Authorization", format!("Basic {auth}"))
            .body(raw.clone());
        if let Some(secret) = &target.secret {
            req = req.header("X-Marqeta-Signature", signature(secret, &raw));
        }
        match req.send().await {
            Ok(r) if r.status().as_u16() == 200 => return,
            Ok(r) => tracing::debug!(status = r.status().as_u16(), attempt, "marqeta webhook refused; will retry"),
            Err(e) => tracing::debug!(error = %e, attempt, "marqeta webhook delivery failed; will retry"),
        }
        tokio::time::sleep(wait).await;
        wait = wait.saturating_mul(4);
    }
}
