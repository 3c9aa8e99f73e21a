//! A vendor's webhook sender, with the faults real senders show: delays,
//! duplicates, reordering, drops, and (for attack drills) forged signatures
//! and stale timestamps. Each vendor's signing scheme is implemented here
//! from its docs, independently of the ingester's verifiers.
//!
//! Like the vendors, a genuine delivery is retried on any non-2xx answer
//! with backoff (Stripe retries for 3 days, Adyen for 30); forged and stale
//! deliveries are attacks, sent once. [`WebhookEmitter::storm`] reports what
//! it did to each event, so tests can compare the bus with the intent.

//!
//! # Layout
//! - [`signer`]: each vendor's signing scheme ([`Signer`]).
//! - [`bodies`]: vendor-shaped callback bodies.
//! - this module: [`WebhookEmitter`] and its fault plan.

pub mod bodies;
mod signer;

pub use signer::{DigestAlg, Signer, SignerError};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

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
                    // A duplicated delivery of one callback counts once.
                    let first = seen.insert(id.clone());
                    if first {
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
