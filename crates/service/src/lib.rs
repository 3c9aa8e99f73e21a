//! What every switchyard binary does around its library: logging set-up,
//! liveness and readiness, waiting for the signal to stop, and how it exits.
//! Kept here so the services' `main.rs` files stay a few lines of wiring.
//!
//! Exit codes: 0 after a requested stop, 1 when the service died while
//! running (a loop ended, a fatal producer error: the supervisor restarts
//! it), 2 when it could not start (configuration, unreachable dependency).

pub mod certificates;
pub mod checks;
pub mod health;
pub mod logging;
pub mod positions;
pub mod telemetry;

pub use health::Health;
pub use logging::{init_logging, init_logging_at, init_logging_with, init_telemetry, LogArgs, LogFormat};
pub use telemetry::{Telemetry, TelemetryError};

use std::fmt::Display;
use std::io::Write as _;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a service that died may drain before it exits anyway: its
/// broken part (a fenced producer) may never let in-flight work finish.
const DRAIN_AFTER_DEATH: Duration = Duration::from_secs(15);

/// How a running service ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// SIGINT/SIGTERM; drained.
    Stopped,
    /// A loop or the producer failed; the reason.
    Died(String),
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

/// The life of a service once it started: says where the admin endpoints
/// listen, waits for [`stop_signal`] or for `health` to report it dead, then
/// cancels `shutdown` so the in-flight `work` drains. The caller then
/// passes its task to [`drain`].
pub async fn serve_until_stopped(
    admin: Option<std::net::SocketAddr>,
    shutdown: &tokio_util::sync::CancellationToken,
    work: &str,
    health: &Health,
) -> Ended {
    if let Some(addr) = admin {
        tracing::info!(%addr, "metrics on /metrics, liveness on /livez, readiness on /readyz");
    }
    let ended = tokio::select! {
        _ = stop_signal() => Ended::Stopped,
        reason = health.failed() => Ended::Died(reason),
    };
    match &ended {
        Ended::Stopped => tracing::info!("stopping: draining in-flight {work}"),
        Ended::Died(_) => tracing::error!("stopping after a failure: draining in-flight {work}"),
    }
    shutdown.cancel();
    ended
}

/// Waits for the service's main task after `ended`; bounded when it died.
/// A task that fails while draining turns a stop into a death.
pub async fn drain<E: Display>(ended: Ended, task: JoinHandle<Result<(), E>>, what: &str) -> Ended {
    let joined = match &ended {
        Ended::Stopped => Ok(task.await),
        Ended::Died(_) => tokio::time::timeout(DRAIN_AFTER_DEATH, task).await,
    };
    match (ended, joined) {
        (Ended::Died(reason), Err(_)) => {
            tracing::warn!(after = ?DRAIN_AFTER_DEATH, "{what} did not drain; exiting anyway");
            Ended::Died(reason)
        }
        (Ended::Died(reason), Ok(_)) => Ended::Died(reason),
        (Ended::Stopped, Ok(Ok(Ok(())))) => Ended::Stopped,
        (Ended::Stopped, Ok(Ok(Err(e)))) => Ended::Died(format!("{what}: {e}")),
        (Ended::Stopped, Ok(Err(e))) => Ended::Died(format!("{what} task: {e}")),
        (Ended::Stopped, Err(_)) => Ended::Stopped,
    }
}

/// The end of every binary's `main`: one line on stderr and a code, never
/// a backtrace (`RUST_BACKTRACE=1` made a config error 68 lines long).
pub fn exit<E>(result: Result<Ended, E>) -> std::process::ExitCode
where
    E: AsRef<dyn std::error::Error + Send + Sync>,
{
    let (message, code) = match result {
        Ok(Ended::Stopped) => return std::process::ExitCode::SUCCESS,
        Ok(Ended::Died(reason)) => (reason, 1),
        Err(e) => (causes(e.as_ref()), 2),
    };
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {}", one_line(&message));
    let _ = stderr.flush();
    // Not a return from main: background threads (librdkafka's, blocking
    // tasks) must not hold the exit up while the supervisor waits.
    std::process::exit(code)
}

/// The error and its causes on one line, like anyhow's `{e:#}`, without
/// repeating a cause its parent's message already quotes (`#[error("database: {0}")]`
/// wrapping a source printed it three times).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// Error text from a vendor or a driver may span lines; the error line must not.
fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let _ = std::fmt::Write::write_str(&mut logging::Escaping(&mut out), message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dead_service_ends_as_died_and_a_failed_drain_is_a_death() {
        let health = Health::new();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(health.track("consumer", shutdown.clone(), async { Err::<(), _>("broker said no") }));
        let ended = tokio::time::timeout(Duration::from_secs(2), serve_until_stopped(None, &shutdown, "work", &health)).await;
        assert_eq!(ended, Ok(Ended::Died("consumer stopped: broker said no".into())));
        assert!(shutdown.is_cancelled(), "the rest of the service drains");
        assert_eq!(drain(Ended::Died("x".into()), task, "consumer").await, Ended::Died("x".into()));
        let failing = tokio::spawn(async { Err::<(), _>("commit failed") });
        assert_eq!(drain(Ended::Stopped, failing, "consumer").await, Ended::Died("consumer: commit failed".into()));
    }

    #[derive(Debug)]
    struct Wrapping(std::io::Error);
    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "database: {}", self.0)
        }
    }
    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_are_listed_once() {
        let e = Wrapping(std::io::Error::other("PostgreSQL at db:5432: Connection refused"));
        assert_eq!(causes(&e), "database: PostgreSQL at db:5432: Connection refused");
    }

    #[test]
    fn the_error_line_is_one_line() {
        assert_eq!(one_line("config: line 3\ncolumn 2"), "config: line 3\\ncolumn 2");
    }
}
