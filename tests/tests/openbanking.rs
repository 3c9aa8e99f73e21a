//! Open banking end to end: real broker, real PostgreSQL, the Plaid
//! simulator over HTTP, the open banking worker in-process.
//!
//! - a consent granted through the Link hand-off, then a refresh of several
//!   pages whose sync fails mid-way and is redelivered (and delivered twice
//!   more): every transaction on `openbanking.data.v1` exactly once,
//!   counted on the topic, and no page fetched from Plaid twice;
//! - login required (and answered without Plaid while it lasts), repaired
//!   through an update-mode hand-off;
//! - an institution down: INSTITUTION_UNAVAILABLE with the retry-after;
//!   transactions not ready: PARTIAL_DATA saying what is missing;
//! - the worker stopped between fetching and publishing a page: nothing lost;
//! - revoke, then a refresh of the revoked consent answered without any
//!   call to Plaid (the simulator's request count does not move);
//! - the provider's access token never in clear in any topic (key, value,
//!   header), any table (`pg_dump` of the test database) or log line.

#[path = "openbanking/support.rs"]
mod support;

use anyhow::{ensure, Context, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use std::collections::BTreeMap;
use switchyard_e2e::logs::captured_logs;
use std::time::Duration;
use support::{complete, create, refresh, revoke, Stack, INSTITUTION, INSTITUTION_RETRY_AFTER_MS};
use switchyard_canonical::openbanking_consent::ConsentState;
use switchyard_canonical::openbanking::Dataset;
use switchyard_canonical::openbanking_outcome::{MissingReason, OpenBankingKind, OpenBankingOutcome};

fn consent_id() -> String {
    format!("con-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// Exactly one processed answer among `outcomes`, the rest replays of it.
fn the_one(outcomes: &[OpenBankingOutcome]) -> OpenBankingOutcome {
    let processed: Vec<&OpenBankingOutcome> = outcomes.iter().filter(|o| !o.replayed).collect();
    assert_eq!(processed.len(), 1, "one processed answer, the rest replayed: {outcomes:?}");
    for o in outcomes.iter().filter(|o| o.replayed) {
        let mut same = o.clone();
        same.replayed = false;
        assert_eq!(&same, processed[0], "a replay answers what the first delivery answered");
    }
    processed[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_that_fails_mid_sync_and_is_redelivered_publishes_every_transaction_exactly_once() -> Result<()> {
    let _ = captured_logs();
    let stack = Stack::start("ob-sync").await?;
    let consent = consent_id();
    let item = stack.grant(&consent).await?;
    let first_ids = stack.plaid.transaction_ids(&item);
    assert_eq!(first_ids.len(), 23, "the simulator's item starts with 23 transactions: 5 pages of 5");

    // The third page fails with a 500; the worker makes one call per
    // delivery, so the rest comes through the retry topic. The command is
    // also delivered twice more, as an at-least-once producer may.
    stack.plaid.fail_sync_after(2);
    let key = format!("{consent}-refresh-1");
    let command = refresh(&consent, &key);
    stack.send(&command).await?;
    stack.send(&command).await?;
    let answers = stack.outcomes.collect::<OpenBankingOutcome>(2, Duration::from_secs(90)).await?;
    let answers: Vec<OpenBankingOutcome> = answers.into_iter().map(|(o, _)| o).collect();
    ensure!(answers.iter().all(|o| o.idempotency_key == key), "{answers:?}");
    let answer = the_one(&answers);
    assert_eq!((answer.kind, answer.consent_state, answer.data_pages), (OpenBankingKind::DataRefreshed, Some(ConsentState::Active), 6), "{answer:?}");
    stack.send(&command).await?;
    assert!(stack.answer_to(&key).await?.replayed, "a late duplicate is answered from the store");

    // Counted on the topic: every transaction once, pages numbered 1..=6
    // without a gap or a repeat, each transaction page starting where the
    // previous one ended.
    let deltas = stack.deltas(Duration::from_secs(5)).await?;
    let ids: Vec<&str> = deltas.iter().map(|d| d.delta_id.as_str()).collect();
    let expected_ids: Vec<String> = (1..=6).map(|i| format!("{consent}:{i}")).collect();
    assert_eq!(ids, expected_ids, "one delta per page, in order, none twice");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for d in &deltas {
        for t in &d.transactions_added {
            *seen.entry(t.transaction_id.clone()).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    let mut want = first_ids.clone();
    want.sort();
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), want, "every transaction published");
    let pages: Vec<_> = deltas.iter().filter(|d| d.datasets.iter().any(|s| s.as_str() == "TRANSACTIONS")).collect();
    for pair in pages.windows(2) {
        assert_eq!(pair[1].cursor_before, pair[0].cursor_after, "the cursor never skips a page");
    }
    assert_eq!(deltas[0].accounts_added.len(), 2, "the first page carries the accounts");
    assert_eq!(deltas[0].balances.len(), 2);
    assert_eq!(stack.plaid.calls("/transactions/sync"), 6, "5 pages and the failed call; no page fetched twice");

    // New activity: three transactions and one withdrawn, in one more page.
    stack.plaid.add_transactions(&item, 3);
    assert!(stack.plaid.change_transaction(&item, &first_ids[0], true));
    let key2 = format!("{consent}-refresh-2");
    let second = stack.ask(&refresh(&consent, &key2)).await?;
    assert_eq!((second.kind, second.data_pages), (OpenBankingKind::DataRefreshed, 2), "{second:?}");
    let deltas = stack.deltas(Duration::from_secs(3)).await?;
    assert_eq!(deltas.len(), 2, "an accounts page and one transaction page: {deltas:?}");
    assert_eq!(deltas[0].accounts_modified.len(), 2, "known accounts come back as modified");
    assert_eq!(deltas[1].transactions_added.len(), 3);
    assert_eq!(deltas[1].transactions_removed.iter().map(|r| r.transaction_id.as_str()).collect::<Vec<_>>(), [first_ids[0].as_str()]);
    assert_eq!(deltas[1].delta_id, format!("{consent}:8"));
    stack.stop().await
}

/// The worker stops while Plaid is answering the third page: the page was
/// fetched, never published. The restarted worker must fetch it again
/// (the cursor was stored only for published pages): every transaction is
/// on the topic, and a transaction seen twice only ever comes back inside a
/// republished page under its same delta id (which consumers drop).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_stopped_between_fetching_and_publishing_a_page_loses_no_transaction() -> Result<()> {
    let _ = captured_logs();
    let mut stack = Stack::start("ob-restart").await?;
    let consent = consent_id();
    let item = stack.grant(&consent).await?;
    let want = stack.plaid.transaction_ids(&item);
    stack.plaid.set_latency(Duration::from_millis(600));
    let key = format!("{consent}-refresh");
    stack.send(&refresh(&consent, &key)).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while stack.plaid.calls("/transactions/sync") < 3 {
        ensure!(tokio::time::Instant::now() < deadline, "the refresh never reached its third page");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The third page's call is in flight: stop the worker under it.
    stack.restart().await?;
    stack.plaid.set_latency(Duration::ZERO);
    let answer = stack.answer_to(&key).await?;
    assert_eq!((answer.kind, answer.replayed), (OpenBankingKind::DataRefreshed, false), "{answer:?}");

    let deltas = stack.deltas(Duration::from_secs(5)).await?;
    let mut pages: BTreeMap<String, &switchyard_canonical::openbanking_data::OpenBankingDataDelta> = BTreeMap::new();
    let mut where_seen: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for d in &deltas {
        if let Some(first) = pages.get(&d.delta_id) {
            assert_eq!(first.transactions_added, d.transactions_added, "a republished page is the same page");
        }
        pages.insert(d.delta_id.clone(), d);
        for t in &d.transactions_added {
            where_seen.entry(t.transaction_id.clone()).or_default().insert(d.delta_id.clone());
        }
    }
    let mut want = want;
    want.sort();
    assert_eq!(where_seen.keys().cloned().collect::<Vec<_>>(), want, "no transaction lost across the restart");
    let in_two_pages: Vec<_> = where_seen.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(in_two_pages.is_empty(), "a transaction in two different pages: {in_two_pages:?}");
    assert_eq!(pages.len(), 6, "pages 1..=6: {:?}", pages.keys().collect::<Vec<_>>());
    stack.stop().await
}

/// PRODUCT_NOT_READY: accounts and balances are published, and the
/// refresh says transactions are missing and when to ask again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_not_ready_yet_publish_what_there_is_as_partial_data() -> Result<()> {
    let _ = captured_logs();
    let stack = Stack::start("ob-partial").await?;
    let consent = consent_id();
    let item = stack.grant(&consent).await?;
    stack.plaid.product_not_ready(&item, true);
    let partial = stack.ask(&refresh(&consent, &format!("{consent}-r1"))).await?;
    assert_eq!((partial.kind, partial.data_pages), (OpenBankingKind::PartialData, 2), "{partial:?}");
    let gap = partial.missing.first().context("what is missing")?;
    assert_eq!((gap.dataset, gap.reason, gap.retry_after_ms), (Dataset::Transactions, MissingReason::NotReady, Some(1_000)), "{partial:?}");
    let deltas = stack.deltas(Duration::from_secs(3)).await?;
    assert_eq!(deltas.len(), 2, "an accounts page and the page saying what is missing");
    assert_eq!((deltas[0].accounts_added.len(), deltas[0].balances.len()), (2, 2));
    assert_eq!(deltas[1].missing, partial.missing);
    stack.plaid.product_not_ready(&item, false);
    let full = stack.ask(&refresh(&consent, &format!("{consent}-r2"))).await?;
    assert_eq!((full.kind, full.data_pages), (OpenBankingKind::DataRefreshed, 6), "{full:?}");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_required_is_answered_without_plaid_until_the_user_repairs_it() -> Result<()> {
    let _ = captured_logs();
    let stack = Stack::start("ob-login").await?;
    let consent = consent_id();
    let item = stack.grant(&consent).await?;
    stack.plaid.require_login(&item);
    let needs_login = stack.ask(&refresh(&consent, &format!("{consent}-r1"))).await?;
    assert_eq!((needs_login.kind, needs_login.consent_state), (OpenBankingKind::LoginRequired, Some(ConsentState::LoginRequired)), "{needs_login:?}");
    let calls = stack.plaid.requests();
    let again = stack.ask(&refresh(&consent, &format!("{consent}-r2"))).await?;
    assert_eq!((again.kind, again.attempts), (OpenBankingKind::LoginRequired, 0), "{again:?}");
    assert_eq!(stack.plaid.requests(), calls, "no call to Plaid while the login is broken");

    // Re-authentication: an update-mode Link token, the user, completion.
    let reauth = stack.ask(&create(&consent, &format!("{consent}-reauth"))).await?;
    assert_eq!(reauth.kind, OpenBankingKind::AuthRequired, "{reauth:?}");
    let handoff = reauth.handoff.context("a re-authentication hand-off")?;
    assert!(handoff.expires_at_ms > switchyard_canonical::now_ms() + 3_600_000, "Plaid link tokens live 4 hours");
    let public = stack.plaid.complete_link(&handoff.value).context("update-mode link")?;
    let repaired = stack.ask(&complete(&consent, &format!("{consent}-repaired"), &public)).await?;
    assert_eq!(repaired.kind, OpenBankingKind::ConsentActive, "{repaired:?}");
    let works = stack.ask(&refresh(&consent, &format!("{consent}-r3"))).await?;
    assert_eq!(works.kind, OpenBankingKind::DataRefreshed, "{works:?}");

    let kinds: Vec<&str> = stack.events(Duration::from_secs(3)).await?.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["AUTH_REQUIRED", "CONSENT_ACTIVE", "LOGIN_REQUIRED", "CONSENT_ACTIVE"], "one event per change of the consent");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_institution_down_then_a_revoked_consent_answered_without_calling_plaid() -> Result<()> {
    let _ = captured_logs();
    let stack = Stack::start("ob-revoke").await?;
    let consent = consent_id();
    stack.grant(&consent).await?;

    stack.plaid.institution_down(INSTITUTION, Duration::from_secs(120));
    let down = stack.ask(&refresh(&consent, &format!("{consent}-down"))).await?;
    assert_eq!((down.kind, down.retry_after_ms, down.data_pages), (OpenBankingKind::InstitutionUnavailable, Some(INSTITUTION_RETRY_AFTER_MS as i64), 0), "{down:?}");
    assert_eq!(down.consent_state, Some(ConsentState::Active), "an institution outage changes nothing about the consent");
    stack.plaid.institution_down(INSTITUTION, Duration::ZERO);
    let back = stack.ask(&refresh(&consent, &format!("{consent}-back"))).await?;
    assert_eq!(back.kind, OpenBankingKind::DataRefreshed, "{back:?}");

    let revoked = stack.ask(&revoke(&consent, &format!("{consent}-revoke"))).await?;
    assert_eq!((revoked.kind, revoked.consent_state), (OpenBankingKind::Revoked, Some(ConsentState::Revoked)), "{revoked:?}");
    assert_eq!(stack.plaid.calls("/item/remove"), 1);
    let calls = stack.plaid.requests();
    let after = stack.ask(&refresh(&consent, &format!("{consent}-after"))).await?;
    assert_eq!((after.kind, after.consent_state, after.attempts), (OpenBankingKind::Revoked, Some(ConsentState::Revoked), 0), "{after:?}");
    assert_eq!(stack.plaid.requests(), calls, "a refresh of a revoked consent calls no one");
    let row = stack.worker.as_ref().context("worker")?.consents.load(&consent).await?.context("consent row")?;
    assert!(row.access_token_enc.is_none(), "a revoked consent keeps no token");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_access_token_never_appears_in_clear_in_a_topic_a_table_or_a_log_line() -> Result<()> {
    let logs = captured_logs();
    let stack = Stack::start("ob-secrets").await?;
    let consents = [consent_id(), consent_id()];
    let mut items = Vec::new();
    for consent in &consents {
        items.push(stack.grant(consent).await?);
    }
    // A refresh that succeeds, one that needs a login, a failed exchange, a revocation.
    stack.ask(&refresh(&consents[0], &format!("{}-r", consents[0]))).await?;
    stack.plaid.require_login(&items[1]);
    stack.ask(&refresh(&consents[1], &format!("{}-r", consents[1]))).await?;
    stack.ask(&revoke(&consents[0], &format!("{}-x", consents[0]))).await?;
    let tokens = stack.plaid.issued_access_tokens();
    assert_eq!(tokens.len(), 2);
    // The worker holds the other consent's token, sealed.
    let row = stack.worker.as_ref().context("worker")?.consents.load(&consents[1]).await?.context("row")?;
    let sealed = row.access_token_enc.context("a sealed token")?;
    assert!(sealed.starts_with("e2e:"), "sealed under the configured key id: {sealed}");

    let mut findings = Vec::new();
    for (place, text) in every_record(&stack).await? {
        for t in &tokens {
            if text.contains(t.as_str()) {
                findings.push(format!("{place}: access token"));
            }
        }
        if text.contains("access-sandbox-") {
            findings.push(format!("{place}: an access token's prefix"));
        }
    }
    let url = switchyard_localstack::database_url();
    let dump = std::process::Command::new("pg_dump").args(["--data-only", "--no-owner", &url]).output().context("running pg_dump")?;
    ensure!(dump.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout);
    ensure!(dump.contains(&sealed), "the dump covers the consent table");
    for t in &tokens {
        if dump.contains(t.as_str()) {
            findings.push("pg_dump: access token".into());
        }
    }
    let log = logs.text();
    ensure!(log.contains(&consents[0]), "the log capture saw the worker");
    for t in &tokens {
        if log.contains(t.as_str()) {
            findings.push("log: access token".into());
        }
    }
    assert!(findings.is_empty(), "access token in clear:\n{}", findings.join("\n"));
    stack.stop().await
}

/// Every record (key, value, headers) of every topic of `topics.yaml`
/// under this stack's prefix, until the bus has been quiet for a while.
async fn every_record(stack: &Stack) -> Result<Vec<(String, String)>> {
    let topics = switchyard_bus::topics::TopicsFile::load(&switchyard_localstack::repo_root().join("topics.yaml"))?;
    let mut config = stack.env.kafka.consumer_config();
    config.set("group.id", format!("scan-{}", uuid::Uuid::new_v4())).set("enable.auto.commit", "false");
    let consumer: StreamConsumer = config.create()?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for spec in &topics.topics {
        for partition in 0..spec.partitions {
            assignment.add_partition_offset(&stack.env.topic(&spec.name), partition, rdkafka::Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let mut seen = Vec::new();
    // The first fetch over every partition of every topic can take a while
    // on a busy broker; after that, quiet for 5 s means everything was read.
    let mut quiet = Duration::from_secs(30);
    while let Ok(message) = tokio::time::timeout(quiet, consumer.recv()).await {
        quiet = Duration::from_secs(5);
        let message = message?;
        let place = format!("{}[{}]@{}", message.topic(), message.partition(), message.offset());
        seen.push((format!("{place} key"), String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned()));
        seen.push((format!("{place} payload"), String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned()));
        if let Some(headers) = message.headers() {
            for h in headers.iter() {
                seen.push((format!("{place} header {}", h.key), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()));
            }
        }
    }
    ensure!(seen.iter().any(|(p, _)| p.contains("openbanking.data.v1")), "the scan read the data topic");
    Ok(seen)
}

