//! The reconciler on cards against a real broker and PostgreSQL: card
//! postings on `ledger.postings.v1` judged against the card worker's
//! `cards.transactions.v1` and `cards.events.v1`. A posting without its card
//! transaction, a fee without its card event, a transaction booked twice, a
//! wrong amount and a clearing never booked are each reported under the
//! payout classes (domain `cards`); clean cards, a re-sent posting, a fee
//! on a published event, a declined authorization and a clearing still
//! inside its window report nothing; the late booking resolves its record.

use anyhow::{bail, Result};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use switchyard_bus::{AvroDecoder, AvroEncoder, KafkaConfig, Outbound, Publisher};
use switchyard_canonical::card_event::{CardEvent, CardEventKind};
use switchyard_canonical::card_transaction::{CardDeclineCode, CardTransaction, CardTransactionKind};
use switchyard_canonical::{Discrepancy, DiscrepancyClass, DiscrepancyStatus, LedgerPosting, PostingKind};
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_recon::card_rules::{event_subject, transaction_subject};
use switchyard_recon::ingest::{ReconTopics, CARD_EVENT_SCHEMA, CARD_TRANSACTION_SCHEMA, DISCREPANCY_SCHEMA, LEDGER_POSTING_SCHEMA};
use switchyard_recon::run::ReconConfig;
use switchyard_recon::Policy;
use switchyard_store::recon::ReconStore;
use tokio_util::sync::CancellationToken;

const DAY: i64 = 86_400_000;

/// Publishes what the card worker and core banking would, keyed by card id.
struct Sources {
    publisher: Publisher,
    transactions: (AvroEncoder, String),
    events: (AvroEncoder, String),
    postings: (AvroEncoder, String),
}

impl Sources {
    async fn new(env: &TestEnv) -> Result<Self> {
        let reg = |topic: String, schema: &'static str| {
            let registry = env.registry_client.clone();
            async move { Ok::<_, anyhow::Error>((AvroEncoder::register(&registry, &topic, schema).await?, topic)) }
        };
        Ok(Self {
            publisher: Publisher::new(&env.kafka)?,
            transactions: reg(env.topic("cards.transactions.v1"), CARD_TRANSACTION_SCHEMA).await?,
            events: reg(env.topic("cards.events.v1"), CARD_EVENT_SCHEMA).await?,
            postings: reg(env.topic("ledger.postings.v1"), LEDGER_POSTING_SCHEMA).await?,
        })
    }

    async fn send<T: serde::Serialize>(&self, (encoder, topic): &(AvroEncoder, String), card_id: &str, value: &T) -> Result<()> {
        let record = Outbound { topic: topic.clone(), key: Some(card_id.as_bytes().to_vec()), payload: encoder.encode(value)?, headers: vec![] };
        self.publisher.publish(&record).await?;
        Ok(())
    }

    async fn transaction(&self, t: &CardTransaction) -> Result<()> {
        self.send(&self.transactions, &t.card_id, t).await
    }

    async fn event(&self, e: &CardEvent) -> Result<()> {
        self.send(&self.events, &e.card_id, e).await
    }

    async fn posting(&self, p: &LedgerPosting) -> Result<()> {
        self.send(&self.postings, &p.payout_id, p).await
    }
}

fn txn_id(card_id: &str) -> String {
    CardTransaction::event_id("lithic", &format!("evt-{card_id}"))
}

fn clearing(card_id: &str, at: i64) -> CardTransaction {
    CardTransaction {
        transaction_event_id: txn_id(card_id),
        card_id: card_id.into(),
        processor: "lithic".into(),
        processor_reference: format!("tok-{card_id}"),
        transaction_reference: format!("txn-{card_id}"),
        kind: CardTransactionKind::Clearing,
        amount_minor: 1250,
        currency: "EUR".into(),
        approved: true,
        decline_code: None,
        occurred_at_ms: at - 500,
        published_at_ms: at,
    }
}

fn issued(card_id: &str, at: i64) -> CardEvent {
    CardEvent {
        event_id: format!("{card_id}:1"),
        card_id: card_id.into(),
        kind: CardEventKind::CardIssued,
        from_state: Some("ORDERED".into()),
        to_state: Some("ISSUED".into()),
        processor: "lithic".into(),
        processor_reference: Some(format!("tok-{card_id}")),
        last_four: Some("4242".into()),
        dispute_id: None,
        amount_minor: None,
        currency: None,
        linked_card_id: None,
        notify_cardholder: true,
        occurred_at_ms: at - 500,
        published_at_ms: at,
    }
}

/// Core banking's booking of `card_id`'s transaction, posting number `n`.
fn booking(card_id: &str, n: u32, amount: i64, at: i64) -> LedgerPosting {
    LedgerPosting {
        posting_id: format!("gl-{card_id}-{n}"),
        payout_id: card_id.into(),
        idempotency_key: None,
        correlation_id: None,
        kind: PostingKind::Payout,
        amount_minor: amount,
        currency: "EUR".into(),
        posted_at_ms: at,
        card_id: Some(card_id.into()),
        card_transaction_id: Some(txn_id(card_id)),
        card_event_id: None,
        card_fee: None,
    }
}

fn issuance_fee(card_id: &str, at: i64) -> LedgerPosting {
    LedgerPosting {
        posting_id: format!("gl-{card_id}-fee"),
        amount_minor: 500,
        card_transaction_id: None,
        card_event_id: Some(format!("{card_id}:1")),
        card_fee: Some("ISSUANCE".into()),
        ..booking(card_id, 0, 500, at)
    }
}

