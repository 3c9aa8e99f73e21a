//! Card events exactly once from processor callbacks: real broker, real
//! PostgreSQL, the card worker consuming its commands and
//! `cards.provider-events.v1`.
//!
//! - Marqeta's own webhooks (the simulator's batches, Basic credentials,
//!   half of them delivered twice, events jittered out of order), and
//!   Lithic's (Standard Webhooks, duplicated, `card.created` held back
//!   behind `card.shipped`), through a running ingester, while the worker
//!   issues physical cards and activates some: one CARD_ISSUED, one CARD_SHIPPED, one CARD_PENDING_ACTIVATION
//!   and (for activated cards) one CARD_ACTIVATED per card, in lifecycle
//!   order, although the worker's own outcomes already announced ISSUED and
//!   ACTIVATED and the callbacks came twice and late;
//! - provider events put on the topic directly: a CARD_ISSUED callback
//!   twice (one a redelivery under the same event id) after SHIPPED yields
//!   one event each; a callback that beats its card's ISSUE outcome is
//!   retried until the card is stored; a callback for a token no card
//!   holds is retried, then dead-lettered with the reason; a chargeback is
//!   acknowledged.

use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use switchyard_adapters::cards::marqeta::MarqetaAdapter;
use switchyard_adapters::http::Transport;
use switchyard_adapters::Secret;
use switchyard_bus::{AvroEncoder, Outbound, Publisher};
use switchyard_canonical::card::{CardAction, CardCommand, CardForm, CardState, IssueSpec, ShippingAddress};
use switchyard_canonical::card_event::{CardEvent, CardEventKind as K};
use switchyard_canonical::card_outcome::{CardOutcome, CardOutcomeStatus};
use switchyard_canonical::{ProviderEvent, ProviderEventKind};
use switchyard_e2e::cards::{answer_to, command, config, read_events, stop, Processors};
use switchyard_e2e::checks::{CommandProducer, OutcomeReader};
use switchyard_e2e::webhooks::url;
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_ingester::config::{KeyConfig, ProviderConfig};
use switchyard_ingester::start_ingester;
use switchyard_simulators::lithic::{spawn_lithic, LithicConfig};
use switchyard_simulators::marqeta::{spawn_marqeta, MarqetaConfig, MarqetaWebhook};
use switchyard_simulators::callbacks::CallbackFaults;
use switchyard_simulators::{CardOracle, WebhookTarget};
use switchyard_worker::card::callback::PROVIDER_EVENT_SCHEMA;
use switchyard_worker::card::run::{start_card_worker, RunningCardWorker};
use switchyard_worker::card::{CARD_COMMAND_SCHEMA, CARD_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

fn physical_issue(card_id: &str) -> CardCommand {
    let mut cmd = command(card_id, &format!("{card_id}-0"), CardAction::Issue);
    cmd.issue = Some(IssueSpec {
        form: CardForm::Physical,
        product: "debit-classic".into(),
        cardholder_ref: "cust-1".into(),
        shipping: Some(ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: "1 Analytical Way".into(),
            line2: None,
            city: "London".into(),
            postal_code: "N1 9GU".into(),
            country: "GB".into(),
        }),
    });
    cmd
}

/// `switchyard_provider_callbacks_total` for one result, from `/metrics`.
fn callbacks_counted(worker: &RunningCardWorker, result: &str) -> u64 {
    let label = format!("result=\"{result}\"");
    worker
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("switchyard_provider_callbacks") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()))
        .map(|n| n as u64)
        .sum()
}

/// Every card's events, in the order they were published, checked for
/// distinct ids and increasing versions.
fn per_card(published: &[CardEvent]) -> BTreeMap<String, Vec<K>> {
    let mut ids = HashSet::new();
    let mut last: HashMap<&str, i64> = HashMap::new();
    let mut kinds: BTreeMap<String, Vec<K>> = BTreeMap::new();
    for e in published {
        assert!(ids.insert(e.event_id.clone()), "event {} published twice", e.event_id);
        let version: i64 = e.event_id.rsplit(':').next().and_then(|v| v.parse().ok()).unwrap_or(-1);
        let before = last.insert(e.card_id.as_str(), version).unwrap_or(0);
        assert!(version > before, "{}: {} after version {before}: out of order", e.card_id, e.event_id);
        kinds.entry(e.card_id.clone()).or_default().push(e.kind);
    }
    kinds
}

