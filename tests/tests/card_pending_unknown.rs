//! Card commands a processor may have carried out without saying so (every
//! call times out: a slow processor that executes after the client gave
//! up). Real broker, real PostgreSQL, both simulators on one card oracle.
//!
//! Neither a refusal nor a failover: the command is `pending_unknown` (the
//! audit log says so, no FAILED or REJECTED outcome is published, nothing
//! reaches the other processor) until the processor answers again; then it
//! is settled by asking that processor under the same key or card token,
//! not by sending it again. Judged by the oracle (cards per card id across
//! both processors) and by what each simulator received.

use anyhow::{bail, Result};
use std::time::{Duration, Instant};
use switchyard_canonical::card::{CardAction, CardState};
use switchyard_canonical::card_outcome::{CardOutcome, CardOutcomeStatus};
use switchyard_e2e::cards::{answer_to, command, config, stop, Processors};
use switchyard_e2e::checks::{CommandProducer, OutcomeReader};
use switchyard_e2e::TestEnv;
use switchyard_simulators::FaultPlan;
use switchyard_store::Store;
use switchyard_worker::card::run::start_card_worker;
use switchyard_worker::card::{CARD_COMMAND_SCHEMA, CARD_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

/// Every reply 2 s late against an 800 ms client timeout; a create still
/// executes (the simulator carries on after the client gave up).
const SILENT: FaultPlan = FaultPlan {
    latency_ms: 2_000,
    server_error_ratio: 0.0,
    unavailable_ratio: 0.0,
    rate_limit_ratio: 0.0,
    retry_after_secs: 0,
    hang_after_accept_ratio: 0.0,
    hang_ms: 0,
    seed: 7,
};

/// The audit actions recorded for `card`, in order, with their details.
async fn audit(store: &Store, card: &str) -> Result<Vec<(String, String)>> {
    store.flush_audit().await;
    Ok(store.audit_trail(&[card]).await?.into_iter().map(|a| (a.action, a.detail)).collect())
}

/// Waits until the silent processor has had `calls` requests: a whole
/// delivery's attempts (4) and the next round's first.
async fn await_calls(sim: &switchyard_simulators::SimulatorHandle, calls: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        if sim.stats().requests >= calls {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the processor got only {:?}", sim.stats())
}

fn recorded_pending_unknown(trail: &[(String, String)]) -> bool {
    trail.iter().any(|(action, _)| action == "pending_unknown")
}

fn settled_by_asking(trail: &[(String, String)]) -> bool {
    trail.iter().any(|(action, detail)| action == "vendor_call" && detail.contains("\"operation\":\"settle\"") && detail.contains("\"result\":\"done\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_issue_lithic_never_confirms_is_pending_unknown_then_settled_there_by_asking() -> Result<()> {
    let env = TestEnv::new("cards-pending-issue").await?;
    let processors = Processors::start(FaultPlan::default()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_card_worker(config(&env, &processors, "lithic", 800), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;

    let card = format!("{}card-silent", env.prefix);
    processors.lithic.set_faults(SILENT);
    let issue = command(&card, &format!("{card}-issue"), CardAction::Issue);
    producer.send(&issue.card_id, &issue.idempotency_key, &issue).await?;
    await_calls(&processors.lithic, 5).await?;
    assert!(processors.marqeta.stats().requests == 0, "an ambiguous ISSUE must never reach the secondary: {:?}", processors.marqeta.stats());

    processors.lithic.set_faults(FaultPlan::default());
    // The first outcome for the key is the settled one: nothing before it.
    let o: CardOutcome = answer_to(&outcomes, &issue.idempotency_key).await?;
    assert_eq!((o.status, o.state, o.provider.as_deref(), o.replayed), (CardOutcomeStatus::Succeeded, Some(CardState::Issued), Some("lithic"), false), "{o:?}");
    processors.assert_issued_once(std::slice::from_ref(&card));
    assert_eq!(processors.oracle.per_card()[&card][0].processor, "lithic");
    let lithic = processors.lithic.stats();
    // The create went out once; what followed were questions, never the
    // create again (which Lithic would have replayed or refused in flight).
    assert_eq!((lithic.idempotent_replays, lithic.idempotency_conflicts), (0, 0), "one create, then only questions: {lithic:?}");
    let trail = audit(&worker.store, &card).await?;
    assert!(settled_by_asking(&trail), "settled by a settle call at lithic: {trail:?}");
    assert!(recorded_pending_unknown(&trail), "pending_unknown while lithic was silent: {trail:?}");
    stop(worker, shutdown).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suspend_marqeta_never_confirms_is_pending_unknown_then_read_back_from_the_card() -> Result<()> {
    let env = TestEnv::new("cards-pending-suspend").await?;
    let processors = Processors::start(FaultPlan::default()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_card_worker(config(&env, &processors, "marqeta", 800), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;

    let card = format!("{}card-quiet", env.prefix);
    for (i, action) in [CardAction::Issue, CardAction::Activate].into_iter().enumerate() {
        let c = command(&card, &format!("{card}-{i}"), action);
        producer.send(&c.card_id, &c.idempotency_key, &c).await?;
        let o = answer_to(&outcomes, &c.idempotency_key).await?;
        assert_eq!(o.status, CardOutcomeStatus::Succeeded, "{o:?}");
    }
    let before = processors.marqeta.stats();
    processors.marqeta.set_faults(SILENT);
    let suspend = command(&card, &format!("{card}-suspend"), CardAction::Suspend);
    producer.send(&suspend.card_id, &suspend.idempotency_key, &suspend).await?;
    await_calls(&processors.marqeta, before.requests + 5).await?;
    processors.marqeta.set_faults(FaultPlan::default());

    let o = answer_to(&outcomes, &suspend.idempotency_key).await?;
    assert_eq!((o.status, o.state, o.provider.as_deref()), (CardOutcomeStatus::Succeeded, Some(CardState::Suspended), Some("marqeta")), "{o:?}");
    let after = processors.marqeta.stats();
    assert_eq!(
        (after.idempotent_replays, after.idempotency_conflicts),
        (before.idempotent_replays, before.idempotency_conflicts),
        "the transition token was sent once, then only questions: {after:?}"
    );
    assert_eq!(processors.lithic.stats().requests, 0, "nothing at the other processor");
    let trail = audit(&worker.store, &card).await?;
    assert!(settled_by_asking(&trail), "settled by reading the card at marqeta: {trail:?}");
    assert!(recorded_pending_unknown(&trail), "pending_unknown while marqeta was silent: {trail:?}");
    stop(worker, shutdown).await
}
