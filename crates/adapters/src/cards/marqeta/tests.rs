//! The adapter against the Marqeta simulator.

use super::*;
use crate::Secret;
use std::time::Duration;
use switchyard_canonical::card::{CardForm, CardState, DisputeSpec, EvidenceSpec, PinSpec, ProvisionSpec};
use switchyard_canonical::card_dispute::{DisputeReason, DisputeState};
use switchyard_simulators::marqeta::{spawn_marqeta, MarqetaConfig, PanReveals};
use switchyard_simulators::{CardOracle, FaultPlan, SimulatorHandle};

struct Env {
    sim: SimulatorHandle,
    adapter: MarqetaAdapter,
    oracle: CardOracle,
    reveals: PanReveals,
}

async fn env() -> Env {
    env_with(MarqetaConfig::local()).await
}

async fn env_with(cfg: MarqetaConfig) -> Env {
    let (oracle, reveals) = (cfg.oracle.clone(), cfg.pan_reveals.clone());
    let sim = spawn_marqeta(cfg).await.expect("simulator");
    let adapter = adapter_for(&sim, "access_token_switchyard");
    Env { sim, adapter, oracle, reveals }
}

fn adapter_for(sim: &SimulatorHandle, access: &str) -> MarqetaAdapter {
    let transport = Transport::new(Duration::from_secs(5), 4);
    MarqetaAdapter::new("marqeta", &format!("{}/v3", sim.base_url()), Secret::new("app_token_switchyard"), Secret::new(access), transport).expect("adapter")
}

fn ctx() -> CallContext {
    CallContext { correlation_id: "corr-1".into(), traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into() }
}

fn virtual_card() -> IssueSpec {
    IssueSpec { form: CardForm::Virtual, product: "prod-debit".into(), cardholder_ref: "user-42".into(), shipping: None }
}

fn physical_card(line1: &str) -> IssueSpec {
    let shipping = ShippingAddress {
        name: "Ada Lovelace".into(),
        line1: line1.into(),
        line2: None,
        city: "London".into(),
        postal_code: "N1 9GU".into(),
        country: "GB".into(),
    };
    IssueSpec { form: CardForm::Physical, product: "prod-debit".into(), cardholder_ref: "user-42".into(), shipping: Some(shipping) }
}

impl Env {
    async fn issue(&self, card_id: &str, key: &str, spec: &IssueSpec) -> Result<CardAnswer, AdapterError> {
        let call = CardCall::Issue { card_id, spec };
        self.adapter.call(&call, &self.adapter.provider_key(key), &ctx()).await
    }

    async fn on<'a>(&self, card_id: &'a str, token: &'a str, key: &str, make: impl Fn(CardRef<'a>) -> CardCall<'a>) -> Result<CardAnswer, AdapterError> {
        let call = make(CardRef { card_id, processor_reference: token });
        self.adapter.call(&call, &self.adapter.provider_key(key), &ctx()).await
    }
}

#[test]
fn marqeta_provider_key_is_a_deterministic_36_char_token() {
    let a = token_for("card-1:issue:7f3c");
    assert_eq!(a.len(), 36);
    assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(a, token_for("card-1:issue:7f3c"));
    assert_ne!(a, token_for("card-1:issue:7f3d"));
}

#[tokio::test]
async fn marqeta_issue_and_the_retry_after_a_crash_find_the_same_card() {
    let e = env().await;
    let first = e.issue("card-1", "k-issue-1", &virtual_card()).await.expect("issued");
    assert_eq!(first.state, Some(CardState::Issued));
    assert_eq!(first.last_four.as_deref().map(str::len), Some(4));
    let token = first.processor_reference.clone().expect("token");
    assert_eq!(token, e.adapter.provider_key("k-issue-1"));
    // The worker crashed after the call: the retry meets Marqeta's 409 and reads the card.
    let again = e.issue("card-1", "k-issue-1", &virtual_card()).await.expect("found");
    assert_eq!(again, first);
    assert_eq!(e.oracle.per_card()["card-1"].len(), 1, "one card for one card id");
    // The same token claimed for another card id is a collision, not a success.
    let other = e.issue("card-2", "k-issue-1", &virtual_card()).await.expect_err("collision");
    assert_eq!((other.class, other.code), (ErrorClass::ManualRepair, ErrorCode::IdempotencyCollision));
    e.sim.shutdown().await;
}

