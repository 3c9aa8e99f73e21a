//! Identity verification (KYC): a document check plus, when a selfie is
//! given, a face match against it. Wire form: `schemas/kyc/*.avsc`.
//!
//! A verification is a workflow at the vendor (applicant, uploads, check,
//! asynchronous review); the worker drives it and publishes one outcome whose
//! status a product team can act on without knowing the vendor:
//! `APPROVED`/`DECLINED` end the step, `RESUBMIT` and `STEP_UP_REQUIRED` ask
//! the applicant for something (a new command with a new key follows),
//! `MANUAL_REVIEW` waits for a person at the vendor or the bank.

use crate::check::FlowStep;
use crate::{Fingerprint, OutcomeError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DocumentKind {
    Passport,
    NationalIdentityCard,
    DrivingLicence,
    ResidencePermit,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Passport => "passport",
            DocumentKind::NationalIdentityCard => "national_identity_card",
            DocumentKind::DrivingLicence => "driving_licence",
            DocumentKind::ResidencePermit => "residence_permit",
        }
    }

    /// Cards have a back side worth checking; a passport has one data page.
    pub fn two_sided(self) -> bool {
        !matches!(self, DocumentKind::Passport)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub first_name: String,
    pub last_name: String,
    /// `YYYY-MM-DD`; optional because some flows verify the document first.
    pub date_of_birth: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdDocument {
    pub kind: DocumentKind,
    /// ISO 3166-1 alpha-3, the form both KYC vendors use.
    pub issuing_country: String,
    /// Reference of the front image in the bank's document store; images
    /// never travel on the bus.
    pub front_ref: String,
    pub back_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KycCommand {
    /// The applicant; Kafka key and subject of every message of the flow.
    pub subject_id: String,
    pub idempotency_key: String,
    /// The onboarding flow this step belongs to, echoed in the outcome.
    pub flow_id: Option<String>,
    pub person: Person,
    pub document: IdDocument,
    /// Reference of a selfie; without one no face match is run.
    pub selfie_ref: Option<String>,
    pub requested_at_ms: i64,
}

impl KycCommand {
    /// Everything but the request time: a re-sent command is a duplicate.
    pub fn fingerprint(&self) -> Fingerprint {
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        Fingerprint::of_fields(&[
            self.subject_id.as_bytes(),
            opt(&self.flow_id).as_bytes(),
            self.person.first_name.as_bytes(),
            self.person.last_name.as_bytes(),
            opt(&self.person.date_of_birth).as_bytes(),
            opt(&self.person.email).as_bytes(),
            self.document.kind.as_str().as_bytes(),
            self.document.issuing_country.as_bytes(),
            self.document.front_ref.as_bytes(),
            opt(&self.document.back_ref).as_bytes(),
            opt(&self.selfie_ref).as_bytes(),
        ])
    }

    pub fn validate(&self) -> Result<(), String> {
        crate::check::validate_ids(&self.subject_id, &self.idempotency_key)?;
        if self.person.first_name.trim().is_empty() || self.person.last_name.trim().is_empty() {
            return Err("person needs a first and a last name".into());
        }
        if let Some(dob) = &self.person.date_of_birth {
            if !crate::check::is_iso_date(dob) {
                return Err("person.date_of_birth must be YYYY-MM-DD".into());
            }
        }
        self.document.validate("document")
    }
}

impl IdDocument {
    /// The document rules every command carrying one applies (a KYC check,
    /// an onboarding application and its evidence), so a document the
    /// gateway refuses is refused on the bus too; `field` names it in the error.
    pub fn validate(&self, field: &str) -> Result<(), String> {
        let c = &self.issuing_country;
        if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!("{field}.issuing_country must be ISO 3166-1 alpha-3 (e.g. GBR)"));
        }
        if self.front_ref.trim().is_empty() {
            return Err(format!("{field}.front_ref must not be empty"));
        }
        Ok(())
    }
}

/// The answer of a verification, in our vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KycStatus {
    /// Identity verified.
    Approved,
    /// Hard failure: do not onboard on this identity.
    Declined,
    /// Soft failure: the applicant may try again with better input.
    Resubmit,
    /// More evidence is needed (another document, a selfie, liveness).
    StepUpRequired,
    /// A person decides; a later provider event carries the decision.
    ManualReview,
    /// Refused before any vendor call (invalid command, key collision).
    Rejected,
    /// The vendor refused the request itself (not the identity).
    Failed,
}

