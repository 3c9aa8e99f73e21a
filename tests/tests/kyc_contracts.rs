//! Vendor contracts for identity checks and screening: the Onfido (KYC) and
//! OpenSanctions (AML) adapters and simulators checked against the vendors'
//! own OpenAPI documents, trimmed in `tests/contracts/` (source and version
//! in its README). Same method as vendor_contracts.rs: the real adapter
//! drives the simulator through a recording proxy, then
//! 1. every request validates against the operation's request schema (JSON,
//!    or the `multipart/form-data` parts of Onfido's uploads), with no field
//!    the schema does not declare; query parameters are declared ones;
//! 2. every response, and every webhook the simulator sent, validates
//!    against the schema for its status, with no undeclared property;
//! 3. every field the adapter reads exists in the vendor's schema.
//!
//! Sumsub, ComplyAdvantage, Sardine and SEON publish no machine-readable
//! definition; their adapters keep hand-written fixtures. No broker needed.

#[allow(dead_code)]
#[path = "vendor_contracts/support.rs"]
mod support;

use std::time::Duration;

use serde_json::Value;
use support::{ctx, multipart_to_json, report, transport, validate, wait_for, Contract, Exchange, Recorder};
use switchyard_adapters::aml::open_sanctions::OpenSanctionsAdapter;
use switchyard_adapters::kyc::onfido::OnfidoAdapter;
use switchyard_adapters::kyc::Polling;
use switchyard_adapters::Secret;
use switchyard_canonical::aml::{AmlAction, AmlCommand, AmlStatus, AmlSubject, SubjectKind};
use switchyard_canonical::kyc::{DocumentKind, IdDocument, KycCommand, KycStatus, Person};
use switchyard_simulators::WebhookTarget;

const ONFIDO_TOKEN: &str = "api_sandbox.switchyard";
const OPENSANCTIONS_KEY: &str = "os_test_switchyard";

/// Fields the Onfido adapter reads, from
/// crates/adapters/src/kyc/onfido/{transformers,webhook}.rs (`*` = every
/// array item). Keep in step with those deserializers.
const ONFIDO_FIELDS_READ: &[(&str, &str)] = &[
    // OnfidoResource (applicant, document, live photo)
    ("applicant", "id"),
    ("document", "id"),
    ("live_photo", "id"),
    // OnfidoCheck
    ("check", "id"),
    ("check", "status"),
    ("check", "result"),
    // OnfidoReports / OnfidoReport / Breakdown
    ("Reports_list", "reports.*.name"),
    ("Reports_list", "reports.*.result"),
    ("Reports_list", "reports.*.sub_result"),
    ("Reports_list", "reports.*.breakdown.image_integrity.result"),
    ("Reports_list", "reports.*.breakdown.visual_authenticity.result"),
    ("Reports_list", "reports.*.breakdown.data_consistency.result"),
    ("Reports_list", "reports.*.breakdown.data_comparison.result"),
    ("Reports_list", "reports.*.breakdown.age_validation.result"),
    // OnfidoError
    ("Error", "error.type"),
    ("Error", "error.message"),
    // webhook::Notification
    ("webhook_event", "payload.resource_type"),
    ("webhook_event", "payload.action"),
    ("webhook_event", "payload.object.id"),
    ("webhook_event", "payload.object.status"),
    ("webhook_event", "payload.object.completed_at_iso8601"),
];

const ONFIDO_KNOWN: &[(&str, &str)] = &[
    (
        "\"event\" is a required property",
        "Onfido's `webhook_event_payload` requires `event` and `resource_id`, neither of which it declares as a property; \
         its webhook documentation and the payload's declared properties are `resource_type`, `action`, `object`",
    ),
    ("\"resource_id\" is a required property", "the same inconsistency in Onfido's document"),
];

/// Fields the OpenSanctions adapter reads, from
/// crates/adapters/src/aml/open_sanctions/transformers.rs.
const OPENSANCTIONS_FIELDS_READ: &[(&str, &str)] = &[
    ("EntityMatchResponse", "responses.q.results.*.id"),
    ("EntityMatchResponse", "responses.q.results.*.caption"),
    ("EntityMatchResponse", "responses.q.results.*.score"),
    ("EntityMatchResponse", "responses.q.results.*.match"),
    ("EntityMatchResponse", "responses.q.results.*.datasets"),
    ("EntityMatchResponse", "responses.q.results.*.properties.topics"),
    ("EntityMatchResponse", "responses.q.results.*.explanations.name_literal_match.score"),
    ("ErrorResponse", "detail"),
];

const OPENSANCTIONS_KNOWN: &[(&str, &str)] = &[
    (
        "POST /match/{dataset}: the simulator answered 401",
        "yente's generated document declares 200, 400, 422 and 500 only; the hosted API refuses a bad key with 401 and a \
         `{detail}` body, which is checked against ErrorResponse below",
    ),
    ("POST /match/{dataset}: the simulator answered 404", "likewise for an unknown dataset"),
];

