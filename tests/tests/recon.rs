//! The reconciler against a real broker and PostgreSQL: every discrepancy
//! class from a crafted stream (and closed, not duplicated, once fixed), a
//! clean stream of 10,000 payouts reporting nothing, a failover settled late
//! by the primary reported as a double execution, and a stuck
//! `pending_unknown` payout settled by asking the vendor.

use anyhow::{bail, Result};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use switchyard_bus::{AvroDecoder, AvroEncoder, KafkaConfig, Outbound, Publisher};
use switchyard_canonical::{
    Discrepancy, DiscrepancyClass, DiscrepancyStatus, LedgerPosting, PayoutOutcome, PayoutStatus, PostingKind, ProviderEvent,
    ProviderEventKind,
};
use switchyard_e2e::{command, TestEnv, TopicReader};
use switchyard_recon::ingest::{ReconTopics, TimeRange, DISCREPANCY_SCHEMA, LEDGER_POSTING_SCHEMA, PAYOUT_OUTCOME_SCHEMA, PROVIDER_EVENT_SCHEMA};
use switchyard_recon::run::ReconConfig;
use switchyard_recon::Policy;
use switchyard_routing::PartnerCatalog;
use switchyard_store::recon::ReconStore;
use tokio_util::sync::CancellationToken;

const DAY: i64 = 86_400_000;

/// Publishes what the worker, the webhook ingester and core banking would.
struct Sources {
    publisher: Publisher,
    outcomes: (AvroEncoder, String),
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
            outcomes: reg(env.topic("payouts.outcomes.v1"), PAYOUT_OUTCOME_SCHEMA).await?,
            events: reg(env.topic("payouts.provider-events.v1"), PROVIDER_EVENT_SCHEMA).await?,
            postings: reg(env.topic("ledger.postings.v1"), LEDGER_POSTING_SCHEMA).await?,
        })
    }

    fn record<T: serde::Serialize>(&self, (encoder, topic): &(AvroEncoder, String), key: &str, value: &T) -> Result<Outbound> {
        Ok(Outbound {
            topic: topic.clone(),
            key: Some(key.as_bytes().to_vec()),
            payload: encoder.encode(value)?,
            headers: vec![("correlation-id".into(), format!("corr-{key}").into_bytes())],
        })
    }

    async fn send_all(&self, records: Vec<Outbound>) -> Result<()> {
        for chunk in records.chunks(500) {
            futures::future::try_join_all(chunk.iter().map(|r| self.publisher.publish(r))).await?;
        }
        Ok(())
    }

    async fn outcome(&self, o: &PayoutOutcome) -> Result<()> {
        self.send_all(vec![self.record(&self.outcomes, &o.payout_id, o)?]).await
    }

    async fn event(&self, e: &ProviderEvent) -> Result<()> {
        self.send_all(vec![self.record(&self.events, &e.subject_id, e)?]).await
    }

    async fn posting(&self, p: &LedgerPosting) -> Result<()> {
        self.send_all(vec![self.record(&self.postings, &p.payout_id, p)?]).await
    }
}

fn outcome(payout_id: &str, status: PayoutStatus, provider: &str, at: i64) -> PayoutOutcome {
    PayoutOutcome {
        payout_id: payout_id.into(),
        idempotency_key: format!("key-{payout_id}"),
        status,
        amount_minor: 1250,
        currency: "EUR".into(),
        provider: Some(provider.into()),
        provider_reference: Some(format!("ref-{payout_id}")),
        error: None,
        attempts: 1,
        replayed: false,
        completed_at_ms: at,
    }
}

fn posting(payout_id: &str, n: u32, kind: PostingKind, amount: i64, currency: &str, at: i64) -> LedgerPosting {
    LedgerPosting {
        posting_id: format!("posting-{payout_id}-{n}"),
        payout_id: payout_id.into(),
        idempotency_key: Some(format!("key-{payout_id}")),
        correlation_id: None,
        kind,
        amount_minor: amount,
        currency: currency.into(),
        posted_at_ms: at,
        card_id: None,
        card_transaction_id: None,
        card_event_id: None,
        card_fee: None,
    }
}

