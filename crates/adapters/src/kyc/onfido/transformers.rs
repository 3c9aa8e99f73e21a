//! Onfido wire types and their mapping to canonical terms.
//!
//! Check `status` in_progress | awaiting_applicant | complete | withdrawn |
//! paused | reopened; report `result` clear | consider | unidentified with
//! `sub_result` clear | rejected | suspected | caution (document report).

use crate::kyc::{severity, KycVerdict};
use crate::AdapterError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use switchyard_canonical::kyc::{DocumentKind, KycCommand, KycReason, KycStatus};
use switchyard_canonical::{ErrorClass, ErrorCode};

#[derive(Debug, Serialize)]
pub(super) struct ApplicantRequest {
    first_name: String,
    last_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dob: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
}

impl From<&KycCommand> for ApplicantRequest {
    fn from(cmd: &KycCommand) -> Self {
        Self {
            first_name: cmd.person.first_name.clone(),
            last_name: cmd.person.last_name.clone(),
            dob: cmd.person.date_of_birth.clone(),
            email: cmd.person.email.clone(),
        }
    }
}

pub(super) fn document_type(kind: DocumentKind) -> &'static str {
    match kind {
        DocumentKind::Passport => "passport",
        DocumentKind::NationalIdentityCard => "national_identity_card",
        DocumentKind::DrivingLicence => "driving_licence",
        DocumentKind::ResidencePermit => "residence_permit",
    }
}

#[derive(Debug, Serialize)]
pub(super) struct CheckRequest {
    applicant_id: String,
    report_names: Vec<&'static str>,
    document_ids: Vec<String>,
}

impl CheckRequest {
    pub(super) fn new(applicant_id: &str, document_ids: Vec<String>, with_selfie: bool) -> Self {
        let mut report_names = vec!["document"];
        if with_selfie {
            report_names.push("facial_similarity_photo");
        }
        Self { applicant_id: applicant_id.to_owned(), report_names, document_ids }
    }
}

