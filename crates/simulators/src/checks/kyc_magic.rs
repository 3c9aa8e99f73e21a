//! Magic inputs shared by the KYC simulators, modelled on Onfido's sandbox
//! (whose applicant last name `Consider` forces a `consider` result): a
//! last name or a file reference picks the scenario, so tests reach every
//! outcome through either vendor.
//!
//! | input | scenario |
//! |---|---|
//! | last name `Forged` | document rejected as forged (hard decline) |
//! | document file containing `blurry` | unreadable image (resubmit) |
//! | last name `Expired` | document expired (resubmit) |
//! | last name `Review` | suspected document (manual review / on hold) |
//! | last name `StepUp` | more evidence needed (step-up) |
//! | selfie file containing `mismatch` | face does not match |
//! | two-sided document without a back side | side missing (Sumsub only) |
//! | anything else | clear |

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    Clear,
    Forged,
    Blurry,
    Expired,
    Review,
    StepUp,
    FaceMismatch,
    MissingBack,
}

/// Decides once, when the check is requested, from what was submitted.
pub(crate) fn scenario(last_name: &str, document_files: &[Vec<u8>], selfie: Option<&[u8]>, missing_back: bool) -> Scenario {
    let contains = |hay: &[u8], needle: &str| String::from_utf8_lossy(hay).to_ascii_lowercase().contains(needle);
    match last_name.to_ascii_lowercase().as_str() {
        "forged" => Scenario::Forged,
        "expired" => Scenario::Expired,
        "review" => Scenario::Review,
        "stepup" => Scenario::StepUp,
        _ if document_files.iter().any(|f| contains(f, "blurry")) => Scenario::Blurry,
        _ if selfie.is_some_and(|s| contains(s, "mismatch")) => Scenario::FaceMismatch,
        _ if missing_back => Scenario::MissingBack,
        _ => Scenario::Clear,
    }
}
