//! Harness pieces for the check domains (KYC, AML, fraud): a worker config
//! against the local stack, a producer of any command type, and a reader
//! that decodes any outcome type.

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use switchyard_bus::{AvroDecoder, AvroEncoder, Outbound, Publisher};
use switchyard_localstack::{database_url, LocalStack, TopicReader};
use switchyard_worker::check_config::{CheckProviderConfig, CheckTopics, CheckVendorKind, CheckWorkerConfig};
use switchyard_worker::config::{Environment, SecretSource};
use switchyard_worker::retry::RetryPolicy;

/// A provider entry pointing at a simulator.
pub fn provider(name: &str, kind: CheckVendorKind, base_url: &str, key: &str) -> CheckProviderConfig {
    CheckProviderConfig {
        name: name.into(),
        kind,
        base_url: base_url.into(),
        api_key: SecretSource::inline(key),
        api_secret: None,
        level_name: None,
        dataset: None,
        timeout_ms: 2000,
        max_concurrency: 32,
        http2_prior_knowledge: false,
        poll_interval_ms: 50,
        poll_budget_ms: 5000,
        tls: None,
    }
}

/// A check worker on this stack's prefixed `<domain>` topics.
pub fn check_config(env: &LocalStack, domain: &str, providers: Vec<CheckProviderConfig>, primary: &str) -> CheckWorkerConfig {
    let mut kafka = env.kafka.clone();
    kafka.group_id = format!("{}{domain}-worker", env.prefix);
    let secondary = providers.iter().map(|p| p.name.clone()).find(|n| n != primary);
    CheckWorkerConfig {
        secret_check_every_ms: 5_000,
        environment: Environment::Sandbox,
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: database_url(),
        topics: Some(CheckTopics {
            commands: env.topic(&format!("{domain}.commands.v1")),
            outcomes: env.topic(&format!("{domain}.outcomes.v1")),
        }),
        providers,
        routing: switchyard_routing::RoutingPolicy {
            mode: switchyard_routing::DomainMode::On,
            primary: primary.into(),
            secondary,
            breaker: switchyard_routing::BreakerConfig::default(),
            rollout: None,
            shadow: None,
            segments: Vec::new(),
        },
        admin_bind: None,
        max_in_flight: 200,
        max_retry_rounds: 3,
        retry: RetryPolicy { base_delay_ms: 20, max_delay_ms: 200, retry_topic_delay_ms: 300, ..RetryPolicy::default() },
    }
}

/// Publishes commands of one schema the way a core system would.
pub struct CommandProducer {
    publisher: Publisher,
    encoder: AvroEncoder,
    topic: String,
}

impl CommandProducer {
    pub async fn new(env: &LocalStack, domain: &str, schema: &str) -> Result<Self> {
        let topic = env.topic(&format!("{domain}.commands.v1"));
        let encoder = AvroEncoder::register(&env.registry_client, &topic, schema).await?;
        Ok(Self { publisher: Publisher::new(&env.kafka)?, encoder, topic })
    }

    pub async fn send<T: Serialize>(&self, key: &str, idempotency_key: &str, command: &T) -> Result<()> {
        let record = Outbound {
            topic: self.topic.clone(),
            key: Some(key.as_bytes().to_vec()),
            payload: self.encoder.encode(command)?,
            headers: vec![
                ("correlation-id".into(), format!("corr-{idempotency_key}").into_bytes()),
                ("idempotency-key".into(), idempotency_key.as_bytes().to_vec()),
            ],
        };
        self.publisher.publish(&record).await?;
        Ok(())
    }
}

/// Reads `<domain>.outcomes.v1` from the beginning and decodes each value.
pub struct OutcomeReader {
    reader: TopicReader,
    decoder: AvroDecoder,
}

impl OutcomeReader {
    pub fn new(env: &LocalStack, domain: &str, schema: &str) -> Result<Self> {
        let reader = TopicReader::new(&env.kafka, &env.topic(&format!("{domain}.outcomes.v1")))?;
        Ok(Self { reader, decoder: AvroDecoder::new(env.registry_client.clone(), schema)? })
    }

    /// `n` outcomes with their `correlation-id` header, or an error after `timeout`.
    pub async fn collect<T: DeserializeOwned>(&self, n: usize, timeout: Duration) -> Result<Vec<(T, String)>> {
        let mut out = Vec::with_capacity(n);
        for record in self.reader.collect(n, timeout).await? {
            let corr = record.headers.get("correlation-id").cloned().unwrap_or_default();
            out.push((self.decoder.decode::<T>(&record.payload).await?, corr));
        }
        Ok(out)
    }
}
