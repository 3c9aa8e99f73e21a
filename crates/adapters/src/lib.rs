//! Vendor adapters: the only place vendor wire types exist.
//!
//! Each vendor lives in its own module with its request/response types
//! private to it; what leaves is canonical ([`switchyard_canonical`]) plus
//! [`AdapterError`], already mapped to the error taxonomy.
//!
//! # Layout
//! - [`http`]: the shared outbound HTTP plumbing: tracing headers, timeouts,
//!   and the rule that tells a definite refusal from an ambiguous result.
//! - [`payouts`]: the payout domain: [`payouts::PayoutProvider`] dispatches
//!   to [`payouts::stripe`] and [`payouts::adyen`].
//! - [`aml`]: sanctions/PEP screening: [`aml::AmlProvider`] over
//!   [`aml::comply_advantage`] and [`aml::open_sanctions`].
//! - [`cards`]: card processors: [`cards::CardProcessor`] over
//!   [`cards::lithic`] and [`cards::marqeta`] (no card worker yet).
//! - [`certs`]: the certificate inventory (subject, issuer, expiry of configured PEMs).
//! - [`encode`]: percent-encoding of our ids in vendor URL paths.
//! - [`envelope`]: per-subject data keys wrapped by a key from config, for personal data at rest.
//! - [`environment`]: which environment a vendor key or endpoint belongs to.
//! - [`fraud`]: fraud scoring and feedback: [`fraud::FraudProvider`] over
//!   [`fraud::sardine`] and [`fraud::seon`].
//! - [`kyc`]: identity verification: [`kyc::KycProvider`] over
//!   [`kyc::onfido`] and [`kyc::sumsub`].
//! - [`poll`]: polling for asynchronous vendor results within a budget.
//! - [`openbanking`]: aggregators: [`openbanking::OpenBankingProvider`] over
//!   [`openbanking::plaid`].
//! - [`multipart`]: a hand-built `multipart/form-data` body for uploads.
//! - [`secret`]: credentials that cannot be printed.
//! - [`signing_key`]: a request-signing key and its key id, rotated together.
//! - [`tls`]: mutual TLS to a partner: client identity, pinned CA, TLS floor.
//! - [`tls_rotation`]: client certificates re-read from files and swapped in without a restart.
//! - [`webhooks`]: callback signature schemes; each vendor's callback body is
//!   mapped in its own module (`payouts::stripe::webhook`, `cards::lithic::webhook`, ...).

pub mod aml;
pub mod cards;
pub mod certs;
pub mod encode;
pub mod envelope;
pub mod environment;
pub mod fraud;
pub mod http;
pub mod kyc;
pub mod multipart;
pub mod openbanking;
pub mod payouts;
pub mod poll;
pub mod secret;
pub mod signing_key;
pub mod tls;
pub mod tls_rotation;
pub mod webhooks;

pub use http::{AdapterError, CallContext};
pub use secret::Secret;