#[tokio::test]
async fn marqeta_lifecycle_calls_and_their_retries() {
    let e = env().await;
    let token = e.issue("card-3", "k3", &virtual_card()).await.expect("issued").processor_reference.expect("token");
    let activated = e.on("card-3", &token, "k3-act", |card| CardCall::Activate { card }).await.expect("activated");
    assert_eq!(activated.state, Some(CardState::Active));
    // A retried transition (same token) is answered from the card's state.
    let retried = e.on("card-3", &token, "k3-act", |card| CardCall::Activate { card }).await.expect("retried");
    assert_eq!(retried.state, Some(CardState::Active));
    assert_eq!(e.on("card-3", &token, "k3-sus", |card| CardCall::Suspend { card }).await.expect("suspended").state, Some(CardState::Suspended));
    assert_eq!(e.on("card-3", &token, "k3-rei", |card| CardCall::Reinstate { card }).await.expect("reinstated").state, Some(CardState::Active));
    assert_eq!(e.on("card-3", &token, "k3-ter", |card| CardCall::Terminate { card }).await.expect("terminated").state, Some(CardState::Terminated));
    let illegal = e.on("card-3", &token, "k3-act2", |card| CardCall::Activate { card }).await.expect_err("terminated is final");
    assert_eq!((illegal.class, illegal.ambiguous), (ErrorClass::Permanent, false), "{illegal}");
    let unknown = e.on("card-x", "no-such-card", "k-x", |card| CardCall::Suspend { card }).await.expect_err("unknown card");
    assert_eq!(unknown.class, ErrorClass::ManualRepair);
    e.sim.shutdown().await;
}

#[tokio::test]
async fn marqeta_pin_provisioning_and_disputes() {
    let e = env().await;
    let token = e.issue("card-4", "k4", &virtual_card()).await.expect("issued").processor_reference.expect("token");
    let hosted = PinSpec { encrypted_pin_block: None, hosted_flow_token: Some("hosted-flow-abc".into()) };
    let not_yet = e.on("card-4", &token, "k4-pin0", |card| CardCall::SetPin { card, pin: &hosted }).await.expect_err("no PIN yet");
    assert_eq!(not_yet.class, ErrorClass::Permanent);
    let block = PinSpec { encrypted_pin_block: Some("0412AC89FFEDCBA9".into()), hosted_flow_token: None };
    e.on("card-4", &token, "k4-pin", |card| CardCall::SetPin { card, pin: &block }).await.expect("PIN set");
    e.on("card-4", &token, "k4-pin1", |card| CardCall::SetPin { card, pin: &hosted }).await.expect("hosted PIN now set");
    e.on("card-4", &token, "k4-act", |card| CardCall::Activate { card }).await.expect("activated");

    let apple = ProvisionSpec {
        wallet: Wallet::ApplePay,
        certificates: vec!["bGVhZg==".into(), "c3ViY2E=".into()],
        nonce: Some("bm9uY2U=".into()),
        nonce_signature: Some("c2ln".into()),
        device_id: None,
        wallet_account_id: None,
    };
    let a = e.on("card-4", &token, "k4-ap", |card| CardCall::ProvisionToken { card, spec: &apple }).await.expect("apple");
    assert!(matches!(a.provisioning, Some(Provisioning::Requested { encrypted_data: Some(_), .. })), "{a:?}");
    let google = ProvisionSpec { wallet: Wallet::GooglePay, certificates: vec![], nonce: None, nonce_signature: None, device_id: Some("dev-1".into()), wallet_account_id: Some("acct-1".into()) };
    let g = e.on("card-4", &token, "k4-gp", |card| CardCall::ProvisionToken { card, spec: &google }).await.expect("google");
    assert!(matches!(g.provisioning, Some(Provisioning::Requested { .. })));

    let dispute = DisputeSpec { dispute_id: "dsp-1".into(), transaction_ref: "txn-1".into(), amount_minor: 1250, currency: "USD".into(), reason: DisputeReason::Fraud };
    let opened = e.on("card-4", &token, "k4-dsp", |card| CardCall::OpenDispute { card, spec: &dispute }).await.expect("opened");
    assert_eq!(opened.dispute_state, Some(DisputeState::Submitted));
    let again = e.on("card-4", &token, "k4-dsp", |card| CardCall::OpenDispute { card, spec: &dispute }).await.expect("same chargeback");
    assert_eq!(again.dispute_reference, opened.dispute_reference);
    let evidence = EvidenceSpec { dispute_id: "dsp-1".into(), document_ref: "doc-1".into(), note: None };
    let reference = opened.dispute_reference.clone().expect("ref");
    let refused = e
        .on("card-4", &token, "k4-ev", |card| CardCall::SubmitDisputeEvidence { card, dispute_reference: &reference, spec: &evidence })
        .await
        .expect_err("no evidence API");
    assert_eq!(refused.class, ErrorClass::ManualRepair);
    assert_eq!(e.reveals.count(), 0, "nobody asked for a PAN or CVV");
    e.sim.shutdown().await;
}

