//! A real schema evolution end to end: `PayoutCommand` gained optional
//! `tenant_id` and `risk_tier` (released as version 2 of the subject). A
//! core system still producing with version 1 and one producing with
//! version 2 are both answered, and a routing segment on the new fields
//! routes only the commands that carry them.

use anyhow::{Context, Result};
use serde::Serialize;
use switchyard_bus::{AvroEncoder, Outbound, Publisher};
use switchyard_canonical::{Beneficiary, PayoutRail, PayoutStatus};
use switchyard_e2e::{command, TestEnv};
use switchyard_routing::{Segment, SegmentMatch};
use switchyard_simulators::{adyen, stripe};
use switchyard_worker::start_payout_worker;
use tokio_util::sync::CancellationToken;

/// What a producer built against version 1 of the schema sends.
#[derive(Serialize)]
struct CommandV1 {
    payout_id: String,
    idempotency_key: String,
    amount_minor: i64,
    currency: String,
    beneficiary: Beneficiary,
    rail: PayoutRail,
    reference: String,
    requested_at_ms: i64,
}

/// Version 1 as released, from the lock file (what producers in the field use).
fn released_v1() -> Result<String> {
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(switchyard_localstack::repo_root().join("schemas/released.lock.json"))?)?;
    let v1 = &lock["subjects"]["payouts.commands.v1-value"][0];
    anyhow::ensure!(v1["version"] == 1, "the first released version");
    v1["schema"].as_str().map(str::to_owned).context("schema text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn producers_on_the_old_and_the_new_command_schema_are_both_answered() -> Result<()> {
    let env = TestEnv::new("evolution").await?;
    let stripe_sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let adyen_sim = adyen::spawn_adyen(adyen::AdyenConfig::local()).await?;
    let mut config = env.worker_config(&stripe_sim.base_url(), Some(&adyen_sim.base_url()), "stripe");
    config.routing.segments = vec![Segment {
        matches: SegmentMatch { risk_tier: Some("high".into()), ..SegmentMatch::default() },
        primary: "adyen".into(),
        secondary: None,
    }];
    let stop = CancellationToken::new();
    let worker = start_payout_worker(config, stop.clone()).await?;

    // Version 1: registered as a producer in the field registered it.
    let topic = env.topic("payouts.commands.v1");
    let old_encoder = AvroEncoder::register(&env.registry_client, &topic, &released_v1()?).await?;
    let old = command(&format!("{}po-old", env.prefix), &format!("{}key-old", env.prefix), 1000);
    let old_payload = old_encoder.encode(&CommandV1 {
        payout_id: old.payout_id.clone(),
        idempotency_key: old.idempotency_key.clone(),
        amount_minor: old.amount_minor,
        currency: old.currency.clone(),
        beneficiary: old.beneficiary.clone(),
        rail: old.rail,
        reference: old.reference.clone(),
        requested_at_ms: old.requested_at_ms,
    })?;
    let publisher = Publisher::new(&env.kafka)?;
    publisher
        .publish(&Outbound {
            topic: topic.clone(),
            key: Some(old.payout_id.clone().into_bytes()),
            payload: old_payload,
            headers: vec![("idempotency-key".into(), old.idempotency_key.clone().into_bytes())],
        })
        .await?;
    // Version 2, through the current schema, naming a tenant and a tier.
    let mut new = command(&format!("{}po-new", env.prefix), &format!("{}key-new", env.prefix), 2000);
    new.tenant_id = Some("bank-a".into());
    new.risk_tier = Some("high".into());
    env.core_producer().await?.send(&new).await?;

    let outcomes = env.collect_outcomes(&env.outcome_reader()?, 2, std::time::Duration::from_secs(60)).await?;
    let of = |id: &str| outcomes.iter().find(|o| o.payout_id == id).with_context(|| format!("an outcome for {id}: {outcomes:?}"));
    let (old_outcome, new_outcome) = (of(&old.payout_id)?, of(&new.payout_id)?);
    assert_eq!(old_outcome.status, PayoutStatus::Submitted, "{old_outcome:?}");
    assert_eq!(new_outcome.status, PayoutStatus::Submitted, "{new_outcome:?}");
    assert_eq!(old_outcome.provider.as_deref(), Some("stripe"), "no tier: the default primary");
    assert_eq!(new_outcome.provider.as_deref(), Some("adyen"), "risk tier high: the segment's primary");
    stop.cancel();
    worker.join.await??;
    Ok(())
}