impl KycStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KycStatus::Approved => "approved",
            KycStatus::Declined => "declined",
            KycStatus::Resubmit => "resubmit",
            KycStatus::StepUpRequired => "step_up_required",
            KycStatus::ManualReview => "manual_review",
            KycStatus::Rejected => "rejected",
            KycStatus::Failed => "failed",
        }
    }

    /// Whether the verification step is over for this applicant. Resubmit and
    /// step-up wait for the applicant, manual review for a reviewer.
    pub fn terminal(self) -> bool {
        match self {
            KycStatus::Approved | KycStatus::Declined | KycStatus::Rejected | KycStatus::Failed => true,
            KycStatus::Resubmit | KycStatus::StepUpRequired | KycStatus::ManualReview => false,
        }
    }
}

/// Why, in our words; vendor labels are mapped inside the adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KycReason {
    DocumentUnreadable,
    DocumentExpired,
    DocumentSuspected,
    DocumentForged,
    DocumentSideMissing,
    UnsupportedDocument,
    FaceMismatch,
    SelfieUnusable,
    DataMismatch,
    AdditionalDocumentRequired,
    Underage,
    Watchlist,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KycOutcome {
    pub subject_id: String,
    pub idempotency_key: String,
    pub flow_id: Option<String>,
    /// Always `KYC`; lets an orchestrator read several outcome topics as one stream.
    pub step: FlowStep,
    pub status: KycStatus,
    /// `status.terminal()`, on the wire so consumers need no table.
    pub terminal: bool,
    pub reasons: Vec<KycReason>,
    /// Safe to show to the applicant (e.g. "the photo is blurry"); never
    /// internal reviewer notes.
    pub applicant_message: Option<String>,
    pub provider: Option<String>,
    /// The vendor's id for the check (Onfido check id, Sumsub applicant id).
    pub provider_reference: Option<String>,
    pub error: Option<OutcomeError>,
    pub attempts: i32,
    pub replayed: bool,
    pub completed_at_ms: i64,
}

impl KycOutcome {
    pub fn new(cmd: &KycCommand, status: KycStatus) -> Self {
        Self {
            subject_id: cmd.subject_id.clone(),
            idempotency_key: cmd.idempotency_key.clone(),
            flow_id: cmd.flow_id.clone(),
            step: FlowStep::Kyc,
            status,
            terminal: status.terminal(),
            reasons: Vec::new(),
            applicant_message: None,
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

    pub(crate) fn sample() -> KycCommand {
        KycCommand {
            subject_id: "app-1".into(),
            idempotency_key: "kyc-1".into(),
            flow_id: Some("flow-1".into()),
            person: Person { first_name: "Ada".into(), last_name: "Lovelace".into(), date_of_birth: Some("1990-12-10".into()), email: None },
            document: IdDocument { kind: DocumentKind::Passport, issuing_country: "GBR".into(), front_ref: "doc://1/front".into(), back_ref: None },
            selfie_ref: Some("doc://1/selfie".into()),
            requested_at_ms: 1,
        }
    }

    #[test]
    fn fingerprint_ignores_time_but_not_the_document() {
        let a = sample();
        let mut later = a.clone();
        later.requested_at_ms = 2;
        assert_eq!(a.fingerprint(), later.fingerprint());
        let mut other = a.clone();
        other.document.front_ref = "doc://2/front".into();
        assert_ne!(a.fingerprint(), other.fingerprint());
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = sample();
        c.document.issuing_country = "GB".into();
        assert!(c.validate().is_err_and(|e| e.contains("issuing_country")));
        let mut c = sample();
        c.person.date_of_birth = Some("10/12/1990".into());
        assert!(c.validate().is_err_and(|e| e.contains("date_of_birth")));
        assert!(sample().validate().is_ok());
    }

    #[test]
    fn only_final_answers_are_terminal() {
        assert!(KycStatus::Declined.terminal());
        assert!(!KycStatus::Resubmit.terminal());
        assert!(!KycStatus::ManualReview.terminal());
    }
}
