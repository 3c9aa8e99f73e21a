//! Contract tests of the KYC adapters against recorded vendor exchanges
//! (`fixtures/kyc/<vendor>/*.json`): happy path, soft and hard failures,
//! a vendor that never answers, and a reply that is not JSON.

mod support;

use std::time::Duration;
use support::Replay;
use switchyard_adapters::kyc::onfido::OnfidoAdapter;
use switchyard_adapters::kyc::sumsub::SumsubAdapter;
use switchyard_adapters::kyc::Polling;
use switchyard_adapters::http::Transport;
use switchyard_adapters::{AdapterError, CallContext, Secret};
use switchyard_canonical::kyc::{DocumentKind, IdDocument, KycCommand, KycReason, KycStatus, Person};
use switchyard_canonical::{ErrorClass, ErrorCode};

fn command() -> KycCommand {
    KycCommand {
        subject_id: "app-1".into(),
        idempotency_key: "kyc-1".into(),
        flow_id: None,
        person: Person { first_name: "Ada".into(), last_name: "Lovelace".into(), date_of_birth: Some("1990-12-10".into()), email: None },
        document: IdDocument { kind: DocumentKind::Passport, issuing_country: "GBR".into(), front_ref: "doc://1/front".into(), back_ref: None },
        selfie_ref: Some("doc://1/selfie".into()),
        requested_at_ms: 0,
    }
}

fn ctx() -> CallContext {
    CallContext { correlation_id: "corr-1".into(), traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into() }
}

const POLL: Polling = Polling { interval: Duration::from_millis(10), budget: Duration::from_secs(2) };

fn onfido(r: &Replay) -> OnfidoAdapter {
    OnfidoAdapter::new("onfido", &r.base_url, Secret::new("api_sandbox.x"), Transport::new(Duration::from_millis(300), 2), POLL).expect("adapter")
}

fn sumsub(r: &Replay) -> SumsubAdapter {
    SumsubAdapter::new("sumsub", &r.base_url, Secret::new("sbx:x"), Secret::new("s"), "basic-kyc-level", Transport::new(Duration::from_millis(300), 2), POLL)
        .expect("adapter")
}

fn assert_timeout(e: &AdapterError) {
    assert_eq!((e.class, e.code), (ErrorClass::Transient, ErrorCode::Timeout), "{e}");
    assert!(e.ambiguous, "the vendor may have acted: never fail over");
}

fn assert_malformed(e: &AdapterError) {
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    assert!(e.ambiguous, "a 2xx we could not read still means the vendor acted: {e}");
}

#[tokio::test]
async fn onfido_happy_path_polls_until_complete() {
    let r = Replay::start("kyc/onfido/approved").await;
    let v = onfido(&r).verify(&command(), "kyc-1", &ctx()).await.expect("verdict");
    assert_eq!((v.status, v.reasons.as_slice(), v.vendor_reference.as_str()), (KycStatus::Approved, &[][..], "9d7e6c5b-check"));
    assert!(r.unused().is_empty(), "every recorded call was made: {:?}", r.unused());
}

#[tokio::test]
async fn onfido_blurry_document_is_a_resubmission() {
    let r = Replay::start("kyc/onfido/resubmit_blurry").await;
    let v = onfido(&r).verify(&command(), "kyc-1", &ctx()).await.expect("verdict");
    assert_eq!((v.status, v.reasons), (KycStatus::Resubmit, vec![KycReason::DocumentUnreadable]));
}

#[tokio::test]
async fn onfido_timeout_is_transient_and_ambiguous() {
    let r = Replay::start("kyc/onfido/timeout").await;
    assert_timeout(&onfido(&r).verify(&command(), "kyc-1", &ctx()).await.expect_err("times out"));
}

#[tokio::test]
async fn onfido_malformed_reply_is_not_a_verdict() {
    let r = Replay::start("kyc/onfido/malformed").await;
    assert_malformed(&onfido(&r).verify(&command(), "kyc-1", &ctx()).await.expect_err("unreadable"));
}

#[tokio::test]
async fn onfido_validation_error_is_permanent_and_definite() {
    let r = Replay::start("kyc/onfido/validation_error").await;
    let e = onfido(&r).verify(&command(), "kyc-1", &ctx()).await.expect_err("refused");
    assert_eq!((e.class, e.code, e.ambiguous), (ErrorClass::Permanent, ErrorCode::InvalidRequest, false), "{e}");
}

#[tokio::test]
async fn sumsub_happy_path_uploads_requests_review_and_polls() {
    let r = Replay::start("kyc/sumsub/approved").await;
    let v = sumsub(&r).verify(&command(), "kyc-1", &ctx()).await.expect("verdict");
    assert_eq!((v.status, v.vendor_reference.as_str()), (KycStatus::Approved, "63e0c0a8f1e4a2b3c4d5e6f7"));
    assert!(r.unused().is_empty(), "every recorded call was made: {:?}", r.unused());
}

#[tokio::test]
async fn sumsub_final_red_is_a_decline_without_internal_comments() {
    let r = Replay::start("kyc/sumsub/declined").await;
    let v = sumsub(&r).verify(&command(), "kyc-1", &ctx()).await.expect("verdict");
    assert_eq!((v.status, v.reasons), (KycStatus::Declined, vec![KycReason::DocumentForged]));
    assert_eq!(v.applicant_message.as_deref(), Some("We could not verify your document."));
}

#[tokio::test]
async fn sumsub_existing_applicant_is_resumed_without_new_uploads() {
    let r = Replay::start("kyc/sumsub/resume_existing").await;
    let v = sumsub(&r).verify(&command(), "kyc-1", &ctx()).await.expect("verdict");
    assert_eq!(v.status, KycStatus::ManualReview);
    let seen = r.seen.lock().expect("lock").clone();
    assert!(!seen.iter().any(|s| s.contains("idDoc") || s.contains("status/pending")), "{seen:?}");
}

#[tokio::test]
async fn sumsub_timeout_is_transient_and_ambiguous() {
    let r = Replay::start("kyc/sumsub/timeout").await;
    assert_timeout(&sumsub(&r).verify(&command(), "kyc-1", &ctx()).await.expect_err("times out"));
}

#[tokio::test]
async fn sumsub_malformed_reply_is_not_a_verdict() {
    let r = Replay::start("kyc/sumsub/malformed").await;
    assert_malformed(&sumsub(&r).verify(&command(), "kyc-1", &ctx()).await.expect_err("unreadable"));
}
