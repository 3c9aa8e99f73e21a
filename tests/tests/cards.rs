//! Cards end to end: real broker, real PostgreSQL, Lithic and Marqeta
//! simulators over HTTP sharing one card oracle, the card worker in-process.
//!
//! - every lifecycle step through each processor, every command duplicated,
//!   an illegal command refused before any processor call;
//! - a refused issuance fails over once, and a card never leaves its
//!   processor afterwards, even while that processor refuses everything;
//! - a seeded randomized run with duplicated commands and a faulty primary,
//!   judged by the simulators' card oracle (cards issued per card id across
//!   both processors: exactly one), not by the worker's own records.

use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_canonical::card::{CardAction, CardCommand, CardRefusal, CardState};
use switchyard_canonical::card_event::{CardEvent, CardEventKind};
use switchyard_canonical::card_outcome::{CardOutcome, CardOutcomeStatus};
use switchyard_e2e::cards::{answer_to, by_key, command, config, lifecycle, read_events, stop, the_one_outcome, Processors, LIFECYCLE};
use switchyard_e2e::checks::{CommandProducer, OutcomeReader};
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_simulators::FaultPlan;
use switchyard_worker::card::run::start_card_worker;
use switchyard_worker::card::{CARD_COMMAND_SCHEMA, CARD_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

/// Issue -> activate -> suspend -> reinstate -> terminate for several cards
/// at `primary`, every command sent twice; then an ACTIVATE of a terminated
/// card and one for a card never issued, both REJECTED with no call.
async fn every_lifecycle_step_through(name: &str, primary: &str) -> Result<()> {
    let env = TestEnv::new(name).await?;
    let processors = Processors::start(FaultPlan::default()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_card_worker(config(&env, &processors, primary, 2_000), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let events = TopicReader::new(&env.kafka, &env.topic("cards.events.v1"))?;

    let cards: Vec<String> = (0..3).map(|i| format!("{}card-{i}", env.prefix)).collect();
    let mut sent = 0;
    for card in &cards {
        for cmd in lifecycle(card) {
            for _ in 0..2 {
                producer.send(&cmd.card_id, &cmd.idempotency_key, &cmd).await?;
                sent += 1;
            }
        }
    }
    let lifecycle_outcomes = by_key(outcomes.collect::<CardOutcome>(sent, Duration::from_secs(90)).await?);
    let mut calls = processors.sim(primary).stats().requests;
    // One call per lifecycle command, none for any duplicate.
    assert_eq!(calls, (cards.len() * LIFECYCLE.len()) as u64, "processor calls at {primary}");
    for card in &cards {
        let mut reference = None;
        for (i, (action, state)) in LIFECYCLE.iter().enumerate() {
            let key = format!("{card}-{i}");
            let got = &lifecycle_outcomes[&key];
            assert_eq!(got.len(), 2, "{key}: every delivery answered");
            let o = the_one_outcome(&key, got);
            assert_eq!((o.action, o.status, o.state), (*action, CardOutcomeStatus::Succeeded, Some(*state)), "{key}: {o:?}");
            assert_eq!(o.provider.as_deref(), Some(primary));
            assert!(o.last_four.as_ref().is_some_and(|l| l.len() == 4), "{key}: last four");
            reference = reference.or(o.processor_reference.clone());
            assert_eq!(o.processor_reference, reference, "{key}: the same card at the processor throughout");
        }
    }

    // Illegal in the card's state, and a card never issued.
    let late = command(&cards[0], &format!("{}-late", cards[0]), CardAction::Activate);
    let ghost = command(&format!("{}ghost", env.prefix), &format!("{}ghost-0", env.prefix), CardAction::Activate);
    for cmd in [&late, &late, &ghost] {
        producer.send(&cmd.card_id, &cmd.idempotency_key, cmd).await?;
    }
    let refused = by_key(outcomes.collect::<CardOutcome>(3, Duration::from_secs(30)).await?);
    let o = the_one_outcome(&late.idempotency_key, &refused[&late.idempotency_key]);
    assert_eq!((o.status, o.refusal, o.state), (CardOutcomeStatus::Rejected, Some(CardRefusal::IllegalTransition), Some(CardState::Terminated)), "{o:?}");
    let o = the_one_outcome(&ghost.idempotency_key, &refused[&ghost.idempotency_key]);
    assert_eq!((o.status, o.refusal, o.provider.as_deref()), (CardOutcomeStatus::Rejected, Some(CardRefusal::CardNotFound), None), "{o:?}");
    calls = processors.sim(primary).stats().requests - calls;
    assert_eq!(calls, 0, "no processor call for a refused command");
    let secondary = if primary == "lithic" { "marqeta" } else { "lithic" };
    assert_eq!(processors.sim(secondary).stats().requests, 0, "the secondary never heard of these cards");

    // One event per state change, in lifecycle order, never twice.
    let published = read_events(&env, &events, cards.len() * LIFECYCLE.len()).await?;
    assert!(events.read_up_to(1, Duration::from_secs(2)).await?.is_empty(), "no event beyond one per change");
    let mut per_card: BTreeMap<&str, Vec<&CardEvent>> = BTreeMap::new();
    for e in &published {
        per_card.entry(e.card_id.as_str()).or_default().push(e);
    }
    let want = [CardEventKind::CardIssued, CardEventKind::CardActivated, CardEventKind::CardSuspended, CardEventKind::CardReinstated, CardEventKind::CardTerminated];
    for card in &cards {
        let got = &per_card[card.as_str()];
        assert_eq!(got.iter().map(|e| e.kind).collect::<Vec<_>>(), want, "{card}");
        let ids: std::collections::HashSet<&str> = got.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), want.len(), "{card}: distinct event ids");
        assert!(got.iter().all(|e| e.processor == primary && e.notify_cardholder));
    }
    processors.assert_issued_once(&cards);
    stop(worker, shutdown).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_lifecycle_step_through_lithic() -> Result<()> {
    every_lifecycle_step_through("cards-lithic", "lithic").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_lifecycle_step_through_marqeta() -> Result<()> {
    every_lifecycle_step_through("cards-marqeta", "marqeta").await
}

/// Lithic refuses everything (503 before acceptance): a new card fails over
/// to Marqeta once. A card Lithic already holds stays there while Lithic
/// refuses, and is activated at Lithic once it is back; after a policy
/// switch to Marqeta it still goes to Lithic, while new cards do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_issuance_fails_over_once_and_a_card_never_leaves_its_processor() -> Result<()> {
    let env = TestEnv::new("cards-failover").await?;
    let processors = Processors::start(FaultPlan::default()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_card_worker(config(&env, &processors, "lithic", 2_000), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let at_lithic = format!("{}card-l", env.prefix);
    let moved = format!("{}card-m", env.prefix);

    let issue = command(&at_lithic, &format!("{at_lithic}-0"), CardAction::Issue);
    producer.send(&issue.card_id, &issue.idempotency_key, &issue).await?;
    let (o, _) = outcomes.collect::<CardOutcome>(1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!((o.status, o.provider.as_deref()), (CardOutcomeStatus::Succeeded, Some("lithic")));

    processors.lithic.set_faults(FaultPlan { unavailable_ratio: 1.0, ..FaultPlan::default() });
    let issue = command(&moved, &format!("{moved}-0"), CardAction::Issue);
    producer.send(&issue.card_id, &issue.idempotency_key, &issue).await?;
    let (o, _) = outcomes.collect::<CardOutcome>(1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!((o.card_id.as_str(), o.status, o.provider.as_deref()), (moved.as_str(), CardOutcomeStatus::Succeeded, Some("marqeta")), "{o:?}");

    // The Lithic card's activation waits for Lithic; Marqeta never sees it.
    let marqeta_before = processors.marqeta.stats().requests;
    let activate = command(&at_lithic, &format!("{at_lithic}-1"), CardAction::Activate);
    producer.send(&activate.card_id, &activate.idempotency_key, &activate).await?;
    let early = outcomes.collect::<CardOutcome>(1, Duration::from_secs(3)).await;
    ensure!(early.is_err(), "no outcome while the card's processor refuses: {early:?}");
    assert_eq!(processors.marqeta.stats().requests, marqeta_before, "a command for a Lithic card never goes to Marqeta");
    processors.lithic.set_faults(FaultPlan::default());
    let (o, _) = outcomes.collect::<CardOutcome>(1, Duration::from_secs(60)).await.context("activated once Lithic is back")?.remove(0);
    assert_eq!((o.card_id.as_str(), o.state, o.provider.as_deref()), (at_lithic.as_str(), Some(CardState::Active), Some("lithic")), "{o:?}");

    // The failed-over card's later commands go to Marqeta, its processor.
    let lithic_before = processors.lithic.stats().requests;
    let activate = command(&moved, &format!("{moved}-1"), CardAction::Activate);
    producer.send(&activate.card_id, &activate.idempotency_key, &activate).await?;
    let (o, _) = outcomes.collect::<CardOutcome>(1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!((o.state, o.provider.as_deref()), (Some(CardState::Active), Some("marqeta")), "{o:?}");
    assert_eq!(processors.lithic.stats().requests, lithic_before, "a Marqeta card's command never goes to Lithic");
    stop(worker, shutdown).await?;

    // A processor migration: Marqeta becomes the primary. New cards go
    // there; the Lithic card's next command still goes to Lithic.
    let shutdown = CancellationToken::new();
    let worker = start_card_worker(config(&env, &processors, "marqeta", 2_000), shutdown.clone()).await?;
    let (lithic_before, marqeta_before) = (processors.lithic.stats().requests, processors.marqeta.stats().requests);
    let suspend = command(&at_lithic, &format!("{at_lithic}-2"), CardAction::Suspend);
    producer.send(&suspend.card_id, &suspend.idempotency_key, &suspend).await?;
    let o = answer_to(&outcomes, &suspend.idempotency_key).await?;
    assert_eq!((o.state, o.provider.as_deref()), (Some(CardState::Suspended), Some("lithic")), "{o:?}");
    assert_eq!((processors.lithic.stats().requests, processors.marqeta.stats().requests), (lithic_before + 1, marqeta_before));
    let newer = format!("{}card-n", env.prefix);
    let issue = command(&newer, &format!("{newer}-0"), CardAction::Issue);
    producer.send(&issue.card_id, &issue.idempotency_key, &issue).await?;
    let o = answer_to(&outcomes, &issue.idempotency_key).await?;
    assert_eq!((o.card_id.as_str(), o.provider.as_deref()), (newer.as_str(), Some("marqeta")), "new issuance follows the policy: {o:?}");
    processors.assert_issued_once(&[at_lithic, moved, newer]);
    stop(worker, shutdown).await
}

/// xorshift64*: reproducible without a dependency; the seed is printed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Many cards through their lifecycle at once, every command sent one to
/// three times in a shuffled order, while Lithic (the primary) answers with
/// 500s, 503s, 429s and calls that time out after it acted. Judged by the
/// card oracle: each card id issued exactly once across both processors;
/// and by the bus: one processed outcome per key, every card TERMINATED at
/// the processor that issued it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn randomized_duplicates_and_a_faulty_primary_never_issue_a_card_twice() -> Result<()> {
    let seed: u64 = std::env::var("CARDS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_ca4d_2026);
    eprintln!("CARDS_SEED={seed}");
    let mut dice = Dice(seed | 1);
    let faults = FaultPlan {
        server_error_ratio: 0.15,
        unavailable_ratio: 0.15,
        rate_limit_ratio: 0.05,
        retry_after_secs: 0,
        hang_after_accept_ratio: 0.1,
        hang_ms: 1_500,
        seed,
        ..FaultPlan::default()
    };
    let env = TestEnv::new("cards-random").await?;
    let processors = Processors::start(faults).await?;
    let shutdown = CancellationToken::new();
    let worker = start_card_worker(config(&env, &processors, "lithic", 800), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let cards: Vec<String> = (0..24).map(|i| format!("{}card-{i}", env.prefix)).collect();

    // One lifecycle step per phase for every card, as a core system that
    // waits for each answer before the next command would send them.
    let mut processed: BTreeMap<String, CardOutcome> = BTreeMap::new();
    for step in 0..LIFECYCLE.len() {
        let mut deliveries: Vec<CardCommand> = Vec::new();
        for card in &cards {
            let cmd = lifecycle(card).remove(step);
            for _ in 0..=dice.below(3) {
                deliveries.push(cmd.clone());
            }
        }
        for i in (1..deliveries.len()).rev() {
            deliveries.swap(i, dice.below(i + 1));
        }
        for cmd in &deliveries {
            producer.send(&cmd.card_id, &cmd.idempotency_key, cmd).await?;
        }
        let got = by_key(outcomes.collect::<CardOutcome>(deliveries.len(), Duration::from_secs(180)).await.with_context(|| format!("step {step}"))?);
        for (key, all) in got {
            let sent = deliveries.iter().filter(|c| c.idempotency_key == key).count();
            assert_eq!(all.len(), sent, "{key}: one answer per delivery");
            processed.insert(key.clone(), the_one_outcome(&key, &all));
        }
    }
    processors.assert_issued_once(&cards);
    for card in &cards {
        let steps: Vec<&CardOutcome> = (0..LIFECYCLE.len()).map(|i| &processed[&format!("{card}-{i}")]).collect();
        for (o, (action, state)) in steps.iter().zip(LIFECYCLE) {
            assert_eq!((o.action, o.status, o.state), (action, CardOutcomeStatus::Succeeded, Some(state)), "{card}: {o:?}");
        }
        let home = steps[0].provider.clone();
        assert!(steps.iter().all(|o| o.provider == home), "{card}: every command at the processor that issued it: {steps:?}");
        let issued_at = processors.oracle.per_card()[card][0].processor.clone();
        assert_eq!(home.as_deref(), Some(issued_at.as_str()), "{card}: the outcome names the processor the oracle saw issue it");
    }
    let failed_over = cards.iter().filter(|c| processed[&format!("{c}-0")].provider.as_deref() == Some("marqeta")).count();
    eprintln!("{failed_over} of {} cards failed over to marqeta; lithic stats {:?}", cards.len(), processors.lithic.stats());
    stop(worker, shutdown).await
}

/// A lost card is replaced: the old card is closed at once and linked to a
/// new card record at the same processor, which is then activated; its card
/// id cannot be issued again. A PIN set on the way (an encrypted block) is
/// nowhere in what the worker published or stored, and bytes that are not a
/// card command go to the DLQ while the worker goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_card_is_replaced_by_a_linked_card_and_no_pin_is_kept() -> Result<()> {
    use switchyard_canonical::card::{PinSpec, ReplaceReason, ReplaceSpec};
    const PIN_BLOCK: &str = "0412AC89FF3E21D7";
    let env = TestEnv::new("cards-replace").await?;
    let processors = Processors::start(FaultPlan::default()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_card_worker(config(&env, &processors, "lithic", 2_000), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let raw_outcomes = TopicReader::new(&env.kafka, &env.topic("cards.outcomes.v1"))?;
    let events = TopicReader::new(&env.kafka, &env.topic("cards.events.v1"))?;
    let dlq = TopicReader::new(&env.kafka, &env.topic("cards.commands.v1.dlq"))?;
    let old = format!("{}card-old", env.prefix);
    let new = format!("{}card-new", env.prefix);

    let mut pin = command(&old, &format!("{old}-pin"), CardAction::SetPin);
    pin.pin = Some(PinSpec { encrypted_pin_block: Some(PIN_BLOCK.into()), hosted_flow_token: None });
    let mut replace = command(&old, &format!("{old}-replace"), CardAction::Replace);
    replace.replace = Some(ReplaceSpec { reason: ReplaceReason::Lost, new_card_id: new.clone(), shipping: None });
    let reissue = command(&new, &format!("{new}-reissue"), CardAction::Issue);
    let sequence = [
        command(&old, &format!("{old}-0"), CardAction::Issue),
        command(&old, &format!("{old}-1"), CardAction::Activate),
        pin.clone(),
        replace.clone(),
        replace.clone(),
    ];
    for cmd in &sequence {
        producer.send(&cmd.card_id, &cmd.idempotency_key, cmd).await?;
    }
    let raw = switchyard_bus::Outbound { topic: env.topic("cards.commands.v1"), key: Some(old.as_bytes().to_vec()), payload: b"not avro".to_vec(), headers: vec![] };
    switchyard_bus::Publisher::new(&env.kafka)?.publish(&raw).await?;
    // The new card lives on its own key: sent once the replacement is known.
    let first = by_key(outcomes.collect::<CardOutcome>(sequence.len(), Duration::from_secs(60)).await?);
    let replaced = the_one_outcome(&replace.idempotency_key, &first[&replace.idempotency_key]);
    assert_eq!((replaced.status, replaced.state), (CardOutcomeStatus::Succeeded, Some(CardState::Terminated)), "lost: closed at once: {replaced:?}");
    let replacement = replaced.replacement.clone().context("the outcome names the new card")?;
    assert_eq!((replacement.card_id.as_str(), replacement.state), (new.as_str(), Some(CardState::Issued)));
    assert_ne!(replacement.processor_reference, replaced.processor_reference, "a new card at the processor");
    let pinned = the_one_outcome(&pin.idempotency_key, &first[&pin.idempotency_key]);
    assert_eq!((pinned.status, pinned.state), (CardOutcomeStatus::Succeeded, Some(CardState::Active)));

    let activate_new = command(&new, &format!("{new}-1"), CardAction::Activate);
    for cmd in [&activate_new, &reissue] {
        producer.send(&cmd.card_id, &cmd.idempotency_key, cmd).await?;
    }
    let second = by_key(outcomes.collect::<CardOutcome>(2, Duration::from_secs(30)).await?);
    let o = the_one_outcome(&activate_new.idempotency_key, &second[&activate_new.idempotency_key]);
    assert_eq!((o.status, o.state, o.provider.as_deref()), (CardOutcomeStatus::Succeeded, Some(CardState::Active), Some("lithic")), "{o:?}");
    let o = the_one_outcome(&reissue.idempotency_key, &second[&reissue.idempotency_key]);
    assert_eq!((o.status, o.refusal), (CardOutcomeStatus::Rejected, Some(CardRefusal::CardExists)), "{o:?}");

    // The two card records, linked both ways, at the same processor.
    let old_row = worker.cards.load(&old).await?.context("old card stored")?;
    let new_row = worker.cards.load(&new).await?.context("new card stored")?;
    let old_life: switchyard_canonical::card::CardLifecycle = serde_json::from_str(&old_row.lifecycle)?;
    let new_life: switchyard_canonical::card::CardLifecycle = serde_json::from_str(&new_row.lifecycle)?;
    assert_eq!((old_life.state, old_life.replaced_by.as_deref()), (CardState::Terminated, Some(new.as_str())));
    assert_eq!((new_life.state, new_life.replaces.as_deref()), (CardState::Active, Some(old.as_str())));
    assert_eq!((new_row.processor.as_str(), new_row.issue_key.as_str()), ("lithic", replace.idempotency_key.as_str()));

    // Events: the old card issued, activated, replaced, closed; the new one
    // issued (linked to the old) and activated. Nothing for the PIN.
    let published = read_events(&env, &events, 6).await?;
    assert!(events.read_up_to(1, Duration::from_secs(2)).await?.is_empty(), "one event per change");
    let kinds = |card: &str| published.iter().filter(|e| e.card_id == card).map(|e| e.kind).collect::<Vec<_>>();
    use CardEventKind as K;
    assert_eq!(kinds(&old), [K::CardIssued, K::CardActivated, K::CardReplaced, K::CardTerminated]);
    assert_eq!(kinds(&new), [K::CardIssued, K::CardActivated]);
    assert!(published.iter().any(|e| e.kind == K::CardIssued && e.card_id == new && e.linked_card_id.as_deref() == Some(old.as_str())));
    processors.assert_issued_once(&[old.clone(), new.clone()]);

    let dead = dlq.collect(1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!(dead.payload, raw.payload, "original bytes kept");
    assert_eq!(dead.headers.get("dlq-error-class").map(String::as_str), Some("manual_repair"));

    // The PIN block: not in any outcome or event on the bus, nor in what the
    // worker stored about the cards (rows, applied outcomes, claims, audit).
    let mut kept: Vec<String> = Vec::new();
    for record in raw_outcomes.collect(sequence.len() + 2, Duration::from_secs(10)).await? {
        kept.push(String::from_utf8_lossy(&record.payload).into_owned());
    }
    kept.extend(published.iter().map(|e| format!("{e:?}")));
    kept.extend([format!("{old_row:?}"), format!("{new_row:?}")]);
    for (card, cmd) in [(&old, &pin), (&old, &replace)] {
        kept.extend(worker.cards.applied(card, &cmd.idempotency_key).await?.map(|a| a.outcome));
        kept.extend(worker.store.record("cards", &cmd.idempotency_key).await?.and_then(|r| r.outcome));
    }
    worker.store.flush_audit().await;
    kept.extend(worker.store.audit_trail(&[&old, &new]).await?.into_iter().map(|a| a.detail));
    assert!(kept.len() > 10, "scanned what was kept: {}", kept.len());
    for text in &kept {
        assert!(!text.to_ascii_uppercase().contains(PIN_BLOCK), "the PIN block leaked into {text}");
        // As Lithic receives it: the same bytes in base64.
        assert!(!text.contains("BBKsif8+Idc"), "the PIN block (base64) leaked into {text}");
    }
    stop(worker, shutdown).await
}

/// The crash window between the card's write and the claim's completion:
/// a worker moved the card (ACTIVE, its event queued) and died before it
/// completed the claim or published. The redelivery finds the command
/// applied to the card: it completes the claim, publishes the queued event
/// and the outcome, and calls no processor.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_applied_before_a_crash_is_answered_without_a_second_call() -> Result<()> {
    use switchyard_canonical::card::CardLifecycle;
    use switchyard_store::cards::{CardEventRow, CardWrite, Commit};
    let env = TestEnv::new("cards-crash").await?;
    let processors = Processors::start(FaultPlan::default()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_card_worker(config(&env, &processors, "lithic", 2_000), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let events = TopicReader::new(&env.kafka, &env.topic("cards.events.v1"))?;
    let card = format!("{}card-c", env.prefix);
    let issue = command(&card, &format!("{card}-0"), CardAction::Issue);
    producer.send(&issue.card_id, &issue.idempotency_key, &issue).await?;
    let issued = answer_to(&outcomes, &issue.idempotency_key).await?;
    assert_eq!(issued.state, Some(CardState::Issued));

    // What the dead worker left: its claim (lease already expired), the card
    // moved under its key, the event unsent.
    let activate = command(&card, &format!("{card}-1"), CardAction::Activate);
    let claim = switchyard_store::Claim {
        domain: "cards".into(),
        idempotency_key: activate.idempotency_key.clone(),
        fingerprint: activate.fingerprint().0,
        subject_id: card.clone(),
        provider: "lithic".into(),
        provider_key: "dead-worker-key".into(),
        correlation_id: "corr-dead".into(),
        lease_owner: "dead-worker".into(),
        lease_ttl_ms: 1,
    };
    assert!(worker.store.claim(claim).await?.fresh);
    let before = worker.cards.load(&card).await?.context("issued card stored")?;
    let mut life: CardLifecycle = serde_json::from_str(&before.lifecycle)?;
    life.observe(CardState::Active, switchyard_canonical::now_ms());
    let after = switchyard_store::cards::CardRow {
        state: "ACTIVE".into(),
        lifecycle: serde_json::to_string(&life)?,
        version: before.version + 1,
        ..before.clone()
    };
    let mut answered = CardOutcome { attempts: 1, ..issued.clone() };
    (answered.idempotency_key, answered.action, answered.state) = (activate.idempotency_key.clone(), CardAction::Activate, Some(CardState::Active));
    let event = CardEvent {
        event_id: format!("{card}:{}", after.version),
        card_id: card.clone(),
        kind: CardEventKind::CardActivated,
        from_state: Some("ISSUED".into()),
        to_state: Some("ACTIVE".into()),
        processor: "lithic".into(),
        processor_reference: before.processor_reference.clone(),
        last_four: before.last_four.clone(),
        dispute_id: None,
        amount_minor: None,
        currency: None,
        linked_card_id: None,
        notify_cardholder: true,
        occurred_at_ms: 1,
        published_at_ms: 0,
    };
    let outcome_json = serde_json::to_string(&answered)?;
    let write = CardWrite {
        card_id: &card,
        idempotency_key: &activate.idempotency_key,
        outcome: &outcome_json,
        rows: vec![(&after, Some(before.version))],
        events: vec![CardEventRow { event_id: event.event_id.clone(), card_id: card.clone(), seq: after.version, payload: serde_json::to_string(&event)?, correlation_id: "corr-dead".into() }],
        audit: Vec::new(),
        correlation_id: "corr-dead",
    };
    assert_eq!(worker.cards.commit(&write).await?, Commit::Applied);
    let calls = processors.lithic.stats().requests;

    producer.send(&activate.card_id, &activate.idempotency_key, &activate).await?;
    let o = answer_to(&outcomes, &activate.idempotency_key).await?;
    assert_eq!((o.status, o.state, o.replayed), (CardOutcomeStatus::Succeeded, Some(CardState::Active), false), "{o:?}");
    assert_eq!(processors.lithic.stats().requests, calls, "the processor already did it: no second call");
    let published = read_events(&env, &events, 2).await?;
    assert_eq!(published.iter().map(|e| e.kind).collect::<Vec<_>>(), [CardEventKind::CardIssued, CardEventKind::CardActivated]);
    assert_eq!(published[1].event_id, event.event_id, "the queued event, under its id");
    let record = worker.store.record("cards", &activate.idempotency_key).await?.context("claim")?;
    assert_eq!(record.state, switchyard_store::RecordState::Completed);
    stop(worker, shutdown).await
}

/// Lithic forgets an idempotency key after 24 hours (here: 1 s). A dead
/// worker's ISSUE claim resumed after that must not be sent again, or the
/// card id gets a second card: the card Lithic holds under our memo is the
/// answer, and a claim Lithic shows no card for goes to a person. Failed
/// before the lookup (two cards for the first card id).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_issue_resumed_after_lithic_forgot_its_key_is_looked_up_not_sent_again() -> Result<()> {
    use switchyard_adapters::cards::lithic::LithicAdapter;
    use switchyard_adapters::cards::CardCall;
    use switchyard_adapters::{CallContext, Secret};
    use switchyard_simulators::lithic::LithicConfig;
    let env = TestEnv::new("cards-forgot").await?;
    let processors = Processors::start_with(LithicConfig { key_retention: Duration::from_secs(1), ..LithicConfig::local() }).await?;
    let mut cfg = config(&env, &processors, "lithic", 500);
    for p in &mut cfg.providers {
        p.key_retention_ms = Some(1_000);
    }
    let shutdown = CancellationToken::new();
    let worker = start_card_worker(cfg, shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let dlq = TopicReader::new(&env.kafka, &env.topic("cards.commands.v1.dlq"))?;
    let lithic = LithicAdapter::new(
        "lithic",
        &processors.lithic.base_url(),
        Secret::new("lithic_sk_test_switchyard"),
        switchyard_adapters::http::Transport::new(Duration::from_secs(5), 4),
    )?;

    // Two ISSUEs a dead worker claimed: the first it sent to Lithic before
    // dying, the second it never sent.
    let (sent, unsent) = (format!("{}card-sent", env.prefix), format!("{}card-unsent", env.prefix));
    let mut commands = Vec::new();
    for card in [&sent, &unsent] {
        let issue = command(card, &format!("{card}-0"), CardAction::Issue);
        let claim = switchyard_store::Claim {
            domain: "cards".into(),
            idempotency_key: issue.idempotency_key.clone(),
            fingerprint: issue.fingerprint().0,
            subject_id: card.clone(),
            provider: "lithic".into(),
            provider_key: lithic.provider_key(&issue.idempotency_key),
            correlation_id: "corr-dead".into(),
            lease_owner: "dead-worker".into(),
            lease_ttl_ms: 1,
        };
        assert!(worker.store.claim(claim).await?.fresh);
        commands.push(issue);
    }
    let spec = commands[0].issue.clone().context("issue part")?;
    let ctx = CallContext { correlation_id: "corr-dead".into(), traceparent: String::new() };
    let first = lithic.call(&CardCall::Issue { card_id: &sent, spec: &spec }, &lithic.provider_key(&commands[0].idempotency_key), &ctx).await?;
    // Past the worker's usable retention (1 s less a call timeout and 1 s).
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    for issue in &commands {
        producer.send(&issue.card_id, &issue.idempotency_key, issue).await?;
    }
    let o = answer_to(&outcomes, &commands[0].idempotency_key).await?;
    assert_eq!((o.status, o.state), (CardOutcomeStatus::Succeeded, Some(CardState::Issued)), "{o:?}");
    assert_eq!(o.processor_reference, first.processor_reference, "the card the dead worker issued");
    let dead = dlq.collect(1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!(String::from_utf8_lossy(&dead.key), unsent, "{:?}", dead.headers);
    assert_eq!(dead.headers.get("dlq-error-class").map(String::as_str), Some("manual_repair"));
    let per_card = processors.oracle.per_card();
    assert_eq!(per_card.get(&sent).map(Vec::len), Some(1), "one card for {sent}: {:?}", per_card.get(&sent));
    assert_eq!(per_card.get(&unsent).map(Vec::len), None, "no card for {unsent}");
    stop(worker, shutdown).await
}
