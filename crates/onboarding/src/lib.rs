//! The onboarding orchestrator: runs the KYC -> AML -> fraud chain for each
//! applicant as an explicit state machine driven by the domain workers'
//! outcome events, with its state in the store.
//!
//! # Layout
//! - [`machine`]: the pure state machine — states, transitions, timeouts,
//!   compensation — and the step idempotency keys.
//! - [`handler`]: applies one inbound message (command or outcome) to its
//!   flow: dedup, compare-and-set in the store, publish through an outbox.
//! - [`outbox`]: publishes what a transition wrote to the store's outbox.
//! - [`metrics`]: Prometheus counters and the `/metrics` + `/health` server.
//! - [`pii`]: the applicant's personal data sealed at rest under their own data key.
//! - [`sweep`]: the periodic pass over flows past their deadline and over
//!   unsent outbox messages.
//! - [`config`]: the orchestrator's YAML config.
//! - [`run`]: wiring: one consumer runtime per input topic, the sweep, metrics.

pub mod config;
pub mod handler;
pub mod machine;
pub mod metrics;
pub mod outbox;
pub mod pii;
pub mod run;
pub mod sweep;

pub use config::OrchestratorConfig;
pub use run::{start_orchestrator, RunningOrchestrator};

/// Errors that stop the orchestrator from starting.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Bus(#[from] switchyard_bus::BusError),
    #[error(transparent)]
    Store(#[from] switchyard_store::StoreError),
    #[error("admin server: {0}")]
    Io(#[from] std::io::Error),
}
