//! A payout's beneficiary at rest and their erasure, end to end: the real
//! payout worker (Stripe simulator) and the real reconciler (with
//! `pii_keys`) run a payout with a distinctive beneficiary name, IBAN and
//! statement reference over the broker into PostgreSQL; then every table is
//! scanned as text (what a `pg_dump` would show) for them. Then
//! `switchyard pii erase --payout` (the binary) crypto-shreds the payout: a
//! copy of the kept command taken before (a backup) no longer opens, the
//! audit trail keeps its facts with vendor texts replaced and gains a
//! `pii_erased` attestation without personal data, and the ledger posting
//! that arrives after the erasure still reconciles against the payout.
//!
//! Seen failing with the reconciler kept as before (the command stored as
//! whole JSON): the scan finds the name, IBAN and reference in `recon_commands`.

use anyhow::{bail, Context, Result};
use sqlx::Row;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchyard_adapters::secret::SecretSource;
use switchyard_bus::{AvroEncoder, KafkaConfig, Outbound, Publisher};
use switchyard_canonical::{Beneficiary, LedgerPosting, PayoutStatus, PostingKind, ProviderEvent, ProviderEventKind};
use switchyard_e2e::{command, workspace_binary, TestEnv};
use switchyard_localstack::database_url;
use switchyard_recon::commands::{CommandSealer, PiiKeyConfig};
use switchyard_recon::ingest::{ReconTopics, LEDGER_POSTING_SCHEMA, PROVIDER_EVENT_SCHEMA};
use switchyard_recon::run::ReconConfig;
use switchyard_recon::Policy;
use switchyard_simulators::stripe;
use switchyard_store::recon::{DueSubject, ReconStore, SubjectFacts};
use switchyard_store::{AuditEntry, Store};
use switchyard_worker::start_payout_worker;
use tokio_util::sync::CancellationToken;

fn pii_keys() -> Vec<PiiKeyConfig> {
    // base64 of 32 bytes ("payout-beneficiary-kek-32-bytes!").
    vec![PiiKeyConfig { id: "p1".into(), key: SecretSource::inline("cGF5b3V0LWJlbmVmaWNpYXJ5LWtlay0zMi1ieXRlcyE=") }]
}

/// A German IBAN with valid check digits around `account` (10 digits).
fn iban(account: u64) -> String {
    let bban = format!("37040044{:010}", account % 10_000_000_000);
    // ISO 13616: BBAN, then "DE00" as digits (D=13, E=14), mod 97.
    let digits = format!("{bban}131400");
    let rem = digits.bytes().fold(0u32, |r, d| (r * 10 + u32::from(d - b'0')) % 97);
    format!("DE{:02}{bban}", 98 - rem)
}

