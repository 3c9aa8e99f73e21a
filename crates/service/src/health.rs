//! Liveness and readiness, shared by every service's admin server.
//!
//! - `/livez`: the service's loops run and its producer is usable. It fails
//!   only when the process cannot recover by itself; the binary then also
//!   exits non-zero (see [`crate::serve_until_stopped`]) so the supervisor
//!   restarts it even where nothing polls `/livez`.
//! - `/readyz` (and `/health`, its old name): every dependency answers now
//!   (broker, registry, store, producer). A failing check takes the instance
//!   out of rotation without restarting it; dependencies come back.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long one readiness check may take; a dependency slower than this is
/// as good as down for a probe (Kubernetes' default probe timeout is 1 s, so
/// probes should allow a few seconds).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type Check = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// Named readiness checks plus the first fatal failure of the process.
/// Cheap to clone; every clone is the same state.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    checks: Mutex<Vec<(String, Check)>>,
    /// The first reason the process is dead (a loop ended, a fatal producer).
    dead: watch::Sender<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

/// The answer of `/readyz`: each check by name, `ok` or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub dead: Option<String>,
    pub checks: Vec<(String, Result<(), String>)>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.dead.is_none() && self.checks.iter().all(|(_, r)| r.is_ok())
    }

    /// The named check's result, for tests and messages.
    pub fn check(&self, name: &str) -> Option<&Result<(), String>> {
        self.checks.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }
}

impl Health {
    pub fn new() -> Self {
        Self { inner: Arc::new(Inner { checks: Mutex::new(Vec::new()), dead: watch::Sender::new(None) }) }
    }

    /// Adds a readiness check; `probe` runs on every `/readyz` under [`CHECK_TIMEOUT`].
    pub fn check<F, Fut>(&self, name: impl Into<String>, probe: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: Check = Arc::new(move || Box::pin(probe()));
        self.inner.checks.lock().unwrap_or_else(|e| e.into_inner()).push((name.into(), check));
    }

    /// Marks the process dead; the first reason wins and is logged once.
    pub fn fail(&self, reason: impl Into<String>) {
        let reason = reason.into();
        let first = self.inner.dead.send_if_modified(|dead| {
            if dead.is_some() {
                return false;
            }
            *dead = Some(reason.clone());
            true
        });
        if first {
            tracing::error!(reason = %reason, "service is no longer live; exiting so it is restarted");
        }
    }

    /// Why the process is dead, if it is.
    pub fn failure(&self) -> Option<String> {
        self.inner.dead.borrow().clone()
    }

    /// Resolves with the reason once the process is dead.
    pub async fn failed(&self) -> String {
        let mut rx = self.inner.dead.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                // Unreachable while `self` holds the sender; never resolve.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Wraps a loop that must run until `shutdown`: if it returns (with an
    /// error, or at all before shutdown) or panics, the process is dead.
    pub fn track<F, T, E>(&self, name: impl Into<String>, shutdown: CancellationToken, work: F) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Display + Send + 'static,
    {
        let name = name.into();
        // Debug builds only: lets a test see a real binary die the way it
        // does when a loop stops, which no outside fault reliably causes.
        #[cfg(debug_assertions)]
        if std::env::var("SWITCHYARD_FAULT_STOP_LOOP").is_ok_and(|v| v == name) {
            let (health, name) = (self.clone(), name.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                health.fail(format!("{name} stopped (injected by SWITCHYARD_FAULT_STOP_LOOP)"));
            });
        }
        let mut guard = LoopGuard { health: self.clone(), name: name.clone(), shutdown: shutdown.clone(), ended: false };
        async move {
            let result = work.await;
            guard.ended = true;
            match &result {
                Err(e) => guard.health.fail(format!("{name} stopped: {e}")),
                Ok(_) if !shutdown.is_cancelled() => guard.health.fail(format!("{name} stopped before shutdown")),
                Ok(_) => {}
            }
            result
        }
    }

