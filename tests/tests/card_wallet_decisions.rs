//! Marqeta push provisioning, decided by its callbacks: real broker, real
//! PostgreSQL, the Marqeta simulator's signed `digitalwallettokentransitions`
//! (Basic credentials, half the batches twice) through a running ingester
//! to the card worker.
//!
//! Marqeta answers an Apple Pay / Google Pay provisioning request with the
//! wallet's payload at once; whether the token is provisioned is decided
//! by the wallet, the network and Marqeta and told in the token
//! transition's `fulfillment_status` (Marqeta's "Managing the digital
//! wallet token lifecycle": DECISION_GREEN provision, DECISION_YELLOW
//! further verification, DECISION_RED do not provision). The simulator's
//! magic input: a nonce (Apple Pay) or device id (Google Pay) starting
//! with `stepup` is decided DECISION_YELLOW.
//!
//! - DECISION_YELLOW: one TOKEN_STEP_UP_REQUIRED and no TOKEN_PROVISIONED
//!   (the cardholder must not be told the card is in the wallet) until the
//!   issuer, the step-up done, makes the token ACTIVE
//!   (`POST /digitalwallettokentransitions`): then one TOKEN_PROVISIONED;
//! - DECISION_GREEN: one TOKEN_PROVISIONED, and none more when the token
//!   goes ACTIVE by itself a moment later.

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_bus::AvroDecoder;
use switchyard_canonical::card::{CardAction, ProvisionSpec, Wallet};
use switchyard_canonical::card_event::{CardEvent, CardEventKind as K};
use switchyard_canonical::card_outcome::CardOutcomeStatus;
use switchyard_e2e::cards::{answer_to, command, config, read_events, stop, Processors};
use switchyard_e2e::checks::{CommandProducer, OutcomeReader};
use switchyard_e2e::webhooks::url;
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_ingester::config::{KeyConfig, ProviderConfig};
use switchyard_ingester::start_ingester;
use switchyard_simulators::lithic::{spawn_lithic, LithicConfig};
use switchyard_simulators::marqeta::{spawn_marqeta, MarqetaConfig, MarqetaWebhook};
use switchyard_simulators::CardOracle;
use switchyard_worker::card::{CARD_COMMAND_SCHEMA, CARD_EVENT_SCHEMA, CARD_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

fn apple_pay(nonce: &str) -> ProvisionSpec {
    ProvisionSpec {
        wallet: Wallet::ApplePay,
        certificates: vec!["bGVhZg==".into(), "c3ViY2E=".into()],
        nonce: Some(nonce.into()),
        nonce_signature: Some("c2ln".into()),
        device_id: None,
        wallet_account_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn marqeta_token_decisions_become_step_up_or_provisioned_once() -> Result<()> {
    let env = TestEnv::new("card-wallet-decisions").await?;
    let shutdown = CancellationToken::new();
    let hooks = BTreeMap::from([("marqeta".to_owned(), ProviderConfig::new("cards", vec![KeyConfig::inline("hookuser:hookpass")]))]);
    let ingester = start_ingester(env.ingester_config(hooks), shutdown.clone()).await?;
    let oracle = CardOracle::new();
    let mut hook = MarqetaWebhook::new(url(&ingester, "marqeta"), "hookuser", "hookpass");
    hook.duplicate_ratio = 0.5;
    hook.backoff = Duration::from_millis(50);
    let marqeta = MarqetaConfig { oracle: oracle.clone(), webhook: Some(hook), ..MarqetaConfig::local() };
    let lithic = LithicConfig { oracle: oracle.clone(), ..LithicConfig::local() };
    let processors = Processors { lithic: spawn_lithic(lithic).await?, marqeta: spawn_marqeta(marqeta).await?, oracle };
    let worker = switchyard_worker::card::run::start_card_worker(config(&env, &processors, "marqeta", 2_000), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let events = TopicReader::new(&env.kafka, &env.topic("cards.events.v1"))?;
    let decoder = AvroDecoder::new(env.registry_client.clone(), CARD_EVENT_SCHEMA)?;

    let yellow = format!("{}card-yellow", env.prefix);
    let green = format!("{}card-green", env.prefix);
    for (card, nonce) in [(&yellow, "stepup-nonce"), (&green, "bm9uY2U=")] {
        for (i, action) in [CardAction::Issue, CardAction::Activate].into_iter().enumerate() {
            let c = command(card, &format!("{card}-{i}"), action);
            producer.send(card, &c.idempotency_key, &c).await?;
            let o = answer_to(&outcomes, &c.idempotency_key).await?;
            ensure!(o.status == CardOutcomeStatus::Succeeded, "{action:?}: {o:?}");
        }
        let mut provision = command(card, &format!("{card}-wallet"), CardAction::ProvisionToken);
        provision.provision = Some(apple_pay(nonce));
        producer.send(card, &provision.idempotency_key, &provision).await?;
        let o = answer_to(&outcomes, &provision.idempotency_key).await?;
        assert_eq!(o.status, CardOutcomeStatus::Succeeded, "{o:?}");
        let result = o.provisioning.clone().unwrap_or_else(|| panic!("a provisioning result: {o:?}"));
        // Marqeta hands the wallet its payload before the decision.
        assert!(result.activation_data.is_some() && !result.step_up_required, "{result:?}");
    }
    // CARD_ISSUED + CARD_ACTIVATED per card, then the decisions.
    let mut published: Vec<CardEvent> = read_events(&env, &events, 4).await?;
    more(&events, &decoder, &mut published).await?;
    let kinds = |published: &[CardEvent], card: &str| {
        published.iter().filter(|e| e.card_id == card).map(|e| e.kind).filter(|k| matches!(k, K::TokenProvisioned | K::TokenStepUpRequired)).collect::<Vec<_>>()
    };
    assert_eq!(kinds(&published, &yellow), [K::TokenStepUpRequired], "DECISION_YELLOW: step-up, never provisioned: {published:?}");
    assert_eq!(kinds(&published, &green), [K::TokenProvisioned], "DECISION_GREEN: provisioned once, its activation not told again: {published:?}");

    // The issuer verified the cardholder: it makes the yellow token ACTIVE,
    // at Marqeta, found by the card's token.
    let card_token = published.iter().find(|e| e.card_id == yellow).and_then(|e| e.processor_reference.clone()).context("the yellow card's token")?;
    let marqeta_api = format!("{}/v3", processors.marqeta.base_url());
    let http = reqwest::Client::new();
    let listed: Value = http
        .get(format!("{marqeta_api}/digitalwallettokens/card/{card_token}"))
        .basic_auth("app_token_switchyard", Some("access_token_switchyard"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let wallet_token = listed["data"][0]["token"].as_str().context("a wallet token")?.to_owned();
    assert_eq!(listed["data"][0]["fulfillment_status"], "DECISION_YELLOW", "{listed}");
    for _ in 0..2 {
        // Sent twice, under one transition token: Marqeta answers the
        // second 409 and tells the transition once.
        let answer = http
            .post(format!("{marqeta_api}/digitalwallettokentransitions"))
            .basic_auth("app_token_switchyard", Some("access_token_switchyard"))
            .json(&json!({ "token": "step-up-done-1", "digital_wallet_token": { "token": wallet_token }, "channel": "API", "state": "ACTIVE", "reason_code": "01" }))
            .send()
            .await?;
        ensure!(matches!(answer.status().as_u16(), 201 | 409), "transition: {}", answer.status());
    }
    more(&events, &decoder, &mut published).await?;
    assert_eq!(
        kinds(&published, &yellow),
        [K::TokenStepUpRequired, K::TokenProvisioned],
        "after its step-up the yellow token is provisioned, once: {published:?}"
    );
    assert_eq!(kinds(&published, &green), [K::TokenProvisioned], "{published:?}");
    let Processors { lithic, marqeta, .. } = processors;
    lithic.shutdown().await;
    marqeta.shutdown().await;
    stop(worker, shutdown).await
}

/// Whatever else the card worker publishes within a few seconds.
async fn more(events: &TopicReader, decoder: &AvroDecoder, published: &mut Vec<CardEvent>) -> Result<()> {
    tokio::time::sleep(Duration::from_secs(4)).await;
    for extra in events.read_up_to(usize::MAX, Duration::from_secs(3)).await? {
        published.push(decoder.decode::<CardEvent>(&extra.payload).await?);
    }
    Ok(())
}
