//! Listener, control routes and graceful shutdown shared by both vendors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::engine::Control;
use crate::{ExecutedPayout, FaultPlan, SimStats, SimulatorHandle};

/// A hang fault can hold a request for a long time; shutdown waits this long
/// for in-flight requests, then drops them.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

pub(crate) struct Stopper {
    tx: oneshot::Sender<()>,
    join: JoinHandle<()>,
}

impl Stopper {
    pub(crate) async fn stop(self) {
        // The server may already be gone (runtime shutting down); nothing to do then.
        let _ = self.tx.send(());
        let abort = self.join.abort_handle();
        if tokio::time::timeout(DRAIN_LIMIT, self.join).await.is_err() {
            abort.abort();
        }
    }
}

/// Binds, mounts the control routes next to `api`, and serves in a task.
pub(crate) async fn spawn(
    bind: SocketAddr,
    api: Router,
    control: Arc<dyn Control>,
    vendor: &'static str,
) -> std::io::Result<SimulatorHandle> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let ctl = Router::new()
        .route("/_sim/ledger", get(ledger))
        .route("/_sim/stats", get(stats))
        .route("/_sim/faults", put(set_faults))
        .with_state(Arc::clone(&control));
    let app = api.merge(ctl);
    let (tx, rx) = oneshot::channel::<()>();
    let join = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(vendor, error = %e, "simulator server stopped with an error");
        }
    });
    tracing::info!(vendor, %addr, "simulator listening");
    Ok(SimulatorHandle { addr, control, stop: Stopper { tx, join } })
}

async fn ledger(State(c): State<Arc<dyn Control>>) -> Json<Vec<ExecutedPayout>> {
    Json(c.ledger())
}

async fn stats(State(c): State<Arc<dyn Control>>) -> Json<SimStats> {
    Json(c.stats())
}

async fn set_faults(State(c): State<Arc<dyn Control>>, Json(plan): Json<FaultPlan>) -> Json<FaultPlan> {
    c.set_faults(plan.clone());
    Json(plan)
}
