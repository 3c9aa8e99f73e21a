//! Payment initiation through TrueLayer, end to end: real broker, real
//! PostgreSQL, the TrueLayer simulator over HTTP (client-credentials
//! tokens, every POST's `Tl-Signature` verified with TrueLayer's own
//! `truelayer-signing` crate against the key this test generates and
//! registers), the open banking worker in-process.
//!
//! - every status path: settled; failed at authorization; executed, then
//!   failed (a bank return). Each status is on `openbanking.events.v1`
//!   exactly once and in order, counted on the topic; nothing more is
//!   published once the payment ended. An access token expiring between
//!   two payments is renewed by the adapter (401, a new token, the call again).
//! - a redelivered INITIATE_PAYMENT whose first create reached the bank but
//!   whose reply was lost: one payment at the simulator, counted by its
//!   money oracle per our payment id (not from our own outcomes).

#[path = "openbanking/support.rs"]
#[allow(dead_code)] // shared with the Plaid tests; this file uses part of it
mod support;

use anyhow::{ensure, Context, Result};
use std::time::{Duration, Instant};
use support::{create, Stack};
use switchyard_canonical::openbanking::{CompletionSpec, ConsentScope, OpenBankingAction, OpenBankingCommand, PaymentSpec};
use switchyard_canonical::openbanking_event::OpenBankingEvent;
use switchyard_canonical::openbanking_outcome::{HandoffKind, OpenBankingKind, OpenBankingOutcome, PaymentFailureReason};
use switchyard_canonical::openbanking_payment::PaymentStatus as P;
use switchyard_e2e::logs::captured_logs;
use switchyard_e2e::secrets::{replace_secret_file, rotations};
use switchyard_simulators::truelayer::{generate_signing_key, spawn_truelayer, Scenario, TrueLayerConfig, TrueLayerSimulator};
use switchyard_worker::config::SecretSource;
use switchyard_worker::openbanking::config::{ObProviderConfig, ObProviderKind};
use switchyard_worker::openbanking::truelayer_config::{PaymentPollingConfig, TrueLayerSection};

const KID: &str = "e2e-signing-key";
const MERCHANT_ACCOUNT: &str = "ma-200f-e2e";

/// A stack whose new consents go to a TrueLayer simulator (Plaid stays
/// configured, as in production, and unused).
async fn stack(name: &str, step: Duration) -> Result<(Stack, TrueLayerSimulator)> {
    stack_with(name, step, "truelayer", SecretSource::inline(&TrueLayerConfig::local().client_secret), polled_every_150ms()).await
}

fn polled_every_150ms() -> PaymentPollingConfig {
    PaymentPollingConfig { interval_ms: 150, batch: 50, ..Default::default() }
}

/// `stack` with the TrueLayer provider named `provider` and its client
/// secret from `secret`, re-read every 100 ms.
async fn stack_with(name: &str, step: Duration, provider: &str, secret: SecretSource, polling: PaymentPollingConfig) -> Result<(Stack, TrueLayerSimulator)> {
    let provider = provider.to_owned();
    let tl = spawn_truelayer(TrueLayerConfig { step, ..TrueLayerConfig::local() }).await?;
    let (private, public) = generate_signing_key();
    tl.register_signing_key(KID, &public);
    let url = tl.base_url();
    let tweak = std::sync::Arc::new(move |c: &mut switchyard_worker::openbanking::config::OpenBankingWorkerConfig| {
        let local = TrueLayerConfig::local();
        let mut p: ObProviderConfig = c.providers[0].clone();
        p.name = provider.clone();
        p.kind = ObProviderKind::TrueLayer;
        p.base_url = url.clone();
        p.client_id = local.client_id;
        p.secret = secret.clone();
        p.truelayer = Some(TrueLayerSection {
            auth_url: url.clone(),
            hpp_url: "https://payment.truelayer-sandbox.com".into(),
            signing_key_id: KID.into(),
            signing_key: SecretSource::inline(&private),
            redirect_uri: "https://app.example.com/paid".into(),
            merchant_accounts: [("main-gbp".to_owned(), MERCHANT_ACCOUNT.to_owned())].into_iter().collect(),
            resource_token_ttl_ms: 900_000,
            auth_link_ttl_ms: 3_600_000,
            consent_ttl_ms: 90 * 24 * 3_600_000,
        });
        c.providers.push(p);
        c.routing.primary = provider.clone();
        c.secret_check_every_ms = 100;
        c.payment_polling = polling.clone();
    });
    Ok((Stack::start_with(name, tweak).await?, tl))
}

fn ids() -> (String, String) {
    let n = uuid::Uuid::new_v4().simple().to_string();
    (format!("con-{}", &n[..16]), format!("pay-{}", &n[16..]))
}

