//! Scheduled refreshes across worker instances (real broker, real
//! PostgreSQL, the Plaid simulator): two workers in one group both run the
//! scheduler; every active consent gets exactly one scheduled REFRESH per
//! period on the commands topic (counted there, per consent and period),
//! each answered once, and a revoked consent drops off the schedule.

#[allow(dead_code)] // shared with openbanking.rs
#[path = "openbanking/support.rs"]
mod support;

use anyhow::Result;
use std::collections::BTreeMap;
use std::time::Duration;
use support::{revoke, Stack};
use switchyard_bus::AvroDecoder;
use switchyard_canonical::openbanking::{OpenBankingCommand, RefreshTrigger};
use switchyard_canonical::openbanking_outcome::{OpenBankingKind, OpenBankingOutcome};
use switchyard_e2e::TopicReader;
use std::sync::Arc;
use switchyard_worker::openbanking::config::{OpenBankingWorkerConfig, ScheduledRefreshConfig};
use switchyard_worker::openbanking::{OB_COMMAND_SCHEMA, OB_OUTCOME_SCHEMA};

const PERIOD_MS: u64 = 3_000;
const JITTER_MS: u64 = 1_000;

fn consent_id() -> String {
    format!("con-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_refresh_each_consent_once_per_period() -> Result<()> {
    // A database of its own: the scheduler refreshes every active consent
    // it holds, and the shared test database holds other tests' consents.
    let base = switchyard_localstack::database_url();
    let store = switchyard_store::Store::connect(&base).await?;
    let db = format!("ob_schedule_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    sqlx::query(&format!("CREATE DATABASE {db}")).execute(store.pool()).await?;
    let url = format!("{}/{db}", base.rsplit_once('/').map_or(base.as_str(), |(head, _)| head));
    let stack = Stack::start_with(
        "ob-schedule",
        Arc::new(move |c: &mut OpenBankingWorkerConfig| {
            c.database_url = url.clone();
            c.scheduled_refresh = Some(ScheduledRefreshConfig { period_ms: PERIOD_MS, jitter_ms: JITTER_MS, tick_ms: 100, batch: 50 });
        }),
    )
    .await?;
    let consents: Vec<String> = (0..3).map(|_| consent_id()).collect();
    for c in &consents {
        stack.grant(c).await?;
    }
    // The second instance joins once the grants are answered (a rebalance
    // may redeliver commands, answered as replays; counted apart below).
    let second = stack.another_worker().await?;
    // Each consent is first due a period (plus jitter) after it became
    // active; in 11.5 s at least three periods pass for each.
    tokio::time::sleep(Duration::from_millis(11_500)).await;
    let gone = &consents[2];
    let revoked = stack.ask(&revoke(gone, &format!("{gone}-revoke"))).await;
    // The answer may come behind scheduled outcomes; read them all below.
    drop(revoked);
    tokio::time::sleep(Duration::from_millis(2 * PERIOD_MS)).await;

    let commands = TopicReader::new(&stack.env.kafka, &stack.env.topic("openbanking.commands.v1"))?;
    let decoder = AvroDecoder::new(stack.env.registry_client.clone(), OB_COMMAND_SCHEMA)?;
    let mut per_period: BTreeMap<String, usize> = BTreeMap::new();
    let mut periods_of: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for record in commands.read_up_to(10_000, Duration::from_secs(3)).await? {
        let command: OpenBankingCommand = decoder.decode(&record.payload).await?;
        if command.refresh.as_ref().is_some_and(|r| r.trigger == RefreshTrigger::Scheduled) {
            *per_period.entry(command.idempotency_key.clone()).or_default() += 1;
            let period = command.idempotency_key.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(-1);
            periods_of.entry(command.consent_id.clone()).or_default().push(period);
        }
    }
    let twice: Vec<_> = per_period.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "a period refreshed more than once across the two instances: {twice:?}");
    for c in &consents[..2] {
        let mut periods = periods_of.get(c).cloned().unwrap_or_default();
        periods.sort_unstable();
        assert!(periods.len() >= 3, "{c}: at least three periods in 17 s: {periods:?}");
        assert_eq!(periods, (0..periods.len() as i64).collect::<Vec<_>>(), "{c}: periods in order, none skipped");
    }
    let gone_periods = periods_of.get(gone).map_or(0, Vec::len);
    assert!(gone_periods <= 4, "the revoked consent left the schedule: {gone_periods} periods");

    // Each scheduled command answered exactly once (replays aside).
    let outcomes = TopicReader::new(&stack.env.kafka, &stack.env.topic("openbanking.outcomes.v1"))?;
    let decoder = AvroDecoder::new(stack.env.registry_client.clone(), OB_OUTCOME_SCHEMA)?;
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    for record in outcomes.read_up_to(10_000, Duration::from_secs(3)).await? {
        let outcome: OpenBankingOutcome = decoder.decode(&record.payload).await?;
        if per_period.contains_key(&outcome.idempotency_key) && !outcome.replayed {
            assert!(matches!(outcome.kind, OpenBankingKind::DataRefreshed | OpenBankingKind::Revoked), "{outcome:?}");
            *answered.entry(outcome.idempotency_key).or_default() += 1;
        }
    }
    assert!(answered.values().all(|n| *n == 1), "{answered:?}");
    stack.shutdown.cancel();
    second.join.await??;
    stack.stop().await?;
    // Best effort: a leftover database only costs disk.
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(store.pool()).await;
    Ok(())
}
