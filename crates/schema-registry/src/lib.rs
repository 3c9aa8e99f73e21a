//! Development stand-in for the Confluent Schema Registry.
//!
//! No Confluent-compatible registry can be installed on developer and CI
//! machines, so the local stack and tests run this instead. It serves the
//! subset of the Confluent REST API that serializers actually use (register,
//! fetch by id, subject/version reads, lookup, compatibility checks, config)
//! with Confluent's status codes, error codes and media type. Only Avro is
//! supported. docker-compose uses the real registry; keep behaviour aligned.

mod api;
mod error;
mod level;
mod persist;
mod store;

/// Re-exported so callers of [`Level::check`] (`switchyard schemas check`)
/// parse schemas with the very apache-avro the registry checks with.
pub use apache_avro::Schema;
pub use level::{Level, Rule, Violation};
pub use store::canonical;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Port 0 picks an ephemeral port; see [`RegistryHandle::base_url`].
    pub bind: SocketAddr,
    /// When set, schemas and config are appended here as JSON lines and
    /// replayed on start, so ids survive a restart.
    pub data_file: Option<PathBuf>,
}

impl RegistryConfig {
    /// Loopback, ephemeral port, in-memory only: what tests want.
    pub fn local() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            data_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot bind schema registry to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("schema registry data file {path}: {source}")]
    DataFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("schema registry data file {path} line {line} is invalid: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("schema registry server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// A running registry. Dropping it without calling [`shutdown`](Self::shutdown)
/// also stops the server (in the background), so a failed test cannot leak it.
#[derive(Debug)]
pub struct RegistryHandle {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), RegistryError>>,
}

impl RegistryHandle {
    /// e.g. `http://127.0.0.1:40123`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and waits for in-flight requests to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "schema registry stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "schema registry task failed"),
        }
    }
}

/// Binds, loads `data_file` if any, and serves in a background task.
pub async fn serve(cfg: RegistryConfig) -> Result<RegistryHandle, RegistryError> {
    let (listener, app) = prepare(&cfg).await?;
    let addr = listener.local_addr().map_err(RegistryError::Serve)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, app, async move {
        // Fires on an explicit shutdown and when the handle is dropped.
        let _ = stopped.await;
    }));
    Ok(RegistryHandle { addr, stop, task })
}

/// Serves until `shutdown` resolves; for the CLI subcommand.
pub async fn run_until(
    cfg: RegistryConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RegistryError> {
    let (listener, app) = prepare(&cfg).await?;
    run(listener, app, shutdown).await
}

async fn prepare(cfg: &RegistryConfig) -> Result<(TcpListener, axum::Router), RegistryError> {
    let data_file = cfg.data_file.clone();
    // Replaying the journal parses every schema: keep it off the async workers.
    let store = tokio::task::spawn_blocking(move || store::Store::open(data_file.as_deref()))
        .await
        .map_err(|e| RegistryError::Serve(std::io::Error::other(e)))??;
    let listener = TcpListener::bind(cfg.bind)
        .await
        .map_err(|source| RegistryError::Bind {
            addr: cfg.bind,
            source,
        })?;
    Ok((listener, api::router(Arc::new(store))))
}

async fn run(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RegistryError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "schema registry listening");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(RegistryError::Serve)
}