fn payment(payment_id: &str) -> PaymentSpec {
    PaymentSpec {
        payment_id: payment_id.into(),
        amount_minor: 12_345,
        currency: "GBP".into(),
        beneficiary_ref: "main-gbp".into(),
        reference: "invoice 42".into(),
    }
}

fn initiate(consent_id: &str, key: &str, payment_id: &str) -> OpenBankingCommand {
    let mut c = create(consent_id, key);
    c.action = OpenBankingAction::InitiatePayment;
    c.consent = None;
    c.payment = Some(payment(payment_id));
    c
}

/// A single-payment consent at TrueLayer, through the auth link and the
/// code exchange: ACTIVE.
async fn payment_consent(stack: &Stack, tl: &TrueLayerSimulator, consent_id: &str, payment_id: &str) -> Result<()> {
    let mut c = create(consent_id, &format!("{consent_id}-create"));
    if let Some(spec) = c.consent.as_mut() {
        spec.scopes = vec![ConsentScope::PaymentInitiation];
        spec.country = "GB".into();
    }
    c.payment = Some(payment(payment_id));
    let created = stack.ask(&c).await?;
    ensure!(created.kind == OpenBankingKind::AuthRequired, "create: {created:?}");
    ensure!(created.provider.as_deref().is_some_and(|p| p.starts_with("truelayer")), "routed to TrueLayer: {created:?}");
    let mut complete = create(consent_id, &format!("{consent_id}-complete"));
    complete.action = OpenBankingAction::CompleteConsent;
    complete.consent = None;
    complete.completion = Some(CompletionSpec { public_token: None, authorization_code: Some(tl.grant_code()) });
    let completed = stack.ask(&complete).await?;
    ensure!(completed.kind == OpenBankingKind::ConsentActive, "complete: {completed:?}");
    // A consent to one payment is not a 90-day data connection: no end.
    ensure!(completed.consent_expires_at_ms.is_none(), "a payment consent has no end: {completed:?}");
    Ok(())
}

/// The payment's PAYMENT_UPDATED events seen so far, read until `until`
/// holds or `timeout` passes.
async fn payment_events(
    stack: &Stack,
    seen: &mut Vec<OpenBankingEvent>,
    payment_id: &str,
    until: impl Fn(&[OpenBankingEvent]) -> bool,
    timeout: Duration,
) -> Result<Vec<OpenBankingEvent>> {
    let deadline = Instant::now() + timeout;
    loop {
        seen.extend(stack.events(Duration::from_millis(300)).await?);
        let mine: Vec<OpenBankingEvent> =
            seen.iter().filter(|e| e.kind == OpenBankingKind::PaymentUpdated && e.payment_id.as_deref() == Some(payment_id)).cloned().collect();
        if until(&mine) || Instant::now() > deadline {
            return Ok(mine);
        }
    }
}

fn statuses(events: &[OpenBankingEvent]) -> Vec<P> {
    events.iter().filter_map(|e| e.to_payment_status).collect()
}