fn event(payout_id: &str, provider: &str, kind: ProviderEventKind, at: i64) -> ProviderEvent {
    ProviderEvent {
        event_id: format!("evt-{provider}-{}-{payout_id}", kind.as_str()),
        provider: provider.into(),
        domain: "payouts".into(),
        subject_id: payout_id.into(),
        provider_reference: format!("ref-{payout_id}"),
        kind,
        vendor_event_type: kind.as_str().into(),
        amount_minor: Some(1250),
        currency: Some("EUR".into()),
        reason: None,
        occurred_at_ms: at,
        received_at_ms: at,
        payload_sha256: "00".repeat(32),
    }
}

fn recon_config(env: &TestEnv) -> Result<ReconConfig> {
    let catalog = PartnerCatalog::load(&switchyard_localstack::repo_root().join("ops/partners.yaml"))?;
    let mut kafka = KafkaConfig::new(env.kafka.brokers.clone(), format!("{}reconciler", env.prefix));
    kafka.session_timeout_ms = env.kafka.session_timeout_ms;
    Ok(ReconConfig {
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: switchyard_localstack::database_url(),
        // The topic prefix is unique per test: so is the store's scope.
        scope: env.prefix.clone(),
        topics: ReconTopics::with_prefix(&env.prefix),
        policy: Policy::from_catalog(Some(&catalog), Duration::from_secs(24 * 3600), Duration::from_secs(15 * 60)),
        providers: HashMap::new(),
        worker_database_url: None,
        eval_interval: Duration::from_millis(200),
        batch: 5000,
        admin_bind: Some("127.0.0.1:0".parse()?),
        pii_keys: Vec::new(),
    })
}

