//! HTTP servers that behave like real payout vendors, for tests, the demo and
//! the benchmark. An adapter proven against them should need only a base URL
//! and credentials to talk to the vendor's sandbox, so wire shapes follow the
//! vendors' public docs; every guess is marked `UNCONFIRMED` in the vendor
//! module's doc.
//!
//! # Layout
//! - [`stripe`]: Stripe Payouts (`/v1/payouts`) and Connect external
//!   accounts, form bodies, Basic/Bearer auth, `Stripe-Account`.
//! - [`adyen`]: Adyen Transfers BTL v4 (`/btl/v4/transfers`), JSON, `X-API-Key`.
//! - [`lithic`]: Lithic card issuing (`/v1/cards`, provisioning, disputes),
//!   bare `Authorization` key, Standard Webhooks callbacks.
//! - [`CardOracle`]: every card the card-processor simulators issued,
//!   grouped by our card id across processors.
//! - [`MoneyOracle`]: every money movement of the payout simulators wired to
//!   it, grouped by our payout id across vendors.
//! - [`marqeta`]: Marqeta Core API card issuing (cards, transitions, PINs,
//!   wallet provisioning, chargebacks, batched Basic-auth webhooks).
//! - [`comply_advantage`]: ComplyAdvantage searches (AML, synchronous hits).
//! - [`open_sanctions`]: OpenSanctions/yente match API (AML, scores only).
//! - [`sardine`]: Sardine risk scoring and feedback (fraud).
//! - [`seon`]: SEON fraud API scoring and labels (fraud).
//! - [`onfido`]: Onfido v3.6 KYC (applicants, documents, checks, reports).
//! - [`plaid`]: Plaid (open banking): Link tokens, public token exchange,
//!   accounts, balances, `/transactions/sync` pages, item errors.
//! - [`truelayer`]: TrueLayer (open banking) Payments v3: client-credentials
//!   tokens, `Tl-Signature` verified with TrueLayer's own crate, idempotency
//!   keys (422 / 409), payment statuses over time, a per-payment money oracle.
//! - [`sumsub`]: Sumsub KYC (applicants, idDoc uploads, signed requests, reviews).
//! - `checks`: helpers and magic inputs shared by the KYC/AML/fraud simulators.
//! - `engine`: vendor-neutral state: idempotency records (expiring like the
//!   vendors'), ledger, stats, fault rolls. One short mutex section per
//!   phase keeps the hot path cheap.
//! - `faults`: [`FaultPlan`] and its deterministic RNG.
//! - `server`: listener, control routes (`/_sim/*`), graceful shutdown.
//! - `webhook`: optional signed status-change callbacks.
//!
//! Control routes (no auth, never faulted): `GET /_sim/ledger`,
//! `GET /_sim/stats`, `PUT /_sim/faults` (a [`FaultPlan`] JSON body).

pub mod adyen;
mod bank;
pub mod callbacks;
mod card_oracle;
mod checks;
pub mod comply_advantage;
mod engine;
mod faults;
pub mod lithic;
pub mod marqeta;
pub mod onfido;
mod oracle;
pub mod open_sanctions;
pub mod plaid;
mod server;
pub mod sardine;
pub mod seon;
pub mod stripe;
pub mod sumsub;
pub mod truelayer;
pub mod truelayer_webhooks;
mod util;
mod webhook;

pub use card_oracle::{CardOracle, IssuedCard, UNKNOWN_CARD};
pub use faults::FaultPlan;
pub use oracle::{MoneyOracle, UNKNOWN_PAYOUT};
pub use util::iso8601;

use std::sync::Arc;

/// A money movement the simulator actually performed. Tests count these to
/// prove a payout was never executed twice; count them per `payout_id`
/// through a shared [`MoneyOracle`], not per idempotency key, since a key is
/// exactly what a retry after expiry or a failover does not share.
/// (The KYC/AML/fraud simulators reuse the type for their billable checks.)
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ExecutedPayout {
    /// `stripe`, `adyen`, or the check vendor's name.
    pub vendor: String,
    /// Our payout id exactly as the adapter sent it: Stripe
    /// `metadata[switchyard_payout_id]`, Adyen the transfer `reference`.
    /// `None` when the request carried none.
    pub payout_id: Option<String>,
    /// The IBAN (or account number) the vendor actually paid, which may not
    /// be the one our command named (e.g. Stripe's default external account).
    pub beneficiary_iban: Option<String>,
    /// The account holder name on the account actually paid, if known.
    pub beneficiary_name: Option<String>,
    /// The vendor's id for the payout (`po_...` or the Adyen transfer id).
    pub vendor_id: String,
    /// The `Idempotency-Key` header of the executing request; empty if none.
    pub idempotency_key: String,
    /// Amount in minor units, as sent.
    pub amount_minor: i64,
    /// Uppercase ISO 4217, whatever case the vendor's wire uses.
    pub currency: String,
    /// The caller's reference, so tests can join back to their command.
    pub reference: String,
    /// Unix milliseconds of execution.
    pub executed_at_ms: i64,
}

/// Counters for assertions and the benchmark report.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SimStats {
    /// Every API request (control routes excluded).
    pub requests: u64,
    /// Executions, i.e. ledger entries.
    pub executed: u64,
    /// Requests answered from a saved idempotency record.
    pub idempotent_replays: u64,
    /// Same key with other parameters, or while the first was in flight.
    pub idempotency_conflicts: u64,
    /// Missing or wrong credentials.
    pub auth_failures: u64,
    /// 5xx, 429 and hang-after-accept injected by the [`FaultPlan`].
    pub injected_faults: u64,
}

/// Where to POST signed status-change events; optional on every vendor that
/// has callbacks (Stripe, Adyen, Onfido, Sumsub).
#[derive(Clone, Debug)]
pub struct WebhookTarget {
    /// Full URL of the receiver, e.g. `http://127.0.0.1:8080/webhooks/stripe`.
    pub url: String,
    /// Stripe: the `whsec_...` signing secret, used as raw bytes.
    /// Adyen: the HMAC key as hex, decoded before use.
    /// Onfido: the webhook token; Sumsub: the webhook secret (raw bytes).
    pub secret: String,
}

/// A running simulator. Dropping it leaves the server running until the
/// runtime stops; call [`SimulatorHandle::shutdown`] to stop it.
pub struct SimulatorHandle {
    addr: std::net::SocketAddr,
    control: Arc<dyn engine::Control>,
    stop: server::Stopper,
}

impl std::fmt::Debug for SimulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatorHandle").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl SimulatorHandle {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Payouts actually executed by this simulator, in execution order.
    pub fn ledger(&self) -> Vec<ExecutedPayout> {
        self.control.ledger()
    }

    /// The oracle this simulator reports its money movements to (shared
    /// with other simulators if the config passed a clone of one).
    pub fn oracle(&self) -> MoneyOracle {
        self.control.oracle()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.control.stats()
    }

    /// Replaces the fault plan and reseeds its RNG.
    pub fn set_faults(&self, plan: FaultPlan) {
        self.control.set_faults(plan);
    }

    /// Stops accepting connections and waits for in-flight requests to end
    /// (bounded, so a hanging request cannot block a test forever).
    pub async fn shutdown(self) {
        self.stop.stop().await;
    }
}
