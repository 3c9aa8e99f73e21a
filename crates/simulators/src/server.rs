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
    let join = tokio::spawn(serve(listener, app, rx, vendor));
    tracing::info!(vendor, %addr, "simulator listening");
    Ok(SimulatorHandle { addr, control, stop: Stopper { tx, join } })
}

/// Streams one HTTP/2 connection may carry at once. Above the worker's
/// per-vendor concurrency, so the simulator is never what queues calls
/// (hyper's default of 200 would cap a 100 ms vendor at 2,000 calls/s).
const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge, as adapters configured with
/// `http2_prior_knowledge` speak it) until `stop` fires, then lets in-flight
/// requests finish.
async fn serve(listener: tokio::net::TcpListener, app: Router, mut stop: oneshot::Receiver<()>, vendor: &'static str) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause, do not spin.
                    tracing::warn!(vendor, error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(vendor, error = %e, "simulator connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
