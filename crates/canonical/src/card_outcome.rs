//! What the card worker answers for each card command (`cards.outcomes.v1`),
//! and the command's fingerprint that tells an honest duplicate from an
//! idempotency-key collision.
//!
//! An outcome carries what a person or core banking may see of a card: our
//! card id, the processor's token and the last four digits. Never the PAN,
//! never a PIN (not even the encrypted block the command carried).

use crate::card::{CardAction, CardCommand, CardRefusal, CardState, ShippingAddress};
use crate::card_dispute::DisputeState;
use crate::{Fingerprint, OutcomeError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardOutcomeStatus {
    /// The processor did what the command asked.
    Succeeded,
    /// The processor refused for good (declined issuance, invalid request).
    Failed,
    /// Refused before any processor call: invalid, illegal in the card's
    /// state (`refusal` says why) or an idempotency collision.
    Rejected,
}

impl CardOutcomeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CardOutcomeStatus::Succeeded => "succeeded",
            CardOutcomeStatus::Failed => "failed",
            CardOutcomeStatus::Rejected => "rejected",
        }
    }
}

/// The new card a REPLACE ordered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardReplacement {
    pub card_id: String,
    pub processor_reference: Option<String>,
    pub last_four: Option<String>,
    pub state: Option<CardState>,
}

/// What a push-provisioning request came back with; the payloads are the
/// wallet's own, encrypted for it, passed through untouched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningResult {
    /// The issuer wants the cardholder to confirm first; no payload then.
    pub step_up_required: bool,
    pub activation_data: Option<String>,
    pub encrypted_data: Option<String>,
    pub ephemeral_public_key: Option<String>,
}

/// One answer per card command, keyed by `card_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardOutcome {
    pub card_id: String,
    pub idempotency_key: String,
    pub action: CardAction,
    pub status: CardOutcomeStatus,
    /// The card's state after the command; none when we hold no such card.
    pub state: Option<CardState>,
    /// Why a REJECTED command was refused by the card's lifecycle.
    pub refusal: Option<CardRefusal>,
    /// The processor that holds the card (none when no call was made for a
    /// card we never issued).
    pub provider: Option<String>,
    /// The processor's token for the card; never the PAN.
    pub processor_reference: Option<String>,
    pub last_four: Option<String>,
    pub replacement: Option<CardReplacement>,
    pub dispute_id: Option<String>,
    pub dispute_reference: Option<String>,
    pub dispute_state: Option<DisputeState>,
    pub provisioning: Option<ProvisioningResult>,
    pub error: Option<OutcomeError>,
    pub attempts: i32,
    /// Answered from the store for a duplicate, without a processor call.
    pub replayed: bool,
    pub completed_at_ms: i64,
}

impl CardOutcome {
    /// An outcome for `command` with nothing filled in beyond the status.
    pub fn new(command: &CardCommand, status: CardOutcomeStatus) -> Self {
        Self {
            card_id: command.card_id.clone(),
            idempotency_key: command.idempotency_key.clone(),
            action: command.action,
            status,
            state: None,
            refusal: None,
            provider: None,
            processor_reference: None,
            last_four: None,
            replacement: None,
            dispute_id: None,
            dispute_reference: None,
            dispute_state: None,
            provisioning: None,
            error: None,
            attempts: 0,
            replayed: false,
            completed_at_ms: crate::now_ms(),
        }
    }

    /// Refused before any processor call.
    pub fn rejected(command: &CardCommand, refusal: Option<CardRefusal>, error: OutcomeError) -> Self {
        let mut o = Self::new(command, CardOutcomeStatus::Rejected);
        o.refusal = refusal;
        o.error = Some(error);
        o
    }
}

impl CardCommand {
    /// Everything but the request time: a re-sent command is a duplicate,
    /// the same key for anything else is a collision. Each field is length
    /// prefixed by [`Fingerprint::of_fields`], and an absent optional part
    /// differs from an empty one by its marker.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut f: Vec<String> = vec![self.card_id.clone(), self.action.as_str().to_owned()];
        let opt = |f: &mut Vec<String>, v: &Option<String>| match v {
            Some(s) => f.extend(["1".to_owned(), s.clone()]),
            None => f.push("0".to_owned()),
        };
        let ship = |f: &mut Vec<String>, s: &Option<ShippingAddress>| match s {
            Some(s) => {
                f.extend(["1".to_owned(), s.name.clone(), s.line1.clone()]);
                opt(f, &s.line2);
                f.extend([s.city.clone(), s.postal_code.clone(), s.country.clone()]);
            }
            None => f.push("0".to_owned()),
        };
        match &self.issue {
            Some(i) => {
                f.extend(["issue".to_owned(), format!("{:?}", i.form), i.product.clone(), i.cardholder_ref.clone()]);
                ship(&mut f, &i.shipping);
            }
            None => f.push("-".to_owned()),
        }
        match &self.pin {
            Some(p) => {
                f.push("pin".to_owned());
                opt(&mut f, &p.encrypted_pin_block);
                opt(&mut f, &p.hosted_flow_token);
            }
            None => f.push("-".to_owned()),
        }
        match &self.replace {
            Some(r) => {
                f.extend(["replace".to_owned(), format!("{:?}", r.reason), r.new_card_id.clone()]);
                ship(&mut f, &r.shipping);
            }
            None => f.push("-".to_owned()),
        }
        match &self.provision {
            Some(p) => {
                f.extend(["provision".to_owned(), format!("{:?}", p.wallet), p.certificates.len().to_string()]);
                f.extend(p.certificates.iter().cloned());
                for v in [&p.nonce, &p.nonce_signature, &p.device_id, &p.wallet_account_id] {
                    opt(&mut f, v);
                }
            }
            None => f.push("-".to_owned()),
        }
        match &self.dispute {
            Some(d) => f.extend([
                "dispute".to_owned(),
                d.dispute_id.clone(),
                d.transaction_ref.clone(),
                d.amount_minor.to_string(),
                d.currency.clone(),
                format!("{:?}", d.reason),
            ]),
            None => f.push("-".to_owned()),
        }
        match &self.evidence {
            Some(e) => {
                f.extend(["evidence".to_owned(), e.dispute_id.clone(), e.document_ref.clone()]);
                opt(&mut f, &e.note);
            }
            None => f.push("-".to_owned()),
        }
        opt(&mut f, &self.reason);
        let fields: Vec<&[u8]> = f.iter().map(|s| s.as_bytes()).collect();
        Fingerprint::of_fields(&fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{CardForm, IssueSpec};

    fn issue() -> CardCommand {
        CardCommand {
            card_id: "card-1".into(),
            idempotency_key: "k-1".into(),
            action: CardAction::Issue,
            issue: Some(IssueSpec { form: CardForm::Virtual, product: "debit".into(), cardholder_ref: "cust-1".into(), shipping: None }),
            pin: None,
            replace: None,
            provision: None,
            dispute: None,
            evidence: None,
            reason: None,
            requested_at_ms: 1,
        }
    }

    #[test]
    fn fingerprint_ignores_request_time_but_not_the_payload() {
        let a = issue();
        let mut later = a.clone();
        later.requested_at_ms = 99;
        assert_eq!(a.fingerprint(), later.fingerprint());
        let mut other = a.clone();
        other.issue = Some(IssueSpec { form: CardForm::Physical, ..other.issue.clone().expect("issue") });
        assert_ne!(a.fingerprint(), other.fingerprint());
        let mut reason = a.clone();
        reason.reason = Some(String::new());
        assert_ne!(a.fingerprint(), reason.fingerprint(), "an empty reason is not an absent one");
    }
}
