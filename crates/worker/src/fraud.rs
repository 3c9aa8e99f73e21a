//! The fraud domain on the check handler: Sardine and SEON scores and
//! feedback mapped to [`FraudOutcome`].

use crate::check::CheckDomain;
use crate::check_config::{CheckProviderConfig, CheckVendorKind};
use crate::secrets::OutboundKeys;
use crate::WorkerError;
use switchyard_adapters::secret::ApiKey;
use switchyard_adapters::fraud::sardine::SardineAdapter;
use switchyard_adapters::fraud::seon::SeonAdapter;
use switchyard_adapters::fraud::{FraudProvider, FraudVerdict};
use switchyard_adapters::{AdapterError, CallContext};
use switchyard_canonical::fraud::{FraudCommand, FraudOutcome, FraudStatus};
use switchyard_canonical::{Fingerprint, OutcomeError};

pub const FRAUD_COMMAND_SCHEMA: &str = include_str!("../../../schemas/fraud/FraudCommand.v1.avsc");
pub const FRAUD_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/fraud/FraudOutcome.v1.avsc");

/// Marker type selecting the fraud domain.
pub struct Fraud;

impl CheckDomain for Fraud {
    const NAME: &'static str = "fraud";
    const COMMAND_SCHEMA: &'static str = FRAUD_COMMAND_SCHEMA;
    const OUTCOME_SCHEMA: &'static str = FRAUD_OUTCOME_SCHEMA;
    const VENDORS: &'static [CheckVendorKind] = &[CheckVendorKind::Sardine, CheckVendorKind::Seon];
    type Command = FraudCommand;
    type Outcome = FraudOutcome;
    type Provider = FraudProvider;
    type Verdict = FraudVerdict;

    fn build_provider(p: &CheckProviderConfig, key: ApiKey, keys: &mut OutboundKeys) -> Result<FraudProvider, WorkerError> {
        Ok(match p.kind {
            CheckVendorKind::Sardine => {
                let Some(secret) = &p.api_secret else {
                    return Err(WorkerError::Config(format!("providers[{}].api_secret: sardine needs its client secret", p.name)));
                };
                let secret = keys.companion(&p.name, &format!("providers[{}].api_secret", p.name), secret)?;
                FraudProvider::Sardine(SardineAdapter::new(&p.name, &p.base_url, key, secret, p.transport()?)?)
            }
            CheckVendorKind::Seon => FraudProvider::Seon(SeonAdapter::new(&p.name, &p.base_url, key, p.transport()?)?),
            other => return Err(WorkerError::Config(format!("providers[{}].kind: {other:?} is not a fraud vendor", p.name))),
        })
    }

    fn provider_name(p: &FraudProvider) -> &str {
        p.name()
    }

    fn provider_key(p: &FraudProvider, idempotency_key: &str) -> String {
        p.provider_key(idempotency_key)
    }

    fn subject(cmd: &FraudCommand) -> &str {
        &cmd.subject_id
    }

    fn idempotency_key(cmd: &FraudCommand) -> &str {
        &cmd.idempotency_key
    }

    fn requested_at_ms(cmd: &FraudCommand) -> i64 {
        cmd.requested_at_ms
    }

    fn validate(cmd: &FraudCommand) -> Result<(), String> {
        cmd.validate()
    }

    fn fingerprint(cmd: &FraudCommand) -> Fingerprint {
        cmd.fingerprint()
    }

    async fn call(p: &FraudProvider, cmd: &FraudCommand, provider_key: &str, ctx: &CallContext) -> Result<FraudVerdict, AdapterError> {
        p.call(cmd, provider_key, ctx).await
    }

    fn outcome(cmd: &FraudCommand, provider: &str, v: FraudVerdict, attempts: i32) -> FraudOutcome {
        let mut o = FraudOutcome::new(cmd, v.status, v.decision);
        o.score = v.score;
        o.reasons = v.reasons;
        o.provider = Some(provider.to_owned());
        o.provider_reference = Some(v.vendor_reference).filter(|r| !r.is_empty());
        o.attempts = attempts;
        o
    }

    fn error_outcome(cmd: &FraudCommand, provider: Option<&str>, error: OutcomeError, attempts: i32) -> FraudOutcome {
        let status = if provider.is_some() { FraudStatus::Failed } else { FraudStatus::Rejected };
        let mut o = FraudOutcome::new(cmd, status, None);
        o.provider = provider.map(str::to_owned);
        o.error = Some(error);
        o.attempts = attempts;
        o
    }

    fn mark_replayed(o: &mut FraudOutcome) {
        o.replayed = true;
    }

    fn status(o: &FraudOutcome) -> &'static str {
        match o.decision {
            Some(switchyard_canonical::fraud::FraudDecision::Allow) => "allow",
            Some(switchyard_canonical::fraud::FraudDecision::Review) => "review",
            Some(switchyard_canonical::fraud::FraudDecision::Block) => "block",
            None => o.status.as_str(),
        }
    }
}