/// One payment from INITIATE_PAYMENT to its end under `scenario`; returns
/// its status events once the topic stays quiet after the end.
async fn pay(
    stack: &Stack,
    tl: &TrueLayerSimulator,
    seen: &mut Vec<OpenBankingEvent>,
    scenario: Scenario,
) -> Result<(String, OpenBankingOutcome, Vec<OpenBankingEvent>)> {
    let (consent, payment_id) = ids();
    payment_consent(stack, tl, &consent, &payment_id).await?;
    tl.set_scenario(scenario);
    let answer = stack.ask(&initiate(&consent, &format!("{consent}-pay"), &payment_id)).await?;
    ensure!(answer.kind == OpenBankingKind::AuthRequired, "initiate: {answer:?}");
    let provider_id = answer.payment.as_ref().and_then(|p| p.provider_reference.clone()).context("no TrueLayer payment id")?;
    // Waiting for the user: still AUTHORIZATION_REQUIRED, published once.
    let waiting = payment_events(stack, seen, &payment_id, |e| !e.is_empty(), Duration::from_secs(20)).await?;
    ensure!(statuses(&waiting) == [P::AuthorizationRequired], "before the user acts: {waiting:?}");
    ensure!(tl.authorize(&provider_id), "the user at the hosted payment page");
    let ended = payment_events(stack, seen, &payment_id, |e| e.iter().any(|e| e.to_payment_status.is_some_and(P::terminal)), Duration::from_secs(30)).await?;
    ensure!(ended.iter().any(|e| e.to_payment_status.is_some_and(P::terminal)), "the payment never ended: {ended:?}");
    // Polled on for a while more: nothing new may appear.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let all = payment_events(stack, seen, &payment_id, |_| true, Duration::ZERO).await?;
    Ok((payment_id, answer, all))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_truelayer_payment_status_path_is_published_once_per_status() -> Result<()> {
    let _ = captured_logs();
    let (stack, tl) = stack("ob-pay-paths", Duration::from_millis(700)).await?;
    let mut seen = Vec::new();

    let (settled, answer, events) = pay(&stack, &tl, &mut seen, Scenario::Settles).await?;
    let handoff = answer.handoff.clone().context("a hand-off for the user")?;
    assert_eq!(handoff.kind, HandoffKind::AuthorizationUrl);
    assert!(
        handoff.value.starts_with("https://payment.truelayer-sandbox.com/payments#payment_id=") && handoff.value.contains("resource_token="),
        "{handoff:?}"
    );
    assert_eq!(answer.payment.as_ref().map(|p| p.status), Some(P::AuthorizationRequired));
    assert_eq!(statuses(&events), [P::AuthorizationRequired, P::Authorizing, P::Authorized, P::Executed, P::Settled], "{events:?}");
    assert!(events.iter().all(|e| e.payment_failure.is_none() && !e.returned_after_execution && e.amount_minor == Some(12_345)));
    assert_eq!(tl.payments_created(&settled), 1, "the bank made one payment");

    // The client-credentials token lapses between payments: the adapter
    // gets a 401, a new token, and repeats the call.
    tl.expire_tokens();
    let (declined, _, events) = pay(&stack, &tl, &mut seen, Scenario::FailsAtAuthorization).await?;
    assert_eq!(statuses(&events), [P::AuthorizationRequired, P::Authorizing, P::Failed], "{events:?}");
    let failed = events.last().context("events")?;
    assert_eq!((failed.payment_failure, failed.returned_after_execution), (Some(PaymentFailureReason::AuthorizationFailed), false));
    assert_eq!(tl.payments_created(&declined), 1);

    let (returned, _, events) = pay(&stack, &tl, &mut seen, Scenario::ReturnedAfterExecution).await?;
    assert_eq!(statuses(&events), [P::AuthorizationRequired, P::Authorizing, P::Authorized, P::Executed, P::Failed], "{events:?}");
    let failed = events.last().context("events")?;
    assert_eq!(
        (failed.payment_failure, failed.returned_after_execution),
        (Some(PaymentFailureReason::Returned), true),
        "the ledger must reverse what it booked"
    );
    assert_eq!(tl.payments_created(&returned), 1);

    let mut ids: Vec<&str> = seen.iter().map(|e| e.event_id.as_str()).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "no event id twice on the topic");
    // TrueLayer's access and refresh tokens (the simulator's all start
    // `tl-sim-`) and the signing key never reach a log line or an event.
    let logs = captured_logs().text();
    assert!(!logs.is_empty(), "the worker's log was captured");
    for needle in ["tl-sim-", "PRIVATE KEY"] {
        assert!(!logs.contains(needle), "{needle:?} in a log line");
        assert!(!format!("{seen:?}").contains(needle), "{needle:?} in an event");
    }
    stack.stop().await?;
    tl.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_initiate_payment_whose_reply_was_lost_creates_one_payment() -> Result<()> {
    let _ = captured_logs();
    let (stack, tl) = stack("ob-pay-redelivery", Duration::from_millis(300)).await?;
    let (consent, payment_id) = ids();
    payment_consent(&stack, &tl, &consent, &payment_id).await?;
    // The bank creates the payment and the reply is lost (a 500 after the
    // commit): the worker must ask again under the same key. The producer
    // also delivers the command twice.
    tl.fail_after_create(1);
    let key = format!("{consent}-pay");
    let command = initiate(&consent, &key, &payment_id);
    stack.send(&command).await?;
    stack.send(&command).await?;
    let answers: Vec<OpenBankingOutcome> =
        stack.outcomes.collect::<OpenBankingOutcome>(2, Duration::from_secs(90)).await?.into_iter().map(|(o, _)| o).collect();
    ensure!(answers.iter().all(|o| o.idempotency_key == key), "{answers:?}");
    let processed: Vec<&OpenBankingOutcome> = answers.iter().filter(|o| !o.replayed).collect();
    assert_eq!(processed.len(), 1, "one processed answer, the other replayed: {answers:?}");
    assert_eq!(processed[0].kind, OpenBankingKind::AuthRequired, "{answers:?}");
    assert!(processed[0].attempts >= 1);
    stack.send(&command).await?;
    assert!(stack.answer_to(&key).await?.replayed, "a late duplicate is answered from the store");

    assert_eq!(tl.payments_created(&payment_id), 1, "the money oracle: one payment at the bank for {payment_id}");
    assert_eq!(tl.calls("POST /v3/payments"), 2, "the lost reply, then the same key again; the duplicate commands called no one");
    let mut seen = Vec::new();
    payment_events(&stack, &mut seen, &payment_id, |e| !e.is_empty(), Duration::from_secs(20)).await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let events = payment_events(&stack, &mut seen, &payment_id, |_| true, Duration::ZERO).await?;
    assert_eq!(statuses(&events), [P::AuthorizationRequired], "AUTHORIZATION_REQUIRED once: {events:?}");
    stack.stop().await?;
    tl.shutdown().await;
    Ok(())
}

/// TrueLayer's client secret rolled while the worker runs, as a Kubernetes
/// secret volume is updated: the simulator refuses the old secret at once
/// and lapses its tokens, so the next payment's token requests (the code
/// exchange and client credentials) must carry the new one. No restart; one
/// `secret_rotated` audit entry naming the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolled_client_secret_is_used_from_the_next_token_request_without_a_restart() -> Result<()> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("switchyard-tl-roll-{run}"));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("truelayer-client-secret");
    replace_secret_file(&file, &TrueLayerConfig::local().client_secret)?;
    let source = SecretSource { file: Some(file.display().to_string()), ..SecretSource::default() };
    // A provider name of this run only: the audit entry's subject.
    let provider = format!("truelayer-{}", &run[..12]);
    let (stack, tl) = stack_with("ob-tl-roll", Duration::from_millis(50), &provider, source, polled_every_150ms()).await?;
    let mut seen = Vec::new();
    let (before, _, events) = pay(&stack, &tl, &mut seen, Scenario::Settles).await?;
    assert_eq!(statuses(&events).last(), Some(&P::Settled), "{events:?}");
    assert_eq!(tl.payments_created(&before), 1);

    let rolled = "sandbox-secret-switchyard-rolled-0001";
    tl.roll_client_secret(rolled);
    replace_secret_file(&file, rolled)?;
    let store = &stack.worker.as_ref().context("the worker")?.store;
    let rotated = rotations(store, &provider, Duration::from_secs(10)).await?;
    assert_eq!(rotated.len(), 1, "one rotation audited: {rotated:?}");
    assert!(!format!("{rotated:?}").contains(rolled), "the audit entry never holds the secret");

    let (after, _, events) = pay(&stack, &tl, &mut seen, Scenario::Settles).await?;
    assert_eq!(statuses(&events).last(), Some(&P::Settled), "paid with the rolled secret, no restart: {events:?}");
    assert_eq!(tl.payments_created(&after), 1);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A payment the user never authorizes, with no webhooks: polled, less
/// often as it stays quiet, then no longer once quiet for
/// `give_up_after_ms`, with one audit row saying so, and nothing published
/// but its AUTHORIZATION_REQUIRED (nobody knows how it ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_that_never_moves_is_given_up_and_reported_without_inventing_a_status() -> Result<()> {
    let polling = PaymentPollingConfig { interval_ms: 100, batch: 50, max_interval_ms: 300, give_up_after_ms: 2_500 };
    let (stack, tl) = stack_with("ob-pay-quiet", Duration::from_millis(100), "truelayer", SecretSource::inline(&TrueLayerConfig::local().client_secret), polling).await?;
    let (consent, payment_id) = ids();
    payment_consent(&stack, &tl, &consent, &payment_id).await?;
    let answer = stack.ask(&initiate(&consent, &format!("{consent}-pay"), &payment_id)).await?;
    ensure!(answer.kind == OpenBankingKind::AuthRequired, "initiate: {answer:?}");
    let created = Instant::now();
    // Past the give-up time and a round or two more.
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    let at_give_up = tl.calls("GET /v3/payments/{id}");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let later = tl.calls("GET /v3/payments/{id}");
    // How the waits grow with the quiet time is the schedule's unit test
    // (payment.rs); at this scale the count cannot tell it.
    ensure!(at_give_up >= 5, "polled while it could still move: {at_give_up} queries in {:?}", created.elapsed());
    ensure!(later == at_give_up, "no longer polled once given up: {at_give_up} then {later}");

    let mut seen = Vec::new();
    let events = payment_events(&stack, &mut seen, &payment_id, |_| false, Duration::from_millis(600)).await?;
    ensure!(statuses(&events) == [P::AuthorizationRequired], "no status invented: {events:?}");
    let worker = stack.worker.as_ref().context("worker")?;
    worker.store.flush_audit().await;
    let trail = worker.store.audit_trail(&[consent.as_str()]).await?;
    let given_up: Vec<_> = trail.iter().filter(|a| a.action == "payment_polling_given_up").collect();
    ensure!(given_up.len() == 1, "one audit row: {given_up:?}");
    ensure!(given_up[0].detail.contains(&payment_id) && given_up[0].detail.contains("AUTHORIZATION_REQUIRED"), "{:?}", given_up[0].detail);
    stack.stop().await?;
    tl.shutdown().await;
    Ok(())
}
