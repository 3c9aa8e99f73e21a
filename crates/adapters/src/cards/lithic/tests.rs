//! The adapter against the Lithic simulator.

use super::*;
use crate::Secret;
use crate::cards::Provisioning;
use std::time::Duration;
use switchyard_canonical::card::{CardForm, CardState, DisputeSpec, EvidenceSpec, IssueSpec, PinSpec, ProvisionSpec, ShippingAddress, Wallet};
use switchyard_canonical::card_dispute::{DisputeReason, DisputeState};
use switchyard_simulators::lithic::{spawn_lithic, LithicConfig, MAGIC_DECLINE, MAGIC_STEP_UP};
use switchyard_simulators::{CardOracle, FaultPlan, SimulatorHandle};

fn ctx() -> CallContext {
    CallContext { correlation_id: "corr-1".into(), traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into() }
}

async fn setup(cfg: LithicConfig) -> (SimulatorHandle, LithicAdapter) {
    let key = cfg.api_key.clone();
    let sim = spawn_lithic(cfg).await.expect("simulator");
    let adapter = LithicAdapter::new("lithic", &sim.base_url(), Secret::new(key), Transport::new(Duration::from_secs(5), 4)).expect("adapter");
    (sim, adapter)
}

fn virtual_spec() -> IssueSpec {
    IssueSpec { form: CardForm::Virtual, product: "debit-classic".into(), cardholder_ref: "cust-1".into(), shipping: None }
}

fn address() -> ShippingAddress {
    ShippingAddress { name: "Ada Lovelace".into(), line1: "1 Main St".into(), line2: None, city: "Berlin".into(), postal_code: "10115".into(), country: "DE".into() }
}

fn physical_spec(product: &str) -> IssueSpec {
    IssueSpec { form: CardForm::Physical, product: product.into(), cardholder_ref: "cust-1".into(), shipping: Some(address()) }
}

fn apple(nonce: &str) -> ProvisionSpec {
    ProvisionSpec { wallet: Wallet::ApplePay, certificates: vec!["bGVhZg==".into(), "c3ViY2E=".into()], nonce: Some(nonce.into()), nonce_signature: Some("c2ln".into()), device_id: None, wallet_account_id: None }
}

async fn issue(a: &LithicAdapter, card_id: &str, spec: &IssueSpec) -> Result<CardAnswer, AdapterError> {
    a.call(&CardCall::Issue { card_id, spec }, &a.provider_key(&format!("{card_id}:issue")), &ctx()).await
}