fn recon_config(env: &TestEnv) -> Result<ReconConfig> {
    let mut kafka = KafkaConfig::new(env.kafka.brokers.clone(), format!("{}reconciler", env.prefix));
    kafka.session_timeout_ms = env.kafka.session_timeout_ms;
    Ok(ReconConfig {
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: switchyard_localstack::database_url(),
        scope: env.prefix.clone(),
        topics: ReconTopics::with_prefix(&env.prefix),
        // No catalog: lithic gets the default window, a day.
        policy: Policy::from_catalog(None, Duration::from_secs(24 * 3600), Duration::from_secs(15 * 60)),
        providers: HashMap::new(),
        worker_database_url: None,
        eval_interval: Duration::from_millis(200),
        batch: 5000,
        admin_bind: None,
        pii_keys: Vec::new(),
    })
}

async fn await_discrepancies(store: &ReconStore, want: &BTreeSet<(String, DiscrepancyClass, DiscrepancyStatus)>) -> Result<Vec<Discrepancy>> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let found = store.discrepancies(false, 1000).await?;
        let seen: BTreeSet<_> = found.iter().map(|d| (d.subject_id.clone(), d.class, d.status)).collect();
        if &seen == want {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("discrepancies did not settle:\n want {want:?}\n seen {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn card_postings_without_their_card_facts_twice_or_wrong_are_discrepancies() -> Result<()> {
    use DiscrepancyClass::*;
    let env = TestEnv::new("recon-cards").await?;
    let src = Sources::new(&env).await?;
    let card = |name: &str| format!("{}{name}", env.prefix);
    let now = switchyard_canonical::now_ms();
    let old = now - 3 * DAY;

    // Clean: cleared and booked (the posting re-sent under its id), a fee
    // for a published issuance, a declined authorization nobody books, and
    // a clearing an hour old whose booking may still come.
    src.transaction(&clearing(&card("clean"), old)).await?;
    src.posting(&booking(&card("clean"), 1, 1250, old + 1000)).await?;
    src.posting(&booking(&card("clean"), 1, 1250, old + 1000)).await?;
    src.event(&issued(&card("fee-ok"), old)).await?;
    src.posting(&issuance_fee(&card("fee-ok"), old + 1000)).await?;
    let mut declined = clearing(&card("declined"), old);
    (declined.kind, declined.approved, declined.decline_code) = (CardTransactionKind::Authorization, false, Some(CardDeclineCode::InsufficientFunds));
    src.transaction(&declined).await?;
    src.transaction(&clearing(&card("recent"), now - 3_600_000)).await?;
    // Drift, one card each.
    src.posting(&booking(&card("orphan"), 1, 1250, old)).await?;
    src.posting(&issuance_fee(&card("orphan-fee"), old)).await?;
    src.transaction(&clearing(&card("twice"), old)).await?;
    src.posting(&booking(&card("twice"), 1, 1250, old + 1000)).await?;
    src.posting(&booking(&card("twice"), 2, 1250, old + 2000)).await?;
    src.transaction(&clearing(&card("amount"), old)).await?;
    src.posting(&booking(&card("amount"), 1, 1205, old + 1000)).await?;
    src.transaction(&clearing(&card("missing"), old)).await?;

    let shutdown = CancellationToken::new();
    let recon = switchyard_recon::run::start(recon_config(&env)?, shutdown.clone()).await?;
    let txn = |name: &str| transaction_subject(&card(name), &txn_id(&card(name)));
    let open = |subject: String, class| (subject, class, DiscrepancyStatus::Open);
    let mut want: BTreeSet<_> = [
        open(txn("orphan"), UnexpectedPosting),
        open(event_subject(&card("orphan-fee"), &format!("{}:1", card("orphan-fee"))), UnexpectedPosting),
        open(txn("twice"), DuplicatePosting),
        open(txn("amount"), AmountMismatch),
        open(txn("missing"), MissingPosting),
    ]
    .into_iter()
    .collect();
    let found = await_discrepancies(&recon.store, &want).await?;
    assert!(found.iter().all(|d| d.domain == "cards"), "{found:?}");
    let amount = found.iter().find(|d| d.class == AmountMismatch).expect("amount mismatch");
    assert_eq!((amount.expected.as_str(), amount.actual.as_str()), ("debit 1250 EUR", &*format!("debit 1205 EUR (posting gl-{}-1)", card("amount"))));
    assert_eq!(amount.providers, vec!["lithic".to_owned()]);

    // Core banking books the missing clearing: the same record resolves.
    src.posting(&booking(&card("missing"), 1, 1250, now)).await?;
    want.remove(&open(txn("missing"), MissingPosting));
    want.insert((txn("missing"), MissingPosting, DiscrepancyStatus::Resolved));
    let found = await_discrepancies(&recon.store, &want).await?;
    assert_eq!(found.len(), want.len(), "a resolved discrepancy is the same record, closed");

    // All of it was published, keyed by subject, under the cards domain.
    let reader = TopicReader::new(&env.kafka, &env.topic("recon.discrepancies.v1"))?;
    let decoder = AvroDecoder::new(env.registry_client.clone(), DISCREPANCY_SCHEMA)?;
    let mut latest: HashMap<String, Discrepancy> = HashMap::new();
    // Opened, then resolved; an update in between would only add records.
    for record in reader.read_up_to(100, Duration::from_secs(10)).await? {
        let d: Discrepancy = decoder.decode(&record.payload).await?;
        assert_eq!(record.key, d.subject_id.as_bytes());
        assert!(d.discrepancy_id.starts_with("cards:"), "{d:?}");
        latest.insert(d.discrepancy_id.clone(), d);
    }
    let published: BTreeSet<_> = latest.values().map(|d| (d.subject_id.clone(), d.class, d.status)).collect();
    assert_eq!(published, want);
    shutdown.cancel();
    recon.join.await??;
    Ok(())
}
