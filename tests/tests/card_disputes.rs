//! Disputes moved by the processor's callbacks, exactly once: real broker,
//! real PostgreSQL, the Marqeta simulator's own signed webhooks
//! (`chargebacktransitions`, Basic credentials, half the batches twice,
//! events jittered) through a running ingester to the card worker.
//!
//! - A dispute opened by OPEN_DISPUTE (provisional credit granted) is moved
//!   at Marqeta through REPRESENTMENT, PREARBITRATION, then ARBITRATION and
//!   CASE_WON sent back to back (so they may arrive in either order): one
//!   DISPUTE_UPDATED per stage entered, in the machine's order, never
//!   backwards, and the credit made final once.
//! - Every provider event of the run is then put on the bus again, newest
//!   first (a redelivery of each, late and out of order): nothing new.
//! - A second dispute lost at once: one DISPUTE_UPDATED to LOST and the
//!   credit reversed once, its amount negative in minor units.

use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_bus::{AvroDecoder, AvroEncoder, Outbound, Publisher};
use switchyard_canonical::card::{CardAction, CardForm, DisputeSpec, IssueSpec};
use switchyard_canonical::card_dispute::{DisputeReason, DisputeState};
use switchyard_canonical::card_event::{CardEvent, CardEventKind as K};
use switchyard_canonical::card_outcome::{CardOutcome, CardOutcomeStatus};
use switchyard_canonical::ProviderEvent;
use switchyard_e2e::cards::{answer_to, command, config, read_events, stop, Processors};
use switchyard_e2e::checks::{CommandProducer, OutcomeReader};
use switchyard_e2e::webhooks::url;
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_ingester::config::{KeyConfig, ProviderConfig};
use switchyard_ingester::start_ingester;
use switchyard_simulators::lithic::{spawn_lithic, LithicConfig};
use switchyard_simulators::marqeta::{spawn_marqeta, MarqetaConfig, MarqetaWebhook};
use switchyard_simulators::CardOracle;
use switchyard_worker::card::callback::PROVIDER_EVENT_SCHEMA;
use switchyard_worker::card::{CARD_COMMAND_SCHEMA, CARD_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

const AMOUNT: i64 = 1_250;

/// Moves a chargeback at the simulator as a Marqeta program would
/// (`POST /chargebacks/transitions`); the simulator calls back.
async fn transition(http: &reqwest::Client, base: &str, chargeback: &str, state: &str) -> Result<()> {
    let reply = http
        .post(format!("{base}/v3/chargebacks/transitions"))
        .basic_auth("app_token_switchyard", Some("access_token_switchyard"))
        .json(&serde_json::json!({"chargeback_token": chargeback, "state": state, "type": state.to_ascii_lowercase().replace('_', ".")}))
        .send()
        .await?;
    ensure!(reply.status().is_success(), "transition to {state}: {} {}", reply.status(), reply.text().await.unwrap_or_default());
    Ok(())
}

/// (kind, to_state, amount) of one card's dispute events, in published order.
fn dispute_story(published: &[CardEvent], card: &str) -> Vec<(K, String, Option<i64>)> {
    published
        .iter()
        .filter(|e| e.card_id == card && matches!(e.kind, K::DisputeUpdated | K::ProvisionalCredit))
        .map(|e| (e.kind, e.to_state.clone().unwrap_or_default(), e.amount_minor))
        .collect()
}

fn rank(state: &str) -> usize {
    ["OPENED", "SUBMITTED", "REPRESENTMENT", "PRE_ARBITRATION", "ARBITRATION", "WON"].iter().position(|s| *s == state).unwrap_or(usize::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dispute_callbacks_twice_late_and_out_of_order_publish_one_update_per_real_change() -> Result<()> {
    let env = TestEnv::new("card-disputes").await?;
    let shutdown = CancellationToken::new();
    let hooks = BTreeMap::from([("marqeta".to_owned(), ProviderConfig::new("cards", vec![KeyConfig::inline("hookuser:hookpass")]))]);
    let ingester = start_ingester(env.ingester_config(hooks), shutdown.clone()).await?;
    let oracle = CardOracle::new();
    let mut hook = MarqetaWebhook::new(url(&ingester, "marqeta"), "hookuser", "hookpass");
    hook.duplicate_ratio = 0.5;
    hook.max_jitter = Duration::from_millis(700);
    hook.backoff = Duration::from_millis(50);
    let marqeta = MarqetaConfig { oracle: oracle.clone(), webhook: Some(hook), ..MarqetaConfig::local() };
    let lithic = LithicConfig { oracle: oracle.clone(), ..LithicConfig::local() };
    let processors = Processors { lithic: spawn_lithic(lithic).await?, marqeta: spawn_marqeta(marqeta).await?, oracle };
    let worker = switchyard_worker::card::run::start_card_worker(config(&env, &processors, "marqeta", 2_000), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let events = TopicReader::new(&env.kafka, &env.topic("cards.events.v1"))?;
    let base = processors.marqeta.base_url();
    let http = reqwest::Client::new();

    // Two virtual cards, a dispute on each: OPENED is told by the outcome
    // (SUBMITTED: Marqeta's INITIATED) with its provisional credit.
    let mut chargebacks = Vec::new();
    let cards: Vec<String> = ["won", "lost"].iter().map(|c| format!("{}card-{c}", env.prefix)).collect();
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
            amount_minor: AMOUNT,
            currency: "USD".into(),
            reason: DisputeReason::Fraud,
        });
        producer.send(card, &open.idempotency_key, &open).await?;
        let o: CardOutcome = answer_to(&outcomes, &open.idempotency_key).await?;
        assert_eq!((o.status, o.dispute_state), (CardOutcomeStatus::Succeeded, Some(DisputeState::Submitted)), "{o:?}");
        chargebacks.push(o.dispute_reference.context("the chargeback token")?);
    }
    // Per card: CARD_ISSUED, DISPUTE_UPDATED, PROVISIONAL_CREDIT.
    let mut published = read_events(&env, &events, 6).await?;

    // Stage by stage while each lands, then the last two back to back.
    let (won, lost) = (&cards[0], &cards[1]);
    transition(&http, &base, &chargebacks[0], "REPRESENTMENT").await?;
    published.extend(read_events(&env, &events, 1).await.context("REPRESENTMENT")?);
    transition(&http, &base, &chargebacks[0], "PREARBITRATION").await?;
    published.extend(read_events(&env, &events, 1).await.context("PREARBITRATION")?);
    transition(&http, &base, &chargebacks[0], "ARBITRATION").await?;
    transition(&http, &base, &chargebacks[0], "CASE_WON").await?;
    transition(&http, &base, &chargebacks[1], "CASE_LOST").await?;
    // WON with its MADE_FINAL, LOST with its REVERSED; ARBITRATION too
    // when it arrived first.
    published.extend(read_events(&env, &events, 4).await.context("the endings")?);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let decoder = AvroDecoder::new(env.registry_client.clone(), switchyard_worker::card::CARD_EVENT_SCHEMA)?;
    for extra in events.read_up_to(usize::MAX, Duration::from_secs(3)).await? {
        published.push(decoder.decode::<CardEvent>(&extra.payload).await?);
    }

    // Every provider event of the run again, newest first.
    let provider_topic = env.topic("cards.provider-events.v1");
    let ingested = TopicReader::new(&env.kafka, &provider_topic)?.read_up_to(usize::MAX, Duration::from_secs(4)).await?;
    let provider_decoder = AvroDecoder::new(env.registry_client.clone(), PROVIDER_EVENT_SCHEMA)?;
    let mut chargeback_events = 0;
    for record in &ingested {
        let e: ProviderEvent = provider_decoder.decode(&record.payload).await?;
        chargeback_events += usize::from(e.vendor_event_type.starts_with("chargeback."));
    }
    assert_eq!(chargeback_events, 5, "each transition ingested once (the ingester drops the repeated batches)");
    let encoder = AvroEncoder::register(&env.registry_client, &provider_topic, PROVIDER_EVENT_SCHEMA).await?;
    let publisher = Publisher::new(&env.kafka)?;
    for record in ingested.iter().rev() {
        let e: ProviderEvent = provider_decoder.decode(&record.payload).await?;
        // A redelivery (same event id: the worker's callback record) and the
        // processor saying it again (a new id: the dispute machine's word).
        let said_again = ProviderEvent { event_id: format!("{}-again", e.event_id), ..e.clone() };
        for e in [e, said_again] {
            let again = Outbound {
                topic: provider_topic.clone(),
                key: Some(record.key.clone()),
                payload: encoder.encode(&e)?,
                headers: vec![("correlation-id".into(), format!("replay-{}", e.event_id).into_bytes())],
            };
            publisher.publish(&again).await?;
        }
    }
    for extra in events.read_up_to(usize::MAX, Duration::from_secs(6)).await? {
        published.push(decoder.decode::<CardEvent>(&extra.payload).await?);
    }

    let mut ids = std::collections::HashSet::new();
    for e in &published {
        assert!(ids.insert(e.event_id.clone()), "event {} published twice", e.event_id);
    }
    let story = dispute_story(&published, won);
    let updates: Vec<&str> = story.iter().filter(|(k, ..)| *k == K::DisputeUpdated).map(|(_, s, _)| s.as_str()).collect();
    assert!(
        updates == ["SUBMITTED", "REPRESENTMENT", "PRE_ARBITRATION", "ARBITRATION", "WON"] || updates == ["SUBMITTED", "REPRESENTMENT", "PRE_ARBITRATION", "WON"],
        "one DISPUTE_UPDATED per real change, in order, never backwards: {story:?}"
    );
    assert!(updates.windows(2).all(|w| rank(w[0]) < rank(w[1])), "{updates:?}");
    let credits: Vec<(String, Option<i64>)> = story.iter().filter(|(k, ..)| *k == K::ProvisionalCredit).map(|(_, s, a)| (s.clone(), *a)).collect();
    assert_eq!(credits, [("GRANTED".to_owned(), Some(AMOUNT)), ("MADE_FINAL".to_owned(), None)], "granted once, made final once");
    assert_eq!(story.last().map(|(k, s, _)| (*k, s.as_str())), Some((K::ProvisionalCredit, "MADE_FINAL")), "{story:?}");
    assert_eq!(
        dispute_story(&published, lost),
        [
            (K::DisputeUpdated, "SUBMITTED".to_owned(), None),
            (K::ProvisionalCredit, "GRANTED".to_owned(), Some(AMOUNT)),
            (K::DisputeUpdated, "LOST".to_owned(), None),
            (K::ProvisionalCredit, "REVERSED".to_owned(), Some(-AMOUNT)),
        ],
        "lost: the credit reversed once, negative"
    );
    let lost_update = published.iter().find(|e| e.card_id == *lost && e.to_state.as_deref() == Some("LOST")).context("LOST")?;
    assert_eq!((lost_update.from_state.as_deref(), lost_update.dispute_id.clone()), (Some("SUBMITTED"), Some(format!("{lost}-dsp"))));
    let Processors { lithic, marqeta, .. } = processors;
    lithic.shutdown().await;
    marqeta.shutdown().await;
    stop(worker, shutdown).await
}
