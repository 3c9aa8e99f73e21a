//! TrueLayer's payment webhooks drive payment statuses, end to end: the
//! TrueLayer simulator signs each `payment_<status>` webhook with
//! TrueLayer's own `truelayer-signing` crate and serves its JWKS, the
//! webhook ingester verifies it (the simulator's JWKS URL allowed) and
//! publishes it on `openbanking.provider-events.v1`, the open banking
//! worker's callbacks consumer applies it to the payment. Real broker, real
//! PostgreSQL.
//!
//! Polling is set to ten minutes, so every status after AUTHORIZATION_REQUIRED
//! can only come from a webhook. Each payment's webhooks are held until it
//! ends and then sent newest first, twice (the ingester absorbs the second
//! copy by event id); afterwards every provider event is put on the bus a
//! second time, as a redelivery would. For every status path (settled;
//! failed at authorization; executed then returned) each status is published
//! exactly once and in path order, and each provider event is acted on once
//! (one `openbanking_callback` audit row per provider event id).

#[path = "openbanking/support.rs"]
#[allow(dead_code)] // shared with the Plaid tests; this file uses part of it
mod support;

use anyhow::{ensure, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use support::{create, Stack};
use switchyard_bus::{Outbound, Publisher};
use switchyard_canonical::openbanking::{CompletionSpec, ConsentScope, OpenBankingAction, OpenBankingCommand, PaymentSpec};
use switchyard_canonical::openbanking_event::OpenBankingEvent;
use switchyard_canonical::openbanking_outcome::{OpenBankingKind, PaymentFailureReason};
use switchyard_canonical::openbanking_payment::PaymentStatus as P;
use switchyard_e2e::logs::captured_logs;
use switchyard_e2e::webhooks::url;
use switchyard_ingester::config::ProviderConfig;
use switchyard_ingester::start_ingester;
use switchyard_simulators::truelayer::{generate_signing_key, spawn_truelayer, Scenario, TrueLayerConfig, TrueLayerSimulator, WebhookDelivery, WebhookOrder};
use switchyard_worker::config::SecretSource;
use switchyard_worker::openbanking::config::{ObCallbackSettings, ObProviderConfig, ObProviderKind};
use switchyard_worker::openbanking::truelayer_config::{PaymentPollingConfig, TrueLayerSection};
use tokio_util::sync::CancellationToken;

const KID: &str = "e2e-signing-key";

/// A stack whose consents go to the TrueLayer simulator, callbacks on,
/// polling every `polling_ms`.
async fn stack(name: &str, polling_ms: u64) -> Result<(Stack, TrueLayerSimulator)> {
    let tl = spawn_truelayer(TrueLayerConfig { step: Duration::from_millis(250), ..TrueLayerConfig::local() }).await?;
    let (private, public) = generate_signing_key();
    tl.register_signing_key(KID, &public);
    let api = tl.base_url();
    let tweak = std::sync::Arc::new(move |c: &mut switchyard_worker::openbanking::config::OpenBankingWorkerConfig| {
        let local = TrueLayerConfig::local();
        let mut p: ObProviderConfig = c.providers[0].clone();
        p.name = "truelayer".into();
        p.kind = ObProviderKind::TrueLayer;
        p.base_url = api.clone();
        p.client_id = local.client_id;
        p.secret = SecretSource::inline(&local.client_secret);
        p.truelayer = Some(TrueLayerSection {
            auth_url: api.clone(),
            hpp_url: "https://payment.truelayer-sandbox.com".into(),
            signing_key_id: KID.into(),
            signing_key: SecretSource::inline(&private),
            redirect_uri: "https://app.example.com/paid".into(),
            merchant_accounts: [("main-gbp".to_owned(), "ma-200f-e2e".to_owned())].into_iter().collect(),
            resource_token_ttl_ms: 900_000,
            auth_link_ttl_ms: 3_600_000,
            consent_ttl_ms: 90 * 24 * 3_600_000,
        });
        c.providers.push(p);
        c.routing.primary = "truelayer".into();
        c.payment_polling = PaymentPollingConfig { interval_ms: polling_ms, batch: 50, ..Default::default() };
        c.callbacks = ObCallbackSettings { enabled: true, group_id: None, unknown_consent_retry_ms: 200, unknown_consent_rounds: 6, resend_after_ms: 1_500 };
    });
    Ok((Stack::start_with(name, tweak).await?, tl))
}

fn payment(payment_id: &str) -> PaymentSpec {
    PaymentSpec { payment_id: payment_id.into(), amount_minor: 4_200, currency: "GBP".into(), beneficiary_ref: "main-gbp".into(), reference: "invoice 7".into() }
}

/// A single-payment consent through the auth link and the code exchange,
/// then INITIATE_PAYMENT: TrueLayer's payment id.
async fn initiate(stack: &Stack, tl: &TrueLayerSimulator, consent_id: &str, payment_id: &str) -> Result<String> {
    let mut c = create(consent_id, &format!("{consent_id}-create"));
    if let Some(spec) = c.consent.as_mut() {
        spec.scopes = vec![ConsentScope::PaymentInitiation];
        spec.country = "GB".into();
    }
    c.payment = Some(payment(payment_id));
    ensure!(stack.ask(&c).await?.kind == OpenBankingKind::AuthRequired, "consent created");
    let mut complete = create(consent_id, &format!("{consent_id}-complete"));
    complete.action = OpenBankingAction::CompleteConsent;
    complete.consent = None;
    complete.completion = Some(CompletionSpec { public_token: None, authorization_code: Some(tl.grant_code()) });
    ensure!(stack.ask(&complete).await?.kind == OpenBankingKind::ConsentActive, "consent active");
    let mut pay: OpenBankingCommand = create(consent_id, &format!("{consent_id}-pay"));
    pay.action = OpenBankingAction::InitiatePayment;
    pay.consent = None;
    pay.payment = Some(payment(payment_id));
    let answer = stack.ask(&pay).await?;
    ensure!(answer.kind == OpenBankingKind::AuthRequired, "initiate: {answer:?}");
    answer.payment.and_then(|p| p.provider_reference).context("no TrueLayer payment id")
}

/// The webhook ingester, trusting the simulator's JWKS URL, and the
/// simulator sending its payment webhooks to it.
async fn ingester(stack: &Stack, tl: &TrueLayerSimulator, delivery: WebhookDelivery) -> Result<(String, CancellationToken)> {
    let provider = ProviderConfig { jwks_urls: vec![tl.webhook_jwks_url()], ..ProviderConfig::new("openbanking", Vec::new()) };
    let mut config = stack.env.ingester_config(BTreeMap::from([("truelayer".to_owned(), provider)]));
    let provider_events = stack.env.topic("openbanking.provider-events.v1");
    config.topics.insert("openbanking".to_owned(), provider_events.clone());
    let stop = CancellationToken::new();
    let ingester = start_ingester(config, stop.clone()).await?;
    tl.send_webhooks(&url(&ingester, "truelayer"), delivery);
    Ok((provider_events, stop))
}

fn statuses(events: &[OpenBankingEvent], payment_id: &str) -> Vec<P> {
    events
        .iter()
        .filter(|e| e.kind == OpenBankingKind::PaymentUpdated && e.payment_id.as_deref() == Some(payment_id))
        .filter_map(|e| e.to_payment_status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn truelayer_payment_webhooks_publish_each_status_once_in_order_whatever_the_delivery() -> Result<()> {
    let _ = captured_logs();
    // Ten minutes: within the test, statuses come from webhooks only.
    let (stack, tl) = stack("ob-pay-hooks", 600_000).await?;
    let (provider_events, ingester_stop) = ingester(&stack, &tl, WebhookDelivery { copies: 2, order: WebhookOrder::ReversedAtTheEnd }).await?;

    let scenarios = [
        (Scenario::Settles, vec![P::AuthorizationRequired, P::Authorizing, P::Authorized, P::Executed, P::Settled], None),
        (Scenario::FailsAtAuthorization, vec![P::AuthorizationRequired, P::Authorizing, P::Failed], Some((PaymentFailureReason::AuthorizationFailed, false))),
        (
            Scenario::ReturnedAfterExecution,
            vec![P::AuthorizationRequired, P::Authorizing, P::Authorized, P::Executed, P::Failed],
            Some((PaymentFailureReason::Returned, true)),
        ),
    ];
    let mut seen: Vec<OpenBankingEvent> = Vec::new();
    let mut consents = Vec::new();
    for (scenario, path, failure) in &scenarios {
        let n = uuid::Uuid::new_v4().simple().to_string();
        let (consent, payment_id) = (format!("con-{}", &n[..16]), format!("pay-{}", &n[16..]));
        tl.set_scenario(*scenario);
        let provider_id = initiate(&stack, &tl, &consent, &payment_id).await?;
        ensure!(tl.authorize(&provider_id), "the user at the hosted payment page");
        let deadline = Instant::now() + Duration::from_secs(30);
        while statuses(&seen, &payment_id).len() < path.len() && Instant::now() < deadline {
            seen.extend(stack.events(Duration::from_millis(300)).await?);
        }
        // Late copies and redeliveries have had time to land.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        seen.extend(stack.events(Duration::from_millis(500)).await?);
        let got = statuses(&seen, &payment_id);
        assert_eq!(&got, path, "{scenario:?}: each status once, in order; webhooks sent {:?}", tl.webhooks_sent());
        let last = seen.iter().rfind(|e| e.payment_id.as_deref() == Some(payment_id.as_str())).context("events")?;
        assert_eq!(failure.map(|(f, _)| f), last.payment_failure, "{scenario:?}");
        assert_eq!(failure.is_some_and(|(_, r)| r), last.returned_after_execution, "{scenario:?}: the ledger must reverse what it booked");
        consents.push((consent, payment_id, path.clone()));
    }
    let sent = tl.webhooks_sent();
    assert_eq!(sent.len(), 2 * (3 + 1 + 3), "every webhook twice: {sent:?}");
    assert!(sent.iter().all(|(_, status)| *status == 200), "{sent:?}");
    assert_eq!(sent.first().map(|(t, _)| t.as_str()), Some("payment_settled"), "newest first: {sent:?}");

    // Every provider event on the bus again, as a redelivery would.
    let raw = switchyard_e2e::TopicReader::new(&stack.env.kafka, &provider_events)?.read_up_to(usize::MAX, Duration::from_secs(3)).await?;
    assert_eq!(raw.len(), 3 + 1 + 3, "each webhook published once by the ingester");
    let publisher = Publisher::new(&stack.env.kafka)?;
    let never = CancellationToken::new();
    for r in &raw {
        let record = Outbound {
            topic: provider_events.clone(),
            key: Some(r.key.clone()),
            payload: r.payload.clone(),
            headers: r.headers.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect(),
        };
        ensure!(switchyard_bus::publish_until_acked(&publisher, &record, &never).await, "republishing a provider event");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    seen.extend(stack.events(Duration::from_secs(1)).await?);
    for (_, payment_id, path) in &consents {
        assert_eq!(&statuses(&seen, payment_id), path, "nothing more after the redelivery");
    }
    let mut ids: Vec<&str> = seen.iter().map(|e| e.event_id.as_str()).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "no event id twice on the topic");

    // Acted on once each: one audit row per provider event.
    let worker = stack.worker.as_ref().context("worker")?;
    worker.store.flush_audit().await;
    let subjects: Vec<&str> = consents.iter().map(|(c, _, _)| c.as_str()).collect();
    let trail = worker.store.audit_trail(&subjects).await?;
    let mut acted: HashMap<String, usize> = HashMap::new();
    for a in trail.iter().filter(|a| a.action == "openbanking_callback") {
        let detail: serde_json::Value = serde_json::from_str(&a.detail)?;
        *acted.entry(detail["provider_event_id"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    assert_eq!(acted.len(), 3 + 1 + 3, "each payment webhook acted on: {acted:?}");
    assert!(acted.values().all(|n| *n == 1), "each acted on once: {acted:?}");

    ingester_stop.cancel();
    stack.stop().await?;
    tl.shutdown().await;
    Ok(())
}

/// Polling every 100 ms and webhooks as they happen (each sent twice):
/// both report every status, each status is published once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_and_a_poll_reporting_the_same_status_publish_it_once() -> Result<()> {
    let _ = captured_logs();
    let (stack, tl) = stack("ob-pay-hooks-polled", 100).await?;
    let (_, ingester_stop) = ingester(&stack, &tl, WebhookDelivery { copies: 2, order: WebhookOrder::AsTheyHappen }).await?;
    let mut seen: Vec<OpenBankingEvent> = Vec::new();
    let path = [P::AuthorizationRequired, P::Authorizing, P::Authorized, P::Executed, P::Settled];
    for round in 0..3 {
        let n = uuid::Uuid::new_v4().simple().to_string();
        let (consent, payment_id) = (format!("con-{}", &n[..16]), format!("pay-{}", &n[16..]));
        tl.set_scenario(Scenario::Settles);
        let provider_id = initiate(&stack, &tl, &consent, &payment_id).await?;
        ensure!(tl.authorize(&provider_id), "the user at the hosted payment page");
        let deadline = Instant::now() + Duration::from_secs(30);
        while statuses(&seen, &payment_id).len() < path.len() && Instant::now() < deadline {
            seen.extend(stack.events(Duration::from_millis(300)).await?);
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        seen.extend(stack.events(Duration::from_millis(500)).await?);
        assert_eq!(statuses(&seen, &payment_id), path, "round {round}: each status once, in order; webhooks sent {:?}", tl.webhooks_sent());
    }
    let sent = tl.webhooks_sent();
    assert_eq!(sent.len(), 3 * 3 * 2, "every webhook twice: {sent:?}");
    assert!(tl.calls("GET /v3/payments/{id}") > 0, "polled too");
    ingester_stop.cancel();
    stack.stop().await?;
    tl.shutdown().await;
    Ok(())
}
