//! Payout adapters. [`PayoutProvider`] is the closed set of payout vendors;
//! adding one is a new variant and every `match` on it breaks until handled.

pub mod adyen;
pub mod stripe;
pub mod truelayer;
pub mod wise;

use crate::{AdapterError, CallContext};
use switchyard_canonical::{OutcomeError, PayoutCommand, PayoutStatus};

/// A vendor's answer, already in canonical terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorPayout {
    /// Submitted, Paid or Failed.
    pub status: PayoutStatus,
    /// The vendor's id for the payout.
    pub vendor_reference: String,
    /// Set when the vendor executed and then failed the payout.
    pub error: Option<OutcomeError>,
}

#[derive(Debug, Clone)]
pub enum PayoutProvider {
    Stripe(stripe::StripeAdapter),
    Adyen(adyen::AdyenAdapter),
    TrueLayer(truelayer::TrueLayerPayoutAdapter),
}

impl PayoutProvider {
    /// The catalog name: recorded in the store and published in outcomes.
    pub fn name(&self) -> &str {
        match self {
            PayoutProvider::Stripe(a) => a.name(),
            PayoutProvider::Adyen(a) => a.name(),
            PayoutProvider::TrueLayer(a) => a.name(),
        }
    }

    /// Our idempotency key in the vendor's form. Both vendors take an opaque
    /// header of at most 64 (Adyen) / 255 (Stripe) characters and our keys are
    /// at most 64, so the key passes through unchanged.
    pub fn provider_key(&self, idempotency_key: &str) -> String {
        match self {
            // TrueLayer: any string; UNCONFIRMED limit, UUIDs in its examples.
            PayoutProvider::Stripe(_) | PayoutProvider::Adyen(_) | PayoutProvider::TrueLayer(_) => idempotency_key.to_owned(),
        }
    }

    /// Asks the vendor to execute the payout under `provider_key`.
    pub async fn create(&self, cmd: &PayoutCommand, provider_key: &str, ctx: &CallContext) -> Result<VendorPayout, AdapterError> {
        match self {
            PayoutProvider::Stripe(a) => a.create(cmd, provider_key, ctx).await,
            PayoutProvider::Adyen(a) => a.create(cmd, provider_key, ctx).await,
            PayoutProvider::TrueLayer(a) => a.create(cmd, provider_key, ctx).await,
        }
    }

    /// Finds the payout the vendor made for `cmd` since `since_ms` by the
    /// reference we sent, without sending anything that could execute: the
    /// only safe question once the vendor may have forgotten our key.
    pub async fn find(&self, cmd: &PayoutCommand, since_ms: i64, ctx: &CallContext) -> Result<Option<VendorPayout>, AdapterError> {
        match self {
            PayoutProvider::Stripe(a) => a.find(cmd, since_ms, ctx).await,
            PayoutProvider::Adyen(a) => a.find(cmd, since_ms, ctx).await,
            PayoutProvider::TrueLayer(a) => a.find(cmd, since_ms, ctx).await,
        }
    }

    /// Resolves an ambiguous result: what did the vendor do with `provider_key`?
    /// Never executes a second payout *while the vendor remembers the key*
    /// (see each vendor's module); past its retention use [`Self::find`].
    pub async fn status(&self, cmd: &PayoutCommand, provider_key: &str, ctx: &CallContext) -> Result<VendorPayout, AdapterError> {
        match self {
            PayoutProvider::Stripe(a) => a.status(cmd, provider_key, ctx).await,
            PayoutProvider::Adyen(a) => a.status(cmd, provider_key, ctx).await,
            PayoutProvider::TrueLayer(a) => a.status(cmd, provider_key, ctx).await,
        }
    }
}
