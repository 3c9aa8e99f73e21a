//! The cards part of `switchyard up`: Lithic (primary) and Marqeta
//! simulators, a card worker on the demo store, and one card's lifecycle
//! (issue, activate, suspend, reinstate). Lithic's signed callbacks go
//! through the webhook ingester, every one of them delivered twice, and the
//! card still gets exactly one event per change: the ingester drops the
//! redelivery by its webhook id, and the worker finds the card already in
//! the state a callback reports (its own outcome said so first).

use crate::demo_webhooks::DemoIngester;
use anyhow::{Context, Result};
use std::time::Duration;
use switchyard_bus::{AvroDecoder, AvroEncoder, Outbound, Publisher};
use switchyard_canonical::card::{CardAction, CardCommand, CardForm, IssueSpec};
use switchyard_canonical::card_event::CardEvent;
use switchyard_canonical::card_outcome::CardOutcome;
use switchyard_localstack::{LocalStack, TopicReader};
use switchyard_simulators::callbacks::CallbackFaults;
use switchyard_simulators::lithic::{spawn_lithic, LithicConfig};
use switchyard_simulators::marqeta::{spawn_marqeta, MarqetaConfig};
use switchyard_simulators::SimulatorHandle;
use switchyard_worker::card::config::{CallbackSettings, CardProcessorKind, CardProviderConfig, CardTopics, CardWorkerConfig};
use switchyard_worker::card::run::{start_card_worker, RunningCardWorker};
use switchyard_worker::card::{CARD_COMMAND_SCHEMA, CARD_EVENT_SCHEMA, CARD_OUTCOME_SCHEMA};
use switchyard_worker::config::{Environment, SecretSource};
use tokio_util::sync::CancellationToken;

pub(crate) struct CardDemo {
    worker: RunningCardWorker,
    lithic: SimulatorHandle,
    marqeta: SimulatorHandle,
}

impl CardDemo {
    pub(crate) async fn join(self) -> Result<()> {
        self.worker.join.await??;
        self.lithic.shutdown().await;
        self.marqeta.shutdown().await;
        Ok(())
    }
}

pub(crate) async fn show(stack: &LocalStack, ingester: &DemoIngester, database_url: &str, run: &str, shutdown: CancellationToken) -> Result<CardDemo> {
    let lithic = spawn_lithic(LithicConfig {
        webhook: Some(ingester.target("lithic")),
        callback_faults: CallbackFaults { duplicate_ratio: 1.0, max_delay_ms: 200, seed: 42, ..CallbackFaults::default() },
        ..LithicConfig::local()
    })
    .await?;
    let marqeta = spawn_marqeta(MarqetaConfig::local()).await?;
    println!("\nlithic simulator {}  (every callback delivered twice)", lithic.base_url());
    println!("marqeta simulator {}/v3", marqeta.base_url());
    let worker = start_card_worker(card_worker_config(stack, &lithic, &marqeta, database_url), shutdown).await?;

    let card = format!("card-{run}");
    let commands: Vec<CardCommand> = [CardAction::Issue, CardAction::Activate, CardAction::Suspend, CardAction::Reinstate]
        .into_iter()
        .enumerate()
        .map(|(i, action)| card_command(&card, &format!("{card}-{i}"), action))
        .collect();
    let encoder = AvroEncoder::register(&stack.registry_client, "cards.commands.v1", CARD_COMMAND_SCHEMA).await?;
    let publisher = Publisher::new(&stack.kafka)?;
    println!("\npublishing to cards.commands.v1: ISSUE (virtual), ACTIVATE, SUSPEND, REINSTATE of {card}");
    for c in &commands {
        let record = Outbound {
            topic: "cards.commands.v1".into(),
            key: Some(card.clone().into_bytes()),
            payload: encoder.encode(c)?,
            headers: vec![("correlation-id".into(), format!("corr-{card}").into_bytes()), ("idempotency-key".into(), c.idempotency_key.clone().into_bytes())],
        };
        publisher.publish(&record).await?;
    }

    let outcomes: Vec<CardOutcome> = read_for(stack, "cards.outcomes.v1", CARD_OUTCOME_SCHEMA, commands.len(), |o: &CardOutcome| o.card_id == card).await?;
    println!("outcomes on cards.outcomes.v1:");
    println!("  {:<10} {:<10} {:<9} {:<8} {:<6} {:>8}", "action", "status", "state", "provider", "last4", "attempts");
    for o in &outcomes {
        println!(
            "  {:<10} {:<10} {:<9} {:<8} {:<6} {:>8}",
            o.action.as_str(),
            o.status.as_str(),
            o.state.map_or("-", |s| s.as_str()),
            o.provider.as_deref().unwrap_or("-"),
            o.last_four.as_deref().unwrap_or("-"),
            o.attempts
        );
    }
    // Lithic's callbacks trail the answers; give them time to arrive twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events: Vec<CardEvent> = read_for(stack, "cards.events.v1", CARD_EVENT_SCHEMA, commands.len(), |e: &CardEvent| e.card_id == card).await?;
    println!("card events on cards.events.v1 (one per change, whatever the callbacks said):");
    for e in &events {
        println!(
            "  {:<16} {:>9} -> {:<9} notify cardholder: {}",
            e.kind.as_str(),
            e.from_state.as_deref().unwrap_or("-"),
            e.to_state.as_deref().unwrap_or("-"),
            e.notify_cardholder
        );
    }
    println!(
        "lithic callbacks: {} redeliveries dropped by the ingester; at the worker {} changed nothing (its outcome told the change first)",
        ingester.running.metrics.duplicate_count("lithic"),
        callbacks_counted(&worker, "unchanged")
    );
    Ok(CardDemo { worker, lithic, marqeta })
}

