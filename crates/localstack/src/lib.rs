//! The local stack, in-process. Each [`LocalStack`] gets its own topic prefix
//! on the broker and its own schema registry stand-in, so tests, the demo and
//! the benchmark run side by side without seeing each other's data.
//!
//! Environment: `SWITCHYARD_TEST_BROKERS` (default 127.0.0.1:9092, started by
//! `ops/scripts/broker.sh`), `DATABASE_URL` (default the local PostgreSQL).

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_bus::topics::TopicsFile;
use switchyard_bus::{AvroDecoder, AvroEncoder, KafkaConfig, Outbound, Publisher, RegistryClient};
use switchyard_canonical::{Beneficiary, PayoutCommand, PayoutOutcome, PayoutRail};
use switchyard_schema_registry::{RegistryConfig, RegistryHandle};
use switchyard_worker::config::{Environment, PayoutTopics};
use switchyard_worker::retry::RetryPolicy;
use switchyard_worker::run::{PAYOUT_COMMAND_SCHEMA, PAYOUT_OUTCOME_SCHEMA};
use switchyard_worker::{PayoutWorkerConfig, ProviderConfig, ProviderKind, SecretSource};


/// The Stripe Connect account local workers pay out from.
pub const STRIPE_CONNECTED_ACCOUNT: &str = "acct_1SwitchyardLocal";