/// Any created resource (applicant, document, live photo): only the id matters.
#[derive(Debug, Deserialize)]
pub(super) struct OnfidoResource {
    pub(super) id: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct OnfidoCheck {
    pub(super) id: String,
    pub(super) status: String,
    #[allow(dead_code)]
    result: Option<String>,
}

impl OnfidoCheck {
    /// Whether polling can stop: anything but `in_progress` (and `reopened`,
    /// which Onfido uses when a check goes back into processing).
    pub(super) fn is_settled(&self) -> bool {
        !matches!(self.status.as_str(), "in_progress" | "reopened")
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct OnfidoReports {
    reports: Vec<OnfidoReport>,
}

#[derive(Debug, Deserialize)]
struct OnfidoReport {
    name: String,
    result: Option<String>,
    sub_result: Option<String>,
    #[serde(default)]
    breakdown: HashMap<String, Breakdown>,
}

#[derive(Debug, Deserialize)]
struct Breakdown {
    result: Option<String>,
}

impl OnfidoReport {
    fn considers(&self, part: &str) -> bool {
        self.breakdown.get(part).is_some_and(|b| b.result.as_deref() == Some("consider"))
    }

    /// One report's verdict. Unknown results are treated as needing a person,
    /// never as a pass.
    fn judge(&self) -> (KycStatus, Vec<KycReason>) {
        let face = self.name.starts_with("facial_similarity");
        match (self.result.as_deref(), self.sub_result.as_deref()) {
            (Some("clear"), _) => (KycStatus::Approved, vec![]),
            _ if self.considers("image_integrity") => {
                let why = if face { KycReason::SelfieUnusable } else { KycReason::DocumentUnreadable };
                (KycStatus::Resubmit, vec![why])
            }
            (Some("unidentified"), _) => (KycStatus::Resubmit, vec![KycReason::UnsupportedDocument]),
            _ if face => (KycStatus::ManualReview, vec![KycReason::FaceMismatch]),
            (Some("consider"), Some("rejected")) => {
                let mut why = Vec::new();
                if self.considers("visual_authenticity") {
                    why.push(KycReason::DocumentForged);
                }
                if self.considers("data_consistency") || self.considers("data_comparison") {
                    why.push(KycReason::DataMismatch);
                }
                if self.considers("age_validation") {
                    why.push(KycReason::Underage);
                }
                if why.is_empty() {
                    why.push(KycReason::Other);
                }
                (KycStatus::Declined, why)
            }
            (Some("consider"), Some("caution")) => (KycStatus::Resubmit, vec![KycReason::DocumentExpired]),
            (Some("consider"), Some("suspected")) => (KycStatus::ManualReview, vec![KycReason::DocumentSuspected]),
            _ => (KycStatus::ManualReview, vec![KycReason::Other]),
        }
    }
}

/// The check's verdict: the most severe of its reports.
pub(super) fn verdict(check: &OnfidoCheck, reports: &OnfidoReports) -> Result<KycVerdict, AdapterError> {
    let mut status = KycStatus::Approved;
    let mut reasons = Vec::new();
    match check.status.as_str() {
        "complete" => {
            if reports.reports.is_empty() {
                return Err(AdapterError::new(ErrorClass::ManualRepair, ErrorCode::Unknown, format!("onfido check {} complete without reports", check.id)));
            }
            for report in &reports.reports {
                let (s, why) = report.judge();
                if severity(s) > severity(status) {
                    status = s;
                }
                if s != KycStatus::Approved {
                    reasons.extend(why);
                }
            }
        }
        // The check waits for the applicant to provide more (UNCONFIRMED
        // that Onfido uses it for step-up; it is what the simulator does).
        "awaiting_applicant" => {
            status = KycStatus::StepUpRequired;
            reasons.push(KycReason::AdditionalDocumentRequired);
        }
        "paused" => {
            status = KycStatus::ManualReview;
            reasons.push(KycReason::Other);
        }
        other => {
            return Err(AdapterError::new(ErrorClass::Permanent, ErrorCode::Unknown, format!("onfido check {} ended {other}", check.id)));
        }
    }
    reasons.dedup();
    Ok(KycVerdict { status, reasons, applicant_message: None, vendor_reference: check.id.clone() })
}

#[derive(Debug, Deserialize)]
pub(super) struct OnfidoError {
    error: OnfidoErrorBody,
}

#[derive(Debug, Deserialize)]
struct OnfidoErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

pub(super) fn map_error(status: u16, retry_after: Option<Duration>, body: Option<OnfidoError>) -> AdapterError {
    let (kind, message) = match &body {
        Some(b) => (b.error.kind.as_deref().unwrap_or(""), b.error.message.clone().unwrap_or_default()),
        None => ("", String::new()),
    };
    let mut err = match (status, kind) {
        (422, "validation_error") => AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("onfido: {message}")),
        // Our key was reused with another body: our mapping changed between
        // attempts of one command, which a person must look at.
        (409 | 422, "idempotency_error") => {
            AdapterError::new(ErrorClass::ManualRepair, ErrorCode::IdempotencyCollision, format!("onfido: {message}"))
        }
        _ => AdapterError::from_status(status, retry_after, &format!("onfido {kind}: {message}")),
    };
    err.http_status = Some(status);
    err.retry_after = retry_after;
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reports(json: &str) -> OnfidoReports {
        serde_json::from_str(json).expect("fixture parses")
    }

    fn complete() -> OnfidoCheck {
        OnfidoCheck { id: "chk".into(), status: "complete".into(), result: Some("consider".into()) }
    }

    #[test]
    fn the_most_severe_report_wins() {
        let r = reports(
            r#"{"reports":[
              {"name":"document","result":"consider","sub_result":"rejected","breakdown":{"visual_authenticity":{"result":"consider"}}},
              {"name":"facial_similarity_photo","result":"consider","breakdown":{"face_comparison":{"result":"consider"}}}]}"#,
        );
        let v = verdict(&complete(), &r).expect("verdict");
        assert_eq!(v.status, KycStatus::Declined);
        assert_eq!(v.reasons, vec![KycReason::DocumentForged, KycReason::FaceMismatch]);
    }

    #[test]
    fn a_blurry_image_asks_for_a_resubmission() {
        let r = reports(r#"{"reports":[{"name":"document","result":"consider","sub_result":"rejected","breakdown":{"image_integrity":{"result":"consider"}}}]}"#);
        let v = verdict(&complete(), &r).expect("verdict");
        assert_eq!((v.status, v.reasons), (KycStatus::Resubmit, vec![KycReason::DocumentUnreadable]));
    }

    #[test]
    fn withdrawn_checks_are_failures_not_verdicts() {
        let c = OnfidoCheck { id: "chk".into(), status: "withdrawn".into(), result: None };
        assert!(verdict(&c, &reports(r#"{"reports":[]}"#)).is_err_and(|e| e.class == ErrorClass::Permanent));
    }
}