fn card_worker_config(stack: &LocalStack, lithic: &SimulatorHandle, marqeta: &SimulatorHandle, database_url: &str) -> CardWorkerConfig {
    let mut kafka = stack.kafka.clone();
    kafka.group_id = "card-worker".into();
    let provider = |name: &str, kind, base_url: String, key: &str, access: Option<&str>| CardProviderConfig {
        name: name.into(),
        kind,
        base_url,
        api_key: SecretSource::inline(key),
        access_token: access.map(SecretSource::inline),
        card_products: Default::default(),
        timeout_ms: 5_000,
        max_concurrency: 16,
        http2_prior_knowledge: false,
        key_retention_ms: None,
        tls: None,
    };
    CardWorkerConfig {
        environment: Environment::Sandbox,
        secret_check_every_ms: 5_000,
        kafka,
        schema_registry_url: stack.registry.base_url(),
        database_url: database_url.to_owned(),
        topics: CardTopics::default(),
        providers: vec![
            provider("lithic", CardProcessorKind::Lithic, lithic.base_url(), "lithic_sk_test_switchyard", None),
            provider("marqeta", CardProcessorKind::Marqeta, format!("{}/v3", marqeta.base_url()), "app_token_switchyard", Some("access_token_switchyard")),
        ],
        routing: switchyard_routing::RoutingPolicy {
            mode: switchyard_routing::DomainMode::On,
            primary: "lithic".into(),
            secondary: Some("marqeta".into()),
            breaker: switchyard_routing::BreakerConfig::default(),
            rollout: None,
            shadow: None,
            segments: Vec::new(),
        },
        admin_bind: None,
        max_in_flight: 100,
        max_retry_rounds: 5,
        retry: Default::default(),
        lease_ttl_ms: 5_000,
        callbacks: CallbackSettings::default(),
    }
}

fn card_command(card_id: &str, key: &str, action: CardAction) -> CardCommand {
    let issue = (action == CardAction::Issue)
        .then(|| IssueSpec { form: CardForm::Virtual, product: "debit-classic".into(), cardholder_ref: "cust-demo".into(), shipping: None });
    CardCommand {
        card_id: card_id.into(),
        idempotency_key: key.into(),
        action,
        issue,
        pin: None,
        replace: None,
        provision: None,
        dispute: None,
        evidence: None,
        reason: None,
        requested_at_ms: switchyard_canonical::now_ms(),
    }
}

/// The values of `topic` this demo run produced (`keep`), waiting up to
/// 30 s for `n` of them.
async fn read_for<T: serde::de::DeserializeOwned>(stack: &LocalStack, topic: &str, schema: &str, n: usize, keep: impl Fn(&T) -> bool) -> Result<Vec<T>> {
    let reader = TopicReader::new(&stack.kafka, topic)?;
    let decoder = AvroDecoder::new(stack.registry_client.clone(), schema)?;
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while found.len() < n && tokio::time::Instant::now() < deadline {
        for r in reader.read_up_to(1000, Duration::from_millis(500)).await? {
            if let Ok(v) = decoder.decode::<T>(&r.payload).await {
                if keep(&v) {
                    found.push(v);
                }
            }
        }
    }
    // Late extras (there should be none) are shown too.
    for r in reader.read_up_to(1000, Duration::from_millis(500)).await? {
        if let Ok(v) = decoder.decode::<T>(&r.payload).await {
            if keep(&v) {
                found.push(v);
            }
        }
    }
    (found.len() >= n).then_some(found).with_context(|| format!("fewer than {n} records for this run on {topic} within 30 s"))
}

fn callbacks_counted(worker: &RunningCardWorker, result: &str) -> u64 {
    let label = format!("result=\"{result}\"");
    let rendered = worker.metrics.render();
    rendered
        .lines()
        .filter(|l| l.starts_with("switchyard_provider_callbacks") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()))
        .map(|n| n as u64)
        .sum()
}
