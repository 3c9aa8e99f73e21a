//! AML screening: a person or organisation against sanctions, PEP,
//! watchlist and adverse-media lists. Wire form: `schemas/aml/*.avsc`.
//!
//! `CLEAR` lets a flow continue; `POTENTIAL_MATCH` pauses it until an
//! analyst decides (a later outcome or provider event); `CONFIRMED_MATCH`
//! stops it with a `compliance_hold` error. `RESCREEN` is the same screening
//! run again because a list changed; its outcome supersedes the last one.

use crate::check::FlowStep;
use crate::{Fingerprint, OutcomeError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AmlAction {
    /// First screening of a subject (onboarding, new counterparty).
    Screen,
    /// Screening again after a list update (`list_update` says which).
    Rescreen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubjectKind {
    Person,
    Organisation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScreeningList {
    Sanctions,
    Pep,
    Watchlist,
    AdverseMedia,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmlSubject {
    pub kind: SubjectKind,
    /// The name as written (organisations, or a person's full name).
    pub full_name: String,
    /// Split names for persons, when known: vendors match better with them.
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `YYYY-MM-DD` or `YYYY`; partial data is allowed and matches fuzzier.
    pub birth_date: Option<String>,
    /// ISO 3166-1 alpha-2 nationality or country of registration.
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmlCommand {
    /// The applicant or counterparty; Kafka key.
    pub subject_id: String,
    pub idempotency_key: String,
    pub flow_id: Option<String>,
    pub action: AmlAction,
    pub subject: AmlSubject,
    /// Lists to screen; empty means all the vendor offers.
    pub lists: Vec<ScreeningList>,
    /// For `RESCREEN`: the list update that triggered it, for the audit trail.
    pub list_update: Option<String>,
    pub requested_at_ms: i64,
}

impl AmlCommand {
    pub fn fingerprint(&self) -> Fingerprint {
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        let action = match self.action {
            AmlAction::Screen => "screen",
            AmlAction::Rescreen => "rescreen",
        };
        let kind = match self.subject.kind {
            SubjectKind::Person => "person",
            SubjectKind::Organisation => "organisation",
        };
        let lists: String = self.lists.iter().map(|l| format!("{l:?},")).collect();
        Fingerprint::of_fields(&[
            self.subject_id.as_bytes(),
            opt(&self.flow_id).as_bytes(),
            action.as_bytes(),
            kind.as_bytes(),
            self.subject.full_name.as_bytes(),
            opt(&self.subject.first_name).as_bytes(),
            opt(&self.subject.last_name).as_bytes(),
            opt(&self.subject.birth_date).as_bytes(),
            opt(&self.subject.country).as_bytes(),
            lists.as_bytes(),
            opt(&self.list_update).as_bytes(),
        ])
    }

    pub fn validate(&self) -> Result<(), String> {
        crate::check::validate_ids(&self.subject_id, &self.idempotency_key)?;
        if self.subject.full_name.trim().is_empty() {
            return Err("subject.full_name must not be empty".into());
        }
        if let Some(b) = &self.subject.birth_date {
            let year_only = b.len() == 4 && b.bytes().all(|c| c.is_ascii_digit());
            if !year_only && !crate::check::is_iso_date(b) {
                return Err("subject.birth_date must be YYYY-MM-DD or YYYY".into());
            }
        }
        if let Some(c) = &self.subject.country {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err("subject.country must be ISO 3166-1 alpha-2".into());
            }
        }
        if self.action == AmlAction::Rescreen && self.list_update.is_none() {
            return Err("list_update is required for RESCREEN".into());
        }
        Ok(())
    }

    /// The birth year, which is what list entries most often carry.
    pub fn birth_year(&self) -> Option<i32> {
        self.subject.birth_date.as_deref().and_then(|b| b.get(0..4)).and_then(|y| y.parse().ok())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AmlStatus {
    /// No relevant hit.
    Clear,
    /// Hits that a person must review; the flow pauses.
    PotentialMatch,
    /// A confirmed hit: compliance hold, nothing moves.
    ConfirmedMatch,
    /// Refused before any vendor call.
    Rejected,
    /// The vendor refused the request itself.
    Failed,
}

impl AmlStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AmlStatus::Clear => "clear",
            AmlStatus::PotentialMatch => "potential_match",
            AmlStatus::ConfirmedMatch => "confirmed_match",
            AmlStatus::Rejected => "rejected",
            AmlStatus::Failed => "failed",
        }
    }

    /// A potential match waits for an analyst; everything else ends the step.
    pub fn terminal(self) -> bool {
        match self {
            AmlStatus::PotentialMatch => false,
            AmlStatus::Clear | AmlStatus::ConfirmedMatch | AmlStatus::Rejected | AmlStatus::Failed => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedField {
    Name,
    Alias,
    BirthDate,
    Country,
}

/// One list entry the subject may be, normalized across vendors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmlMatch {
    pub list: ScreeningList,
    /// The vendor's name for the source (e.g. `ofac-sdn-list`, `us_ofac_sdn`).
    pub source: String,
    /// The vendor's id for the listed entity.
    pub entity_id: String,
    pub matched_name: String,
    /// 0..=1, our scale: vendors' scores are normalized in the adapter.
    pub score: f64,
    pub matched_fields: Vec<MatchedField>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmlOutcome {
    pub subject_id: String,
    pub idempotency_key: String,
    pub flow_id: Option<String>,
    /// Always `AML`.
    pub step: FlowStep,
    pub action: AmlAction,
    pub status: AmlStatus,
    pub terminal: bool,
    pub matches: Vec<AmlMatch>,
    pub provider: Option<String>,
    /// The vendor's id for the screening (ComplyAdvantage search id).
    pub provider_reference: Option<String>,
    /// `compliance_hold`/`sanctions_match` on a confirmed match; the failure
    /// on `REJECTED`/`FAILED`.
    pub error: Option<OutcomeError>,
    pub attempts: i32,
    pub replayed: bool,
    pub completed_at_ms: i64,
}

impl AmlOutcome {
    pub fn new(cmd: &AmlCommand, status: AmlStatus) -> Self {
        Self {
            subject_id: cmd.subject_id.clone(),
            idempotency_key: cmd.idempotency_key.clone(),
            flow_id: cmd.flow_id.clone(),
            step: FlowStep::Aml,
            action: cmd.action,
            status,
            terminal: status.terminal(),
            matches: Vec::new(),
            provider: None,
            provider_reference: None,
            error: None,
            attempts: 0,
            replayed: false,
            completed_at_ms: crate::now_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AmlCommand {
        AmlCommand {
            subject_id: "app-1".into(),
            idempotency_key: "aml-1".into(),
            flow_id: None,
            action: AmlAction::Screen,
            subject: AmlSubject {
                kind: SubjectKind::Person,
                full_name: "Ada Lovelace".into(),
                first_name: Some("Ada".into()),
                last_name: Some("Lovelace".into()),
                birth_date: Some("1990".into()),
                country: Some("GB".into()),
            },
            lists: vec![],
            list_update: None,
            requested_at_ms: 0,
        }
    }

    #[test]
    fn partial_birth_dates_are_accepted_and_rescreens_need_a_reason() {
        assert!(sample().validate().is_ok());
        assert_eq!(sample().birth_year(), Some(1990));
        let mut r = sample();
        r.action = AmlAction::Rescreen;
        assert!(r.validate().is_err_and(|e| e.contains("list_update")));
        r.list_update = Some("ofac-2026-11-25".into());
        assert!(r.validate().is_ok());
        assert_ne!(sample().fingerprint(), r.fingerprint());
    }

    #[test]
    fn potential_matches_pause_the_flow() {
        assert!(!AmlStatus::PotentialMatch.terminal());
        assert!(AmlStatus::ConfirmedMatch.terminal());
    }
}
