//! Plaid webhooks acting on consents, end to end: the Plaid simulator signs
//! each webhook as Plaid does, the webhook ingester verifies it and
//! publishes it on `openbanking.provider-events.v1`, and the open banking
//! worker acts on it. Real broker, real PostgreSQL.
//!
//! - SYNC_UPDATES_AVAILABLE -> a REFRESH of transactions (under a key
//!   naming the callback): every transaction of the item on
//!   `openbanking.data.v1` exactly once, counted on the topic per
//!   transaction id (the simulator's list is the oracle);
//! - PENDING_EXPIRATION -> one CONSENT_EXPIRING; ERROR/ITEM_LOGIN_REQUIRED
//!   -> one LOGIN_REQUIRED; LOGIN_REPAIRED -> one CONSENT_ACTIVE;
//! - each webhook delivered twice by Plaid (absorbed by the ingester), and
//!   every provider event then put on the topic a second time (a
//!   redelivery on the bus);
//! - two worker instances share the command group; the second reads the
//!   callbacks in a group of its own, so every callback is processed by
//!   both at once, which is what a rebalance's overlap does to some;
//! - each callback acted on once: one `openbanking_callback` audit row per
//!   provider event, one REFRESH answered (not replayed) for the update.

#[allow(dead_code)] // shared with openbanking.rs
#[path = "openbanking/support.rs"]
mod support;