const LITHIC_SECRET: &str = "whsec_c3dpdGNoeWFyZC1saXRoaWMtdGVzdC1rZXk=";

/// A processor's own webhooks, twice and out of order, through the
/// ingester, for physical cards the worker issues there and (half of them)
/// activates. Marqeta announces fulfillment issued, ordered, shipped and
/// delivered; Lithic created and shipped (its card is then waiting for
/// activation, which no event says).
async fn callbacks_twice_late_and_out_of_order(name: &str, processor: &str) -> Result<()> {
    let env = TestEnv::new(name).await?;
    let shutdown = CancellationToken::new();
    let hook_key = if processor == "marqeta" { "hookuser:hookpass" } else { LITHIC_SECRET };
    let hooks = BTreeMap::from([(processor.to_owned(), ProviderConfig::new("cards", vec![KeyConfig::inline(hook_key)]))]);
    let ingester = start_ingester(env.ingester_config(hooks), shutdown.clone()).await?;
    let oracle = CardOracle::new();
    let ship_after = Duration::from_millis(600);
    let mut lithic = LithicConfig { oracle: oracle.clone(), ship_after, ..LithicConfig::local() };
    let mut marqeta = MarqetaConfig { ship_after, oracle: oracle.clone(), ..MarqetaConfig::local() };
    if processor == "marqeta" {
        let mut hook = MarqetaWebhook::new(url(&ingester, "marqeta"), "hookuser", "hookpass");
        hook.duplicate_ratio = 0.5;
        hook.max_jitter = Duration::from_millis(700);
        hook.backoff = Duration::from_millis(50);
        marqeta.webhook = Some(hook);
    } else {
        lithic.webhook = Some(WebhookTarget { url: url(&ingester, "lithic"), secret: LITHIC_SECRET.into() });
        lithic.callback_faults = CallbackFaults { duplicate_ratio: 0.5, reorder_ratio: 0.5, max_delay_ms: 500, seed: 7, ..CallbackFaults::default() };
    }
    let processors = Processors { lithic: spawn_lithic(lithic).await?, marqeta: spawn_marqeta(marqeta).await?, oracle };
    let worker = start_card_worker(config(&env, &processors, processor, 2_000), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let events = TopicReader::new(&env.kafka, &env.topic("cards.events.v1"))?;

    let cards: Vec<String> = (0..8).map(|i| format!("{}card-{i}", env.prefix)).collect();
    for card in &cards {
        let issue = physical_issue(card);
        producer.send(card, &issue.idempotency_key, &issue).await?;
    }
    let issued = outcomes.collect::<CardOutcome>(cards.len(), Duration::from_secs(60)).await?;
    for (o, _) in &issued {
        assert_eq!((o.status, o.state, o.provider.as_deref()), (CardOutcomeStatus::Succeeded, Some(CardState::Issued), Some(processor)), "{o:?}");
    }
    // Cards 0 and 1 activated before they ship, 2 and 3 once shipped (or
    // delivered); 4..7 never.
    let activated = &cards[..4];
    for (i, card) in activated.iter().enumerate() {
        if i == 2 {
            tokio::time::sleep(Duration::from_millis(900)).await;
        }
        let activate = command(card, &format!("{card}-1"), CardAction::Activate);
        producer.send(card, &activate.idempotency_key, &activate).await?;
        let o = answer_to(&outcomes, &activate.idempotency_key).await?;
        assert_eq!((o.status, o.state), (CardOutcomeStatus::Succeeded, Some(CardState::Active)), "{o:?}");
    }

    let waiting: &[K] = if processor == "marqeta" { &[K::CardIssued, K::CardShipped, K::CardPendingActivation] } else { &[K::CardIssued, K::CardShipped] };
    let expected = activated.len() * 4 + (cards.len() - activated.len()) * waiting.len();
    let mut published = read_events(&env, &events, expected).await.context("one event per state change")?;
    // Late callbacks still arriving must add nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let decoder = switchyard_bus::AvroDecoder::new(env.registry_client.clone(), switchyard_worker::card::CARD_EVENT_SCHEMA)?;
    for extra in events.read_up_to(usize::MAX, Duration::from_secs(3)).await? {
        published.push(decoder.decode::<CardEvent>(&extra.payload).await?);
    }
    let kinds = per_card(&published);
    for (i, card) in cards.iter().enumerate() {
        let want: &[K] = if i < activated.len() { &[K::CardIssued, K::CardShipped, K::CardPendingActivation, K::CardActivated] } else { waiting };
        assert_eq!(kinds.get(card).map(Vec::as_slice), Some(want), "{card}: one event per state change, in lifecycle order");
    }
    assert_eq!(published.len(), expected, "nothing beyond one event per change");
    let notified = published.iter().filter(|e| e.kind == K::CardIssued && e.notify_cardholder).count();
    assert_eq!(notified, cards.len(), "one 'your card is on its way' per card");
    let (changed, unchanged) = (callbacks_counted(&worker, "changed"), callbacks_counted(&worker, "unchanged"));
    eprintln!("{processor} callbacks: changed {changed}, unchanged {unchanged}, duplicate {}", callbacks_counted(&worker, "duplicate"));
    assert!(changed > 0, "callbacks moved cards (shipped, delivered)");
    assert!(unchanged >= cards.len() as u64, "every card's issuance (and each activation) was already told by an outcome");
    assert!(ingester.metrics.duplicate_count(processor) > 0, "some callbacks came twice");
    let waiting_state = if processor == "marqeta" { "PENDING_ACTIVATION" } else { "SHIPPED" };
    for card in &cards {
        let row = worker.cards.load(card).await?.context("card stored")?;
        let want = if activated.contains(card) { "ACTIVE" } else { waiting_state };
        assert_eq!(row.state, want, "{card}");
    }
    processors.assert_issued_once(&cards);
    let Processors { lithic, marqeta, .. } = processors;
    lithic.shutdown().await;
    marqeta.shutdown().await;
    stop(worker, shutdown).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn marqeta_callbacks_twice_late_and_out_of_order_yield_one_event_per_state_change() -> Result<()> {
    callbacks_twice_late_and_out_of_order("card-callbacks-marqeta", "marqeta").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lithic_callbacks_twice_late_and_out_of_order_yield_one_event_per_state_change() -> Result<()> {
    callbacks_twice_late_and_out_of_order("card-callbacks-lithic", "lithic").await
}

/// Publishes provider events as the webhook ingester would.
struct Callbacks {
    publisher: Publisher,
    encoder: AvroEncoder,
    topic: String,
}

impl Callbacks {
    async fn new(env: &TestEnv) -> Result<Self> {
        let topic = env.topic("cards.provider-events.v1");
        let encoder = AvroEncoder::register(&env.registry_client, &topic, PROVIDER_EVENT_SCHEMA).await?;
        Ok(Self { publisher: Publisher::new(&env.kafka)?, encoder, topic })
    }

    async fn send(&self, event_id: &str, token: &str, vendor_event_type: &str, kind: ProviderEventKind) -> Result<()> {
        let now = switchyard_canonical::now_ms();
        let event = ProviderEvent {
            event_id: event_id.into(),
            provider: "marqeta".into(),
            domain: "cards".into(),
            subject_id: token.into(),
            provider_reference: token.into(),
            kind,
            vendor_event_type: vendor_event_type.into(),
            amount_minor: None,
            currency: None,
            reason: None,
            occurred_at_ms: now,
            received_at_ms: now,
            payload_sha256: String::new(),
        };
        let record = Outbound {
            topic: self.topic.clone(),
            key: Some(token.as_bytes().to_vec()),
            payload: self.encoder.encode(&event)?,
            headers: vec![("correlation-id".into(), format!("corr-{event_id}").into_bytes())],
        };
        self.publisher.publish(&record).await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_issued_callback_twice_and_after_shipped_yields_one_event_each() -> Result<()> {
    let env = TestEnv::new("card-callbacks-direct").await?;
    let processors = Processors::start(switchyard_simulators::FaultPlan::default()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_card_worker(config(&env, &processors, "marqeta", 2_000), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let events = TopicReader::new(&env.kafka, &env.topic("cards.events.v1"))?;
    let dlq = TopicReader::new(&env.kafka, &env.topic("cards.provider-events.v1.dlq"))?;
    let callbacks = Callbacks::new(&env).await?;
    let run = &env.prefix;

    // A callback no card of ours will ever hold, and one about no card.
    callbacks.send(&format!("{run}ev-ghost"), "ghost-token", "fulfillment.shipped", ProviderEventKind::CardShipped).await?;
    callbacks.send(&format!("{run}ev-cb"), "chargeback-token", "chargeback.initiated", ProviderEventKind::Other).await?;

    let card = format!("{run}card-d");
    let issue = physical_issue(&card);
    // A callback that beats the card's ISSUE outcome: Marqeta's card token
    // is derived from our key, so it can name the card before we stored it.
    let marqeta = MarqetaAdapter::new("marqeta", "http://127.0.0.1:1/v3", Secret::new("u"), Secret::new("p"), Transport::new(Duration::from_secs(1), 1))?;
    let early = format!("{run}ev-early-shipped");
    callbacks.send(&early, &marqeta.provider_key(&issue.idempotency_key), "fulfillment.shipped", ProviderEventKind::CardShipped).await?;
    producer.send(&card, &issue.idempotency_key, &issue).await?;
    let o = answer_to(&outcomes, &issue.idempotency_key).await?;
    assert_eq!((o.status, o.state), (CardOutcomeStatus::Succeeded, Some(CardState::Issued)), "{o:?}");
    let token = o.processor_reference.clone().context("the card's token")?;

    // SHIPPED first, then ISSUED late, twice under one id (a redelivery) and
    // once more under another (the processor said it again), then SHIPPED again.
    callbacks.send(&format!("{run}ev-shipped"), &token, "fulfillment.shipped", ProviderEventKind::CardShipped).await?;
    for id in ["ev-issued", "ev-issued", "ev-issued-again"] {
        callbacks.send(&format!("{run}{id}"), &token, "fulfillment.issued", ProviderEventKind::CardIssued).await?;
    }
    callbacks.send(&format!("{run}ev-shipped"), &token, "fulfillment.shipped", ProviderEventKind::CardShipped).await?;

    let published = read_events(&env, &events, 2).await?;
    assert!(events.read_up_to(1, Duration::from_secs(4)).await?.is_empty(), "no event beyond one per change");
    let kinds = per_card(&published);
    assert_eq!(kinds.get(&card).map(Vec::as_slice), Some(&[K::CardIssued, K::CardShipped][..]));
    let issued: Vec<&CardEvent> = published.iter().filter(|e| e.kind == K::CardIssued).collect();
    assert_eq!(issued.len(), 1, "one CARD_ISSUED: the outcome's; the callbacks added none");
    assert_eq!(worker.cards.load(&card).await?.map(|r| r.state), Some("SHIPPED".to_owned()));
    assert!(worker.cards.callback_applied("marqeta", &early).await?, "the early callback was retried until its card was stored");

    // The unknown token: retried for its rounds (200 ms doubling, 4), then
    // dead-lettered with the reason; the chargeback never is.
    let dead = dlq.collect(1, Duration::from_secs(30)).await?;
    let reason = dead[0].headers.get("dlq-reason").cloned().unwrap_or_default();
    assert!(reason.contains("no card of ours holds the marqeta card token") && reason.contains("ev-ghost"), "{reason}");
    assert!(!reason.contains("ghost-token"), "the processor's token stays out of the DLQ reason: {reason}");
    assert!(dlq.read_up_to(1, Duration::from_secs(2)).await?.is_empty(), "the chargeback was acknowledged, not dead-lettered");
    assert_eq!(callbacks_counted(&worker, "not_a_card"), 1);
    assert_eq!(callbacks_counted(&worker, "duplicate"), 2, "the ISSUED redelivery and the SHIPPED one");
    stop(worker, shutdown).await
}
