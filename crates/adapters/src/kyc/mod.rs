//! KYC adapters. [`KycProvider`] is the closed set of identity-verification
//! vendors; both run a multi-step workflow (applicant, uploads, check) and
//! the adapter polls for the asynchronous result within a budget.
//!
//! Re-running a verification under the same key is safe at both vendors:
//! every step is deduplicated (Onfido by per-step `Idempotency-Key`, Sumsub
//! by `externalUserId`, and uploads are skipped once a review started), so a
//! redelivery after a crash or an exhausted poll budget picks up the same
//! check instead of starting a second one.

pub mod onfido;
pub mod sumsub;

pub use crate::poll::Polling;
use crate::{AdapterError, CallContext};
use switchyard_canonical::kyc::{KycCommand, KycReason, KycStatus};

/// The vendor's answer, already in canonical terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KycVerdict {
    /// One of approved, declined, resubmit, step-up, manual review.
    pub status: KycStatus,
    pub reasons: Vec<KycReason>,
    /// What the vendor says may be shown to the applicant.
    pub applicant_message: Option<String>,
    /// The vendor's id for the check.
    pub vendor_reference: String,
}

/// An error after the vendor already created something for this
/// verification (applicant, check): retrying at the same vendor under the
/// same key is safe, moving to another vendor would start a second
/// verification, so it counts as ambiguous for failover.
pub(crate) fn later_step(mut e: AdapterError) -> AdapterError {
    e.ambiguous = true;
    e
}

/// The most severe answer wins when reports disagree.
pub(crate) fn severity(s: KycStatus) -> u8 {
    match s {
        KycStatus::Approved => 0,
        KycStatus::Resubmit => 1,
        KycStatus::StepUpRequired => 2,
        KycStatus::ManualReview => 3,
        KycStatus::Declined => 4,
        KycStatus::Rejected | KycStatus::Failed => 5,
    }
}

#[derive(Debug, Clone)]
pub enum KycProvider {
    Onfido(onfido::OnfidoAdapter),
    Sumsub(sumsub::SumsubAdapter),
}

impl KycProvider {
    pub fn name(&self) -> &str {
        match self {
            KycProvider::Onfido(a) => a.name(),
            KycProvider::Sumsub(a) => a.name(),
        }
    }

    /// Our key in the vendor's form: both take it unchanged (Onfido adds a
    /// per-step suffix inside the adapter).
    pub fn provider_key(&self, idempotency_key: &str) -> String {
        match self {
            KycProvider::Onfido(_) | KycProvider::Sumsub(_) => idempotency_key.to_owned(),
        }
    }

    /// Runs (or resumes) the verification and waits for its result.
    pub async fn verify(&self, cmd: &KycCommand, provider_key: &str, ctx: &CallContext) -> Result<KycVerdict, AdapterError> {
        match self {
            KycProvider::Onfido(a) => a.verify(cmd, provider_key, ctx).await,
            KycProvider::Sumsub(a) => a.verify(cmd, provider_key, ctx).await,
        }
    }
}
