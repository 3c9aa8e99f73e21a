//! Sumsub wire types and their mapping to canonical terms.
//!
//! `review.reviewStatus` init | pending | prechecked | queued | completed |
//! onHold; on completion `reviewResult.reviewAnswer` GREEN | RED, and on RED
//! `reviewRejectType` FINAL (hard) | RETRY (resubmit) with `rejectLabels`.

use crate::kyc::KycVerdict;
use crate::AdapterError;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchyard_canonical::kyc::{DocumentKind, KycCommand, KycReason, KycStatus};
use switchyard_canonical::{ErrorClass, ErrorCode};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApplicantRequest {
    external_user_id: String,
    /// The bank's applicant id, for the vendor's back office.
    source_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    fixed_info: FixedInfo,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FixedInfo {
    first_name: String,
    last_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dob: Option<String>,
    country: String,
}

impl ApplicantRequest {
    pub(super) fn new(cmd: &KycCommand, key: &str) -> Self {
        Self {
            external_user_id: key.to_owned(),
            source_key: cmd.subject_id.clone(),
            email: cmd.person.email.clone(),
            fixed_info: FixedInfo {
                first_name: cmd.person.first_name.clone(),
                last_name: cmd.person.last_name.clone(),
                dob: cmd.person.date_of_birth.clone(),
                country: cmd.document.issuing_country.clone(),
            },
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct IdDocMetadata {
    id_doc_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_doc_sub_type: Option<&'static str>,
    country: String,
}

impl IdDocMetadata {
    /// One upload per document side plus the selfie, with the file reference.
    pub(super) fn for_command(cmd: &KycCommand) -> Vec<(Self, &str)> {
        let kind = match cmd.document.kind {
            DocumentKind::Passport => "PASSPORT",
            DocumentKind::NationalIdentityCard => "ID_CARD",
            DocumentKind::DrivingLicence => "DRIVERS",
            DocumentKind::ResidencePermit => "RESIDENCE_PERMIT",
        };
        let country = cmd.document.issuing_country.clone();
        let sided = cmd.document.kind.two_sided();
        let mut out = vec![(
            Self { id_doc_type: kind, id_doc_sub_type: sided.then_some("FRONT_SIDE"), country: country.clone() },
            cmd.document.front_ref.as_str(),
        )];
        if let Some(back) = &cmd.document.back_ref {
            out.push((Self { id_doc_type: kind, id_doc_sub_type: Some("BACK_SIDE"), country: country.clone() }, back.as_str()));
        }
        if let Some(selfie) = &cmd.selfie_ref {
            out.push((Self { id_doc_type: "SELFIE", id_doc_sub_type: None, country }, selfie.as_str()));
        }
        out
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct SumsubApplicant {
    pub(super) id: String,
    #[serde(default)]
    review: Option<Review>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    review_status: Option<String>,
    review_result: Option<ReviewResult>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewResult {
    review_answer: Option<String>,
    review_reject_type: Option<String>,
    #[serde(default)]
    reject_labels: Vec<String>,
    /// User-safe text; `clientComment` is internal and deliberately not read.
    moderation_comment: Option<String>,
}

impl SumsubApplicant {
    fn status(&self) -> &str {
        self.review.as_ref().and_then(|r| r.review_status.as_deref()).unwrap_or("init")
    }

    pub(super) fn review_not_started(&self) -> bool {
        self.status() == "init"
    }

    pub(super) fn review_settled(&self) -> bool {
        matches!(self.status(), "completed" | "onHold")
    }
}

fn reason(label: &str) -> KycReason {
    match label {
        "FORGERY" | "GRAPHIC_EDITOR" | "DOCUMENT_TEMPLATE" | "FRAUDULENT_PATTERNS" => KycReason::DocumentForged,
        "LOW_QUALITY" | "UNSATISFACTORY_PHOTOS" | "SCREENSHOTS" | "BLACK_AND_WHITE" | "DOCUMENT_DAMAGED" => KycReason::DocumentUnreadable,
        "EXPIRATION_DATE" => KycReason::DocumentExpired,
        "FRONT_SIDE_MISSING" | "BACK_SIDE_MISSING" | "DOCUMENT_PAGE_MISSING" | "INCOMPLETE_DOCUMENT" => KycReason::DocumentSideMissing,
        "ID_INVALID" | "NOT_DOCUMENT" | "WRONG_USER_REGION" => KycReason::UnsupportedDocument,
        "SELFIE_MISMATCH" | "BAD_FACE_MATCHING" => KycReason::FaceMismatch,
        "BAD_SELFIE" | "BAD_VIDEO_SELFIE" | "FRAUDULENT_LIVENESS" | "SELFIE_WITH_PAPER" => KycReason::SelfieUnusable,
        "PROBLEMATIC_APPLICANT_DATA" | "REQUESTED_DATA_MISMATCH" | "INCONSISTENT_PROFILE" => KycReason::DataMismatch,
        "ADDITIONAL_DOCUMENT_REQUIRED" => KycReason::AdditionalDocumentRequired,
        "AGE_REQUIREMENT_MISMATCH" => KycReason::Underage,
        "SANCTIONS" | "PEP" | "ADVERSE_MEDIA" | "BLACKLIST" | "CRIMINAL" | "COMPROMISED_PERSONS" => KycReason::Watchlist,
        _ => KycReason::Other,
    }
}

pub(super) fn verdict(a: &SumsubApplicant) -> Result<KycVerdict, AdapterError> {
    let result = a.review.as_ref().and_then(|r| r.review_result.as_ref());
    let mut reasons: Vec<KycReason> = result.map(|r| r.reject_labels.iter().map(|l| reason(l)).collect()).unwrap_or_default();
    reasons.dedup();
    let status = match (a.status(), result.and_then(|r| r.review_answer.as_deref()), result.and_then(|r| r.review_reject_type.as_deref())) {
        ("onHold", _, _) => KycStatus::ManualReview,
        ("completed", Some("GREEN"), _) => KycStatus::Approved,
        ("completed", Some("RED"), Some("FINAL")) => KycStatus::Declined,
        ("completed", Some("RED"), Some("RETRY")) if reasons.contains(&KycReason::AdditionalDocumentRequired) => KycStatus::StepUpRequired,
        ("completed", Some("RED"), Some("RETRY")) => KycStatus::Resubmit,
        (status, answer, kind) => {
            return Err(AdapterError::new(
                ErrorClass::ManualRepair,
                ErrorCode::Unknown,
                format!("sumsub applicant {}: unexpected review {status}/{answer:?}/{kind:?}", a.id),
            ))
        }
    };
    let applicant_message = result.and_then(|r| r.moderation_comment.clone()).filter(|m| !m.is_empty());
    Ok(KycVerdict { status, reasons, applicant_message, vendor_reference: a.id.clone() })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SumsubError {
    description: Option<String>,
    error_name: Option<String>,
}

pub(super) fn map_error(status: u16, retry_after: Option<Duration>, body: Option<SumsubError>) -> AdapterError {
    let message = body
        .as_ref()
        .map(|b| format!("{}{}", b.error_name.as_deref().map(|n| format!("[{n}] ")).unwrap_or_default(), b.description.as_deref().unwrap_or("")))
        .unwrap_or_default();
    let mut err = match status {
        // 409: the applicant exists; the caller resumes it.
        409 => AdapterError::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, format!("sumsub: {message}")),
        400 | 422 => AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("sumsub: {message}")),
        _ => AdapterError::from_status(status, retry_after, &format!("sumsub: {message}")),
    };
    err.http_status = Some(status);
    err.retry_after = retry_after;
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applicant(json: &str) -> SumsubApplicant {
        serde_json::from_str(json).expect("fixture parses")
    }

    #[test]
    fn retry_with_additional_document_is_a_step_up() {
        let a = applicant(
            r#"{"id":"a1","review":{"reviewStatus":"completed","reviewResult":{"reviewAnswer":"RED","reviewRejectType":"RETRY","rejectLabels":["ADDITIONAL_DOCUMENT_REQUIRED"]}}}"#,
        );
        assert_eq!(verdict(&a).expect("verdict").status, KycStatus::StepUpRequired);
    }

    #[test]
    fn final_red_is_a_decline_and_keeps_only_the_user_safe_comment() {
        let a = applicant(
            r#"{"id":"a1","review":{"reviewStatus":"completed","reviewResult":{"reviewAnswer":"RED","reviewRejectType":"FINAL",
               "rejectLabels":["FORGERY"],"moderationComment":"We could not verify your document.","clientComment":"template match 0.98"}}}"#,
        );
        let v = verdict(&a).expect("verdict");
        assert_eq!((v.status, v.reasons), (KycStatus::Declined, vec![KycReason::DocumentForged]));
        assert_eq!(v.applicant_message.as_deref(), Some("We could not verify your document."));
    }

    #[test]
    fn pending_reviews_are_not_settled() {
        assert!(!applicant(r#"{"id":"a1","review":{"reviewStatus":"pending"}}"#).review_settled());
        assert!(applicant(r#"{"id":"a1"}"#).review_not_started());
    }
}
