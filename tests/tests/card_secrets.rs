//! A card's PAN and its PIN never reach a topic, a table, a log line or a
//! DLQ header: a run through both processors, then a scan of everything the
//! run left, the way a bank's data-loss-prevention scanner looks.
//!
//! - Lithic answers as it does for a PCI program (`pan` and `cvv` in every
//!   card), so a PAN is one careless field away; Marqeta's simulator counts
//!   any request that asks for one.
//! - The PIN travels only as the processor-encrypted block the core system
//!   put in the command. It may stay in the command's own bytes (the command
//!   topic, and the retry, held and DLQ topics, which keep original bytes);
//!   anywhere else, in hex or in the base64 Lithic receives, it is a leak.
//! - Scanned: every record (key, payload, headers) of every topic of
//!   `topics.yaml` under this run's prefix, a `pg_dump` of the whole test
//!   database, and every log line the worker wrote at debug level.

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use rand::Rng;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use switchyard_e2e::logs::captured_logs;
use std::time::Duration;
use switchyard_canonical::card::{CardAction, PinSpec, ReplaceReason, ReplaceSpec};
use switchyard_canonical::card_outcome::{CardOutcome, CardOutcomeStatus};
use switchyard_e2e::cards::{by_key, command, config, stop, Processors};
use switchyard_e2e::checks::{CommandProducer, OutcomeReader};
use switchyard_e2e::TestEnv;
use switchyard_simulators::lithic::LithicConfig;
use switchyard_simulators::FaultPlan;
use switchyard_worker::card::run::start_card_worker;
use switchyard_worker::card::{CARD_COMMAND_SCHEMA, CARD_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

/// 16-digit runs on the simulators' test BIN (4111), not part of a longer
/// number: what a PAN looks like in any text. Luhn is not required (the
/// Marqeta simulator's PANs are random digits); masked ones
/// (`411111______1234`) are not PANs.
fn pans_in(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 16 <= bytes.len() {
        let window = &bytes[i..i + 16];
        let bounded = (i == 0 || !bytes[i - 1].is_ascii_digit()) && bytes.get(i + 16).is_none_or(|b| !b.is_ascii_digit());
        if window.starts_with(b"4111") && window.iter().all(u8::is_ascii_digit) && bounded {
            found.push(String::from_utf8_lossy(window).into_owned());
            i += 16;
        } else {
            i += 1;
        }
    }
    found
}

/// One scanned text and where it came from.
struct Seen {
    place: String,
    text: String,
    /// The command's own bytes, where its encrypted PIN block may stay.
    command_bytes: bool,
}

/// Every record of every topic in `topics.yaml` under `prefix`.
async fn every_record(env: &TestEnv) -> Result<Vec<Seen>> {
    let topics = switchyard_bus::topics::TopicsFile::load(&switchyard_localstack::repo_root().join("topics.yaml"))?;
    let mut config = env.kafka.consumer_config();
    config.set("group.id", format!("scan-{}", uuid::Uuid::new_v4())).set("enable.auto.commit", "false");
    let consumer: StreamConsumer = config.create()?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for spec in &topics.topics {
        let topic = env.topic(&spec.name);
        for partition in 0..spec.partitions {
            assignment.add_partition_offset(&topic, partition, rdkafka::Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let command_topic = env.topic("cards.commands.v1");
    let mut seen = Vec::new();
    // Until the bus has been quiet for a while: everything was written
    // before the scan began.
    while let Ok(message) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
        let message = message?;
        let topic = message.topic().to_owned();
        let place = format!("{topic}[{}]@{}", message.partition(), message.offset());
        let command_bytes = topic == command_topic || [".retry", ".held", ".dlq"].iter().any(|s| topic == format!("{command_topic}{s}"));
        seen.push(Seen { place: format!("{place} key"), text: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(), command_bytes: false });
        seen.push(Seen { place: format!("{place} payload"), text: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(), command_bytes });
        if let Some(headers) = message.headers() {
            for h in headers.iter() {
                let text = format!("{}={}", h.key, String::from_utf8_lossy(h.value.unwrap_or_default()));
                seen.push(Seen { place: format!("{place} header {}", h.key), text, command_bytes: false });
            }
        }
    }
    Ok(seen)
}

/// The whole test database as `pg_dump` writes it.
fn every_table() -> Result<Seen> {
    let url = switchyard_localstack::database_url();
    let dump = std::process::Command::new("pg_dump").args(["--data-only", "--no-owner", &url]).output().context("running pg_dump")?;
    ensure!(dump.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&dump.stderr));
    Ok(Seen { place: "pg_dump".into(), text: String::from_utf8_lossy(&dump.stdout).into_owned(), command_bytes: false })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_pan_or_pin_reaches_a_topic_a_table_a_log_line_or_a_dlq_header() -> Result<()> {
    let logs = captured_logs();
    let env = TestEnv::new("card-secrets").await?;
    // Lithic answers with PANs, and every other call fails before acting,
    // so commands (and their PIN blocks) are retried, in place or through
    // the retry topic.
    let faults = FaultPlan { server_error_ratio: 0.5, seed: 20261206, ..FaultPlan::default() };
    let processors = Processors::start_with(LithicConfig { pci_program: true, faults, ..LithicConfig::local() }).await?;
    let producer = CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?;
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let pin_block: String = {
        let mut rng = rand::rng();
        (0..8).map(|_| format!("{:02X}", rng.random::<u8>())).collect()
    };
    let pin_bytes: Vec<u8> = (0..pin_block.len()).step_by(2).filter_map(|i| u8::from_str_radix(&pin_block[i..i + 2], 16).ok()).collect();
    let pin_base64 = base64::engine::general_purpose::STANDARD.encode(&pin_bytes);

    // Each processor in turn as primary: every card lives where it was issued.
    let mut answered = Vec::new();
    for primary in ["lithic", "marqeta"] {
        let shutdown = CancellationToken::new();
        let worker = start_card_worker(config(&env, &processors, primary, 2_000), shutdown.clone()).await?;
        let card = format!("{}{primary}-card", env.prefix);
        let mut set_pin = command(&card, &format!("{card}-pin"), CardAction::SetPin);
        set_pin.pin = Some(PinSpec { encrypted_pin_block: Some(pin_block.clone()), hosted_flow_token: None });
        let mut replace = command(&card, &format!("{card}-replace"), CardAction::Replace);
        replace.replace = Some(ReplaceSpec { reason: ReplaceReason::Stolen, new_card_id: format!("{card}-new"), shipping: None });
        // A PIN for a card never issued: refused, with its PIN in the command.
        let mut stray_pin = command(&format!("{card}-ghost"), &format!("{card}-ghost-pin"), CardAction::SetPin);
        stray_pin.pin = set_pin.pin.clone();
        let sequence = [
            command(&card, &format!("{card}-0"), CardAction::Issue),
            command(&card, &format!("{card}-1"), CardAction::Activate),
            set_pin.clone(),
            set_pin,
            replace,
            stray_pin,
        ];
        for cmd in &sequence {
            producer.send(&cmd.card_id, &cmd.idempotency_key, cmd).await?;
        }
        let got = by_key(outcomes.collect::<CardOutcome>(sequence.len(), Duration::from_secs(90)).await?);
        let pinned = &got[&format!("{card}-pin")];
        ensure!(pinned.iter().all(|o| o.status == CardOutcomeStatus::Succeeded), "PIN set at {primary}: {pinned:?}");
        answered.extend(got.into_values().flatten());
        stop(worker, shutdown).await?;
    }
    ensure!(processors.lithic.stats().injected_faults > 0, "the fault plan made the worker retry");
    let issued = processors.oracle.cards();
    ensure!(issued.len() >= 4, "cards issued and replaced at both processors: {}", issued.len());

    let mut seen = every_record(&env).await?;
    ensure!(seen.iter().any(|s| s.command_bytes && s.text.contains(&pin_block)), "the scan reads the commands (else it proves nothing)");
    seen.push(every_table()?);
    let log_text = logs.text();
    ensure!(log_text.contains(&env.prefix), "the worker's log lines were captured");
    seen.push(Seen { place: "logs".into(), text: log_text, command_bytes: false });
    seen.extend(answered.iter().map(|o| Seen { place: format!("outcome {}", o.idempotency_key), text: format!("{o:?}"), command_bytes: false }));

    let mut leaks = Vec::new();
    for s in &seen {
        for pan in pans_in(&s.text) {
            leaks.push(format!("PAN {pan} in {}", s.place));
        }
        let pin_here = s.text.to_ascii_uppercase().contains(&pin_block) || s.text.contains(&pin_base64);
        if pin_here && !s.command_bytes {
            leaks.push(format!("PIN block in {}", s.place));
        }
    }
    assert!(leaks.is_empty(), "{} leaks, first: {:?}", leaks.len(), leaks.iter().take(10).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn the_pan_detector_finds_pans_and_not_masks_or_timestamps() {
    assert_eq!(pans_in("x 4111110000000016 y"), ["4111110000000016"]);
    assert_eq!(pans_in("pan\":\"4111000000001234\""), ["4111000000001234"]);
    assert!(pans_in("411111______0016 1796578874897 41111100000000160 1234111100000000").is_empty());
}
