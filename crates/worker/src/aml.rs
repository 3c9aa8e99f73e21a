//! The AML screening domain on the check handler: ComplyAdvantage and
//! OpenSanctions mapped to [`AmlOutcome`]. A confirmed match carries the
//! `compliance_hold` error class, which holds the subject: no retry, no
//! failure, nothing moves until compliance releases it.

use crate::check::CheckDomain;
use crate::check_config::{CheckProviderConfig, CheckVendorKind};
use crate::secrets::OutboundKeys;
use crate::WorkerError;
use switchyard_adapters::secret::ApiKey;
use switchyard_adapters::aml::comply_advantage::ComplyAdvantageAdapter;
use switchyard_adapters::aml::open_sanctions::OpenSanctionsAdapter;
use switchyard_adapters::aml::{AmlProvider, AmlVerdict};
use switchyard_adapters::{AdapterError, CallContext};
use switchyard_canonical::aml::{AmlCommand, AmlOutcome, AmlStatus};
use switchyard_canonical::{ErrorClass, ErrorCode, Fingerprint, OutcomeError};

pub const AML_COMMAND_SCHEMA: &str = include_str!("../../../schemas/aml/AmlCommand.v1.avsc");
pub const AML_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/aml/AmlOutcome.v1.avsc");

/// Marker type selecting the AML domain.
pub struct Aml;

impl CheckDomain for Aml {
    const NAME: &'static str = "aml";
    const COMMAND_SCHEMA: &'static str = AML_COMMAND_SCHEMA;
    const OUTCOME_SCHEMA: &'static str = AML_OUTCOME_SCHEMA;
    const VENDORS: &'static [CheckVendorKind] = &[CheckVendorKind::ComplyAdvantage, CheckVendorKind::OpenSanctions];
    type Command = AmlCommand;
    type Outcome = AmlOutcome;
    type Provider = AmlProvider;
    type Verdict = AmlVerdict;

    fn build_provider(p: &CheckProviderConfig, key: ApiKey, _keys: &mut OutboundKeys) -> Result<AmlProvider, WorkerError> {
        Ok(match p.kind {
            CheckVendorKind::ComplyAdvantage => {
                AmlProvider::ComplyAdvantage(ComplyAdvantageAdapter::new(&p.name, &p.base_url, key, p.transport()?)?)
            }
            CheckVendorKind::OpenSanctions => {
                let dataset = p.dataset.as_deref().unwrap_or("default");
                AmlProvider::OpenSanctions(OpenSanctionsAdapter::new(&p.name, &p.base_url, key, dataset, p.transport()?)?)
            }
            other => return Err(WorkerError::Config(format!("providers[{}].kind: {other:?} is not an aml vendor", p.name))),
        })
    }

    fn provider_name(p: &AmlProvider) -> &str {
        p.name()
    }

    fn provider_key(p: &AmlProvider, idempotency_key: &str) -> String {
        p.provider_key(idempotency_key)
    }

    fn subject(cmd: &AmlCommand) -> &str {
        &cmd.subject_id
    }

    fn idempotency_key(cmd: &AmlCommand) -> &str {
        &cmd.idempotency_key
    }

    fn requested_at_ms(cmd: &AmlCommand) -> i64 {
        cmd.requested_at_ms
    }

    fn validate(cmd: &AmlCommand) -> Result<(), String> {
        cmd.validate()
    }

    fn fingerprint(cmd: &AmlCommand) -> Fingerprint {
        cmd.fingerprint()
    }

    async fn call(p: &AmlProvider, cmd: &AmlCommand, provider_key: &str, ctx: &CallContext) -> Result<AmlVerdict, AdapterError> {
        p.screen(cmd, provider_key, ctx).await
    }

    fn outcome(cmd: &AmlCommand, provider: &str, v: AmlVerdict, attempts: i32) -> AmlOutcome {
        let mut o = AmlOutcome::new(cmd, v.status);
        if v.status == AmlStatus::ConfirmedMatch {
            let lists: Vec<&str> = v.matches.iter().map(|m| m.source.as_str()).collect();
            o.error = Some(OutcomeError {
                class: ErrorClass::ComplianceHold,
                code: ErrorCode::SanctionsMatch,
                message: format!("confirmed match on {}; held for compliance", lists.join(", ")),
            });
        }
        o.matches = v.matches;
        o.provider = Some(provider.to_owned());
        o.provider_reference = Some(v.vendor_reference).filter(|r| !r.is_empty());
        o.attempts = attempts;
        o
    }

    fn error_outcome(cmd: &AmlCommand, provider: Option<&str>, error: OutcomeError, attempts: i32) -> AmlOutcome {
        let status = if provider.is_some() { AmlStatus::Failed } else { AmlStatus::Rejected };
        let mut o = AmlOutcome::new(cmd, status);
        o.provider = provider.map(str::to_owned);
        o.error = Some(error);
        o.attempts = attempts;
        o
    }

    fn mark_replayed(o: &mut AmlOutcome) {
        o.replayed = true;
    }

    fn status(o: &AmlOutcome) -> &'static str {
        o.status.as_str()
    }
}
