//! TrueLayer as the second data provider, end to end: real broker, real
//! PostgreSQL, the TrueLayer simulator over HTTP (auth server with
//! authorization-code and rotating refresh-token grants, Data API v1), the
//! open banking worker in-process. New GB consents are routed to TrueLayer
//! by a routing segment; Plaid stays configured.
//!
//! - granted -> ACTIVE -> REFRESH: every transaction the simulator holds
//!   is on `openbanking.data.v1` exactly once, counted per transaction id
//!   against the simulator's own list, across refreshes that see new
//!   transactions on the watermark day, a redelivered REFRESH and one with
//!   nothing new. The access token is renewed before it lapses and once
//!   after a 401, with the rotated refresh token each time (the simulator
//!   counts the grants and refuses a refresh token used twice).
//! - the bank down: INSTITUTION_UNAVAILABLE; down mid-way through a
//!   refresh: PARTIAL_DATA, and the next refresh resumes at the account
//!   whose page was not published, nothing twice; the consent expired at the
//!   bank: LOGIN_REQUIRED (answered without TrueLayer while it lasts),
//!   repaired by a re-auth hand-off and a new authorization code -> ACTIVE,
//!   and the refresh after it republishes nothing; REVOKE_CONSENT deletes
//!   the connection, and a refresh of the revoked consent calls no one.
//! - none of the simulator's access or refresh tokens in any topic (key,
//!   value, header) or log line.

#[path = "openbanking/support.rs"]
#[allow(dead_code)] // shared with the Plaid tests; this file uses part of it
mod support;

