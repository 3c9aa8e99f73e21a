//! The KYC domain on the check handler: Onfido and Sumsub verifications
//! mapped to [`KycOutcome`].

use crate::check::CheckDomain;
use crate::check_config::{CheckProviderConfig, CheckVendorKind};
use crate::secrets::OutboundKeys;
use crate::WorkerError;
use switchyard_adapters::secret::ApiKey;
use switchyard_adapters::kyc::onfido::OnfidoAdapter;
use switchyard_adapters::kyc::sumsub::SumsubAdapter;
use switchyard_adapters::kyc::{KycProvider, KycVerdict};
use switchyard_adapters::{AdapterError, CallContext};
use switchyard_canonical::kyc::{KycCommand, KycOutcome, KycStatus};
use switchyard_canonical::{Fingerprint, OutcomeError};

pub const KYC_COMMAND_SCHEMA: &str = include_str!("../../../schemas/kyc/KycCommand.v1.avsc");
pub const KYC_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/kyc/KycOutcome.v1.avsc");

/// Marker type selecting the KYC domain.
pub struct Kyc;

impl CheckDomain for Kyc {
    const NAME: &'static str = "kyc";
    const COMMAND_SCHEMA: &'static str = KYC_COMMAND_SCHEMA;
    const OUTCOME_SCHEMA: &'static str = KYC_OUTCOME_SCHEMA;
    const VENDORS: &'static [CheckVendorKind] = &[CheckVendorKind::Onfido, CheckVendorKind::Sumsub];
    type Command = KycCommand;
    type Outcome = KycOutcome;
    type Provider = KycProvider;
    type Verdict = KycVerdict;

    fn build_provider(p: &CheckProviderConfig, key: ApiKey, keys: &mut OutboundKeys) -> Result<KycProvider, WorkerError> {
        Ok(match p.kind {
            CheckVendorKind::Onfido => KycProvider::Onfido(OnfidoAdapter::new(&p.name, &p.base_url, key, p.transport()?, p.polling())?),
            CheckVendorKind::Sumsub => {
                let (Some(secret), Some(level)) = (&p.api_secret, &p.level_name) else {
                    return Err(WorkerError::Config(format!("providers[{}]: sumsub needs api_secret and level_name", p.name)));
                };
                let secret = keys.companion(&p.name, &format!("providers[{}].api_secret", p.name), secret)?;
                KycProvider::Sumsub(SumsubAdapter::new(&p.name, &p.base_url, key, secret, level, p.transport()?, p.polling())?)
            }
            other => return Err(WorkerError::Config(format!("providers[{}].kind: {other:?} is not a kyc vendor", p.name))),
        })
    }

    fn provider_name(p: &KycProvider) -> &str {
        p.name()
    }

    fn provider_key(p: &KycProvider, idempotency_key: &str) -> String {
        p.provider_key(idempotency_key)
    }

    fn subject(cmd: &KycCommand) -> &str {
        &cmd.subject_id
    }

    fn idempotency_key(cmd: &KycCommand) -> &str {
        &cmd.idempotency_key
    }

    fn requested_at_ms(cmd: &KycCommand) -> i64 {
        cmd.requested_at_ms
    }

    fn validate(cmd: &KycCommand) -> Result<(), String> {
        cmd.validate()
    }

    fn fingerprint(cmd: &KycCommand) -> Fingerprint {
        cmd.fingerprint()
    }

    async fn call(p: &KycProvider, cmd: &KycCommand, provider_key: &str, ctx: &CallContext) -> Result<KycVerdict, AdapterError> {
        p.verify(cmd, provider_key, ctx).await
    }

    fn outcome(cmd: &KycCommand, provider: &str, v: KycVerdict, attempts: i32) -> KycOutcome {
        let mut o = KycOutcome::new(cmd, v.status);
        o.reasons = v.reasons;
        o.applicant_message = v.applicant_message;
        o.provider = Some(provider.to_owned());
        o.provider_reference = Some(v.vendor_reference);
        o.attempts = attempts;
        o
    }

    fn error_outcome(cmd: &KycCommand, provider: Option<&str>, error: OutcomeError, attempts: i32) -> KycOutcome {
        let status = if provider.is_some() { KycStatus::Failed } else { KycStatus::Rejected };
        let mut o = KycOutcome::new(cmd, status);
        o.provider = provider.map(str::to_owned);
        o.error = Some(error);
        o.attempts = attempts;
        o
    }

    fn mark_replayed(o: &mut KycOutcome) {
        o.replayed = true;
    }

    fn status(o: &KycOutcome) -> &'static str {
        o.status.as_str()
    }
}
