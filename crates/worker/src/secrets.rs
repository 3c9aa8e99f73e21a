//! Outbound API keys rotated without a restart.
//!
//! A provider's `api_key` that comes from a `file` (a Kubernetes secret
//! volume, a Vault agent template) is held as a [`RotatingSecret`] the
//! adapter reads on every request ([`ApiKey::Rotating`]); this loop reads
//! each file again every `secret_check_every_ms`. A changed value is used
//! from the next request on, with no overlap on our side: we only present
//! keys, and whether the old one still works meanwhile is the vendor's
//! setting (Stripe's roll expiry, Adyen's second key), see
//! `ops/runbooks/secret-rotation.md`. A new value is first checked like the
//! start-up one (a live-shaped key in a sandbox deployment is refused and
//! the current key stays). Each rotation is logged with the field, never
//! the value, and audited as `secret_rotated`.
//!
//! [`ApiKey::Rotating`]: switchyard_adapters::secret::ApiKey

use std::sync::Arc;
use std::time::Duration;
use switchyard_adapters::secret::{RotatingSecret, Rotation, Secret};
use switchyard_store::{AuditEntry, Store};
use tokio_util::sync::CancellationToken;

/// A check a new value must pass before it replaces the current one.
pub type Usable = Box<dyn Fn(&Secret) -> Result<(), String> + Send + Sync>;

/// One file-based outbound key and whose it is.
pub struct OutboundKey {
    /// The provider's name: the audit entry's subject.
    pub provider: String,
    pub secret: Arc<RotatingSecret>,
    pub usable: Usable,
}

/// Re-reads every key until `shutdown`; nothing runs when none is file-based.
pub fn spawn(
    keys: Vec<OutboundKey>,
    store: Store,
    actor: &'static str,
    every: Duration,
    shutdown: CancellationToken,
) {
    let keys: Vec<OutboundKey> = keys.into_iter().filter(|k| k.secret.reloads()).collect();
    if keys.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => check(&keys, &store, actor).await,
            }
        }
    });
}

async fn check(keys: &[OutboundKey], store: &Store, actor: &str) {
    let now = switchyard_canonical::now_ms();
    for key in keys {
        match key.secret.refresh_checked(now, &key.usable) {
            Ok(Some(rotation)) => audit(store, actor, &key.provider, &rotation).await,
            Ok(None) => {}
            // A writer half-way through, the file gone, or a value refused:
            // the current key stays and is used until the file is fixed.
            Err(e) => {
                tracing::warn!(provider = %key.provider, error = %e, "outbound key not re-read; the current key stays")
            }
        }
    }
}

async fn audit(store: &Store, actor: &str, provider: &str, r: &Rotation) {
    let detail = serde_json::json!({ "field": r.field, "generation": r.generation }).to_string();
    let entry = AuditEntry {
        actor,
        action: "secret_rotated",
        subject_id: provider,
        correlation_id: "",
        detail: &detail,
    };
    if let Err(e) = store.audit(entry).await {
        tracing::warn!(error = %e, provider, "audit entry for a key rotation not written");
    }
}
