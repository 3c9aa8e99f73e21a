//! Open banking in `switchyard trace`: a consent's outcomes, events and data
//! pages in words. Every open-banking topic is keyed by our consent id, so
//! `switchyard trace <consent id>` finds the consent's commands, retries,
//! dead letters, outcomes, events (consent changes and `PAYMENT_UPDATED`)
//! and data pages; a payment id leads to its consent through the payment's
//! row (see `trace::payment_ids`). Provider events, keyed by the provider's
//! id, join through the correlation id of the command a callback started or
//! the provider reference an outcome names.
//!
//! Lines never carry a hand-off's value (a link token or an authorization
//! URL), a sync cursor, account ids or masks, or transaction descriptions:
//! only kinds, states, counts and amounts of payments.

use crate::trace_onboarding::Line;
use serde::Serialize;
use std::sync::Arc;
use switchyard_bus::{AvroDecoder, BusError, RegistryClient};
use switchyard_canonical::openbanking_data::OpenBankingDataDelta;
use switchyard_canonical::openbanking_event::OpenBankingEvent;
use switchyard_canonical::openbanking_outcome::{OpenBankingKind, OpenBankingOutcome};

const OB_OUTCOME_SCHEMA: &str =
    include_str!("../../../schemas/openbanking/OpenBankingOutcome.v1.avsc");
const OB_EVENT_SCHEMA: &str = include_str!("../../../schemas/openbanking/OpenBankingEvent.v1.avsc");
const OB_DATA_SCHEMA: &str = include_str!("../../../schemas/openbanking/OpenBankingData.v1.avsc");

pub(crate) struct OpenBankingDecoders {
    outcome: AvroDecoder,
    event: AvroDecoder,
    data: AvroDecoder,
}

impl OpenBankingDecoders {
    pub(crate) fn new(registry: Arc<RegistryClient>) -> Result<Self, BusError> {
        Ok(Self {
            outcome: AvroDecoder::new(registry.clone(), OB_OUTCOME_SCHEMA)?,
            event: AvroDecoder::new(registry.clone(), OB_EVENT_SCHEMA)?,
            data: AvroDecoder::new(registry, OB_DATA_SCHEMA)?,
        })
    }

    pub(crate) async fn outcome(&self, at: &str, payload: &[u8]) -> Line {
        match self.outcome.decode::<OpenBankingOutcome>(payload).await {
            Ok(o) => outcome_line(at, &o),
            Err(e) => ("outcome", None, format!("{at}: not decodable: {e}"), false),
        }
    }