use anyhow::{ensure, Context, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use std::collections::BTreeMap;
use std::time::Duration;
use support::{create, refresh, revoke, Stack};
use switchyard_canonical::openbanking::{CompletionSpec, Dataset, OpenBankingAction, OpenBankingCommand};
use switchyard_canonical::openbanking_consent::ConsentState;
use switchyard_canonical::openbanking_data::OpenBankingDataDelta;
use switchyard_canonical::openbanking_outcome::{HandoffKind, OpenBankingKind, OpenBankingOutcome};
use switchyard_e2e::logs::captured_logs;
use switchyard_simulators::truelayer::{generate_signing_key, spawn_truelayer, TrueLayerConfig, TrueLayerSimulator};
use switchyard_worker::config::SecretSource;
use switchyard_worker::openbanking::config::{ObProviderConfig, ObProviderKind, OpenBankingWorkerConfig};
use switchyard_worker::openbanking::truelayer_config::TrueLayerSection;

const REFRESH_GRANTS: &str = "POST /connect/token refresh_token";
const REFUSED_TOKENS: &str = "401 user token";

/// A stack whose GB consents go to a TrueLayer simulator by routing segment.
async fn stack(name: &str) -> Result<(Stack, TrueLayerSimulator)> {
    stack_with_consent_ttl(name, 90 * 24 * 3_600_000).await
}

/// `stack` whose TrueLayer data consents end `consent_ttl_ms` after their code exchange.
async fn stack_with_consent_ttl(name: &str, consent_ttl_ms: u64) -> Result<(Stack, TrueLayerSimulator)> {
    let tl = spawn_truelayer(TrueLayerConfig::local()).await?;
    let (private, public) = generate_signing_key();
    tl.register_signing_key("e2e-kid", &public);
    let url = tl.base_url();
    let tweak = std::sync::Arc::new(move |c: &mut OpenBankingWorkerConfig| {
        let local = TrueLayerConfig::local();
        let mut p: ObProviderConfig = c.providers[0].clone();
        p.name = "truelayer".into();
        p.kind = ObProviderKind::TrueLayer;
        p.base_url = url.clone();
        p.client_id = local.client_id;
        p.secret = SecretSource::inline(&local.client_secret);
        p.truelayer = Some(TrueLayerSection {
            auth_url: url.clone(),
            hpp_url: "https://payment.truelayer-sandbox.com".into(),
            signing_key_id: "e2e-kid".into(),
            signing_key: SecretSource::inline(&private),
            redirect_uri: "https://app.example.com/linked".into(),
            merchant_accounts: [("main-gbp".to_owned(), "ma-1".to_owned())].into_iter().collect(),
            resource_token_ttl_ms: 900_000,
            auth_link_ttl_ms: 3_600_000,
            consent_ttl_ms,
        });
        c.providers.push(p);
        c.routing.segments.push(switchyard_routing::Segment {
            matches: switchyard_routing::SegmentMatch { region: Some("GB".into()), ..Default::default() },
            primary: "truelayer".into(),
            secondary: None,
        });
    });
    Ok((Stack::start_with(name, tweak).await?, tl))
}

fn consent_id() -> String {
    format!("con-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

fn create_gb(consent: &str, key: &str) -> OpenBankingCommand {
    let mut c = create(consent, key);
    if let Some(spec) = c.consent.as_mut() {
        spec.country = "GB".into();
        spec.institution_id = Some("ob-mock".into());
    }
    c
}

fn complete_with_code(consent: &str, key: &str, code: String) -> OpenBankingCommand {
    let mut c = create(consent, key);
    c.action = OpenBankingAction::CompleteConsent;
    c.consent = None;
    c.completion = Some(CompletionSpec { public_token: None, authorization_code: Some(code) });
    c
}

/// CREATE_CONSENT (the auth link), the user at the bank, COMPLETE_CONSENT
/// with the code: ACTIVE at TrueLayer.
async fn grant(stack: &Stack, tl: &TrueLayerSimulator, consent: &str, round: &str) -> Result<()> {
    let created = stack.ask(&create_gb(consent, &format!("{consent}-create-{round}"))).await?;
    ensure!(created.kind == OpenBankingKind::AuthRequired && created.provider.as_deref() == Some("truelayer"), "create: {created:?}");
    let handoff = created.handoff.clone().context("a hand-off")?;
    ensure!(handoff.kind == HandoffKind::AuthorizationUrl && handoff.value.contains("response_type=code"), "{handoff:?}");
    let completed = stack.ask(&complete_with_code(consent, &format!("{consent}-complete-{round}"), tl.grant_code())).await?;
    ensure!(completed.kind == OpenBankingKind::ConsentActive, "complete: {completed:?}");
    Ok(())
}

/// How often each transaction id was published in `deltas`.
fn published(deltas: &[OpenBankingDataDelta]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for d in deltas {
        for t in &d.transactions_added {
            *seen.entry(t.transaction_id.clone()).or_insert(0) += 1;
        }
    }
    seen
}

/// Every id of the simulator exactly once on the topic, nothing else.
fn exactly_once(seen: &BTreeMap<String, usize>, oracle: &[String]) {
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    let missing: Vec<_> = oracle.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(missing.is_empty(), "never published: {missing:?}");
    assert_eq!(seen.len(), oracle.len(), "nothing published the bank does not hold");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn truelayer_data_publishes_every_transaction_once_and_renews_the_rotating_grant() -> Result<()> {
    let logs = captured_logs();
    let (stack, tl) = stack("ob-tl-data").await?;
    let current = tl.add_account("Everyday current");
    let savings = tl.add_account("Rainy day");
    tl.add_transactions(&current, 4, 10);
    tl.add_transactions(&current, 3, 0);
    tl.add_transactions(&savings, 5, 3);
    // Access tokens that live a minute: inside the worker's five-minute
    // margin, so the first refresh renews before calling.
    tl.set_user_token_ttl(Duration::from_secs(60));
    let consent = consent_id();
    grant(&stack, &tl, &consent, "1").await?;
    tl.set_user_token_ttl(Duration::from_secs(3_600));

    let first = stack.ask(&refresh(&consent, &format!("{consent}-r1"))).await?;
    assert_eq!((first.kind, first.consent_state), (OpenBankingKind::DataRefreshed, Some(ConsentState::Active)), "{first:?}");
    assert_eq!(tl.calls(REFRESH_GRANTS), 1, "renewed before the access token lapsed");
    assert_eq!(tl.calls(REFUSED_TOKENS), 0, "no call met a lapsed token");
    let mut deltas = stack.deltas(Duration::from_secs(3)).await?;
    exactly_once(&published(&deltas), &tl.data_transaction_ids());
    let accounts: Vec<&str> = deltas.iter().flat_map(|d| d.accounts_added.iter().map(|a| a.account_id.as_str())).collect();
    assert_eq!(accounts.len(), 2, "both accounts: {accounts:?}");
    assert_eq!(deltas.iter().map(|d| d.balances.len()).sum::<usize>(), 2, "a balance per account");

    // New transactions on the watermark day and after; the access token
    // lapses (401): renewed once with the rotated refresh token. The
    // command is delivered twice.
    tl.add_transactions(&current, 2, 0);
    tl.add_transactions(&savings, 1, 0);
    tl.expire_user_tokens();
    let key = format!("{consent}-r2");
    let second = refresh(&consent, &key);
    stack.send(&second).await?;
    stack.send(&second).await?;
    let answers: Vec<OpenBankingOutcome> = stack.outcomes.collect::<OpenBankingOutcome>(2, Duration::from_secs(60)).await?.into_iter().map(|(o, _)| o).collect();
    ensure!(answers.iter().all(|o| o.idempotency_key == key), "{answers:?}");
    let processed: Vec<_> = answers.iter().filter(|o| !o.replayed).collect();
    assert_eq!(processed.len(), 1, "one processed, one replayed: {answers:?}");
    assert_eq!(processed[0].kind, OpenBankingKind::DataRefreshed, "{answers:?}");
    assert_eq!(tl.calls(REFUSED_TOKENS), 1, "the lapsed token met once");
    assert_eq!(tl.calls(REFRESH_GRANTS), 2, "renewed once after the 401");

    // A refresh with nothing new publishes no transaction.
    let third = stack.ask(&refresh(&consent, &format!("{consent}-r3"))).await?;
    assert_eq!(third.kind, OpenBankingKind::DataRefreshed, "{third:?}");
    deltas.extend(stack.deltas(Duration::from_secs(3)).await?);
    let oracle = tl.data_transaction_ids();
    assert_eq!(oracle.len(), 15);
    exactly_once(&published(&deltas), &oracle);

    // No token of the simulator's in a topic or a log line.
    let tokens = tl.user_tokens_issued();
    assert_eq!(tokens.len(), 6, "three grants: access + refresh each");
    let mut findings = Vec::new();
    for (place, text) in every_record(&stack).await? {
        if text.contains("tl-sim-") || tokens.iter().any(|t| text.contains(t.as_str())) {
            findings.push(place);
        }
    }
    let log = logs.text();
    ensure!(log.contains(&consent), "the log capture saw the worker");
    if log.contains("tl-sim-") {
        findings.push("log".into());
    }
    assert!(findings.is_empty(), "a TrueLayer token in clear: {findings:?}");
    stack.stop().await?;
    tl.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn truelayer_consent_paths_bank_down_expired_repaired_and_revoked() -> Result<()> {
    let _ = captured_logs();
    let (stack, tl) = stack("ob-tl-paths").await?;
    let current = tl.add_account("Everyday current");
    tl.add_transactions(&current, 3, 2);
    let consent = consent_id();
    grant(&stack, &tl, &consent, "1").await?;

    tl.set_bank_down(true);
    let down = stack.ask(&refresh(&consent, &format!("{consent}-down"))).await?;
    assert_eq!(down.kind, OpenBankingKind::InstitutionUnavailable, "{down:?}");
    assert!(down.retry_after_ms.is_some_and(|ms| ms > 0), "{down:?}");
    tl.set_bank_down(false);
    let ok = stack.ask(&refresh(&consent, &format!("{consent}-ok"))).await?;
    assert_eq!(ok.kind, OpenBankingKind::DataRefreshed, "{ok:?}");

    // The bank goes dark mid-way: accounts, two balances, the account
    // list and the first account's transactions get through, the second
    // account's page does not. What was published stays; the next refresh
    // resumes at the second account and publishes nothing twice.
    let second = tl.add_account("Joint");
    tl.add_transactions(&second, 4, 1);
    tl.add_transactions(&current, 1, 0);
    tl.bank_down_after(5);
    let partial = stack.ask(&refresh(&consent, &format!("{consent}-partial"))).await?;
    assert_eq!(partial.kind, OpenBankingKind::PartialData, "{partial:?}");
    assert!(partial.missing.iter().any(|m| m.dataset == Dataset::Transactions), "{partial:?}");
    tl.set_bank_down(false);
    let resumed = stack.ask(&refresh(&consent, &format!("{consent}-resumed"))).await?;
    assert_eq!(resumed.kind, OpenBankingKind::DataRefreshed, "{resumed:?}");
    exactly_once(&published(&stack.deltas(Duration::from_secs(3)).await?), &tl.data_transaction_ids());

    // The 90 days pass at the bank while the access token lapses: the
    // renewal is refused (invalid_grant), the user must come back.
    tl.expire_consents();
    tl.expire_user_tokens();
    let expired = stack.ask(&refresh(&consent, &format!("{consent}-expired"))).await?;
    assert_eq!((expired.kind, expired.consent_state), (OpenBankingKind::LoginRequired, Some(ConsentState::LoginRequired)), "{expired:?}");
    let before = tl.user_calls();
    let waiting = stack.ask(&refresh(&consent, &format!("{consent}-waiting"))).await?;
    assert_eq!(waiting.kind, OpenBankingKind::LoginRequired, "{waiting:?}");
    assert_eq!(tl.user_calls(), before, "answered without TrueLayer");

    // Repaired: a re-auth hand-off and a new code.
    grant(&stack, &tl, &consent, "2").await?;
    tl.add_transactions(&current, 2, 0);
    let repaired = stack.ask(&refresh(&consent, &format!("{consent}-repaired"))).await?;
    assert_eq!((repaired.kind, repaired.consent_state), (OpenBankingKind::DataRefreshed, Some(ConsentState::Active)), "{repaired:?}");
    let deltas = stack.deltas(Duration::from_secs(3)).await?;
    let since_resume = published(&deltas);
    assert_eq!(since_resume.len(), 2, "only the two new transactions after the repair: {since_resume:?}");
    assert!(since_resume.values().all(|n| *n == 1), "{since_resume:?}");

    // Revoked by the product: the connection is deleted at TrueLayer, and
    // a refresh afterwards calls no one.
    let revoked = stack.ask(&revoke(&consent, &format!("{consent}-revoke"))).await?;
    assert_eq!((revoked.kind, revoked.consent_state), (OpenBankingKind::Revoked, Some(ConsentState::Revoked)), "{revoked:?}");
    assert_eq!(tl.calls("DELETE /api/delete"), 1);
    let before = tl.user_calls();
    let after = stack.ask(&refresh(&consent, &format!("{consent}-after"))).await?;
    assert_eq!(after.kind, OpenBankingKind::Revoked, "{after:?}");
    assert_eq!(tl.user_calls(), before, "a refresh of a revoked consent calls no one");
    let row = stack.worker.as_ref().context("worker")?.consents.load(&consent).await?.context("row")?;
    assert!(row.access_token_enc.is_none(), "a revoked consent keeps no token");
    stack.stop().await?;
    tl.shutdown().await;
    Ok(())
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

/// TrueLayer names no end in its token answer; its Data API v1 connection
/// lasts 90 days from its creation (`consent_ttl_ms`, short here). The
/// consent gets that end at COMPLETE_CONSENT, and once it has passed a
/// REFRESH is answered CONSENT_EXPIRED without calling TrueLayer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_truelayer_data_consent_ends_its_connections_life_after_the_code_exchange() -> Result<()> {
    let (stack, tl) = stack_with_consent_ttl("ob-tl-ttl", 4_000).await?;
    let current = tl.add_account("Everyday current");
    tl.add_transactions(&current, 2, 1);
    let consent = consent_id();
    let created = stack.ask(&create_gb(&consent, &format!("{consent}-create"))).await?;
    ensure!(created.kind == OpenBankingKind::AuthRequired, "create: {created:?}");
    let before = switchyard_canonical::now_ms();
    let completed = stack.ask(&complete_with_code(&consent, &format!("{consent}-complete"), tl.grant_code())).await?;
    assert_eq!(completed.kind, OpenBankingKind::ConsentActive, "{completed:?}");
    let ends = completed.consent_expires_at_ms.context("a TrueLayer data consent has an end")?;
    assert!((before + 4_000..=switchyard_canonical::now_ms() + 4_000).contains(&ends), "ends {ends}, completed {before}");
    let ok = stack.ask(&refresh(&consent, &format!("{consent}-before-end"))).await?;
    assert_eq!(ok.kind, OpenBankingKind::DataRefreshed, "{ok:?}");

    tokio::time::sleep(Duration::from_millis(u64::try_from(ends - switchyard_canonical::now_ms()).unwrap_or(0) + 500)).await;
    let calls = tl.calls("GET /data/v1/accounts");
    let after = stack.ask(&refresh(&consent, &format!("{consent}-after-end"))).await?;
    assert_eq!(after.kind, OpenBankingKind::ConsentExpired, "{after:?}");
    assert_eq!(tl.calls("GET /data/v1/accounts"), calls, "an expired consent calls no one");
    stack.stop().await?;
    tl.shutdown().await;
    Ok(())
}