/// Waits until the store holds exactly `want` as its (subject, class, status) set.
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
async fn every_discrepancy_class_is_detected_and_closed_once_fixed() -> Result<()> {
    use DiscrepancyClass::*;
    use PayoutStatus::*;
    let env = TestEnv::new("recon-classes").await?;
    let src = Sources::new(&env).await?;
    let p = |name: &str| format!("{}{name}", env.prefix);
    let now = switchyard_canonical::now_ms();
    let old = now - 3 * DAY;

    // Clean: paid with its posting; and paid an hour ago, inside stripe's 36h window.
    src.outcome(&outcome(&p("clean"), Paid, "stripe", old)).await?;
    src.posting(&posting(&p("clean"), 1, PostingKind::Payout, 1250, "EUR", old + 1000)).await?;
    src.outcome(&outcome(&p("in-window"), Paid, "stripe", now - 3_600_000)).await?;
    // One subject per class.
    src.outcome(&outcome(&p("missing"), Paid, "stripe", old)).await?;
    src.posting(&posting(&p("orphan"), 1, PostingKind::Payout, 1250, "EUR", old)).await?;
    src.outcome(&outcome(&p("amount"), Paid, "stripe", old)).await?;
    src.posting(&posting(&p("amount"), 1, PostingKind::Payout, 1205, "EUR", old + 1000)).await?;
    src.outcome(&outcome(&p("currency"), Paid, "adyen", old)).await?;
    src.posting(&posting(&p("currency"), 1, PostingKind::Payout, 1250, "GBP", old + 1000)).await?;
    src.outcome(&outcome(&p("twice"), Paid, "stripe", old)).await?;
    src.posting(&posting(&p("twice"), 1, PostingKind::Payout, 1250, "EUR", old + 1000)).await?;
    src.posting(&posting(&p("twice"), 2, PostingKind::Payout, 1250, "EUR", old + 2000)).await?;
    // Re-sent posting (same id): not a duplicate.
    src.posting(&posting(&p("clean"), 1, PostingKind::Payout, 1250, "EUR", old + 1000)).await?;
    src.outcome(&outcome(&p("contradicted"), Paid, "stripe", old)).await?;
    src.posting(&posting(&p("contradicted"), 1, PostingKind::Payout, 1250, "EUR", old + 1000)).await?;
    src.event(&event(&p("contradicted"), "stripe", ProviderEventKind::PayoutFailed, old + 5000)).await?;
    src.outcome(&outcome(&p("returned"), Paid, "stripe", old)).await?;
    src.posting(&posting(&p("returned"), 1, PostingKind::Payout, 1250, "EUR", old + 1000)).await?;
    src.event(&event(&p("returned"), "stripe", ProviderEventKind::PayoutReturned, old + 5000)).await?;
    src.outcome(&outcome(&p("double"), Submitted, "adyen", old)).await?;
    src.posting(&posting(&p("double"), 1, PostingKind::Payout, 1250, "EUR", old + 1000)).await?;
    src.event(&event(&p("double"), "stripe", ProviderEventKind::PayoutPaid, old + 5000)).await?;
    src.outcome(&outcome(&p("stuck"), PendingUnknown, "stripe", old)).await?;
    // Filed under other ids: the vendor names the payout by its own id (and
    // reports it failed after paid), core banking books under a wrong payout
    // id but the right idempotency key. Both are joined to their payout.
    src.outcome(&outcome(&p("aliased"), Paid, "stripe", old)).await?;
    src.posting(&posting(&p("aliased"), 1, PostingKind::Payout, 1250, "EUR", old + 1000)).await?;
    let vendor_id = format!("ref-{}", p("aliased"));
    let mut by_vendor_id = event(&p("aliased"), "stripe", ProviderEventKind::PayoutFailed, old + 5000);
    by_vendor_id.subject_id = vendor_id;
    src.event(&by_vendor_id).await?;
    src.outcome(&outcome(&p("misbooked"), Paid, "stripe", old)).await?;
    let mut wrong_id = posting(&p("misbooked"), 1, PostingKind::Payout, 1250, "EUR", old + 1000);
    wrong_id.payout_id = p("wrong-id");
    src.posting(&wrong_id).await?;
    // A late processing event after paid is a regression, not drift. The
    // vendor's own paid event goes first on the same partition, so the
    // processing event is late whichever topic the reconciler reads first
    // (against the outcome alone it depended on batch timing).
    src.event(&event(&p("clean"), "stripe", ProviderEventKind::PayoutPaid, old + 8000)).await?;
    src.event(&event(&p("clean"), "stripe", ProviderEventKind::PayoutProcessing, old + 9000)).await?;

    let shutdown = CancellationToken::new();
    let recon = switchyard_recon::run::start(recon_config(&env)?, shutdown.clone()).await?;
    let open = |name: &str, class| (p(name), class, DiscrepancyStatus::Open);
    let mut want: BTreeSet<_> = [
        open("missing", MissingPosting),
        open("orphan", UnexpectedPosting),
        open("amount", AmountMismatch),
        open("currency", AmountMismatch),
        open("twice", DuplicatePosting),
        open("contradicted", EventContradictsOutcome),
        open("returned", PayoutReturned),
        open("double", DoubleExecution),
        open("stuck", StuckPendingUnknown),
        open("aliased", EventContradictsOutcome),
    ]
    .into_iter()
    .collect();
    let found = await_discrepancies(&recon.store, &want).await?;
    let double = found.iter().find(|d| d.class == DoubleExecution).expect("double execution");
    assert_eq!(double.providers, vec!["adyen".to_owned(), "stripe".to_owned()]);
    let amount = found.iter().find(|d| d.subject_id == p("amount")).expect("amount");
    assert_eq!((amount.expected.as_str(), amount.actual.starts_with("1205 EUR")), ("1250 EUR", true), "{amount:?}");

    // Core banking fixes two of them: the late posting and the reversal of the return.
    src.posting(&posting(&p("missing"), 1, PostingKind::Payout, 1250, "EUR", now)).await?;
    src.posting(&posting(&p("returned"), 2, PostingKind::Reversal, 1250, "EUR", now)).await?;
    want.remove(&open("missing", MissingPosting));
    want.remove(&open("returned", PayoutReturned));
    want.insert((p("missing"), MissingPosting, DiscrepancyStatus::Resolved));
    want.insert((p("returned"), PayoutReturned, DiscrepancyStatus::Resolved));
    let found = await_discrepancies(&recon.store, &want).await?;
    assert_eq!(found.len(), want.len(), "a resolved discrepancy is the same record, closed");
    let resolved = found.iter().find(|d| d.subject_id == p("missing")).expect("missing");
    assert!(resolved.resolved_at_ms.is_some_and(|t| t >= resolved.detected_at_ms));

    // The open ones are on /metrics by class.
    let addr = recon.admin_addr.expect("admin bound");
    let metrics = reqwest::get(format!("http://{addr}/metrics")).await?.text().await?;
    assert!(metrics.contains("switchyard_recon_open_discrepancies{class=\"double_execution\"} 1"), "{metrics}");
    // The late processing event was ignored by the rules and recorded.
    let late: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_recon_out_of_order_events_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(late >= 1, "out-of-order provider events are recorded: {metrics}");
    assert!(metrics.contains("switchyard_recon_open_discrepancies{class=\"amount_mismatch\"} 2"), "{metrics}");

    // Everything above was also published, keyed by subject, latest state last.
    let reader = TopicReader::new(&env.kafka, &env.topic("recon.discrepancies.v1"))?;
    let decoder = AvroDecoder::new(env.registry_client.clone(), DISCREPANCY_SCHEMA)?;
    let mut latest: HashMap<String, Discrepancy> = HashMap::new();
    for record in reader.collect(12, Duration::from_secs(30)).await? {
        let d: Discrepancy = decoder.decode(&record.payload).await?;
        assert_eq!(record.key, d.subject_id.as_bytes());
        latest.insert(d.discrepancy_id.clone(), d);
    }
    let published: BTreeSet<_> = latest.values().map(|d| (d.subject_id.clone(), d.class, d.status)).collect();
    assert_eq!(published, want);
    shutdown.cancel();
    recon.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clean_stream_of_10000_payouts_reports_nothing_in_a_one_shot_run() -> Result<()> {
    let env = TestEnv::new("recon-clean").await?;
    let src = Sources::new(&env).await?;
    let now = switchyard_canonical::now_ms();
    let old = now - 2 * DAY;
    let mut records = Vec::with_capacity(25_000);
    for i in 0..10_000i64 {
        let id = format!("{}po-{i}", env.prefix);
        let provider = if i % 4 == 0 { "adyen" } else { "stripe" };
        let mut o = outcome(&id, PayoutStatus::Paid, provider, old + i);
        o.amount_minor = 100 + i;
        records.push(src.record(&src.outcomes, &id, &o)?);
        records.push(src.record(&src.postings, &id, &posting(&id, 1, PostingKind::Payout, 100 + i, "EUR", old + i + 500))?);
        if i % 2 == 0 {
            // The provider's own confirmation, as the webhook ingester publishes it.
            records.push(src.record(&src.events, &id, &event(&id, provider, ProviderEventKind::PayoutPaid, old + i + 100))?);
        }
    }
    // A payout paid an hour ago whose posting has not come yet: inside the window, not drift.
    let recent = format!("{}po-recent", env.prefix);
    records.push(src.record(&src.outcomes, &recent, &outcome(&recent, PayoutStatus::Paid, "stripe", now - 3_600_000))?);
    let total = records.len() as u64;
    src.send_all(records).await?;

    let range = TimeRange { from_ms: old - DAY, to_ms: switchyard_canonical::now_ms() };
    let report = switchyard_recon::run::run_once(recon_config(&env)?, range, Duration::from_secs(3)).await?;
    assert_eq!(report.messages, total, "{report}");
    assert!(report.pass.evaluated >= 10_001, "{report}");
    assert_eq!((report.pass.opened, report.open_count()), (0, 0), "{report}");
    assert!(report.tally.by_class.is_empty(), "not even a resolved one: {report}");
    // Only the payout inside its window is still waited on.
    let store = ReconStore::connect(&switchyard_localstack::database_url(), &env.prefix).await?;
    assert_eq!(store.subject_counts().await?, (1, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_over_payout_settled_late_by_the_primary_is_a_double_execution() -> Result<()> {
    use switchyard_simulators::{adyen, stripe, FaultPlan};
    let env = TestEnv::new("recon-failover").await?;
    // The primary refuses with 503 (a definite refusal), so the worker fails over.
    let mut down = stripe::StripeConfig::local();
    down.faults = FaultPlan { unavailable_ratio: 1.0, seed: 3, ..FaultPlan::default() };
    let primary = stripe::spawn_stripe(down).await?;
    let secondary = adyen::spawn_adyen(adyen::AdyenConfig::local()).await?;
    let config = env.worker_config(&primary.base_url(), Some(&secondary.base_url()), "stripe");
    let shutdown = CancellationToken::new();
    let worker = switchyard_worker::start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;
    let (id, key) = (format!("{}po-1", env.prefix), format!("{}key-1", env.prefix));
    producer.send(&command(&id, &key, 4200)).await?;
    let outcome = env.collect_outcomes(&reader, 1, Duration::from_secs(60)).await?.remove(0);
    assert_eq!(outcome.provider.as_deref(), Some("adyen"), "failed over: {outcome:?}");

    let src = Sources::new(&env).await?;
    let now = switchyard_canonical::now_ms();
    let mut booked = posting(&id, 1, PostingKind::Payout, 4200, "EUR", now);
    booked.idempotency_key = Some(key.clone());
    src.posting(&booked).await?;
    let recon = switchyard_recon::run::start(recon_config(&env)?, shutdown.clone()).await?;
    // Matched across providers: the posting belongs to the payout adyen
    // executed (command, outcome and posting judged); nothing is open.
    await_judged(&recon, 3).await?;
    assert!(recon.store.discrepancies(false, 10).await?.is_empty());
    // Then the primary reports it paid the same payout after all.
    src.event(&event(&id, "stripe", ProviderEventKind::PayoutPaid, switchyard_canonical::now_ms())).await?;
    let want = [(id.clone(), DiscrepancyClass::DoubleExecution, DiscrepancyStatus::Open)].into_iter().collect();
    let found = await_discrepancies(&recon.store, &want).await?;
    assert_eq!(found[0].providers, vec!["adyen".to_owned(), "stripe".to_owned()]);
    assert!(found[0].actual.contains("stripe also reported payout_paid"), "{:?}", found[0]);
    shutdown.cancel();
    recon.join.await??;
    worker.join.await??;
    Ok(())
}

/// Waits until at least `facts` facts were stored and judged and no subject
/// waits on a timer.
async fn await_judged(running: &switchyard_recon::run::RunningReconciler, facts: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = running.ingest.facts.load(std::sync::atomic::Ordering::Relaxed);
        let (timers, _) = running.store.subject_counts().await?;
        if stored >= facts && timers == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{stored} facts stored, {timers} subjects waiting on a timer");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payout_stuck_in_pending_unknown_is_settled_by_asking_its_vendor() -> Result<()> {
    use switchyard_adapters::payouts::{stripe::StripeAdapter, PayoutProvider};
    use switchyard_simulators::stripe;
    let env = TestEnv::new("recon-settle").await?;
    let vendor = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let adapter = || {
        StripeAdapter::new(
            "stripe",
            &vendor.base_url(),
            switchyard_adapters::Secret::new("sk_test_switchyard"),
            switchyard_localstack::STRIPE_CONNECTED_ACCOUNT,
            switchyard_adapters::http::Transport::new(Duration::from_secs(2), 4),
        )
    };
    let (id, key) = (format!("{}po-1", env.prefix), format!("{}key-1", env.prefix));
    let cmd = command(&id, &key, 777);
    // What the worker left behind after an ambiguous call: its claim in
    // progress, the vendor executed the payout, the worker could not confirm
    // it and published pending_unknown. A second payout never reached the
    // vendor at all.
    let (lost_id, lost_key) = (format!("{}po-2", env.prefix), format!("{}key-2", env.prefix));
    let lost = command(&lost_id, &lost_key, 778);
    let records = switchyard_store::Store::connect(&switchyard_localstack::database_url()).await?;
    for c in [&cmd, &lost] {
        env.core_producer().await?.send(c).await?;
        records.claim(switchyard_e2e::money::payout_claim(c, "stripe", "crashed-worker", 0)).await?;
    }
    let ctx = switchyard_adapters::CallContext { correlation_id: "corr".into(), traceparent: switchyard_canonical::TraceParent::new_root().to_string() };
    adapter()?.create(&cmd, &key, &ctx).await?;
    let src = Sources::new(&env).await?;
    for (id, key, amount) in [(&id, &key, 777), (&lost_id, &lost_key, 778)] {
        let mut doubt = outcome(id, PayoutStatus::PendingUnknown, "stripe", switchyard_canonical::now_ms() - 3 * DAY);
        doubt.idempotency_key = key.clone();
        doubt.amount_minor = amount;
        doubt.provider_reference = None;
        src.outcome(&doubt).await?;
    }
    let reader = env.outcome_reader()?;
    // Past its deadline, the reconciler asks the vendor under the same key.
    let mut recon = recon_config(&env)?;
    recon.policy.settle_retry_ms = 500;
    recon.providers.insert("stripe".into(), PayoutProvider::Stripe(adapter()?));
    recon.worker_database_url = Some(switchyard_localstack::database_url());
    let shutdown = CancellationToken::new();
    let running = switchyard_recon::run::start(recon, shutdown.clone()).await?;

    // The settled outcome goes out on the outcome topic for core banking.
    let decoder = env.outcome_decoder()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let settled = loop {
        if Instant::now() > deadline {
            bail!("no settled outcome published");
        }
        let Some(record) = reader.read_up_to(1, Duration::from_secs(2)).await?.pop() else { continue };
        if record.headers.get("settled-by").map(String::as_str) == Some("reconciler") {
            break decoder.decode::<PayoutOutcome>(&record.payload).await?;
        }
    };
    assert_eq!((settled.payout_id.as_str(), settled.idempotency_key.as_str()), (id.as_str(), key.as_str()));
    assert!(matches!(settled.status, PayoutStatus::Submitted | PayoutStatus::Paid), "{settled:?}");
    assert_eq!(settled.provider.as_deref(), Some("stripe"));
    // No stuck discrepancy remains open, and asking never executed it twice.
    let stuck_open = || async {
        let open = running.store.discrepancies(true, 100).await?;
        Ok::<_, anyhow::Error>(open.iter().any(|d| d.class == DiscrepancyClass::StuckPendingUnknown && d.subject_id == id))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while stuck_open().await? {
        assert!(Instant::now() < deadline, "the stuck discrepancy stayed open after settling");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(vendor.ledger().iter().filter(|p| p.idempotency_key == key).count(), 1, "executed once");
    // The worker's record now says so: a command re-sent later is answered
    // from it, never executed again (by then the vendor forgot the key).
    let record = records.record("payouts", &key).await?.expect("claimed");
    assert_eq!(record.state, switchyard_store::RecordState::Completed);
    // The payout that never reached the vendor is not created by asking.
    assert!(vendor.ledger().iter().all(|p| p.idempotency_key != lost_key), "the settler never sends a create");
    let lost_record = records.record("payouts", &lost_key).await?.expect("claimed");
    assert_eq!(lost_record.state, switchyard_store::RecordState::InProgress, "left for a person or the vendor to decide");
    shutdown.cancel();
    running.join.await??;
    Ok(())
}