#[tokio::test]
async fn marqeta_replacement_links_cards_and_lost_cards_close_first() {
    let e = env_with(MarqetaConfig { ship_after: Duration::from_millis(100), ..MarqetaConfig::local() }).await;
    let old = e.issue("card-5", "k5", &physical_card("1 Main St")).await.expect("issued");
    let old_token = old.processor_reference.clone().expect("token");
    let shipping = physical_card("2 New St").shipping;
    let lost = e
        .on("card-5", &old_token, "k5-rep", |card| CardCall::Replace { card, new_card_id: "card-6", reason: ReplaceReason::Lost, shipping: shipping.as_ref() })
        .await
        .expect("replaced");
    let new_token = lost.processor_reference.clone().expect("new token");
    assert_ne!(new_token, old_token);
    assert_eq!(lost.state, Some(CardState::Issued));
    // Retried: the old card is already closed and the new one exists.
    let again = e
        .on("card-5", &old_token, "k5-rep", |card| CardCall::Replace { card, new_card_id: "card-6", reason: ReplaceReason::Lost, shipping: shipping.as_ref() })
        .await
        .expect("retried");
    assert_eq!(again.processor_reference, lost.processor_reference);
    let closed = e.on("card-5", &old_token, "k5-ter", |card| CardCall::Terminate { card }).await.expect_err("already terminated");
    assert_eq!(closed.class, ErrorClass::Permanent);
    let damaged = e
        .on("card-6", &new_token, "k6-rep", |card| CardCall::Replace { card, new_card_id: "card-7", reason: ReplaceReason::Damaged, shipping: None })
        .await
        .expect("reissued");
    assert_eq!(damaged.last_four, lost.last_four, "a reissue keeps the PAN");
    assert_eq!(e.oracle.issued_more_than_once().len(), 0);
    assert_eq!(e.oracle.per_card().len(), 3);
    tokio::time::sleep(Duration::from_millis(120)).await;
    let hosted = PinSpec { encrypted_pin_block: None, hosted_flow_token: Some("hosted-flow-xyz".into()) };
    let shipped = e.on("card-7", damaged.processor_reference.as_deref().unwrap_or_default(), "k7-pin", |card| CardCall::SetPin { card, pin: &hosted });
    // No PIN yet on the reissued card: refused, but the card is readable.
    assert!(shipped.await.is_err());
    e.sim.shutdown().await;
}

#[tokio::test]
async fn marqeta_errors_map_to_the_taxonomy_and_never_carry_a_pan() {
    let e = env().await;
    let declined = IssueSpec { cardholder_ref: "declined-user".into(), ..virtual_card() };
    let err = e.issue("card-8", "k8", &declined).await.expect_err("declined");
    assert_eq!((err.class, err.ambiguous), (ErrorClass::Permanent, false));
    assert!(err.message.contains("400200"), "{err}");
    // Declined issuance frees the token: the cardholder fixed, the same key issues.
    e.issue("card-8", "k8", &virtual_card()).await.expect("issued after the fix");

    let wrong = adapter_for(&e.sim, "wrong");
    let call = CardCall::Issue { card_id: "card-9", spec: &virtual_card() };
    let auth = wrong.call(&call, &wrong.provider_key("k9"), &ctx()).await.expect_err("401");
    assert_eq!((auth.class, auth.code), (ErrorClass::ManualRepair, ErrorCode::AuthenticationFailed));

    e.sim.set_faults(FaultPlan { unavailable_ratio: 1.0, ..FaultPlan::default() });
    let down = e.issue("card-9", "k9", &virtual_card()).await.expect_err("503");
    assert!(down.is_definite_refusal(), "{down:?}");
    e.sim.set_faults(FaultPlan { server_error_ratio: 1.0, seed: 2, ..FaultPlan::default() });
    let broken = e.issue("card-9", "k9", &virtual_card()).await.expect_err("5xx");
    assert!(broken.class == ErrorClass::Transient);
    e.sim.set_faults(FaultPlan::default());

    let long = IssueSpec { cardholder_ref: "x".repeat(37), ..virtual_card() };
    assert_eq!(e.issue("card-10", "k10", &long).await.expect_err("too long").class, ErrorClass::Permanent);

    let answer = e.issue("card-11", "k11", &virtual_card()).await.expect("issued");
    let shown = format!("{answer:?} {err:?} {auth:?} {down:?}");
    assert!(!shown.contains("411111"), "no PAN in answers or errors: {shown}");
    assert_eq!(e.reveals.count(), 0);
    e.sim.shutdown().await;
}
