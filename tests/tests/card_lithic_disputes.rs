//! Lithic disputes through the whole chain over the bus: real broker, real
//! PostgreSQL, the Lithic simulator's Standard Webhooks (`dispute.updated`,
//! half delivered twice, some late) through a running ingester to the card
//! worker.
//!
//! Lithic moves a dispute itself (its API has no call for it); the
//! simulator's test control route moves it through Lithic's published
//! `dispute-v1.status` values (SUBMITTED, REPRESENTMENT, PREARBITRATION,
//! ARBITRATION, CASE_WON; CASE_CLOSED with a `resolution_reason`). Each
//! stage entered publishes exactly one DISPUTE_UPDATED, in order.

use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_bus::AvroDecoder;
use switchyard_canonical::card::{CardAction, CardForm, DisputeSpec, IssueSpec};
use switchyard_canonical::card_dispute::{DisputeReason, DisputeState};
use switchyard_canonical::card_event::{CardEvent, CardEventKind as K};
use switchyard_canonical::card_outcome::{CardOutcome, CardOutcomeStatus};
use switchyard_e2e::cards::{answer_to, command, config, read_events, stop, Processors};
use switchyard_e2e::checks::{CommandProducer, OutcomeReader};
use switchyard_e2e::webhooks::url;
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_ingester::config::{KeyConfig, ProviderConfig};
use switchyard_ingester::start_ingester;
use switchyard_simulators::callbacks::CallbackFaults;
use switchyard_simulators::lithic::{spawn_lithic, LithicConfig};
use switchyard_simulators::marqeta::{spawn_marqeta, MarqetaConfig};
use switchyard_simulators::{CardOracle, WebhookTarget};
use switchyard_worker::card::{CARD_COMMAND_SCHEMA, CARD_EVENT_SCHEMA, CARD_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

const LITHIC_SECRET: &str = "whsec_c3dpdGNoeWFyZC1saXRoaWMtdGVzdC1rZXk=";

/// Moves a dispute at the simulator, as Lithic would.
async fn move_dispute(http: &reqwest::Client, base: &str, dispute: &str, status: &str, resolution: Option<&str>) -> Result<()> {
    let body = serde_json::json!({"status": status, "resolution_reason": resolution});
    let reply = http.post(format!("{base}/_sim/disputes/{dispute}")).json(&body).send().await?;
    ensure!(reply.status().is_success(), "dispute to {status}: {} {}", reply.status(), reply.text().await.unwrap_or_default());
    Ok(())
}

/// The DISPUTE_UPDATED states published for `card`, in order.
fn updates(published: &[CardEvent], card: &str) -> Vec<String> {
    published.iter().filter(|e| e.card_id == card && e.kind == K::DisputeUpdated).map(|e| e.to_state.clone().unwrap_or_default()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_lithic_dispute_stage_publishes_one_dispute_updated() -> Result<()> {
    let env = TestEnv::new("card-lithic-disputes").await?;
    let shutdown = CancellationToken::new();
    let hooks = BTreeMap::from([("lithic".to_owned(), ProviderConfig::new("cards", vec![KeyConfig::inline(LITHIC_SECRET)]))]);
    let ingester = start_ingester(env.ingester_config(hooks), shutdown.clone()).await?;
    let oracle = CardOracle::new();
    let mut lithic = LithicConfig { oracle: oracle.clone(), ship_after: Duration::from_millis(300), ..LithicConfig::local() };
    lithic.webhook = Some(WebhookTarget { url: url(&ingester, "lithic"), secret: LITHIC_SECRET.into() });
    lithic.callback_faults = CallbackFaults { duplicate_ratio: 0.5, max_delay_ms: 200, seed: 11, ..CallbackFaults::default() };
    let marqeta = MarqetaConfig { oracle: oracle.clone(), ..MarqetaConfig::local() };
    let processors = Processors { lithic: spawn_lithic(lithic).await?, marqeta: spawn_marqeta(marqeta).await?, oracle };
    let worker = switchyard_worker::card::run::start_card_worker(config(&env, &processors, "lithic", 2_000), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let events = TopicReader::new(&env.kafka, &env.topic("cards.events.v1"))?;
    let decoder = AvroDecoder::new(env.registry_client.clone(), CARD_EVENT_SCHEMA)?;
    let base = processors.lithic.base_url();
    let http = reqwest::Client::new();

    let cards: Vec<String> = ["won", "lost"].iter().map(|c| format!("{}card-{c}", env.prefix)).collect();
    let mut disputes = Vec::new();
    for card in &cards {
        let mut issue = command(card, &format!("{card}-0"), CardAction::Issue);
        issue.issue = Some(IssueSpec { form: CardForm::Virtual, product: "debit-classic".into(), cardholder_ref: "cust-1".into(), shipping: None });
        producer.send(card, &issue.idempotency_key, &issue).await?;
        let o = answer_to(&outcomes, &issue.idempotency_key).await?;
        ensure!(o.status == CardOutcomeStatus::Succeeded, "issue: {o:?}");
        let mut open = command(card, &format!("{card}-1"), CardAction::OpenDispute);
        open.dispute = Some(DisputeSpec {
            dispute_id: format!("{card}-dsp"),
            transaction_ref: uuid::Uuid::new_v4().to_string(),
            amount_minor: 1_250,
            currency: "USD".into(),
            reason: DisputeReason::Fraud,
        });
        producer.send(card, &open.idempotency_key, &open).await?;
        let o: CardOutcome = answer_to(&outcomes, &open.idempotency_key).await?;
        assert_eq!((o.status, o.dispute_state), (CardOutcomeStatus::Succeeded, Some(DisputeState::Opened)), "Lithic's NEW: {o:?}");
        disputes.push(o.dispute_reference.context("the dispute token")?);
    }
    // Per card: CARD_ISSUED, DISPUTE_UPDATED (OPENED), PROVISIONAL_CREDIT,
    // then SUBMITTED from Lithic's own callback.
    let mut published = read_events(&env, &events, 8).await.context("issued, opened, credited, submitted")?;
    let (won, lost) = (&cards[0], &cards[1]);
    for status in ["REPRESENTMENT", "PREARBITRATION", "ARBITRATION", "CASE_WON"] {
        move_dispute(&http, &base, &disputes[0], status, None).await?;
        published.extend(read_events(&env, &events, 1).await.with_context(|| status.to_owned())?);
    }
    move_dispute(&http, &base, &disputes[1], "CASE_CLOSED", Some("CASE_LOST")).await?;
    published.extend(read_events(&env, &events, 1).await.context("CASE_CLOSED")?);
    // Duplicated and late callbacks have had time to arrive: nothing new
    // but the credits settled by the endings.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for extra in events.read_up_to(usize::MAX, Duration::from_secs(3)).await? {
        published.push(decoder.decode::<CardEvent>(&extra.payload).await?);
    }
    let mut ids = std::collections::HashSet::new();
    for e in &published {
        assert!(ids.insert(e.event_id.clone()), "event {} published twice", e.event_id);
    }
    assert_eq!(updates(&published, won), ["OPENED", "SUBMITTED", "REPRESENTMENT", "PRE_ARBITRATION", "ARBITRATION", "WON"], "{published:?}");
    assert_eq!(updates(&published, lost), ["OPENED", "SUBMITTED", "LOST"], "{published:?}");
    let credit = |card: &str| published.iter().filter(|e| e.card_id == card && e.kind == K::ProvisionalCredit).map(|e| e.to_state.clone().unwrap_or_default()).collect::<Vec<_>>();
    assert_eq!(credit(won), ["GRANTED", "MADE_FINAL"]);
    assert_eq!(credit(lost), ["GRANTED", "REVERSED"]);
    let Processors { lithic, marqeta, .. } = processors;
    lithic.shutdown().await;
    marqeta.shutdown().await;
    stop(worker, shutdown).await
}
