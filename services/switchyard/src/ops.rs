//! `switchyard dlq ...` and `switchyard trace ...`: argument parsing and
//! printing over `switchyard-ops`, where the work is done.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchyard_bus::topics::TopicsFile;
use switchyard_bus::{KafkaConfig, Publisher, RegistryClient};
use switchyard_ops::dlq::{self, ReplayOptions, Selection};
use switchyard_ops::read::ReadOptions;
use switchyard_ops::table::colour_on_stdout;
use switchyard_ops::{parse_duration, trace, view};
use switchyard_store::Store;

/// Where the flows live: broker, store, topic names.
#[derive(Args)]
pub(crate) struct Target {
    /// Kafka bootstrap servers.
    #[arg(long, global = true, env = "SWITCHYARD_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// The store with the audit log and the replay ledger (postgres://... or sqlite:...).
    #[arg(long, global = true, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// The topic inventory; DLQ and traced topics come from here.
    #[arg(long, global = true, default_value = "topics.yaml")]
    topics_file: PathBuf,
    /// Prefix of every topic name (a local stack's per-run prefix); empty in production.
    #[arg(long, global = true, default_value = "")]
    prefix: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Stop reading a topic after this long without a record (tansu reports
    /// no reliable end of partition in every case).
    #[arg(long, global = true, default_value = "3s", value_parser = parse_duration)]
    idle: Duration,
}

impl Target {
    fn kafka(&self) -> KafkaConfig {
        KafkaConfig::new(self.brokers.clone(), "switchyard-ops")
    }

    fn topics(&self) -> Result<TopicsFile> {
        Ok(TopicsFile::load(&self.topics_file)?.with_prefix(&self.prefix))
    }

    fn read_options(&self) -> ReadOptions {
        ReadOptions { idle: self.idle, ..ReadOptions::default() }
    }

    async fn store(&self) -> Result<Store> {
        let url = self.database_url.as_deref().context("--database-url (or DATABASE_URL) is required")?;
        Store::connect(url).await.with_context(|| format!("connecting to the store at {url}"))
    }

