//! Card transactions exactly once: real broker, real PostgreSQL, a running
//! webhook ingester and the card worker consuming `cards.provider-events.v1`.
//!
//! The worker issues a card at the processor; the test then delivers that
//! processor's transaction webhooks (bodies from `switchyard_e2e::card_webhooks`,
//! which `card_contracts.rs` validates against the processors' pinned API
//! documents), signed as the processor signs them:
//!
//! - Lithic `card_transaction.updated` (Standard Webhooks), whose body
//!   repeats every earlier event of the transaction: a clearing delivery
//!   before the authorization-only one, that one twice, an authorization
//!   with its reversal, then the authorization-only delivery again late,
//!   and a declined authorization; plus a transaction on a card token no
//!   card of ours holds, which is retried and then dead-lettered;
//! - Marqeta `transactions` batches (Basic credentials): an authorization
//!   and its duplicate batch, a clearing before its authorization, a
//!   reversal, and amounts in USD, JPY (no decimals) and BHD (three).
//!
//! Every provider event the ingester published is then put on the bus a
//! second time (at-least-once delivery to the worker).
//!
//! Judged on `cards.transactions.v1`: exactly one `CardTransaction` per
//! processor transaction event (none more after the deliveries settle),
//! keyed by our card id, amounts in minor units, our decline codes.

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use switchyard_bus::AvroDecoder;
use switchyard_canonical::card::{CardAction, CardState};
use switchyard_canonical::card_outcome::CardOutcomeStatus;
use switchyard_canonical::card_transaction::{CardDeclineCode as D, CardTransaction, CardTransactionKind as K};
use switchyard_e2e::card_webhooks::{lithic_transaction, lithic_transaction_event, marqeta_transaction, marqeta_transactions};
use switchyard_e2e::cards::{answer_to, command, config, stop, Processors};
use switchyard_e2e::checks::{CommandProducer, OutcomeReader};
use switchyard_e2e::webhooks::url;
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_ingester::config::{KeyConfig, ProviderConfig};
use switchyard_ingester::start_ingester;
use switchyard_simulators::callbacks::Signer;
use switchyard_worker::card::run::start_card_worker;
use switchyard_worker::card::{CARD_COMMAND_SCHEMA, CARD_OUTCOME_SCHEMA, CARD_TRANSACTION_SCHEMA};
use tokio_util::sync::CancellationToken;

const LITHIC_SECRET: &str = "whsec_c3dpdGNoeWFyZC1saXRoaWMtdGVzdC1rZXk=";

/// What the test expects of one processor transaction event.
struct Want {
    kind: K,
    transaction_reference: String,
    amount_minor: i64,
    currency: &'static str,
    decline: Option<D>,
}

fn want(kind: K, transaction_reference: &str, amount_minor: i64, currency: &'static str, decline: Option<D>) -> Want {
    Want { kind, transaction_reference: transaction_reference.to_owned(), amount_minor, currency, decline }
}

/// One webhook delivery: the headers to sign it with and its body.
struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A `card_transaction.updated` delivery as Lithic sends it: the whole
/// transaction with every event so far, under a fresh webhook id, signed
/// with Standard Webhooks as the simulator signs.
fn lithic(msg_id: &str, card_token: &str, txn: &str, status: &str, events: &[serde_json::Value]) -> Result<Delivery> {
    let body = serde_json::to_vec(&lithic_transaction(card_token, txn, status, "USD", events))?;
    let signer = Signer::StandardWebhooks { secret: LITHIC_SECRET.into() };
    let now_s = switchyard_canonical::now_ms() / 1000;
    let headers = signer.headers(msg_id, now_s, &body)?.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    Ok(Delivery { headers, body })
}

fn lithic_event(token: &str, kind: &str, result: &str, amount: i64) -> serde_json::Value {
    lithic_transaction_event(token, kind, result, amount, "USD")
}

/// A Marqeta delivery with Basic credentials, as its webhook config sends.
fn marqeta(items: &[String]) -> Delivery {
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("hookuser:hookpass"));
    Delivery { headers: vec![("authorization".into(), auth)], body: marqeta_transactions(items) }
}

