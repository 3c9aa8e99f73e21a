//! Routing policy changes without a restart. The handler reads the current
//! [`Router`] per message; a change swaps it atomically, keeps the breakers
//! of providers that stay, and is written to the audit log.

use crate::config::PayoutWorkerConfig;
use crate::payout::DOMAIN;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use switchyard_routing::{Router, RoutingPolicy};
use switchyard_store::{AuditEntry, Store};
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct LiveRouter {
    current: RwLock<Arc<Router>>,
    /// Provider names the running worker has adapters for; a new policy may
    /// only name these.
    providers: Vec<String>,
}

impl LiveRouter {
    pub fn new(router: Router, providers: Vec<String>) -> Self {
        Self { current: RwLock::new(Arc::new(router)), providers }
    }

    pub fn get(&self) -> Arc<Router> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Validates and applies `policy`; returns false if it equals the current one.
    pub async fn apply(&self, policy: RoutingPolicy, store: &Store, actor: &str) -> Result<bool, String> {
        policy.validate(self.providers.iter().map(String::as_str)).map_err(|e| e.to_string())?;
        let old = self.get();
        if *old.policy() == policy {
            return Ok(false);
        }
        let detail = format!("{{\"from\":{:?},\"to\":{:?}}}", format!("{:?}", old.policy()), format!("{policy:?}"));
        let next = Arc::new(old.reconfigured(policy));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        tracing::warn!(actor, "routing policy changed");
        let entry = AuditEntry { actor, action: "routing_policy_changed", subject_id: DOMAIN, correlation_id: "-", detail: &detail };
        if let Err(e) = store.audit(entry).await {
            tracing::warn!(error = %e, "routing change not written to the audit log");
        }
        Ok(true)
    }
}

/// Re-reads the worker's config file when it changes and applies its
/// `routing` section. Other sections need a restart; an invalid file is
/// logged and ignored, the running policy stays.
pub fn watch_config(path: PathBuf, live: Arc<LiveRouter>, store: Store, every: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut seen: Option<SystemTime> = modified(&path);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
            let now = modified(&path);
            if now == seen {
                continue;
            }
            seen = now;
            match PayoutWorkerConfig::load(&path) {
                Ok(config) => {
                    if let Err(e) = live.apply(config.routing, &store, "config-file").await {
                        tracing::error!(error = %e, "routing change refused; keeping the running policy");
                    }
                }
                Err(e) => tracing::error!(error = %e, "config file changed but is invalid; keeping the running policy"),
            }
        }
    });
}