    /// The store if one is configured: `list` and `show` work without it.
    async fn optional_store(&self) -> Result<Option<Store>> {
        match &self.database_url {
            Some(_) => Ok(Some(self.store().await?)),
            None => Ok(None),
        }
    }
}

#[derive(Args)]
pub(crate) struct SelectionArgs {
    /// Only this DLQ partition.
    #[arg(long)]
    partition: Option<i32>,
    /// First DLQ offset (inclusive).
    #[arg(long)]
    from_offset: Option<i64>,
    /// Last DLQ offset (inclusive).
    #[arg(long)]
    to_offset: Option<i64>,
    /// Only messages with this key (subject id).
    #[arg(long)]
    key: Option<String>,
    /// Substring of the reason (case-insensitive), or an error class.
    #[arg(long)]
    reason: Option<String>,
    /// Dead-lettered at least this long ago (90s, 15m, 2h, 7d).
    #[arg(long, value_parser = parse_duration)]
    older_than: Option<Duration>,
    /// Dead-lettered at most this long ago.
    #[arg(long, value_parser = parse_duration)]
    newer_than: Option<Duration>,
    /// At most this many, oldest first.
    #[arg(long)]
    limit: Option<usize>,
}

impl From<SelectionArgs> for Selection {
    fn from(a: SelectionArgs) -> Self {
        Selection {
            partition: a.partition,
            from_offset: a.from_offset,
            to_offset: a.to_offset,
            key: a.key,
            reason: a.reason,
            older_than: a.older_than,
            newer_than: a.newer_than,
            limit: a.limit,
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum DlqCommand {
    /// Every DLQ topic of topics.yaml with its depth, replayed count, age and top reason.
    List,
    /// The messages of a DLQ topic with their failure headers decoded.
    Show {
        /// DLQ topic, without the prefix.
        #[arg(default_value = "payouts.commands.v1.dlq")]
        topic: String,
        #[command(flatten)]
        selection: SelectionArgs,
        /// Also print every header of each message.
        #[arg(long)]
        headers: bool,
    },
    /// Send selected messages back to their original topic.
    Replay {
        /// DLQ topic, without the prefix.
        #[arg(default_value = "payouts.commands.v1.dlq")]
        topic: String,
        #[command(flatten)]
        selection: SelectionArgs,
        /// Replay everything on the topic (required when no filter is given).
        #[arg(long)]
        all: bool,
        /// Show what would be replayed; publish and record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replay messages already replayed before (the worker's idempotency
        /// store answers repeats without a second vendor call).
        #[arg(long)]
        force: bool,
        /// Messages per second at most.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Who is replaying, for the audit log.
        #[arg(long, env = "USER", default_value = "unknown")]
        operator: String,
    },
}

#[derive(Args)]
pub(crate) struct DlqArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Args)]
pub(crate) struct TraceArgs {
    /// A correlation id, a subject id (payout id, applicant id, ...) or an
    /// onboarding flow id.
    id: String,
    #[command(flatten)]
    target: Target,
    /// Schema registry, to decode outcomes (status, provider, error),
    /// provider events, ledger postings, discrepancies, KYC/AML/fraud
    /// outcomes and onboarding transitions.
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    registry_url: Option<String>,
    /// Only events of the last ... (90s, 15m, 2h, 7d).
    #[arg(long, value_parser = parse_duration)]
    since: Option<Duration>,
    /// Read every topic from its beginning, even where the store records
    /// message positions (for records older than that, or positions lost).
    #[arg(long)]
    scan: bool,
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) async fn run_dlq(args: DlqArgs) -> Result<()> {
    let target = &args.target;
    let kafka = target.kafka();
    let now = switchyard_canonical::now_ms();
    match args.command {
        DlqCommand::List => {
            let topics: Vec<String> = target.topics()?.topics.into_iter().map(|t| t.name).filter(|n| n.ends_with(".dlq")).collect();
            let store = target.optional_store().await?;
            let summaries = dlq::list(&kafka, store.as_ref(), &topics, target.read_options()).await?;
            if target.json {
                return print_json(&summaries);
            }
            print!("{}", view::dlq_list(&summaries, now).render(colour_on_stdout()));
        }
        DlqCommand::Show { topic, selection, headers } => {
            let store = target.optional_store().await?;
            let topic = format!("{}{topic}", target.prefix);
            let messages = dlq::show(&kafka, store.as_ref(), &topic, &selection.into(), target.read_options()).await?;
            if target.json {
                return print_json(&messages);
            }
            let colour = colour_on_stdout();
            print!("{}", view::dlq_messages(&messages, now).render(colour));
            if headers {
                println!();
                print!("{}", view::dlq_headers(&messages).render(colour));
            }
        }
        DlqCommand::Replay { topic, selection, all, dry_run, force, rate, operator } => {
            let selection: Selection = selection.into();
            if selection.is_everything() && !all {
                bail!("no filter given: pass --all to replay every message, or narrow with --key, --reason, --from-offset, ...");
            }
            if rate.is_nan() || rate <= 0.0 {
                bail!("--rate must be positive");
            }
            let store = target.store().await?;
            let publisher = Publisher::new(&kafka)?;
            let topic = format!("{}{topic}", target.prefix);
            let options = ReplayOptions { selection, dry_run, force, rate_per_sec: rate, operator };
            let show_progress = !target.json && std::io::stderr().is_terminal();
            let report = dlq::replay(&kafka, &publisher, &store, &topic, &options, target.read_options(), |done, total| {
                if show_progress {
                    eprint!("\r{} {done}/{total}", if dry_run { "checked" } else { "replayed" });
                    let _ = std::io::stderr().flush();
                }
            })
            .await?;
            if show_progress && !report.items.is_empty() {
                eprintln!();
            }
            if target.json {
                print_json(&report)?;
            } else {
                print!("{}", view::replay(&report).render(colour_on_stdout()));
                let verb = if dry_run { "dry run, nothing published" } else { "done" };
                println!(
                    "{verb}: {} replayed, {} would replay, {} skipped as already replayed, {} failed",
                    report.replayed(),
                    report.count(|a| matches!(a, dlq::ReplayAction::WouldReplay { .. })),
                    report.skipped(),
                    report.failed()
                );
            }
            if report.failed() > 0 {
                bail!("{} message(s) could not be replayed", report.failed());
            }
        }
    }
    Ok(())
}

pub(crate) async fn run_trace(args: TraceArgs) -> Result<()> {
    let target = &args.target;
    let store = target.store().await?;
    let decoders = match &args.registry_url {
        Some(url) => Some(trace::Decoders::new(Arc::new(RegistryClient::new(url.clone())?))?),
        None => None,
    };
    let topics = target.topics()?.topics.into_iter().map(|t| t.name).collect();
    let request = trace::TraceRequest {
        id: &args.id,
        topics,
        read: target.read_options(),
        decoders: decoders.as_ref(),
        since: args.since,
        scan_all: args.scan,
    };
    let found = trace::trace(&target.kafka(), &store, request).await?;
    if target.json {
        return print_json(&found);
    }
    if found.events.is_empty() {
        bail!("nothing found for {:?} in the audit log or on the topics", args.id);
    }
    println!("subjects: {}   correlation ids: {}", found.subject_ids.join(", "), found.correlation_ids.join(", "));
    print!("{}", view::trace(&found).render(colour_on_stdout()));
    if !found.missing_topics.is_empty() {
        println!("(not on the broker, skipped: {})", found.missing_topics.join(", "));
    }
    if !found.scanned_topics.is_empty() {
        println!("(read in full, no recorded positions: {})", found.scanned_topics.join(", "));
    }
    Ok(())
}