    /// Polls `probe` every second until shutdown; a `Some` (a fatal
    /// producer error) kills the process. The probe is also a readiness check.
    pub fn watch_fatal<P>(&self, name: impl Into<String>, probe: P, shutdown: CancellationToken)
    where
        P: Fn() -> Option<String> + Send + Sync + 'static,
    {
        let name = name.into();
        let probe = Arc::new(probe);
        let for_check = probe.clone();
        self.check(name.clone(), move || {
            let fatal = for_check();
            async move { fatal.map_or(Ok(()), |e| Err(format!("fatal: {e}"))) }
        });
        let health = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                if let Some(e) = probe() {
                    health.fail(format!("{name}: fatal error: {e}"));
                    return;
                }
            }
        });
    }

    /// Runs every check concurrently, each bounded by [`CHECK_TIMEOUT`].
    pub async fn readiness(&self) -> Readiness {
        let checks: Vec<(String, Check)> = self.inner.checks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let running: Vec<_> = checks
            .into_iter()
            .map(|(name, check)| {
                let task = tokio::spawn(tokio::time::timeout(CHECK_TIMEOUT, check()));
                (name, task)
            })
            .collect();
        let mut results = Vec::with_capacity(running.len());
        for (name, task) in running {
            let result = match task.await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
                Err(e) => Err(format!("check failed: {e}")),
            };
            results.push((name, result));
        }
        Readiness { dead: self.failure(), checks: results }
    }

    /// `/livez`, `/readyz` and `/health` (= `/readyz`), to merge into an admin router.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .route("/health", get(readyz))
            .with_state(self.clone())
    }
}

/// Marks the process dead if a tracked loop is dropped before it finished
/// (a panic unwinds through it, or its task was aborted) outside shutdown.
struct LoopGuard {
    health: Health,
    name: String,
    shutdown: CancellationToken,
    ended: bool,
}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        if !self.ended && !self.shutdown.is_cancelled() {
            self.health.fail(format!("{} panicked or was aborted", self.name));
        }
    }
}

async fn livez(State(health): State<Health>) -> impl IntoResponse {
    match health.failure() {
        None => (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ok" }))),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "status": "dead", "reason": reason }))),
    }
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    let readiness = health.readiness().await;
    let checks: serde_json::Map<String, serde_json::Value> = readiness
        .checks
        .iter()
        .map(|(name, r)| (name.clone(), serde_json::Value::String(r.as_ref().map_or_else(|e| e.clone(), |()| "ok".into()))))
        .collect();
    let status = if readiness.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = serde_json::json!({ "status": if readiness.is_ready() { "ok" } else { "unavailable" }, "checks": checks });
    if let Some(reason) = readiness.dead {
        body["dead"] = serde_json::Value::String(reason);
    }
    (status, axum::Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_loop_that_ends_or_panics_before_shutdown_kills_the_process() {
        let health = Health::new();
        let shutdown = CancellationToken::new();
        let ok = tokio::spawn(health.track("quiet", shutdown.clone(), async { Ok::<(), String>(()) }));
        assert!(ok.await.expect("joins").is_ok());
        assert_eq!(health.failure().as_deref(), Some("quiet stopped before shutdown"));

        let health = Health::new();
        let panicking = tokio::spawn(health.track("consumer", shutdown.clone(), async {
            if true {
                panic!("boom");
            }
            Ok::<(), String>(())
        }));
        assert!(panicking.await.is_err());
        assert_eq!(tokio::time::timeout(Duration::from_secs(1), health.failed()).await.ok().as_deref(), Some("consumer panicked or was aborted"));

        let health = Health::new();
        shutdown.cancel();
        let drained = tokio::spawn(health.track("consumer", shutdown.clone(), async { Ok::<(), String>(()) }));
        assert!(drained.await.expect("joins").is_ok());
        assert_eq!(health.failure(), None, "ending at shutdown is the normal path");
    }

    #[tokio::test]
    async fn readiness_names_each_failing_check_and_bounds_slow_ones() {
        let health = Health::new();
        health.check("store", || async { Ok(()) });
        health.check("broker", || async { Err("connection refused".to_owned()) });
        health.check("registry", || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        });
        let started = std::time::Instant::now();
        let r = health.readiness().await;
        assert!(started.elapsed() < CHECK_TIMEOUT + Duration::from_secs(1));
        assert!(!r.is_ready());
        assert_eq!(r.check("store"), Some(&Ok(())));
        assert_eq!(r.check("broker"), Some(&Err("connection refused".to_owned())));
        assert!(r.check("registry").is_some_and(|r| r.as_ref().is_err_and(|e| e.contains("no answer"))));
    }

    #[tokio::test]
    async fn a_fatal_producer_error_fails_readiness_and_kills_the_process() {
        let health = Health::new();
        let shutdown = CancellationToken::new();
        health.watch_fatal("producer", || Some("Fenced: epoch bumped".to_owned()), shutdown.clone());
        let reason = tokio::time::timeout(Duration::from_secs(3), health.failed()).await.expect("noticed within seconds");
        assert!(reason.contains("producer") && reason.contains("Fenced"), "{reason}");
        assert!(!health.readiness().await.is_ready());
        shutdown.cancel();
    }
}
