//! `switchyard trace <consent id>` follows an open-banking consent: the
//! CREATE_CONSENT, COMPLETE_CONSENT and REFRESH commands, their outcomes,
//! the consent's events, every data page and every Plaid call (from the
//! worker's audit rows), in order and in words, read
//! at the positions the open banking worker recorded (not by scanning the
//! domain's topics), and without the hand-off's link token, the access
//! token, account ids or masks in any line. A payment id traces as the
//! consent its row names.

#[path = "openbanking/support.rs"]
#[allow(dead_code)] // shared with the open banking tests; this file uses part of it
mod support;

use anyhow::{ensure, Context, Result};
use std::time::Duration;
use support::{refresh, Stack};
use switchyard_canonical::openbanking_outcome::OpenBankingKind;
use switchyard_e2e::logs::captured_logs;
use switchyard_ops::read::ReadOptions;
use switchyard_ops::trace::{self, Decoders, Trace, TraceRequest};
use switchyard_store::openbanking_payments::{PaymentRow, PaymentStore};
use switchyard_store::Store;

async fn trace_of(stack: &Stack, store: &Store, id: &str) -> Result<Trace> {
    let file = switchyard_bus::topics::TopicsFile::load(
        &switchyard_localstack::repo_root().join("topics.yaml"),
    )?;
    let topics = file
        .with_prefix(&stack.env.prefix)
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect();
    let decoders = Decoders::new(stack.env.registry_client.clone())?;
    let read = ReadOptions {
        idle: Duration::from_secs(2),
        settle: Duration::from_millis(300),
        deadline: Duration::from_secs(120),
    };
    let request = TraceRequest {
        id,
        topics,
        read,
        decoders: Some(&decoders),
        since: None,
        scan_all: false,
    };
    Ok(trace::trace(&stack.env.kafka, store, request).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trace_follows_a_consent_through_its_grant_and_a_refresh() -> Result<()> {
    let _ = captured_logs();
    let mut stack = Stack::start("trace-ob").await?;
    let consent = format!("con-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let item = stack.grant(&consent).await?;
    let refreshed = stack
        .ask(&refresh(&consent, &format!("{consent}-r1")))
        .await?;
    ensure!(
        refreshed.kind == OpenBankingKind::DataRefreshed,
        "refresh: {refreshed:?}"
    );
    let pages = usize::try_from(refreshed.data_pages)?;
    ensure!(
        pages > 1,
        "the simulator's item needs several pages: {refreshed:?}"
    );
    let deltas = stack.deltas(Duration::from_secs(3)).await?;
    // Stop the worker: its shutdown flushes the positions still queued.
    stack.shutdown.cancel();
    stack.worker.take().context("worker")?.join.await??;

    let store = Store::connect(&switchyard_localstack::database_url()).await?;
    let t = trace_of(&stack, &store, &consent).await?;
    let lines: Vec<String> = t
        .events
        .iter()
        .map(|e| format!("{} {} {:?} {}", e.source, e.what, e.status, e.detail))
        .collect();
    eprintln!("trace of {consent}:\n{}", lines.join("\n"));
    let on = |suffix: &str, what: &str| {
        t.events
            .iter()
            .filter(|e| e.source.ends_with(suffix) && e.what == what)
            .collect::<Vec<_>>()
    };

    // The domain's topics were read at the worker's positions.
    for topic in [
        "openbanking.commands.v1",
        "openbanking.outcomes.v1",
        "openbanking.events.v1",
        "openbanking.data.v1",
    ] {
        ensure!(
            !t.scanned_topics.iter().any(|s| s.ends_with(topic)),
            "{topic} read in full, not at positions: {:?}",
            t.scanned_topics
        );
    }
    ensure!(
        on("openbanking.commands.v1", "command").len() == 3,
        "three commands:\n{}",
        lines.join("\n")
    );
    let outcomes: Vec<&str> = on("openbanking.outcomes.v1", "outcome")
        .iter()
        .filter_map(|e| e.status.as_deref())
        .collect();
    ensure!(
        outcomes == ["AUTH_REQUIRED", "CONSENT_ACTIVE", "DATA_REFRESHED"],
        "outcomes in order, decoded: {outcomes:?}"
    );
    let events: Vec<&str> = on("openbanking.events.v1", "openbanking_event")
        .iter()
        .filter_map(|e| e.status.as_deref())
        .collect();
    ensure!(
        events.contains(&"AUTH_REQUIRED") && events.contains(&"CONSENT_ACTIVE"),
        "the consent's changes: {events:?}"
    );
    ensure!(
        on("openbanking.data.v1", "openbanking_data").len() == pages,
        "every data page ({pages}):\n{}",
        lines.join("\n")
    );
    let added: usize = deltas.iter().map(|d| d.transactions_added.len()).sum();
    ensure!(
        lines.iter().any(|l| l.contains("transactions +")),
        "data pages in words"
    );
    ensure!(added > 0, "the refresh published transactions");

    // Every provider call, from the worker's audit rows, each before the outcome it led to.
    let calls = t
        .events
        .iter()
        .filter(|e| e.what == "vendor_call" && e.source == "audit (openbanking-worker)")
        .count();
    ensure!(
        calls >= 2 + pages,
        "a call per link token, exchange and data page at least (2 + {pages}), got {calls}:\n{}",
        lines.join("\n")
    );
    let first_call = t
        .events
        .iter()
        .position(|e| e.what == "vendor_call")
        .context("a call")?;
    let first_outcome = t
        .events
        .iter()
        .position(|e| e.what == "outcome")
        .context("an outcome")?;
    ensure!(
        first_call < first_outcome,
        "the link token call before the hand-off's outcome:\n{}",
        lines.join("\n")
    );

    // In order: each command before its outcome, the refresh's pages before its outcome.
    let position = |pred: &dyn Fn(&trace::TraceEvent) -> bool| t.events.iter().position(pred);
    let refreshed_at =
        position(&|e| e.status.as_deref() == Some("DATA_REFRESHED")).context("refresh outcome")?;
    let last_page = t
        .events
        .iter()
        .rposition(|e| e.what == "openbanking_data")
        .context("a page")?;
    let active_at =
        position(&|e| e.what == "outcome" && e.status.as_deref() == Some("CONSENT_ACTIVE"))
            .context("active")?;
    ensure!(
        active_at < last_page && last_page < refreshed_at,
        "grant, pages, then the refresh's outcome:\n{}",
        lines.join("\n")
    );

    // No credential or account number in any line.
    let mut secrets = stack.plaid.issued_access_tokens();
    for d in &deltas {
        for a in d.accounts_added.iter().chain(&d.accounts_modified) {
            secrets.push(a.account_id.clone());
            secrets.extend(a.mask.clone());
        }
        secrets.extend(d.transactions_added.iter().map(|x| x.description.clone()));
        secrets.extend(d.cursor_after.clone());
    }
    for line in &lines {
        for s in secrets.iter().filter(|s| s.len() >= 4) {
            ensure!(
                !line.contains(s.as_str()),
                "a trace line shows {s:?}: {line}"
            );
        }
        for prefix in ["link-sandbox-", "public-sandbox-", "access-sandbox-"] {
            ensure!(!line.contains(prefix), "a token in a trace line: {line}");
        }
    }
    ensure!(t.subject_ids.contains(&consent), "{:?}", t.subject_ids);
    ensure!(
        lines.iter().any(|l| l.contains(&item)),
        "the Plaid item the consent holds, as its vendor ref"
    );

    // A payment id leads to its consent, which keys every record of the
    // payment: the worker's payment row names it.
    let payments = PaymentStore::open(&store).await?;
    let payment_id = format!("pay-{}", &consent[4..]);
    let row = PaymentRow {
        payment_id: payment_id.clone(),
        consent_id: consent.clone(),
        provider: "truelayer".into(),
        provider_payment_id: String::new(),
        create_key: format!("{consent}-pay"),
        amount_minor: 1_000,
        currency: "GBP".into(),
        status: "SETTLED".into(),
        progress: "{}".into(),
        terminal: true,
        seq: 0,
        pending_events: None,
        created_answer: "{}".into(),
        correlation_id: String::new(),
        version: 0,
        next_poll_at_ms: 0,
    };
    ensure!(payments.insert(&row).await?, "a new payment row");
    let by_payment = trace_of(&stack, &store, &payment_id).await?;
    let seen = |t: &Trace| {
        let mut seen: Vec<(String, String, Option<String>)> = t
            .events
            .iter()
            .map(|e| (e.source.clone(), e.what.clone(), e.status.clone()))
            .collect();
        seen.sort();
        seen
    };
    ensure!(
        seen(&by_payment) == seen(&t),
        "the trace of payment {payment_id} is its consent's: {} events, not {}",
        by_payment.events.len(),
        t.events.len()
    );
    stack.stop().await
}