/// Delivers like a processor: a 409 (a copy of the event still being
/// published, its mark not committed yet) or a 503 is retried shortly.
async fn post(client: &reqwest::Client, url: &str, d: &Delivery) -> Result<()> {
    for _ in 0..50 {
        let mut request = client.post(url).header("content-type", "application/json").body(d.body.clone());
        for (k, v) in &d.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let response = request.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        ensure!(
            status == reqwest::StatusCode::CONFLICT || status == reqwest::StatusCode::SERVICE_UNAVAILABLE,
            "webhook answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the ingester kept answering 409/503")
}

/// Runs one processor's deliveries against a card the worker issued there
/// and checks every CardTransaction published against what they carried.
async fn exactly_once(name: &str, processor: &str) -> Result<()> {
    let env = TestEnv::new(name).await?;
    let shutdown = CancellationToken::new();
    let hook_key = if processor == "marqeta" { "hookuser:hookpass" } else { LITHIC_SECRET };
    let hooks = BTreeMap::from([(processor.to_owned(), ProviderConfig::new("cards", vec![KeyConfig::inline(hook_key)]))]);
    let ingester = start_ingester(env.ingester_config(hooks), shutdown.clone()).await?;
    let processors = Processors::start(switchyard_simulators::FaultPlan::default()).await?;
    let worker = start_card_worker(config(&env, &processors, processor, 2_000), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let published = TopicReader::new(&env.kafka, &env.topic("cards.transactions.v1"))?;
    let dlq = TopicReader::new(&env.kafka, &env.topic("cards.provider-events.v1.dlq"))?;
    let provider_events = TopicReader::new(&env.kafka, &env.topic("cards.provider-events.v1"))?;

    let card = format!("{}card-t", env.prefix);
    let issue = command(&card, &format!("{card}-0"), CardAction::Issue);
    producer.send(&card, &issue.idempotency_key, &issue).await?;
    let o = answer_to(&outcomes, &issue.idempotency_key).await?;
    ensure!(o.status == CardOutcomeStatus::Succeeded && o.state.is_some_and(|s| s != CardState::Ordered), "{o:?}");
    let token = o.processor_reference.clone().context("the card's token")?;

    let run = &env.prefix;
    let id = |s: &str| format!("{run}{s}");
    let (deliveries, expected) = if processor == "lithic" {
        // Lithic's tokens are UUIDs.
        let uuid = || uuid::Uuid::new_v4().to_string();
        let (a1, c1, a2, r2, d3) = (uuid(), uuid(), uuid(), uuid(), uuid());
        let (txn1, txn2, txn3) = (uuid(), uuid(), uuid());
        let auth1 = lithic_event(&a1, "AUTHORIZATION", "APPROVED", 1250);
        let clear1 = lithic_event(&c1, "CLEARING", "APPROVED", 1250);
        let auth2 = lithic_event(&a2, "AUTHORIZATION", "APPROVED", 700);
        let rev2 = lithic_event(&r2, "AUTHORIZATION_REVERSAL", "APPROVED", 700);
        let declined = lithic_event(&d3, "AUTHORIZATION", "INSUFFICIENT_FUNDS", 99_999);
        let auth_only = lithic(&id("msg-1"), &token, &txn1, "PENDING", std::slice::from_ref(&auth1))?;
        let deliveries = vec![
            // The clearing's delivery overtakes the authorization's.
            lithic(&id("msg-2"), &token, &txn1, "SETTLED", &[auth1.clone(), clear1])?,
            auth_only,
            lithic(&id("msg-1"), &token, &txn1, "PENDING", &[auth1])?,
            lithic(&id("msg-4"), &token, &txn2, "VOIDED", &[auth2.clone(), rev2])?,
            // The authorization-only delivery of txn-2, late.
            lithic(&id("msg-3"), &token, &txn2, "PENDING", &[auth2])?,
            lithic(&id("msg-5"), &token, &txn3, "DECLINED", &[declined])?,
        ];
        let expected = HashMap::from([
            (a1, want(K::Authorization, &txn1, 1250, "USD", None)),
            (c1, want(K::Clearing, &txn1, 1250, "USD", None)),
            (a2, want(K::Authorization, &txn2, 700, "USD", None)),
            (r2, want(K::AuthorizationReversal, &txn2, 700, "USD", None)),
            (d3, want(K::Authorization, &txn3, 99_999, "USD", Some(D::InsufficientFunds))),
        ]);
        (deliveries, expected)
    } else {
        let (a1, a2, c2, r1, jpy, bhd, nsf) = (id("a1"), id("a2"), id("c2"), id("r1"), id("jpy"), id("bhd"), id("nsf"));
        let auth1 = marqeta(&[marqeta_transaction(&a1, "authorization", "PENDING", "10.29", "USD", &token, None)]);
        let auth1_again = marqeta(&[marqeta_transaction(&a1, "authorization", "PENDING", "10.29", "USD", &token, None)]);
        let deliveries = vec![
            auth1,
            auth1_again,
            // txn a2's clearing before its authorization.
            marqeta(&[marqeta_transaction(&c2, "authorization.clearing", "COMPLETION", "20.00", "USD", &token, Some(&a2))]),
            marqeta(&[
                marqeta_transaction(&a2, "authorization", "PENDING", "20.00", "USD", &token, None),
                marqeta_transaction(&r1, "authorization.reversal", "COMPLETION", "10.29", "USD", &token, Some(&a1)),
            ]),
            marqeta(&[
                marqeta_transaction(&jpy, "authorization", "PENDING", "1500", "JPY", &token, None),
                marqeta_transaction(&bhd, "refund", "COMPLETION", "12.345", "BHD", &token, None),
                marqeta_transaction(&nsf, "authorization", "DECLINED", "5.00", "EUR", &token, None),
            ]),
        ];
        let expected = HashMap::from([
            (a1.clone(), want(K::Authorization, &a1, 1029, "USD", None)),
            (c2.clone(), want(K::Clearing, &a2, 2000, "USD", None)),
            (a2.clone(), want(K::Authorization, &a2, 2000, "USD", None)),
            (r1.clone(), want(K::AuthorizationReversal, &a1, 1029, "USD", None)),
            (jpy.clone(), want(K::Authorization, &jpy, 1500, "JPY", None)),
            (bhd.clone(), want(K::Return, &bhd, 12_345, "BHD", None)),
            (nsf.clone(), want(K::Authorization, &nsf, 500, "EUR", Some(D::InsufficientFunds))),
        ]);
        (deliveries, expected)
    };
    let client = reqwest::Client::new();
    let hook = url(&ingester, processor);
    for d in &deliveries {
        post(&client, &hook, d).await?;
    }
    if processor == "lithic" {
        // A transaction on a card no one of ours holds.
        let ghost_event = lithic_event(&uuid::Uuid::new_v4().to_string(), "AUTHORIZATION", "APPROVED", 1);
        let ghost = lithic(&id("msg-ghost"), "ghost-card-token", &uuid::Uuid::new_v4().to_string(), "PENDING", &[ghost_event])?;
        post(&client, &hook, &ghost).await?;
    }

    // The ingester published each event once. The bus delivers at least
    // once: every one of them comes to the worker a second time, as after
    // a rebalance before the offset commit, or a publish the ingester
    // could not mark and repeated.
    let ghosts = usize::from(processor == "lithic");
    let ingested = provider_events.collect(expected.len() + ghosts, Duration::from_secs(30)).await?;
    let publisher = switchyard_bus::Publisher::new(&env.kafka)?;
    for r in &ingested {
        let headers = r.headers.iter().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
        let again = switchyard_bus::Outbound { topic: env.topic("cards.provider-events.v1"), key: Some(r.key.clone()), payload: r.payload.clone(), headers };
        publisher.publish(&again).await?;
    }

    let decoder = AvroDecoder::new(env.registry_client.clone(), CARD_TRANSACTION_SCHEMA)?;
    let mut records = published.collect(expected.len(), Duration::from_secs(60)).await?;
    // Late copies still in flight must add nothing.
    records.extend(published.read_up_to(usize::MAX, Duration::from_secs(5)).await?);
    let mut seen: HashMap<String, CardTransaction> = HashMap::new();
    for r in &records {
        let t: CardTransaction = decoder.decode(&r.payload).await?;
        assert_eq!(String::from_utf8_lossy(&r.key), card, "keyed by our card id");
        let previous = seen.insert(t.transaction_event_id.clone(), t.clone());
        assert!(previous.is_none(), "{} published twice", t.transaction_event_id);
    }
    assert_eq!(records.len(), expected.len(), "one CardTransaction per processor transaction event");
    for (event_token, w) in &expected {
        let t = seen.get(&format!("{processor}:{event_token}")).with_context(|| format!("{event_token} was not published"))?;
        assert_eq!((t.card_id.as_str(), t.processor.as_str(), t.processor_reference.as_str()), (card.as_str(), processor, token.as_str()));
        assert_eq!(
            (t.kind, t.transaction_reference.as_str(), t.amount_minor, t.currency.as_str(), t.approved, t.decline_code),
            (w.kind, w.transaction_reference.as_str(), w.amount_minor, w.currency, w.decline.is_none(), w.decline),
            "{event_token}"
        );
        assert!(t.published_at_ms >= t.occurred_at_ms && t.occurred_at_ms > 0);
    }
    assert!(ingester.metrics.duplicate_count(processor) > 0, "the repeated deliveries reached the ingester's dedup");
    if processor == "lithic" {
        let dead = dlq.collect(1, Duration::from_secs(30)).await?;
        let reason = dead[0].headers.get("dlq-reason").cloned().unwrap_or_default();
        assert!(reason.contains("no card of ours holds the lithic card token"), "{reason}");
        assert!(!reason.contains("ghost-card-token"), "the processor's token stays out of the DLQ reason: {reason}");
    }
    stop(worker, shutdown).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lithic_transaction_webhooks_twice_late_and_out_of_order_publish_each_event_once() -> Result<()> {
    exactly_once("card-txn-lithic", "lithic").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn marqeta_transaction_batches_twice_and_out_of_order_publish_each_event_once_in_minor_units() -> Result<()> {
    exactly_once("card-txn-marqeta", "marqeta").await
}