use anyhow::{ensure, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use support::Stack;
use switchyard_bus::{AvroDecoder, Outbound, Publisher};
use switchyard_canonical::openbanking_outcome::{OpenBankingKind, OpenBankingOutcome};
use switchyard_e2e::logs::captured_logs;
use switchyard_e2e::webhooks::url;
use switchyard_ingester::config::{KeyConfig, KeyEndpointConfig, ProviderConfig};
use switchyard_ingester::start_ingester;
use switchyard_simulators::plaid::{webhooks as bodies, PlaidConfig};
use switchyard_worker::openbanking::callbacks::provider_update_key;
use switchyard_worker::openbanking::config::{ObCallbackSettings, OpenBankingWorkerConfig};
use switchyard_canonical::openbanking::OpenBankingCommand;
use switchyard_worker::openbanking::{OB_COMMAND_SCHEMA, OB_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

fn callbacks_on(c: &mut OpenBankingWorkerConfig) {
    c.callbacks = ObCallbackSettings { enabled: true, group_id: None, unknown_consent_retry_ms: 200, unknown_consent_rounds: 6, resend_after_ms: 1_500 };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_plaid_webhook_is_acted_on_once_across_redelivery_and_two_instances() -> Result<()> {
    let _ = captured_logs();
    let stack = Stack::start_with("ob-webhooks", Arc::new(callbacks_on)).await?;
    let consent = format!("con-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let item = stack.grant(&consent).await?;
    let want = stack.plaid.transaction_ids(&item);
    // The grant's own events (AUTH_REQUIRED, CONSENT_ACTIVE) are not the webhooks'.
    let granted = stack.events(Duration::from_secs(1)).await?;
    ensure!(granted.iter().any(|e| e.consent_id == consent && e.kind == OpenBankingKind::ConsentActive), "granted: {granted:?}");
    ensure!(!want.is_empty(), "the item has transactions to sync");

    // The second instance: same command group; callbacks in a group of its
    // own, so both instances process every callback.
    let mut cfg = support::config(&stack.env, &stack.plaid.base_url());
    callbacks_on(&mut cfg);
    cfg.callbacks.group_id = Some(format!("{}.callbacks-overlap", cfg.kafka.group_id));
    let second = switchyard_worker::openbanking::run::start_openbanking_worker(cfg, stack.shutdown.clone()).await?;

    let plaid_config = PlaidConfig::local();
    let provider = ProviderConfig {
        key_endpoint: Some(KeyEndpointConfig { base_url: stack.plaid.base_url(), client_id: plaid_config.client_id.clone() }),
        ..ProviderConfig::new("openbanking", vec![KeyConfig::inline(&plaid_config.secret)])
    };
    let mut config = stack.env.ingester_config(BTreeMap::from([("plaid".to_owned(), provider)]));
    let provider_events = stack.env.topic("openbanking.provider-events.v1");
    config.topics.insert("openbanking".to_owned(), provider_events.clone());
    let ingester_stop = CancellationToken::new();
    let ingester = start_ingester(config, ingester_stop.clone()).await?;
    let to = url(&ingester, "plaid");

    // 1. New transactions: one refresh, every transaction once.
    assert_eq!(stack.plaid.send_webhook(&to, &bodies::sync_updates_available(&item), 2).await, vec![200, 200]);
    let refresh_answers = stack.outcomes.collect::<OpenBankingOutcome>(1, Duration::from_secs(60)).await?;
    let refreshed = &refresh_answers[0].0;
    ensure!(refreshed.idempotency_key.starts_with("provider-update:"), "the update's REFRESH: {refreshed:?}");
    assert_eq!(refreshed.kind, OpenBankingKind::DataRefreshed, "{refreshed:?}");

    // 2-4. The consent's life, one webhook at a time (each twice from Plaid).
    let steps = [
        (bodies::pending_expiration(&item, "2027-01-15T13:25:17Z"), OpenBankingKind::ConsentExpiring),
        (bodies::item_error(&item, "ITEM_LOGIN_REQUIRED"), OpenBankingKind::LoginRequired),
        (bodies::login_repaired(&item), OpenBankingKind::ConsentActive),
    ];
    let mut kinds_seen = Vec::new();
    for (body, kind) in &steps {
        assert_eq!(stack.plaid.send_webhook(&to, body, 2).await, vec![200, 200]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let events = stack.events(Duration::from_millis(300)).await?;
            kinds_seen.extend(events.iter().filter(|e| e.consent_id == consent).map(|e| e.kind));
            if kinds_seen.last() == Some(kind) {
                break;
            }
            ensure!(tokio::time::Instant::now() < deadline, "no {kind:?} event after its webhook; saw {kinds_seen:?}");
        }
    }

    // Every provider event again on the bus, as a redelivery would.
    let raw = switchyard_e2e::TopicReader::new(&stack.env.kafka, &provider_events)?.read_up_to(usize::MAX, Duration::from_secs(3)).await?;
    assert_eq!(raw.len(), 4, "four webhooks, each published once by the ingester");
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
    // Long enough for both instances, retry rounds included, to see them all.
    tokio::time::sleep(Duration::from_secs(6)).await;

    // The oracle: what the topics hold.
    let events = stack.events(Duration::from_secs(2)).await?;
    kinds_seen.extend(events.iter().filter(|e| e.consent_id == consent).map(|e| e.kind));
    let mut per_kind: HashMap<OpenBankingKind, usize> = HashMap::new();
    for k in &kinds_seen {
        *per_kind.entry(*k).or_default() += 1;
    }
    assert_eq!(per_kind.get(&OpenBankingKind::ConsentExpiring), Some(&1), "CONSENT_EXPIRING once: {kinds_seen:?}");
    assert_eq!(per_kind.get(&OpenBankingKind::LoginRequired), Some(&1), "LOGIN_REQUIRED once: {kinds_seen:?}");
    assert_eq!(per_kind.get(&OpenBankingKind::ConsentActive), Some(&1), "CONSENT_ACTIVE once, after the repair (the grant's was read before): {kinds_seen:?}");

    let mut per_transaction: BTreeMap<String, usize> = BTreeMap::new();
    for d in stack.deltas(Duration::from_secs(2)).await?.iter().filter(|d| d.consent_id == consent) {
        for t in &d.transactions_added {
            *per_transaction.entry(t.transaction_id.clone()).or_default() += 1;
        }
    }
    let twice: Vec<_> = per_transaction.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "every transaction published exactly once: {twice:?}");
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(per_transaction.keys().cloned().collect::<Vec<_>>(), want_sorted, "every transaction of the item published");

    let update_key = refreshed.idempotency_key.clone();
    let outcomes = switchyard_e2e::TopicReader::new(&stack.env.kafka, &stack.env.topic("openbanking.outcomes.v1"))?.read_up_to(usize::MAX, Duration::from_secs(2)).await?;
    let decoder = AvroDecoder::new(stack.env.registry_client.clone(), OB_OUTCOME_SCHEMA)?;
    let mut answers = Vec::new();
    for r in &outcomes {
        let o: OpenBankingOutcome = decoder.decode(&r.payload).await?;
        if o.idempotency_key == update_key {
            answers.push(o);
        }
    }
    // Sent once: counted on the commands topic. (Its answers are not the
    // count: a command redelivered to the other instance by a rebalance is
    // answered again, `replayed`, without a second call to Plaid.)
    let commands = switchyard_e2e::TopicReader::new(&stack.env.kafka, &stack.env.topic("openbanking.commands.v1"))?.read_up_to(usize::MAX, Duration::from_secs(2)).await?;
    let command_decoder = AvroDecoder::new(stack.env.registry_client.clone(), OB_COMMAND_SCHEMA)?;
    let mut sent = 0;
    for r in &commands {
        let c: OpenBankingCommand = command_decoder.decode(&r.payload).await?;
        sent += usize::from(c.idempotency_key == update_key);
    }
    assert_eq!(sent, 1, "the update's REFRESH was sent once");
    assert_eq!(answers.iter().filter(|o| !o.replayed).count(), 1, "and processed once (others replayed): {answers:?}");
    let event_ids: Vec<String> = raw.iter().filter_map(|r| r.headers.get("provider-event-id").cloned()).collect();
    assert_eq!(update_key, provider_update_key(&consent, event_ids.first().map(String::as_str).unwrap_or_default()));

    // Acted on once each: one audit row per provider event.
    let worker = stack.worker.as_ref().expect("worker");
    worker.store.flush_audit().await;
    second.store.flush_audit().await;
    let trail = worker.store.audit_trail(&[consent.as_str()]).await?;
    let mut acted: HashMap<String, usize> = HashMap::new();
    for a in trail.iter().filter(|a| a.action == "openbanking_callback") {
        let detail: serde_json::Value = serde_json::from_str(&a.detail)?;
        *acted.entry(detail["provider_event_id"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    assert_eq!(acted.len(), 4, "each of the four callbacks acted on: {acted:?}");
    assert!(acted.values().all(|n| *n == 1), "each acted on once: {acted:?}");

    ingester_stop.cancel();
    stack.stop().await?;
    second.join.await??;
    Ok(())
}