#[tokio::test]
async fn a_virtual_card_lives_its_whole_life() {
    let oracle = CardOracle::new();
    let (sim, a) = setup(LithicConfig { oracle: oracle.clone(), ..LithicConfig::local() }).await;
    let issued = issue(&a, "card-v1", &virtual_spec()).await.expect("issued");
    assert_eq!(issued.state, Some(CardState::Issued), "created PAUSED, awaiting ACTIVATE");
    assert_eq!(issued.last_four.as_deref().map(str::len), Some(4));
    let token = issued.processor_reference.clone().expect("token");
    let card = CardRef { card_id: "card-v1", processor_reference: &token };
    let key = |step: &str| a.provider_key(&format!("card-v1:{step}"));
    assert_eq!(a.call(&CardCall::Activate { card }, &key("a"), &ctx()).await.expect("activate").state, Some(CardState::Active));
    let pin = PinSpec { encrypted_pin_block: Some("0412AC89ABCDEF67".into()), hosted_flow_token: None };
    a.call(&CardCall::SetPin { card, pin: &pin }, &key("p"), &ctx()).await.expect("pin");
    let hosted = PinSpec { encrypted_pin_block: None, hosted_flow_token: Some("hosted-flow-abc".into()) };
    let e = a.call(&CardCall::SetPin { card, pin: &hosted }, &key("p2"), &ctx()).await.expect_err("no hosted flow at Lithic");
    assert_eq!((e.class, e.ambiguous), (ErrorClass::Permanent, false));
    assert_eq!(a.call(&CardCall::Suspend { card }, &key("s"), &ctx()).await.expect("suspend").state, Some(CardState::Suspended));
    let e = a.call(&CardCall::ProvisionToken { card, spec: &apple("bm9uY2U=") }, &key("t0"), &ctx()).await.expect_err("a paused card is not provisioned");
    assert_eq!((e.class, e.code), (ErrorClass::Permanent, ErrorCode::InvalidRequest));
    assert_eq!(a.call(&CardCall::Reinstate { card }, &key("r"), &ctx()).await.expect("reinstate").state, Some(CardState::Active));
    let ready = a.call(&CardCall::ProvisionToken { card, spec: &apple("bm9uY2U=") }, &key("t1"), &ctx()).await.expect("provision");
    assert!(matches!(ready.provisioning, Some(Provisioning::Ready { ref encrypted_data, .. }) if encrypted_data.is_some()), "{ready:?}");
    let step_up = a.call(&CardCall::ProvisionToken { card, spec: &apple(&format!("{MAGIC_STEP_UP}-1")) }, &key("t2"), &ctx()).await.expect("provision");
    assert_eq!(step_up.provisioning, Some(Provisioning::StepUpRequired));
    let google = ProvisionSpec { wallet: Wallet::GooglePay, certificates: vec![], nonce: None, nonce_signature: None, device_id: Some("dev-1".into()), wallet_account_id: Some("wa-1".into()) };
    let g = a.call(&CardCall::ProvisionToken { card, spec: &google }, &key("t3"), &ctx()).await.expect("provision");
    assert!(matches!(g.provisioning, Some(Provisioning::Ready { .. })));
    let dispute = DisputeSpec { dispute_id: "dsp-1".into(), transaction_ref: uuid::Uuid::new_v4().to_string(), amount_minor: 1250, currency: "USD".into(), reason: DisputeReason::Fraud };
    let opened = a.call(&CardCall::OpenDispute { card, spec: &dispute }, &key("d"), &ctx()).await.expect("dispute");
    assert_eq!(opened.dispute_state, Some(DisputeState::Opened));
    let dref = opened.dispute_reference.expect("dispute token");
    let evidence = EvidenceSpec { dispute_id: "dsp-1".into(), document_ref: "docs://disputes/dsp-1/receipt.pdf".into(), note: None };
    let ev = a.call(&CardCall::SubmitDisputeEvidence { card, dispute_reference: &dref, spec: &evidence }, &key("e"), &ctx()).await.expect("evidence");
    assert_eq!(ev.dispute_reference.as_deref(), Some(dref.as_str()));
    assert_eq!(a.call(&CardCall::Terminate { card }, &key("x"), &ctx()).await.expect("close").state, Some(CardState::Terminated));
    // A retry after an ambiguous close: Lithic refuses to touch a closed card; the adapter reads it.
    assert_eq!(a.call(&CardCall::Terminate { card }, &key("x"), &ctx()).await.expect("close again").state, Some(CardState::Terminated));
    let e = a.call(&CardCall::Activate { card }, &key("a2"), &ctx()).await.expect_err("closed for good");
    assert_eq!(e.class, ErrorClass::Permanent);
    assert_eq!(oracle.per_card().keys().collect::<Vec<_>>(), vec!["card-v1"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_lost_physical_card_is_replaced_and_closed_and_found_by_memo() {
    let oracle = CardOracle::new();
    let (sim, a) = setup(LithicConfig { oracle: oracle.clone(), ship_after: Duration::from_millis(50), ..LithicConfig::local() }).await;
    let issued = issue(&a, "card-p1", &physical_spec("42")).await.expect("issued");
    assert_eq!(issued.state, Some(CardState::Issued), "PENDING_FULFILLMENT");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let found = a.find("card-p1", &ctx()).await.expect("listed").expect("found");
    assert_eq!(found.state, Some(CardState::PendingActivation), "shipped");
    let token = issued.processor_reference.clone().expect("token");
    let card = CardRef { card_id: "card-p1", processor_reference: &token };
    let ship = address();
    let replace = CardCall::Replace { card, new_card_id: "card-p2", reason: ReplaceReason::Lost, shipping: Some(&ship) };
    let new = a.call(&replace, &a.provider_key("card-p1:replace"), &ctx()).await.expect("replaced");
    assert_ne!(new.processor_reference.as_deref(), Some(token.as_str()));
    assert_eq!(new.state, Some(CardState::Issued));
    assert_eq!(a.find("card-p1", &ctx()).await.expect("listed").and_then(|c| c.state), Some(CardState::Terminated));
    // The same command again (an ambiguous first attempt): one new card, not two.
    a.call(&replace, &a.provider_key("card-p1:replace"), &ctx()).await.expect("replayed");
    assert!(oracle.issued_more_than_once().is_empty(), "{:?}", oracle.per_card());
    assert_eq!(a.find("card-nobody", &ctx()).await.expect("listed"), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_map_to_the_taxonomy() {
    let (sim, a) = setup(LithicConfig::local()).await;
    let declined = issue(&a, "card-d", &physical_spec(MAGIC_DECLINE)).await.expect_err("declined");
    assert_eq!((declined.class, declined.code, declined.ambiguous), (ErrorClass::Permanent, ErrorCode::InvalidRequest, false));
    // One key, two bodies: our mapping changed between attempts.
    let key = a.provider_key("shared-key");
    a.call(&CardCall::Issue { card_id: "card-k1", spec: &virtual_spec() }, &key, &ctx()).await.expect("first");
    let e = a.call(&CardCall::Issue { card_id: "card-k2", spec: &virtual_spec() }, &key, &ctx()).await.expect_err("collision");
    assert_eq!((e.class, e.code), (ErrorClass::ManualRepair, ErrorCode::IdempotencyCollision));
    sim.set_faults(FaultPlan { rate_limit_ratio: 1.0, retry_after_secs: 3, ..FaultPlan::default() });
    let e = issue(&a, "card-r", &virtual_spec()).await.expect_err("rate limited");
    assert_eq!((e.code, e.retry_after, e.ambiguous), (ErrorCode::RateLimited, Some(Duration::from_secs(3)), false));
    sim.set_faults(FaultPlan { unavailable_ratio: 1.0, ..FaultPlan::default() });
    assert!(issue(&a, "card-u", &virtual_spec()).await.expect_err("503").is_definite_refusal());
    sim.set_faults(FaultPlan { latency_ms: 400, ..FaultPlan::default() });
    let spec = virtual_spec();
    let call = CardCall::Issue { card_id: "card-f", spec: &spec };
    let key = a.provider_key("card-f:issue");
    let c = ctx();
    let second = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        a.call(&call, &key, &c).await
    };
    let (first, second) = tokio::join!(a.call(&call, &key, &c), second);
    first.expect("first executes");
    let e = second.expect_err("in flight");
    assert!(e.ambiguous && !e.is_definite_refusal() && e.class == ErrorClass::Transient, "{e:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn no_pan_reaches_an_answer_even_from_a_pci_program() {
    let (sim, a) = setup(LithicConfig { pci_program: true, ..LithicConfig::local() }).await;
    let issued = issue(&a, "card-pci", &virtual_spec()).await.expect("issued");
    let token = issued.processor_reference.clone().expect("token");
    let raw: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/cards/{token}", sim.base_url()))
        .header("Authorization", "lithic_sk_test_switchyard")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let pan = raw["pan"].as_str().expect("a PCI program gets the PAN").to_owned();
    let card = CardRef { card_id: "card-pci", processor_reference: &token };
    let activated = a.call(&CardCall::Activate { card }, &a.provider_key("card-pci:a"), &ctx()).await.expect("activated");
    let found = a.find("card-pci", &ctx()).await.expect("found");
    for text in [format!("{issued:?}"), format!("{activated:?}"), format!("{found:?}"), format!("{a:?}")] {
        assert!(!text.contains(&pan) && !text.contains(&pan[..12]), "PAN leaked: {text}");
    }
    // Every request body the adapter builds is free of PAN-shaped fields.
    let body = serde_json::to_string(&CreateCard::issue("card-pci", &physical_spec("1")).expect("body")).expect("json");
    assert!(!body.contains("\"pan\"") && !body.contains("\"cvv\""), "{body}");
    sim.shutdown().await;
}

#[test]
fn provider_keys_are_uuids_derived_deterministically() {
    let a = LithicAdapter::new("lithic", "http://127.0.0.1:9", Secret::new("k"), Transport::new(Duration::from_secs(1), 1)).expect("adapter");
    let uuid = "65A9DAD4-1B60-4686-83FD-65B25078A4B4";
    assert_eq!(a.provider_key(uuid), uuid.to_ascii_lowercase());
    let derived = a.provider_key("card-1:issue");
    assert_eq!(derived, a.provider_key("card-1:issue"));
    assert_ne!(derived, a.provider_key("card-1:activate"));
    let parsed = uuid::Uuid::parse_str(&derived).expect("a UUID");
    assert_eq!(parsed.get_version_num(), 5);
}

#[tokio::test]
async fn past_key_retention_lithic_issues_again_and_find_tells() {
    let oracle = CardOracle::new();
    let cfg = LithicConfig { oracle: oracle.clone(), key_retention: Duration::from_millis(100), ..LithicConfig::local() };
    let (sim, a) = setup(cfg).await;
    assert_eq!(a.find("card-e", &ctx()).await.expect("listed"), None, "look before issuing again");
    issue(&a, "card-e", &virtual_spec()).await.expect("issued");
    let found = a.find("card-e", &ctx()).await.expect("listed").expect("found");
    assert_eq!(found.state, Some(CardState::Suspended), "a listed never-activated virtual card reads PAUSED");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // What a worker must not do: the key is forgotten, so this is a second card.
    issue(&a, "card-e", &virtual_spec()).await.expect("issued again");
    assert_eq!(oracle.issued_more_than_once().len(), 1);
    let e = a.find("card-e", &ctx()).await.expect_err("two cards for one card id");
    assert_eq!(e.class, ErrorClass::ManualRepair);
    sim.shutdown().await;
}
