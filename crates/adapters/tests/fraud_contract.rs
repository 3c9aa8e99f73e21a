//! Contract tests of the fraud adapters against recorded vendor exchanges
//! (`fixtures/fraud/<vendor>/*.json`): each decision, feedback, a vendor
//! that never answers and a reply missing its decision.

mod support;

use std::time::Duration;
use support::Replay;
use switchyard_adapters::fraud::sardine::SardineAdapter;
use switchyard_adapters::fraud::seon::SeonAdapter;
use switchyard_adapters::fraud::{FraudProvider, FraudVerdict};
use switchyard_adapters::http::Transport;
use switchyard_adapters::{AdapterError, CallContext, Secret};
use switchyard_canonical::fraud::{
    FeedbackKind, FraudAction, FraudCommand, FraudDecision, FraudEvent, FraudFeedback, FraudReason, FraudStatus, FraudTransaction,
};
use switchyard_canonical::{ErrorClass, ErrorCode};

fn score() -> FraudCommand {
    FraudCommand {
        subject_id: "cust-1".into(),
        idempotency_key: "fraud-1".into(),
        flow_id: None,
        action: FraudAction::Score,
        event: FraudEvent::Payment,
        email: Some("ada@example.com".into()),
        phone: None,
        ip: Some("81.2.69.160".into()),
        session_id: None,
        transaction: Some(FraudTransaction { transaction_id: "tx-1".into(), amount_minor: 5_000, currency: "EUR".into() }),
        feedback: None,
        requested_at_ms: 0,
    }
}

fn feedback() -> FraudCommand {
    FraudCommand {
        action: FraudAction::Feedback,
        transaction: None,
        feedback: Some(FraudFeedback { kind: FeedbackKind::Chargeback, transaction_id: "tx-1".into(), reason: None, occurred_at_ms: 1 }),
        ..score()
    }
}

fn ctx() -> CallContext {
    CallContext { correlation_id: "corr-1".into(), traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into() }
}

async fn call(vendor: &str, fixture: &str, cmd: &FraudCommand) -> Result<FraudVerdict, AdapterError> {
    let r = Replay::start(&format!("fraud/{vendor}/{fixture}")).await;
    let t = Transport::new(Duration::from_millis(300), 2);
    let provider = match vendor {
        "sardine" => FraudProvider::Sardine(SardineAdapter::new("sardine", &r.base_url, Secret::new("id"), Secret::new("s"), t).expect("adapter")),
        _ => FraudProvider::Seon(SeonAdapter::new("seon", &r.base_url, Secret::new("k"), t).expect("adapter")),
    };
    provider.call(cmd, "fraud-1", &ctx()).await
}

const VENDORS: [&str; 2] = ["sardine", "seon"];

#[tokio::test]
async fn low_risk_is_allowed_with_a_normalized_score() {
    for v in VENDORS {
        let verdict = call(v, "allow", &score()).await.expect("verdict");
        assert_eq!((verdict.status, verdict.decision), (FraudStatus::Scored, Some(FraudDecision::Allow)), "{v}");
        assert!(verdict.score.is_some_and(|s| (0.0..0.2).contains(&s)), "{v}: {verdict:?}");
        assert!(verdict.reasons.is_empty(), "{v}: score-lowering rules are not reasons: {verdict:?}");
    }
}

#[tokio::test]
async fn review_carries_reasons_in_our_words() {
    for v in VENDORS {
        let verdict = call(v, "review", &score()).await.expect("verdict");
        assert_eq!(verdict.decision, Some(FraudDecision::Review), "{v}");
        assert!(verdict.reasons.contains(&FraudReason::ProxyOrVpn) && verdict.reasons.contains(&FraudReason::DisposableEmail), "{v}: {verdict:?}");
    }
}

#[tokio::test]
async fn blocklisted_is_blocked() {
    for v in VENDORS {
        let verdict = call(v, "block", &score()).await.expect("verdict");
        assert_eq!((verdict.decision, verdict.reasons.clone()), (Some(FraudDecision::Block), vec![FraudReason::Blocklisted]), "{v}");
    }
}

#[tokio::test]
async fn a_vendor_that_never_answers_is_a_transient_timeout() {
    for v in VENDORS {
        let e = call(v, "timeout", &score()).await.expect_err("times out");
        assert_eq!((e.class, e.code), (ErrorClass::Transient, ErrorCode::Timeout), "{v}: {e}");
    }
}

#[tokio::test]
async fn a_reply_without_a_decision_is_never_an_allow() {
    for v in VENDORS {
        let e = call(v, "malformed", &score()).await.expect_err("no decision");
        assert_eq!(e.class, ErrorClass::Transient, "{v}: {e}");
    }
}

#[tokio::test]
async fn feedback_is_accepted_and_unknown_transactions_are_refused_for_good() {
    for v in VENDORS {
        let verdict = call(v, "feedback", &feedback()).await.expect("accepted");
        assert_eq!((verdict.status, verdict.decision), (FraudStatus::FeedbackAccepted, None), "{v}");
    }
    let e = call("seon", "feedback_unknown", &feedback()).await.expect_err("unknown transaction");
    assert_eq!((e.class, e.code, e.ambiguous), (ErrorClass::Permanent, ErrorCode::InvalidRequest, false), "{e}");
    assert!(e.message.contains("3001"), "{e}");
}
