//! Contract tests of the AML adapters against recorded vendor exchanges
//! (`fixtures/aml/<vendor>/*.json`): clear, an ambiguous hit, a confirmed
//! hit, a vendor that never answers and a reply that is not what we expect.

mod support;

use std::time::Duration;
use support::Replay;
use switchyard_adapters::aml::comply_advantage::ComplyAdvantageAdapter;
use switchyard_adapters::aml::open_sanctions::OpenSanctionsAdapter;
use switchyard_adapters::aml::{AmlProvider, AmlVerdict};
use switchyard_adapters::http::Transport;
use switchyard_adapters::{AdapterError, CallContext, Secret};
use switchyard_canonical::aml::{AmlAction, AmlCommand, AmlStatus, AmlSubject, MatchedField, ScreeningList, SubjectKind};
use switchyard_canonical::{ErrorClass, ErrorCode};

fn command() -> AmlCommand {
    AmlCommand {
        subject_id: "app-1".into(),
        idempotency_key: "aml-1".into(),
        flow_id: None,
        action: AmlAction::Screen,
        subject: AmlSubject {
            kind: SubjectKind::Person,
            full_name: "Ivan Petrov".into(),
            first_name: Some("Ivan".into()),
            last_name: Some("Petrov".into()),
            birth_date: Some("1985".into()),
            country: Some("GB".into()),
        },
        lists: vec![],
        list_update: None,
        requested_at_ms: 0,
    }
}

fn ctx() -> CallContext {
    CallContext { correlation_id: "corr-1".into(), traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into() }
}

async fn screen(vendor: &str, fixture: &str) -> Result<AmlVerdict, AdapterError> {
    let r = Replay::start(&format!("aml/{vendor}/{fixture}")).await;
    let transport = Transport::new(Duration::from_millis(300), 2);
    let provider = match vendor {
        "complyadvantage" => AmlProvider::ComplyAdvantage(ComplyAdvantageAdapter::new("ca", &r.base_url, Secret::new("k"), transport).expect("adapter")),
        _ => AmlProvider::OpenSanctions(OpenSanctionsAdapter::new("os", &r.base_url, Secret::new("k"), "default", transport).expect("adapter")),
    };
    provider.screen(&command(), "aml-1", &ctx()).await
}

const VENDORS: [&str; 2] = ["complyadvantage", "opensanctions"];

#[tokio::test]
async fn clear_screenings_have_no_matches() {
    for v in VENDORS {
        let verdict = screen(v, "clear").await.expect("verdict");
        assert_eq!((verdict.status, verdict.matches.len()), (AmlStatus::Clear, 0), "{v}");
    }
}

#[tokio::test]
async fn an_ambiguous_hit_is_a_potential_match_with_normalized_details() {
    for v in VENDORS {
        let verdict = screen(v, "ambiguous_hit").await.expect("verdict");
        assert_eq!(verdict.status, AmlStatus::PotentialMatch, "{v}");
        let sanctions = verdict.matches.iter().find(|m| m.list == ScreeningList::Sanctions).expect("sanctions hit");
        assert!(sanctions.score < 1.0 && sanctions.score >= 0.7, "{v}: {sanctions:?}");
        assert_eq!(sanctions.matched_fields, vec![MatchedField::Name], "{v}: birth date did not agree");
        assert_eq!(sanctions.matched_name, "Ivan Petrov");
        assert!(!sanctions.source.is_empty() && !sanctions.entity_id.is_empty());
    }
    // Below-threshold candidates are not matches.
    assert_eq!(screen("opensanctions", "ambiguous_hit").await.expect("verdict").matches.len(), 1);
    // A PEP alias hit keeps its own list.
    let ca = screen("complyadvantage", "ambiguous_hit").await.expect("verdict");
    assert!(ca.matches.iter().any(|m| m.list == ScreeningList::Pep && m.matched_fields == vec![MatchedField::Alias]));
}

#[tokio::test]
async fn a_confirmed_hit_on_name_and_birth_date_is_confirmed() {
    for v in VENDORS {
        let verdict = screen(v, "confirmed").await.expect("verdict");
        assert_eq!(verdict.status, AmlStatus::ConfirmedMatch, "{v}");
        assert!(verdict.matches[0].matched_fields.contains(&MatchedField::BirthDate), "{v}");
    }
}

#[tokio::test]
async fn a_vendor_that_never_answers_is_a_transient_timeout() {
    for v in VENDORS {
        let e = screen(v, "timeout").await.expect_err("times out");
        assert_eq!((e.class, e.code, e.ambiguous), (ErrorClass::Transient, ErrorCode::Timeout, true), "{v}: {e}");
    }
}

#[tokio::test]
async fn a_malformed_reply_is_never_read_as_clear() {
    for v in VENDORS {
        let e = screen(v, "malformed").await.expect_err("unreadable");
        assert_eq!(e.class, ErrorClass::Transient, "{v}: {e}");
    }
}

#[tokio::test]
async fn bad_credentials_need_a_person() {
    let e = screen("complyadvantage", "unauthorized").await.expect_err("refused");
    assert_eq!((e.class, e.code), (ErrorClass::ManualRepair, ErrorCode::AuthenticationFailed));
}