/// Checks what the proxy saw against `spec`: query names, request bodies
/// (JSON or multipart), response bodies.
fn check_exchanges(spec: &Contract, exchanges: &[Exchange]) -> Vec<String> {
    let mut findings = Vec::new();
    for x in exchanges {
        let Some((template, op)) = spec.operation(&x.method, &x.path) else {
            findings.push(format!("{} {}: not an operation of the pinned spec", x.method, x.path));
            continue;
        };
        let at = format!("{} {template}", x.method);
        for name in support::query_names(&x.query) {
            if !spec.declares_query(op, &name) {
                findings.push(format!("{at}: query parameter {name} is not declared"));
            }
        }
        findings.extend(spec.missing_required_query(op, &x.query).into_iter().map(|p| format!("{at}: required query parameter {p} missing")));
        if x.method == "POST" {
            let media = x.request_content_type.split(';').next().unwrap_or_default().trim().to_owned();
            let body = match media.as_str() {
                "multipart/form-data" => multipart_to_json(&x.request_content_type, &x.request_body),
                _ => serde_json::from_slice::<Value>(&x.request_body).ok(),
            };
            match (spec.request_schema(op, &media), body) {
                (Some(schema), Some(body)) => {
                    findings.extend(validate(spec, &schema, &body, true).into_iter().map(|e| format!("{at} request: {e}")));
                }
                (None, _) => findings.push(format!("{at}: no {media} request schema")),
                (_, None) => findings.push(format!("{at}: the {media} body does not parse")),
            }
        }
        findings.extend(spec.check_response(op, &at, x.status, &x.response_body));
    }
    findings
}

fn kyc_command(id: &str, last_name: &str, kind: DocumentKind) -> KycCommand {
    KycCommand {
        subject_id: format!("subject-{id}"),
        idempotency_key: format!("key-{id}"),
        flow_id: None,
        person: Person { first_name: "Ada".into(), last_name: last_name.into(), date_of_birth: None, email: None },
        document: IdDocument {
            kind,
            issuing_country: "GBR".into(),
            front_ref: format!("doc://{id}/front"),
            back_ref: kind.two_sided().then(|| format!("doc://{id}/back")),
        },
        selfie_ref: None,
        requested_at_ms: support::now_ms(),
    }
}

#[tokio::test]
async fn onfido_matches_onfidos_openapi() {
    let spec = Contract::load("onfido/v3.6.json", "/v3.6");
    let recorder = Recorder::start().await;
    let mut cfg = switchyard_simulators::onfido::OnfidoConfig::local();
    cfg.webhook = Some(WebhookTarget { url: recorder.hook_url(), secret: "onfido-webhook-token".into() });
    let sim = switchyard_simulators::onfido::spawn_onfido(cfg).await.expect("onfido simulator starts");
    recorder.forward_to(&sim.base_url());
    let base = recorder.base_url();
    let polling = Polling { interval: Duration::from_millis(50), budget: Duration::from_secs(5) };
    let adapter = OnfidoAdapter::new("onfido", &base, Secret::new(ONFIDO_TOKEN), transport(), polling).expect("adapter");
    let ctx = ctx();

    let mut clear = kyc_command("clear", "Lovelace", DocumentKind::Passport);
    clear.person.date_of_birth = Some("1990-12-10".into());
    clear.person.email = Some("ada@example.com".into());
    clear.selfie_ref = Some("doc://clear/selfie".into());
    let v = adapter.verify(&clear, &clear.idempotency_key, &ctx).await.expect("clear");
    assert_eq!(v.status, KycStatus::Approved, "{v:?}");
    let forged = kyc_command("forged", "Forged", DocumentKind::NationalIdentityCard);
    let v = adapter.verify(&forged, &forged.idempotency_key, &ctx).await.expect("forged");
    assert_eq!(v.status, KycStatus::Declined, "{v:?}");
    let step_up = kyc_command("stepup", "StepUp", DocumentKind::DrivingLicence);
    let v = adapter.verify(&step_up, &step_up.idempotency_key, &ctx).await.expect("step-up");
    assert_eq!(v.status, KycStatus::StepUpRequired, "{v:?}");
    let mut bad_email = kyc_command("bad-email", "Lovelace", DocumentKind::Passport);
    bad_email.person.email = Some("not-an-address".into());
    adapter.verify(&bad_email, &bad_email.idempotency_key, &ctx).await.expect_err("422");
    let wrong_token = OnfidoAdapter::new("onfido", &base, Secret::new("api_sandbox.wrong"), transport(), polling).expect("adapter");
    wrong_token.verify(&clear, "key-401", &ctx).await.expect_err("401");
    // A check read before it settles: reports still awaiting data.
    let impatient = Polling { interval: Duration::from_millis(1), budget: Duration::from_millis(1) };
    let impatient = OnfidoAdapter::new("onfido", &base, Secret::new(ONFIDO_TOKEN), transport(), impatient).expect("adapter");
    let pending = kyc_command("pending", "Lovelace", DocumentKind::Passport);
    impatient.verify(&pending, &pending.idempotency_key, &ctx).await.expect_err("the poll budget runs out");
    let created = recorder.exchanges().into_iter().rev().find(|x| x.method == "POST" && x.path.ends_with("/checks")).expect("a check");
    let check: Value = serde_json::from_slice(&created.response_body).expect("check JSON");
    let auth = [("authorization", "Token token=api_sandbox.switchyard")];
    recorder.get(&format!("/v3.6/reports?check_id={}", check["id"].as_str().unwrap_or_default()), &auth).await;
    recorder.get("/v3.6/checks/7f1c2b9e-0000-4000-8000-000000000000", &auth).await;
    // clear, forged and pending complete and call back; step-up waits.
    let hooks = wait_for(&recorder, 3, Duration::from_secs(10)).await;

    let mut findings = check_exchanges(&spec, &recorder.exchanges());
    for hook in &hooks {
        findings.extend(validate(&spec, &spec.schema_ref("webhook_event"), hook, true).into_iter().map(|e| format!("webhook: {e}")));
    }
    assert_eq!(hooks.len(), 3, "webhooks: {hooks:?}");
    findings.extend(support::fields_read(&spec, ONFIDO_FIELDS_READ));
    sim.shutdown().await;
    report(&findings, ONFIDO_KNOWN);
}

