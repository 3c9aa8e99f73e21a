//! Webhook secrets rotated without a restart.
//!
//! A provider's keys that come from files are re-read every
//! `rotation.check_every_ms`. When one changed, the provider's verifier is
//! rebuilt with the new value *and* the replaced one, the latter ending
//! `rotation.overlap_s` later (the schemes' own `not_after`), and swapped in
//! atomically: a delivery signed before the vendor switched still verifies
//! during the overlap, and is refused after it. Each rotation is logged
//! (field, never the value) and written to the audit log as `secret_rotated`.

use crate::providers::Provider;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use switchyard_adapters::secret::{RotatingSecret, Rotation, Secret};
use switchyard_adapters::webhooks::{Refusal, Scheme, Verified};
use switchyard_store::{AuditEntry, Store};
use tokio_util::sync::CancellationToken;

/// A provider's verifier, replaced whole on rotation.
pub struct SchemeCell(RwLock<Arc<Scheme>>);

impl SchemeCell {
    pub fn new(scheme: Scheme) -> Self {
        Self(RwLock::new(Arc::new(scheme)))
    }

    pub fn verify(&self, headers: &axum::http::HeaderMap, body: &[u8], now_ms: i64) -> Result<Verified, Refusal> {
        let scheme = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        scheme.verify(headers, body, now_ms)
    }

    /// [`Self::verify`] for a callback posted to `path`, which TrueLayer signs.
    pub fn verify_at(&self, path: &str, headers: &axum::http::HeaderMap, body: &[u8], now_ms: i64) -> Result<Verified, Refusal> {
        let scheme = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        scheme.verify_at(path, headers, body, now_ms)
    }

    /// TrueLayer's JWKS cache: filled before the synchronous [`Self::verify_at`].
    pub fn truelayer_keys(&self) -> Option<Arc<switchyard_adapters::webhooks::truelayer::TrueLayerKeys>> {
        match &**self.0.read().unwrap_or_else(|e| e.into_inner()) {
            Scheme::TrueLayerJws { keys } => Some(keys.clone()),
            _ => None,
        }
    }

    /// The fetched-key cache of a scheme whose keys come from the vendor's
    /// endpoint (Plaid): filled before the synchronous [`Self::verify`].
    pub fn plaid_keys(&self) -> Option<Arc<switchyard_adapters::webhooks::plaid::PlaidKeys>> {
        match &**self.0.read().unwrap_or_else(|e| e.into_inner()) {
            Scheme::PlaidJwt { keys } => Some(keys.clone()),
            _ => None,
        }
    }

    fn replace(&self, scheme: Scheme) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(scheme);
    }
}

/// One configured key: its source, re-read on rotation, and its own end.
pub struct ProviderKey {
    pub secret: RotatingSecret,
    pub not_after_ms: Option<i64>,
}

/// `(field, value, not_after)` of every value that verifies now: each key's
/// current value, and the value it replaced while the overlap runs.
pub(crate) fn values(keys: &[ProviderKey]) -> Vec<(String, Secret, Option<i64>)> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let now = k.secret.snapshot();
        out.push((k.secret.field().to_owned(), now.current, k.not_after_ms));
        if let Some((previous, until)) = now.previous {
            let end = k.not_after_ms.map_or(until, |n| n.min(until));
            out.push((format!("{} (previous)", k.secret.field()), previous, Some(end)));
        }
    }
    out
}

/// Re-reads file-based keys of every provider until `shutdown`.
pub(crate) fn spawn(providers: &HashMap<String, Arc<Provider>>, store: Store, shutdown: CancellationToken) {
    for provider in providers.values() {
        if !provider.keys.iter().any(|k| k.secret.reloads()) {
            continue;
        }
        let (provider, store, shutdown) = (provider.clone(), store.clone(), shutdown.clone());
        let every = Duration::from_millis(provider.rotation.check_every_ms.max(50));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => check(&provider, &store).await,
                }
            }
        });
    }
}

async fn check(provider: &Provider, store: &Store) {
    let now = switchyard_canonical::now_ms();
    let mut rotations = Vec::new();
    for key in &provider.keys {
        let usable = |s: &Secret| crate::providers::check_value(provider, key.secret.field(), s).map_err(|e| e.to_string());
        match key.secret.refresh_checked(now, usable) {
            Ok(Some(r)) => rotations.push(r),
            Ok(None) => {}
            // A writer half-way through, the file gone, or a value the
            // scheme cannot use (not hex, not PEM): keep what verifies now.
            Err(e) => tracing::warn!(provider = %provider.name, error = %e, "webhook key not re-read; the current keys stay"),
        }
    }
    if rotations.is_empty() {
        return;
    }
    match crate::providers::rebuild(provider) {
        Ok(scheme) => provider.scheme.replace(scheme),
        // Each value was checked before it was taken; kept as a guard.
        Err(e) => {
            tracing::error!(provider = %provider.name, error = %e, "webhook verifier not rebuilt; the previous one stays");
            return;
        }
    }
    for r in rotations {
        audit(store, &provider.name, &r).await;
    }
}

async fn audit(store: &Store, provider: &str, r: &Rotation) {
    let detail = format!("{{\"field\":{:?},\"generation\":{},\"previous_until_ms\":{}}}", r.field, r.generation, r.previous_until_ms);
    let entry = AuditEntry { actor: "webhook-ingester", action: "secret_rotated", subject_id: provider, correlation_id: "", detail: &detail };
    if let Err(e) = store.audit(entry).await {
        tracing::warn!(error = %e, provider, "audit entry for a key rotation not written");
    }
}
