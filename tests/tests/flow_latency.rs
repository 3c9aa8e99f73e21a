//! Flow latency from the bus: the reconciler observes
//! `switchyard_flow_end_to_end_seconds{domain,flow}` from the payout command's
//! `requested_at_ms` to the provider's paid event's `occurred_at_ms`, and
//! from an onboarding flow's start to its terminal transition. The events
//! are published seconds apart, so only the carried timestamps put the
//! delayed ones in their buckets; a figure taken at consume time would not.

use anyhow::{bail, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchyard_bus::{AvroEncoder, KafkaConfig, Outbound, Publisher};
use switchyard_canonical::check::FlowStep;
use switchyard_canonical::onboarding::{OnboardingEvent, OnboardingState};
use switchyard_canonical::{ProviderEvent, ProviderEventKind};
use switchyard_e2e::{command, TestEnv};
use switchyard_recon::ingest::{ReconTopics, ONBOARDING_EVENT_SCHEMA, PAYOUT_COMMAND_SCHEMA, PROVIDER_EVENT_SCHEMA};
use switchyard_recon::run::ReconConfig;
use switchyard_recon::Policy;
use tokio_util::sync::CancellationToken;

const PAYOUTS: i64 = 20;

fn recon_config(env: &TestEnv) -> Result<ReconConfig> {
    let mut kafka = KafkaConfig::new(env.kafka.brokers.clone(), format!("{}reconciler", env.prefix));
    kafka.session_timeout_ms = env.kafka.session_timeout_ms;
    Ok(ReconConfig {
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: switchyard_localstack::database_url(),
        scope: env.prefix.clone(),
        topics: ReconTopics::with_prefix(&env.prefix),
        policy: Policy::from_catalog(None, Duration::from_secs(24 * 3600), Duration::from_secs(15 * 60)),
        providers: HashMap::new(),
        worker_database_url: None,
        eval_interval: Duration::from_millis(200),
        batch: 5000,
        admin_bind: Some("127.0.0.1:0".parse()?),
        pii_keys: Vec::new(),
    })
}

fn paid(payout_id: &str, occurred_at_ms: i64) -> ProviderEvent {
    ProviderEvent {
        event_id: format!("evt-paid-{payout_id}"),
        provider: "stripe".into(),
        domain: "payouts".into(),
        subject_id: payout_id.into(),
        provider_reference: format!("po_{payout_id}"),
        kind: ProviderEventKind::PayoutPaid,
        vendor_event_type: "payout.paid".into(),
        amount_minor: Some(1250),
        currency: Some("EUR".into()),
        reason: None,
        occurred_at_ms,
        // The ingester stamps receipt now: the webhook itself came late.
        received_at_ms: switchyard_canonical::now_ms(),
        payload_sha256: "00".repeat(32),
    }
}

fn transition(subject: &str, version: i64, state: OnboardingState, terminal: bool, at: i64) -> OnboardingEvent {
    let flow_id = format!("flow-{subject}");
    OnboardingEvent {
        event_id: format!("{flow_id}:{version}"),
        subject_id: subject.into(),
        flow_id,
        version,
        previous_state: (version > 1).then_some(OnboardingState::KycPending),
        state,
        terminal,
        trigger: if version == 1 { "start".into() } else { "kyc:approved".into() },
        step: FlowStep::Kyc,
        attempt: 1,
        reason: None,
        compensate: vec![],
        occurred_at_ms: at,
    }
}

async fn record<T: serde::Serialize>(env: &TestEnv, topic: &str, schema: &str, key: &str, value: &T) -> Result<Outbound> {
    let topic = env.topic(topic);
    let encoder = AvroEncoder::register(&env.registry_client, &topic, schema).await?;
    Ok(Outbound { topic, key: Some(key.as_bytes().to_vec()), payload: encoder.encode(value)?, headers: vec![] })
}

/// The value of one exported series line, e.g. `..._bucket{le="30.0",domain="payouts",flow="command_to_paid"}`.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn bucket(domain: &str, flow: &str, le: &str) -> String {
    format!(r#"switchyard_flow_end_to_end_seconds_bucket{{le="{le}",domain="{domain}",flow="{flow}"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flow_latency_is_measured_from_the_timestamps_on_the_bus() -> Result<()> {
    let env = TestEnv::new("flow-latency").await?;
    let shutdown = CancellationToken::new();
    let running = switchyard_recon::run::start(recon_config(&env)?, shutdown.clone()).await?;
    let Some(admin) = running.admin_addr else { bail!("no admin address") };
    let publisher = Publisher::new(&env.kafka)?;

    // Requested a minute ago: paid 2 s later by the vendor's clock, except
    // one whose provider confirmed 45 s later. Half the paid events are
    // published before their command (the two topics are read in any order).
    let requested = switchyard_canonical::now_ms() - 60_000;
    let mut first = Vec::new();
    let mut then = Vec::new();
    for i in 0..PAYOUTS {
        let id = format!("{}po-{i}", env.prefix);
        let mut c = command(&id, &format!("key-{i}"), 1250);
        c.requested_at_ms = requested;
        let delay = if i == 0 { 45_000 } else { 2_000 };
        let c = record(&env, "payouts.commands.v1", PAYOUT_COMMAND_SCHEMA, &id, &c).await?;
        let e = record(&env, "payouts.provider-events.v1", PROVIDER_EVENT_SCHEMA, &id, &paid(&id, requested + delay)).await?;
        if i % 2 == 0 {
            first.push(c);
            then.push(e);
        } else {
            first.push(e);
            then.push(c);
        }
    }
    // An onboarding started 100 s ago and approved now; one still pending.
    let applicant = format!("{}app-1", env.prefix);
    let pending = format!("{}app-2", env.prefix);
    let onboarding = "onboarding.events.v1";
    first.push(record(&env, onboarding, ONBOARDING_EVENT_SCHEMA, &applicant, &transition(&applicant, 1, OnboardingState::KycPending, false, requested - 40_000)).await?);
    first.push(record(&env, onboarding, ONBOARDING_EVENT_SCHEMA, &pending, &transition(&pending, 1, OnboardingState::KycPending, false, requested)).await?);
    for r in &first {
        publisher.publish(r).await?;
    }
    // Seconds between the two ends on the bus: a consume-time figure would show them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    then.push(record(&env, onboarding, ONBOARDING_EVENT_SCHEMA, &applicant, &transition(&applicant, 2, OnboardingState::Approved, true, requested + 60_000)).await?);
    // A re-published terminal transition is the same flow, not a second one.
    then.push(then[then.len() - 1].clone());
    for r in &then {
        publisher.publish(r).await?;
    }

    let url = format!("http://{admin}/metrics");
    let count = r#"switchyard_flow_end_to_end_seconds_count{domain="payouts",flow="command_to_paid"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let metrics = reqwest::get(&url).await?.text().await?;
        let onboarded = value(&metrics, r#"switchyard_flow_end_to_end_seconds_count{domain="onboarding",flow="start_to_terminal"}"#);
        if value(&metrics, count) == Some(PAYOUTS as f64) && onboarded == Some(1.0) {
            // One more look: nothing counted twice once everything is read.
            tokio::time::sleep(Duration::from_secs(2)).await;
            break reqwest::get(&url).await?.text().await?;
        }
        if Instant::now() > deadline {
            bail!("flows not all observed:\n{metrics}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    shutdown.cancel();
    let payouts = |le: &str| value(&metrics, &bucket("payouts", "command_to_paid", le));
    assert_eq!(value(&metrics, count), Some(PAYOUTS as f64), "{metrics}");
    assert_eq!(payouts("1.0"), Some(0.0), "2 s flows are not faster than a second: {metrics}");
    assert_eq!(payouts("2.5"), Some((PAYOUTS - 1) as f64), "{metrics}");
    assert_eq!(payouts("30.0"), Some((PAYOUTS - 1) as f64), "the delayed confirmation is above 30 s: {metrics}");
    assert_eq!(payouts("60.0"), Some(PAYOUTS as f64), "{metrics}");
    let sum = value(&metrics, r#"switchyard_flow_end_to_end_seconds_sum{domain="payouts",flow="command_to_paid"}"#);
    assert_eq!(sum, Some(45.0 + 2.0 * (PAYOUTS - 1) as f64), "{metrics}");
    let onboarding = |le: &str| value(&metrics, &bucket("onboarding", "start_to_terminal", le));
    assert_eq!((onboarding("60.0"), onboarding("120.0")), (Some(0.0), Some(1.0)), "100 s start -> approved: {metrics}");
    let _ = tokio::time::timeout(Duration::from_secs(20), running.join).await;
    Ok(())
}

/// The reconciler restarts between a payout's command and its paid event:
/// the command's end was stored, so the flow is observed once, by its
/// carried timestamps, and the same two ends re-published do not count again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_between_the_two_ends_still_observes_the_flow_once() -> Result<()> {
    let env = TestEnv::new("flow-restart").await?;
    let publisher = Publisher::new(&env.kafka)?;
    let requested = switchyard_canonical::now_ms() - 60_000;
    let id = format!("{}po-restart", env.prefix);
    let mut c = command(&id, "key-restart", 1250);
    c.requested_at_ms = requested;
    let command_record = record(&env, "payouts.commands.v1", PAYOUT_COMMAND_SCHEMA, &id, &c).await?;
    let paid_record = record(&env, "payouts.provider-events.v1", PROVIDER_EVENT_SCHEMA, &id, &paid(&id, requested + 7_000)).await?;

    let read = |stats: &switchyard_recon::ingest::IngestStats| stats.messages.load(std::sync::atomic::Ordering::Relaxed);
    let shutdown = CancellationToken::new();
    let first = switchyard_recon::run::start(recon_config(&env)?, shutdown.clone()).await?;
    publisher.publish(&command_record).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while read(&first.ingest) < 1 {
        if Instant::now() > deadline {
            bail!("the first reconciler never read the command");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the consumer's auto-commit interval (500 ms): the restarted
    // reconciler does not read the command again, only its stored end.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), first.join).await???;

    let shutdown = CancellationToken::new();
    let second = switchyard_recon::run::start(recon_config(&env)?, shutdown.clone()).await?;
    let Some(admin) = second.admin_addr else { bail!("no admin address") };
    let url = format!("http://{admin}/metrics");
    let count = r#"switchyard_flow_end_to_end_seconds_count{domain="payouts",flow="command_to_paid"}"#;
    let sum = r#"switchyard_flow_end_to_end_seconds_sum{domain="payouts",flow="command_to_paid"}"#;
    publisher.publish(&paid_record).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = reqwest::get(&url).await?.text().await?;
        if value(&metrics, count) == Some(1.0) {
            assert_eq!(value(&metrics, sum), Some(7.0), "from the stored command's requested_at_ms: {metrics}");
            break;
        }
        if Instant::now() > deadline {
            bail!("the flow begun before the restart was not observed after it:\n{metrics}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Both ends again (a core system re-sending, a vendor re-delivering).
    publisher.publish(&command_record).await?;
    publisher.publish(&paid_record).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while read(&second.ingest) < 3 {
        if Instant::now() > deadline {
            bail!("the re-published ends were not read");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = reqwest::get(&url).await?.text().await?;
    assert_eq!(value(&metrics, count), Some(1.0), "observed once: {metrics}");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), second.join).await;
    Ok(())
}