fn aml_command(id: &str, name: &str, birth_date: Option<&str>) -> AmlCommand {
    AmlCommand {
        subject_id: format!("subject-{id}"),
        idempotency_key: format!("key-{id}"),
        flow_id: None,
        action: AmlAction::Screen,
        subject: AmlSubject {
            kind: SubjectKind::Person,
            full_name: name.into(),
            first_name: name.split_whitespace().next().map(str::to_owned),
            last_name: name.split_whitespace().last().map(str::to_owned),
            birth_date: birth_date.map(str::to_owned),
            country: Some("GB".into()),
        },
        lists: Vec::new(),
        list_update: None,
        requested_at_ms: support::now_ms(),
    }
}

#[tokio::test]
async fn opensanctions_matches_the_yente_openapi() {
    let spec = Contract::load("opensanctions/match.json", "");
    let recorder = Recorder::start().await;
    let sim = switchyard_simulators::open_sanctions::spawn_open_sanctions(switchyard_simulators::open_sanctions::OpenSanctionsConfig::local())
        .await
        .expect("opensanctions simulator starts");
    recorder.forward_to(&sim.base_url());
    let base = recorder.base_url();
    let adapter = OpenSanctionsAdapter::new("os", &base, Secret::new(OPENSANCTIONS_KEY), "default", transport()).expect("adapter");
    let ctx = ctx();

    let v = adapter.screen(&aml_command("blocked", "Ivan Blocked", Some("1961-03-04")), &ctx).await.expect("screen");
    assert_eq!(v.status, AmlStatus::ConfirmedMatch, "an exact name and birth date are read from `explanations`: {v:?}");
    let v = adapter.screen(&aml_command("similar", "Ivan Similar", None), &ctx).await.expect("screen");
    assert_eq!(v.status, AmlStatus::PotentialMatch, "{v:?}");
    let v = adapter.screen(&aml_command("clear", "Ada Lovelace", None), &ctx).await.expect("screen");
    assert_eq!(v.status, AmlStatus::Clear, "{v:?}");
    adapter.screen(&aml_command("old", "Ada Lovelace", Some("1815-12-10")), &ctx).await.expect_err("422");
    let wrong_key = OpenSanctionsAdapter::new("os", &base, Secret::new("wrong"), "default", transport()).expect("adapter");
    wrong_key.screen(&aml_command("401", "Ada Lovelace", None), &ctx).await.expect_err("401");
    let no_dataset = OpenSanctionsAdapter::new("os", &base, Secret::new(OPENSANCTIONS_KEY), "nope", transport()).expect("adapter");
    no_dataset.screen(&aml_command("404", "Ada Lovelace", None), &ctx).await.expect_err("404");

    let exchanges = recorder.exchanges();
    let mut findings = check_exchanges(&spec, &exchanges);
    // The undeclared refusals still carry the declared error body.
    for x in exchanges.iter().filter(|x| matches!(x.status, 401 | 404)) {
        let body: Value = serde_json::from_slice(&x.response_body).unwrap_or(Value::Null);
        findings.extend(validate(&spec, &spec.schema_ref("ErrorResponse"), &body, true).into_iter().map(|e| format!("{} body: {e}", x.status)));
    }
    findings.extend(support::fields_read(&spec, OPENSANCTIONS_FIELDS_READ));
    sim.shutdown().await;
    report(&findings, OPENSANCTIONS_KNOWN);
}