pub fn brokers() -> String {
    std::env::var("SWITCHYARD_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The checkout holding topics.yaml: the current directory if it has one,
/// else the checkout this crate was built from.
pub fn repo_root() -> PathBuf {
    match std::env::current_dir() {
        Ok(cwd) if cwd.join("topics.yaml").exists() => cwd,
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    }
}

/// One isolated slice of the broker: prefixed topics, a private registry.
pub struct LocalStack {
    pub prefix: String,
    pub registry: RegistryHandle,
    pub registry_client: Arc<RegistryClient>,
    pub kafka: KafkaConfig,
}

impl LocalStack {
    /// A stack on the default broker whose topics carry a unique prefix.
    pub async fn new(name: &str) -> Result<Self> {
        let prefix = format!("{name}-{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Self::open(prefix, brokers()).await
    }

    /// A stack on `brokers` with topics named `<prefix><topic>`; an empty
    /// prefix uses the real names of topics.yaml.
    pub async fn open(prefix: String, brokers: String) -> Result<Self> {
        let registry = switchyard_schema_registry::serve(RegistryConfig::local()).await?;
        let registry_client = Arc::new(RegistryClient::new(registry.base_url())?);
        let kafka = KafkaConfig::new(brokers, format!("{prefix}payout-worker"));
        let topics = TopicsFile::load(&repo_root().join("topics.yaml"))?.with_prefix(&prefix);
        // topics.yaml asks for production's 3 replicas; the local stack runs
        // on one broker (tansu), so it asks for one. Not read from cluster
        // metadata: a metadata request for all topics grows with every test
        // run's topics on a long-lived local broker and timed out under load.
        let topics = topics.capped_replication(1);
        topics.create_all(&kafka).await.context("creating topics; is the broker running? (ops/scripts/test.sh starts it)")?;
        // The registry holds every subject to its topic's level, as
        // production's registry does once `topics.yaml` is applied.
        let text = std::fs::read_to_string(repo_root().join("topics.yaml"))?;
        for (subject, level) in switchyard_bus::topics::subject_levels(&text, &prefix)? {
            registry_client.set_compatibility(&subject, level.as_str()).await?;
        }
        Ok(Self { prefix, registry, registry_client, kafka })
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A webhook ingester config wired to this env: every domain's
    /// provider-events topic under this stack's prefix, the test database,
    /// an ephemeral port and a 3 s publish timeout.
    pub fn ingester_config(
        &self,
        providers: std::collections::BTreeMap<String, switchyard_ingester::config::ProviderConfig>,
    ) -> switchyard_ingester::config::IngesterConfig {
        let topics = ["payouts", "cards", "kyc", "aml", "fraud"]
            .into_iter()
            .map(|d| (d.to_owned(), self.topic(&format!("{d}.provider-events.v1"))))
            .collect();
        switchyard_ingester::config::IngesterConfig {
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            kafka: self.kafka.clone(),
            schema_registry_url: self.registry.base_url(),
            database_url: database_url(),
            topics,
            max_body_bytes: 64 * 1024,
            lease_ms: 30_000,
            publish_timeout_ms: 3_000,
            trusted_proxies: Vec::new(),
            providers,
        }
    }

    /// A worker config wired to this env and the given simulators.
    /// Stripe pays from [`STRIPE_CONNECTED_ACCOUNT`].
    pub fn worker_config(&self, stripe_url: &str, adyen_url: Option<&str>, primary: &str) -> PayoutWorkerConfig {
        let mut providers = vec![ProviderConfig {
            name: "stripe".into(),
            kind: ProviderKind::Stripe,
            base_url: stripe_url.into(),
            api_key: SecretSource::inline("sk_test_switchyard"),
            balance_account_id: None,
            connected_account: Some(STRIPE_CONNECTED_ACCOUNT.into()),
            key_retention_ms: None,
            timeout_ms: 2000,
            max_concurrency: 256,
            // The simulators serve HTTP/1 and HTTP/2; the payout path uses 2.
            http2_prior_knowledge: true,
            sandbox_only: false,
            tls: None,
            truelayer: None,
        }];
        if let Some(url) = adyen_url {
            providers.push(ProviderConfig {
                name: "adyen".into(),
                kind: ProviderKind::Adyen,
                base_url: url.into(),
                api_key: SecretSource::inline("adyen_test_switchyard"),
                balance_account_id: Some("BA00000000000000000000001".into()),
                connected_account: None,
                key_retention_ms: None,
                timeout_ms: 2000,
                max_concurrency: 256,
                http2_prior_knowledge: true,
                sandbox_only: false,
                tls: None,
                truelayer: None,
            });
        }
        PayoutWorkerConfig {
            environment: Environment::Sandbox,
            kafka: self.kafka.clone(),
            schema_registry_url: self.registry.base_url(),
            database_url: database_url(),
            topics: PayoutTopics {
                commands: self.topic("payouts.commands.v1"),
                outcomes: self.topic("payouts.outcomes.v1"),
                circuit_events: self.topic("routing.circuit-events.v1"),
            },
            providers,
            routing: switchyard_routing::RoutingPolicy {
                mode: switchyard_routing::DomainMode::On,
                primary: primary.into(),
                // With both vendors configured, the other one is the secondary.
                secondary: adyen_url.map(|_| if primary == "stripe" { "adyen" } else { "stripe" }.to_owned()),
                breaker: switchyard_routing::BreakerConfig::default(),
                rollout: None,
                shadow: None,
                segments: Vec::new(),
            },
            admin_bind: None,
            catalog_file: None,
            max_in_flight: 2000,
            max_retry_rounds: 3,
            retry: RetryPolicy { base_delay_ms: 20, max_delay_ms: 500, retry_topic_delay_ms: 500, ..RetryPolicy::default() },
            lease_ttl_ms: 15_000,
            secret_check_every_ms: 5_000,
        }
    }

    /// A core-banking stand-in publishing commands the way any Confluent
    /// client would: Avro, framed, schema registered under `<topic>-value`.
    pub async fn core_producer(&self) -> Result<CoreProducer> {
        let topic = self.topic("payouts.commands.v1");
        let encoder = AvroEncoder::register(&self.registry_client, &topic, PAYOUT_COMMAND_SCHEMA).await?;
        Ok(CoreProducer { publisher: Publisher::new(&self.kafka)?, encoder, topic })
    }

    /// Reads outcomes from the beginning with a fresh group.
    pub fn outcome_reader(&self) -> Result<TopicReader> {
        TopicReader::new(&self.kafka, &self.topic("payouts.outcomes.v1"))
    }

    pub fn outcome_decoder(&self) -> Result<AvroDecoder> {
        Ok(AvroDecoder::new(self.registry_client.clone(), PAYOUT_OUTCOME_SCHEMA)?)
    }

    /// Collects at least `n` decoded outcomes, or fails after `timeout`.
    pub async fn collect_outcomes(&self, reader: &TopicReader, n: usize, timeout: Duration) -> Result<Vec<PayoutOutcome>> {
        let decoder = self.outcome_decoder()?;
        let mut out = Vec::with_capacity(n);
        for record in reader.collect(n, timeout).await? {
            out.push(decoder.decode::<PayoutOutcome>(&record.payload).await?);
        }
        Ok(out)
    }
}

pub struct CoreProducer {
    pub publisher: Publisher,
    pub encoder: AvroEncoder,
    pub topic: String,
}

impl CoreProducer {
    pub async fn send(&self, command: &PayoutCommand) -> Result<()> {
        let payload = self.encoder.encode(command)?;
        self.send_raw(command.payout_id.as_bytes(), payload, &command.idempotency_key).await
    }

    pub async fn send_raw(&self, key: &[u8], payload: Vec<u8>, idempotency_key: &str) -> Result<()> {
        let record = Outbound {
            topic: self.topic.clone(),
            key: Some(key.to_vec()),
            payload,
            headers: vec![
                ("correlation-id".into(), format!("corr-{idempotency_key}").into_bytes()),
                ("idempotency-key".into(), idempotency_key.as_bytes().to_vec()),
            ],
        };
        self.publisher.publish(&record).await?;
        Ok(())
    }
}

/// A consumed record with its headers, for assertions.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

pub struct TopicReader {
    consumer: StreamConsumer,
}

impl TopicReader {
    /// Reads every partition of `topic` from its beginning. The partitions
    /// are assigned, not subscribed: a reader in a consumer group re-reads
    /// from its last commit after a rebalance (a missed heartbeat on a busy
    /// machine is enough), and a test counting copies on the bus would count
    /// its own re-reads.
    pub fn new(kafka: &KafkaConfig, topic: &str) -> Result<Self> {
        let mut config = kafka.consumer_config();
        config.set("group.id", format!("reader-{}", uuid::Uuid::new_v4())).set("enable.auto.commit", "false");
        let consumer: StreamConsumer = config.create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> = metadata.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        if partitions.is_empty() {
            bail!("topic {topic} has no partitions (not created?)");
        }
        let mut assignment = rdkafka::TopicPartitionList::new();
        for partition in partitions {
            assignment.add_partition_offset(topic, partition, rdkafka::Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        Ok(Self { consumer })
    }

    pub async fn collect(&self, n: usize, timeout: Duration) -> Result<Vec<Record>> {
        let out = self.read_up_to(n, timeout).await?;
        if out.len() < n {
            bail!("timed out with {} of {n} records", out.len());
        }
        Ok(out)
    }

    /// Reads until `n` records arrived or `timeout` passed, whichever is first.
    pub async fn read_up_to(&self, n: usize, timeout: Duration) -> Result<Vec<Record>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let Ok(message) = tokio::time::timeout(left, self.consumer.recv()).await else { continue };
            let message = message?;
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Record {
                key: message.key().unwrap_or_default().to_vec(),
                payload: message.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
        Ok(out)
    }

}

pub fn command(payout_id: &str, key: &str, amount_minor: i64) -> PayoutCommand {
    PayoutCommand {
        payout_id: payout_id.into(),
        idempotency_key: key.into(),
        amount_minor,
        currency: "EUR".into(),
        beneficiary: Beneficiary { name: "Ada Lovelace".into(), iban: "DE89370400440532013000".into(), country: "DE".into() },
        rail: PayoutRail::Standard,
        reference: format!("payout {payout_id}"),
        requested_at_ms: switchyard_canonical::now_ms(),
        tenant_id: None,
        risk_tier: None,
    }
}

/// Path of a workspace binary built next to this test executable.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("test executable has no parent dir")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!("{} not found; build it first (`cargo build -p {name}`; ops/scripts/test.sh does)", path.display());
    }
    Ok(path)
}