    /// The provider's ids an outcome names (a Plaid item, a TrueLayer
    /// payment): provider events are keyed by them.
    pub(crate) async fn provider_references(&self, payload: &[u8]) -> Vec<String> {
        match self.outcome.decode::<OpenBankingOutcome>(payload).await {
            Ok(o) => o
                .provider_reference
                .into_iter()
                .chain(o.payment.and_then(|p| p.provider_reference))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub(crate) async fn event(&self, at: &str, payload: &[u8]) -> Line {
        match self.event.decode::<OpenBankingEvent>(payload).await {
            Ok(e) => event_line(at, &e),
            Err(e) => (
                "openbanking_event",
                None,
                format!("{at}: not decodable: {e}"),
                false,
            ),
        }
    }

    pub(crate) async fn data(&self, at: &str, payload: &[u8]) -> Line {
        match self.data.decode::<OpenBankingDataDelta>(payload).await {
            Ok(d) => data_line(at, &d),
            Err(e) => (
                "openbanking_data",
                None,
                format!("{at}: not decodable: {e}"),
                false,
            ),
        }
    }
}

pub(crate) fn is_openbanking_outcome(topic: &str) -> bool {
    topic.contains("openbanking.outcomes.")
}

/// An enum's wire name (the canonical enums serialize as the schemas spell them).
fn word<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn outcome_line(at: &str, o: &OpenBankingOutcome) -> Line {
    let failed = matches!(
        o.kind,
        OpenBankingKind::Failed
            | OpenBankingKind::Rejected
            | OpenBankingKind::InstitutionUnavailable
    );
    let mut line = format!(
        "{at} {} via {}",
        o.action.as_str(),
        o.provider.as_deref().unwrap_or("-")
    );
    if let Some(state) = o.consent_state {
        line.push_str(&format!(", consent {}", state.as_str()));
    }
    if let Some(r) = &o.provider_reference {
        line.push_str(&format!(", vendor ref {r}"));
    }
    if let Some(i) = &o.institution_id {
        line.push_str(&format!(", institution {i}"));
    }
    // The hand-off's value is a credential for the user's session: only its kind.
    if let Some(h) = &o.handoff {
        line.push_str(&format!(", hand-off {}", word(&h.kind)));
    }
    if o.data_pages > 0 {
        line.push_str(&format!(", {} data pages", o.data_pages));
    }
    for m in &o.missing {
        line.push_str(&format!(
            ", missing {} ({})",
            m.dataset.as_str(),
            word(&m.reason)
        ));
    }
    if let Some(ms) = o.retry_after_ms {
        line.push_str(&format!(", retry after {ms} ms"));
    }
    if let Some(p) = &o.payment {
        line.push_str(&format!(
            ", payment {} {} {} minor units {}",
            p.payment_id,
            p.status.as_str(),
            p.amount_minor,
            p.currency
        ));
        if let Some(f) = p.failure {
            line.push_str(&format!(" ({})", word(&f)));
        }
    }
    if let Some(r) = o.refusal {
        line.push_str(&format!(", refused: {}", r.as_str()));
    }
    if let Some(e) = &o.error {
        line.push_str(&format!(
            ", {}/{}: {}",
            e.class.as_str(),
            e.code.as_str(),
            e.message
        ));
    }
    if o.replayed {
        line.push_str(" (answered from the store)");
    }
    ("outcome", Some(o.kind.as_str().to_owned()), line, failed)
}

fn event_line(at: &str, e: &OpenBankingEvent) -> Line {
    let state = |s: Option<switchyard_canonical::openbanking_consent::ConsentState>| {
        s.map_or("-", |s| s.as_str())
    };
    let mut line = match &e.payment_id {
        Some(payment) => {
            let status = |s: Option<switchyard_canonical::openbanking_payment::PaymentStatus>| {
                s.map_or("-", |s| s.as_str())
            };
            let mut line = format!(
                "{at} payment {payment} {} -> {} at {}",
                status(e.from_payment_status),
                status(e.to_payment_status),
                e.provider
            );
            if let (Some(amount), Some(currency)) = (e.amount_minor, &e.currency) {
                line.push_str(&format!(", {amount} minor units {currency}"));
            }
            line
        }
        None => format!(
            "{at} consent {} -> {} at {}",
            state(e.from_consent_state),
            state(e.to_consent_state),
            e.provider
        ),
    };
    if let Some(f) = e.payment_failure {
        line.push_str(&format!(", failed: {}", word(&f)));
    }
    if e.returned_after_execution {
        line.push_str(", returned after execution");
    }
    (
        "openbanking_event",
        Some(e.kind.as_str().to_owned()),
        line,
        e.payment_failure.is_some(),
    )
}

/// Counts only: account ids, masks, descriptions and the cursor stay on the topic.
fn data_line(at: &str, d: &OpenBankingDataDelta) -> Line {
    let mut line = format!(
        "{at} from {}: accounts +{} ~{} -{}, {} balances, transactions +{} ~{} -{}",
        d.provider,
        d.accounts_added.len(),
        d.accounts_modified.len(),
        d.accounts_removed.len(),
        d.balances.len(),
        d.transactions_added.len(),
        d.transactions_modified.len(),
        d.transactions_removed.len(),
    );
    for m in &d.missing {
        line.push_str(&format!(
            ", missing {} ({})",
            m.dataset.as_str(),
            word(&m.reason)
        ));
    }
    if d.has_more {
        line.push_str(", more to come");
    }
    let datasets: Vec<&str> = d.datasets.iter().map(|s| s.as_str()).collect();
    (
        "openbanking_data",
        Some(datasets.join("+")),
        line,
        !d.missing.is_empty(),
    )
}
