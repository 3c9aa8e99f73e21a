//! What every switchyard binary does around its library: logging set-up and
//! waiting for the signal to stop. Kept here so the services' `main.rs`
//! files stay a few lines of wiring.

/// Human-readable logs, or JSON lines for log shippers; level from
/// `RUST_LOG` (default `info`).
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if json {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
}

/// Resolves on SIGINT or SIGTERM (orchestrators stop containers with
/// SIGTERM): the caller then drains in-flight work before exiting.
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            // Without a SIGTERM handler Ctrl-C still works.
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The life of a consumer binary once its worker started: says where the
/// admin endpoints listen, waits for [`stop_signal`], then cancels
/// `shutdown` so the in-flight `work` drains. The caller then awaits its
/// consumer task.
pub async fn serve_until_stopped(admin: Option<std::net::SocketAddr>, shutdown: &tokio_util::sync::CancellationToken, work: &str) {
    if let Some(addr) = admin {
        tracing::info!(%addr, "metrics on /metrics, health on /health");
    }
    stop_signal().await;
    tracing::info!("stopping: draining in-flight {work}");
    shutdown.cancel();
}