/// Tables whose rows, read as text, contain `needle`.
async fn tables_containing(store: &Store, needle: &str) -> Result<Vec<String>> {
    let pool = store.pool();
    let tables = sqlx::query("SELECT table_name::text AS t FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
        .fetch_all(pool)
        .await?;
    let mut hits = Vec::new();
    for row in tables {
        let table: String = row.try_get("t")?;
        let sql = format!("SELECT COUNT(*) AS n FROM \"{table}\" t WHERE t::text LIKE $1");
        let n: i64 = sqlx::query(&sql).bind(format!("%{needle}%")).fetch_one(pool).await?.try_get("n")?;
        if n > 0 {
            hits.push(table);
        }
    }
    Ok(hits)
}

fn recon_config(env: &TestEnv) -> ReconConfig {
    let mut kafka = KafkaConfig::new(env.kafka.brokers.clone(), format!("{}reconciler", env.prefix));
    kafka.session_timeout_ms = env.kafka.session_timeout_ms;
    ReconConfig {
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: database_url(),
        scope: env.prefix.clone(),
        topics: ReconTopics::with_prefix(&env.prefix),
        policy: Policy::from_catalog(None, Duration::from_secs(24 * 3600), Duration::from_secs(15 * 60)),
        providers: HashMap::new(),
        worker_database_url: None,
        eval_interval: Duration::from_millis(200),
        batch: 5000,
        admin_bind: None,
        pii_keys: pii_keys(),
    }
}

async fn publish<T: serde::Serialize>(env: &TestEnv, publisher: &Publisher, topic: &str, schema: &str, key: &str, value: &T) -> Result<()> {
    let topic = env.topic(topic);
    let encoder = AvroEncoder::register(&env.registry_client, &topic, schema).await?;
    publisher.publish(&Outbound { topic, key: Some(key.as_bytes().to_vec()), payload: encoder.encode(value)?, headers: vec![] }).await?;
    Ok(())
}

/// Waits until the reconciler holds facts of `payout` that pass `ready`.
async fn facts_when(recon: &ReconStore, payout: &str, ready: impl Fn(&SubjectFacts) -> bool) -> Result<SubjectFacts> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let subject = DueSubject { subject_id: payout.to_owned(), version: 0, open_count: 0 };
        if let Some(facts) = recon.load(&[subject]).await?.pop().filter(|f| ready(f)) {
            return Ok(facts);
        }
        if Instant::now() > deadline {
            bail!("the reconciler did not get the facts of {payout} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_beneficiary_is_sealed_at_rest_and_erasure_shreds_it_but_reconciliation_still_matches() -> Result<()> {
    let env = TestEnv::new("pii-payout").await?;
    let run = env.prefix.trim_end_matches('.').rsplit('-').next().unwrap_or("run").to_owned();
    let name = format!("Philippa Vandermolen{run}");
    let account = iban(switchyard_canonical::now_ms().unsigned_abs());
    let reference = format!("tuition Vandermolen{run}");
    let payout = format!("{}po-1", env.prefix);
    let mut cmd = command(&payout, &format!("{}key-1", env.prefix), 4321);
    cmd.beneficiary = Beneficiary { name: name.clone(), iban: account.clone(), country: "DE".into() };
    cmd.reference = reference.clone();

    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(env.worker_config(&sim.base_url(), None, "stripe"), shutdown.clone()).await?;
    let recon = switchyard_recon::run::start(recon_config(&env), shutdown.clone()).await?;
    let reader = env.outcome_reader()?;
    env.core_producer().await?.send(&cmd).await?;
    let outcome = env.collect_outcomes(&reader, 1, Duration::from_secs(60)).await?.remove(0);
    assert_eq!(outcome.status, PayoutStatus::Submitted, "{outcome:?}");
    // The vendor reports it paid; the ledger posting comes after the erasure.
    let publisher = Publisher::new(&env.kafka)?;
    let now = switchyard_canonical::now_ms();
    let paid = ProviderEvent {
        event_id: format!("evt-paid-{payout}"),
        provider: "stripe".into(),
        domain: "payouts".into(),
        subject_id: payout.clone(),
        provider_reference: outcome.provider_reference.clone().unwrap_or_default(),
        kind: ProviderEventKind::PayoutPaid,
        vendor_event_type: "payout.paid".into(),
        amount_minor: Some(4321),
        currency: Some("EUR".into()),
        reason: None,
        occurred_at_ms: now,
        received_at_ms: now,
        payload_sha256: "00".repeat(32),
    };
    publish(&env, &publisher, "payouts.provider-events.v1", PROVIDER_EVENT_SCHEMA, &payout, &paid).await?;
    facts_when(&recon.store, &payout, |f| f.outcomes.len() == 1 && f.events.len() == 1).await?;
    let store = Store::connect(&database_url()).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        let trail = store.audit_trail(&[payout.as_str()]).await?;
        match recon.store.command(&payout, &cmd.idempotency_key).await? {
            Some(stored) if trail.iter().any(|e| e.action == "vendor_call") => break stored,
            _ if Instant::now() > deadline => bail!("command not kept or vendor call not audited within 30 s"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };

    for needle in [name.as_str(), account.as_str(), reference.as_str()] {
        let hits = tables_containing(&store, needle).await?;
        assert!(hits.is_empty(), "{needle:?} in clear in table(s) {hits:?}");
    }
    // Sealed, not lost: the reconciler's key opens the command as it was sent.
    let sealer = CommandSealer::new(Some(switchyard_onboarding::pii::Pii::from_config(&store, &pii_keys()).await?));
    let opened = sealer.open(&stored).await.map_err(anyhow::Error::msg)?;
    assert!(opened.personal && opened.command == cmd, "{opened:?}");
    let backup = stored.clone();
    // A vendor that quotes the account holder in an error (the Stripe
    // simulator does not): as the payout worker audits a failed call.
    let quoted = serde_json::json!({
        "provider": "stripe", "operation": "create", "result": "failed", "http_status": 400, "latency_ms": 41,
        "error": format!("permanent/invalid_beneficiary: the account {account} of {name} is closed"),
    })
    .to_string();
    store.audit(AuditEntry { actor: "payout-worker", action: "vendor_call", subject_id: &payout, correlation_id: "corr-quoted", detail: &quoted }).await?;

    let out = std::process::Command::new(workspace_binary("switchyard")?)
        .args(["pii", "erase", "--payout", &payout, "--actor", "dpo-ticket-4712", "--database-url", &database_url()])
        .output()
        .context("run switchyard pii erase")?;
    assert!(out.status.success(), "pii erase: {}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("data key destroyed") && said.contains("1 kept command(s) blanked") && said.contains("1 vendor text(s)"), "{said}");

    // The backup copy no longer opens: the data key is gone.
    let reopened = sealer.open(&backup).await.map_err(anyhow::Error::msg)?;
    assert!(!reopened.personal && reopened.command.beneficiary.iban.is_empty(), "a pre-erasure copy still opens: {reopened:?}");
    for needle in [name.as_str(), account.as_str(), reference.as_str()] {
        let hits = tables_containing(&store, needle).await?;
        assert!(hits.is_empty(), "{needle:?} left in table(s) {hits:?} after erasure");
    }
    let kept = recon.store.command(&payout, &cmd.idempotency_key).await?.context("command row kept")?;
    let kept: serde_json::Value = serde_json::from_str(&kept)?;
    assert_eq!((kept["amount_minor"].as_i64(), kept["currency"].as_str(), kept["personal"].as_str()), (Some(4321), Some("EUR"), Some("erased")), "{kept}");

    // Reconciliation: the posting booked after the erasure matches the payout.
    let posting = LedgerPosting {
        posting_id: format!("posting-{payout}"),
        payout_id: payout.clone(),
        idempotency_key: Some(cmd.idempotency_key.clone()),
        correlation_id: None,
        kind: PostingKind::Payout,
        amount_minor: 4321,
        currency: "EUR".into(),
        posted_at_ms: switchyard_canonical::now_ms(),
        card_id: None,
        card_transaction_id: None,
        card_event_id: None,
        card_fee: None,
    };
    publish(&env, &publisher, "ledger.postings.v1", LEDGER_POSTING_SCHEMA, &payout, &posting).await?;
    let facts = facts_when(&recon.store, &payout, |f| f.postings.len() == 1).await?;
    let o = &facts.outcomes[0];
    assert_eq!((o.amount_minor, o.currency.as_str(), o.status), (4321, "EUR", PayoutStatus::Submitted), "{o:?}");
    assert_eq!(facts.events[0].kind, ProviderEventKind::PayoutPaid);
    // Judged a month later, past every settlement window: nothing missing, nothing off.
    let policy = recon_config(&env).policy;
    let found = switchyard_recon::engine::judge_now(&facts, &policy, switchyard_canonical::now_ms() + 30 * 86_400_000);
    assert!(found.is_empty(), "the erased payout no longer reconciles: {found:?}");
    let open: Vec<_> = recon.store.discrepancies(false, 100).await?.into_iter().filter(|d| d.subject_id == payout).collect();
    assert!(open.is_empty(), "{open:?}");

    // The audit trail: facts kept, vendor text replaced, one attestation.
    let trail = store.audit_trail(&[payout.as_str()]).await?;
    let calls: Vec<_> = trail.iter().filter(|e| e.action == "vendor_call").collect();
    assert!(calls.iter().any(|e| e.detail.contains("\"provider\":\"stripe\"") && e.detail.contains("\"result\":\"ok\"")), "{calls:?}");
    assert!(calls.iter().any(|e| e.detail.contains("\"error\":\"permanent/invalid_beneficiary: [erased]\"") && e.detail.contains("\"latency_ms\":41")), "{calls:?}");
    let attestations: Vec<_> = trail.iter().filter(|e| e.action == "pii_erased").collect();
    assert_eq!(attestations.len(), 1, "{trail:?}");
    let attestation = attestations[0];
    assert_eq!(attestation.actor, "dpo-ticket-4712");
    assert!(attestation.detail.contains("\"kind\":\"payout\"") && attestation.detail.contains("\"key_destroyed\":true"), "{}", attestation.detail);
    assert!(attestation.detail.contains("\"commands\":1") && attestation.detail.contains("recon_commands"), "{}", attestation.detail);
    for needle in [name.as_str(), account.as_str(), reference.as_str(), "Vandermolen"] {
        assert!(trail.iter().all(|e| !e.detail.contains(needle)), "{needle:?} in the audit trail");
    }

    shutdown.cancel();
    worker.join.await??;
    recon.join.await??;
    Ok(())
}
