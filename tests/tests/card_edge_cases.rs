//! The simulators' magic inputs for card edge cases, end to end on the real
//! broker and PostgreSQL:
//!
//! - a Marqeta physical card whose shipping address says `RETURN TO SENDER`
//!   ships and comes back (`fulfillment.rejected`, the simulator's own
//!   signed webhooks, half the batches twice, jittered): one
//!   CARD_SHIPPING_RETURNED, also after every callback is put on the bus
//!   again under new ids;
//! - a Lithic Apple Pay provisioning whose nonce starts with `STEP_UP`: the
//!   PROVISION_TOKEN outcome says step-up is required and carries no
//!   payload, and the card publishes TOKEN_STEP_UP_REQUIRED, never
//!   TOKEN_PROVISIONED.

use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_bus::{AvroDecoder, AvroEncoder, Outbound, Publisher};
use switchyard_canonical::card::{CardAction, CardForm, IssueSpec, ProvisionSpec, ShippingAddress, Wallet};
use switchyard_canonical::card_event::{CardEvent, CardEventKind as K};
use switchyard_canonical::card_outcome::CardOutcomeStatus;
use switchyard_canonical::ProviderEvent;
use switchyard_e2e::cards::{answer_to, command, config, read_events, stop, Processors};
use switchyard_e2e::checks::{CommandProducer, OutcomeReader};
use switchyard_e2e::webhooks::url;
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_ingester::config::{KeyConfig, ProviderConfig};
use switchyard_ingester::start_ingester;
use switchyard_simulators::lithic::{spawn_lithic, LithicConfig, MAGIC_STEP_UP};
use switchyard_simulators::marqeta::{spawn_marqeta, MarqetaConfig, MarqetaWebhook};
use switchyard_simulators::CardOracle;
use switchyard_worker::card::callback::PROVIDER_EVENT_SCHEMA;
use switchyard_worker::card::run::start_card_worker;
use switchyard_worker::card::{CARD_COMMAND_SCHEMA, CARD_EVENT_SCHEMA, CARD_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_returned_shipment_is_told_once_however_often_it_is_said() -> Result<()> {
    let env = TestEnv::new("card-edge-cases").await?;
    let shutdown = CancellationToken::new();
    let hooks = BTreeMap::from([("marqeta".to_owned(), ProviderConfig::new("cards", vec![KeyConfig::inline("hookuser:hookpass")]))]);
    let ingester = start_ingester(env.ingester_config(hooks), shutdown.clone()).await?;
    let oracle = CardOracle::new();
    let mut hook = MarqetaWebhook::new(url(&ingester, "marqeta"), "hookuser", "hookpass");
    hook.duplicate_ratio = 0.5;
    hook.max_jitter = Duration::from_millis(500);
    hook.backoff = Duration::from_millis(50);
    let ship_after = Duration::from_millis(400);
    let marqeta = MarqetaConfig { oracle: oracle.clone(), ship_after, webhook: Some(hook), ..MarqetaConfig::local() };
    let lithic = LithicConfig { oracle: oracle.clone(), ..LithicConfig::local() };
    let processors = Processors { lithic: spawn_lithic(lithic).await?, marqeta: spawn_marqeta(marqeta).await?, oracle };
    let worker = start_card_worker(config(&env, &processors, "marqeta", 2_000), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let events = TopicReader::new(&env.kafka, &env.topic("cards.events.v1"))?;
    let decoder = AvroDecoder::new(env.registry_client.clone(), CARD_EVENT_SCHEMA)?;

    // Shipping returned, at Marqeta (the routing primary).
    let returned = format!("{}card-returned", env.prefix);
    let mut issue = command(&returned, &format!("{returned}-0"), CardAction::Issue);
    issue.issue = Some(IssueSpec {
        form: CardForm::Physical,
        product: "debit-classic".into(),
        cardholder_ref: "cust-1".into(),
        shipping: Some(ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: "RETURN TO SENDER 1 Analytical Way".into(),
            line2: None,
            city: "London".into(),
            postal_code: "N1 9GU".into(),
            country: "GB".into(),
        }),
    });
    producer.send(&returned, &issue.idempotency_key, &issue).await?;
    let o = answer_to(&outcomes, &issue.idempotency_key).await?;
    ensure!(o.status == CardOutcomeStatus::Succeeded, "issue: {o:?}");
    // CARD_ISSUED (the outcome's), CARD_SHIPPED, CARD_SHIPPING_RETURNED.
    let mut published = read_events(&env, &events, 3).await.context("issued, shipped, returned")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Every callback of the run again, under new ids (the processor saying it again).
    let provider_topic = env.topic("cards.provider-events.v1");
    let ingested = TopicReader::new(&env.kafka, &provider_topic)?.read_up_to(usize::MAX, Duration::from_secs(3)).await?;
    let provider_decoder = AvroDecoder::new(env.registry_client.clone(), PROVIDER_EVENT_SCHEMA)?;
    let encoder = AvroEncoder::register(&env.registry_client, &provider_topic, PROVIDER_EVENT_SCHEMA).await?;
    let publisher = Publisher::new(&env.kafka)?;
    let mut rejected = 0;
    for record in ingested.iter().rev() {
        let e: ProviderEvent = provider_decoder.decode(&record.payload).await?;
        rejected += usize::from(e.vendor_event_type == "fulfillment.rejected");
        let again = ProviderEvent { event_id: format!("{}-again", e.event_id), ..e };
        let record = Outbound {
            topic: provider_topic.clone(),
            key: Some(record.key.clone()),
            payload: encoder.encode(&again)?,
            headers: vec![("correlation-id".into(), format!("again-{}", again.event_id).into_bytes())],
        };
        publisher.publish(&record).await?;
    }
    assert_eq!(rejected, 1, "Marqeta told the return once (the ingester dropped its repeated batch)");

    for extra in events.read_up_to(usize::MAX, Duration::from_secs(5)).await? {
        published.push(decoder.decode::<CardEvent>(&extra.payload).await?);
    }
    let kinds = |card: &str| published.iter().filter(|e| e.card_id == card).map(|e| e.kind).collect::<Vec<_>>();
    let mut returned_kinds = kinds(&returned);
    returned_kinds.sort_by_key(|k| k.as_str());
    assert_eq!(returned_kinds, [K::CardIssued, K::CardShipped, K::CardShippingReturned], "one event each: {:?}", kinds(&returned));
    let told = published.iter().find(|e| e.kind == K::CardShippingReturned).context("returned")?;
    assert!(told.notify_cardholder, "the cardholder is told the card came back");
    let Processors { lithic, marqeta, .. } = processors;
    lithic.shutdown().await;
    marqeta.shutdown().await;
    stop(worker, shutdown).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_provisioning_that_needs_step_up_is_not_a_provisioned_token() -> Result<()> {
    let env = TestEnv::new("card-step-up").await?;
    let shutdown = CancellationToken::new();
    let processors = Processors::start(switchyard_simulators::FaultPlan::default()).await?;
    let worker = start_card_worker(config(&env, &processors, "lithic", 2_000), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let events = TopicReader::new(&env.kafka, &env.topic("cards.events.v1"))?;
    let decoder = AvroDecoder::new(env.registry_client.clone(), CARD_EVENT_SCHEMA)?;
    // A virtual card at Lithic is OPEN at once; then Apple Pay with the
    // simulator's magic nonce.
    let wallet = format!("{}card-wallet", env.prefix);
    let mut issue = command(&wallet, &format!("{wallet}-0"), CardAction::Issue);
    issue.issue = Some(IssueSpec { form: CardForm::Virtual, product: "debit-classic".into(), cardholder_ref: "cust-2".into(), shipping: None });
    producer.send(&wallet, &issue.idempotency_key, &issue).await?;
    let o = answer_to(&outcomes, &issue.idempotency_key).await?;
    assert_eq!((o.status, o.provider.as_deref()), (CardOutcomeStatus::Succeeded, Some("lithic")), "{o:?}");
    if o.state != Some(switchyard_canonical::card::CardState::Active) {
        let activate = command(&wallet, &format!("{wallet}-a"), CardAction::Activate);
        producer.send(&wallet, &activate.idempotency_key, &activate).await?;
        let o = answer_to(&outcomes, &activate.idempotency_key).await?;
        ensure!(o.status == CardOutcomeStatus::Succeeded, "activate: {o:?}");
    }
    let mut provision = command(&wallet, &format!("{wallet}-1"), CardAction::ProvisionToken);
    provision.provision = Some(ProvisionSpec {
        wallet: Wallet::ApplePay,
        certificates: vec!["bGVhZg==".into(), "c3ViY2E=".into()],
        nonce: Some(format!("{MAGIC_STEP_UP}-nonce")),
        nonce_signature: Some("c2ln".into()),
        device_id: None,
        wallet_account_id: None,
    });
    producer.send(&wallet, &provision.idempotency_key, &provision).await?;
    let o = answer_to(&outcomes, &provision.idempotency_key).await?;
    let result = o.provisioning.clone().with_context(|| format!("a provisioning result: {o:?}"))?;
    assert_eq!(o.status, CardOutcomeStatus::Succeeded, "{o:?}");
    assert!(result.step_up_required && result.activation_data.is_none(), "step-up required, nothing to add to the wallet: {result:?}");
    let mut published = read_events(&env, &events, 2).await.context("the card's events and its step-up")?;
    for extra in events.read_up_to(usize::MAX, Duration::from_secs(3)).await? {
        published.push(decoder.decode::<CardEvent>(&extra.payload).await?);
    }
    let kinds: Vec<K> = published.iter().filter(|e| e.card_id == wallet).map(|e| e.kind).collect();
    assert!(kinds.contains(&K::TokenStepUpRequired) && !kinds.contains(&K::TokenProvisioned), "a step-up, not a provisioned token: {kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == K::TokenStepUpRequired).count(), 1, "{kinds:?}");
    let Processors { lithic, marqeta, .. } = processors;
    lithic.shutdown().await;
    marqeta.shutdown().await;
    stop(worker, shutdown).await
}
