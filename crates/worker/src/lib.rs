//! The worker: the processing contract of DESIGN.md applied to a domain, on
//! top of the shared bus runtime.
//!
//! # Layout
//! - [`config`]: the worker's YAML config, validated with errors naming the field.
//! - [`answer`]: publishing an outcome and the failover rule, shared by every handler.
//! - [`payout`]: the payout handler: decode, claim, call, map, store, publish.
//! - [`policy`]: routing policy changes without a restart, audited.
//! - [`retry`]: the in-place retry policy (jittered backoff honouring `Retry-After`).
//! - [`metrics`]: Prometheus metrics and the `/metrics` + `/health` server.
//! - [`shadow`]: calls a sandbox candidate alongside live traffic and counts agreement.
//! - [`check`]: the generic handler of the check domains (KYC, AML, fraud).
//! - [`card`]: the card handler (Lithic, Marqeta), its config and wiring.
//! - [`check_config`], [`check_run`]: their config and wiring.
//! - [`kyc`]: the KYC domain (Onfido, Sumsub).
//! - [`aml`]: the AML screening domain (ComplyAdvantage, OpenSanctions).
//! - [`fraud`]: the fraud scoring and feedback domain (Sardine, SEON).
//! - [`openbanking`]: the open banking handler (Plaid): consents, refresh pages, its config and wiring.
//! - [`run`]: wiring: builds everything from a config and runs until shutdown.

pub mod aml;
pub mod answer;
pub mod card;
pub mod check;
pub mod check_config;
pub mod check_run;
pub mod config;
pub mod fraud;
pub mod kyc;
pub mod attempt;
pub mod metrics;
pub mod openbanking;
pub mod payout;
pub mod policy;
/// Message positions recorded for `switchyard trace`.
pub mod positions;
/// Token buckets from the partner catalog's rate limits (shared with the webhook ingester).
pub use switchyard_routing::ratelimit;
pub mod retry;
pub mod rounds;
pub mod run;
pub mod secrets;
pub mod shadow;

pub use config::{PayoutWorkerConfig, ProviderConfig, ProviderKind, SecretSource};
pub use run::{start_payout_worker, RunningWorker};

/// Errors that stop a worker from starting.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Bus(#[from] switchyard_bus::BusError),
    #[error(transparent)]
    Store(#[from] switchyard_store::StoreError),
    #[error("adapter: {0}")]
    Adapter(#[from] switchyard_adapters::AdapterError),
    #[error("admin server: {0}")]
    Io(#[from] std::io::Error),
}

impl From<switchyard_adapters::tls::TlsError> for WorkerError {
    fn from(e: switchyard_adapters::tls::TlsError) -> Self {
        WorkerError::Config(e.0)
    }
}

impl From<switchyard_adapters::secret::SecretError> for WorkerError {
    fn from(e: switchyard_adapters::secret::SecretError) -> Self {
        WorkerError::Config(e.0)
    }
}
