//! The reconciler: joins, per payout, outcomes, provider events and ledger
//! postings, and per card transaction or card event, what the card worker
//! published and the card postings; reports drift as typed discrepancies.
//!
//! # Layout
//! - [`rules`]: the matching rules, pure: facts of one subject in, open
//!   findings and the next time to look out.
//! - [`card_rules`]: the same for card postings against card transactions
//!   and card events (fees, provisional credits).
//! - [`track`]: findings to discrepancy records (open once, update, resolve, reopen).
//! - [`engine`]: evaluates due subjects from the store in batches and
//!   publishes what changed.
//! - [`flows`]: end-to-end flow latency histograms from the timestamps on the bus.
//! - [`ingest`]: consumes the topics into the store, offsets committed
//!   only after the batch is stored.
//! - [`commands`]: the payout commands kept for the settler, beneficiary data sealed.
//! - [`settle`]: asks vendors about payouts stuck in `pending_unknown`.
//! - [`metrics`]: `/metrics` and `/health`.
//! - [`run`]: wiring for the continuous service and the one-shot job.

pub mod card_rules;
pub mod commands;
pub mod engine;
pub mod flows;
pub mod ingest;
pub mod metrics;
pub mod rules;
pub mod run;
pub mod settle;
pub mod track;

pub use rules::{judge, judge_inline, Finding, Policy, SettleRequest, Verdict};

/// Errors of the reconciler.
#[derive(Debug, thiserror::Error)]
pub enum ReconError {
    #[error("store: {0}")]
    Store(#[from] switchyard_store::StoreError),
    #[error("bus: {0}")]
    Bus(#[from] switchyard_bus::BusError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("personal data: {0}")]
    Pii(#[from] switchyard_onboarding::pii::PiiError),
}
