//! The readiness checks every service registers on its [`Health`]: broker,
//! schema registry, store, producer. Each is cheap enough to run on every
//! probe.

use crate::health::{Health, CHECK_TIMEOUT};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::sync::Arc;
use switchyard_bus::{BusError, KafkaConfig, Publisher};
use tokio_util::sync::CancellationToken;

/// The broker answers a metadata request for `topic` (one topic, not the
/// cluster's whole catalogue). The client is created once and kept, so a
/// probe costs one request, not a new connection.
pub fn broker(health: &Health, kafka: &KafkaConfig, topic: &str) -> Result<(), BusError> {
    let mut config = kafka.consumer_config();
    // It never subscribes, so it never joins the group; without the
    // instance id it cannot be mistaken for this process's member either.
    config.remove("group.instance.id");
    let client: Arc<BaseConsumer> = Arc::new(config.create()?);
    let topic = topic.to_owned();
    health.check("broker", move || {
        let (client, topic) = (client.clone(), topic.clone());
        async move {
            let fetched = tokio::task::spawn_blocking(move || client.fetch_metadata(Some(&topic), CHECK_TIMEOUT.saturating_sub(std::time::Duration::from_millis(300)))).await;
            match fetched {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("metadata request: {e}")),
                Err(e) => Err(format!("metadata request: {e}")),
            }
        }
    });
    Ok(())
}

/// The schema registry answers its root resource (`GET /`, `{}` on
/// Confluent's and on the stand-in).
pub fn registry(health: &Health, base_url: &str) {
    let url = format!("{}/", base_url.trim_end_matches('/'));
    let http = reqwest::Client::builder().timeout(CHECK_TIMEOUT).build().unwrap_or_default();
    health.check("registry", move || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let reply = http.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
            if reply.status().is_success() {
                Ok(())
            } else {
                Err(format!("{url}: HTTP {}", reply.status()))
            }
        }
    });
}

/// The database runs `SELECT 1` on a pooled connection.
pub fn store(health: &Health, pool: sqlx::AnyPool) {
    health.check("store", move || {
        let pool = pool.clone();
        async move { sqlx::query("SELECT 1").execute(&pool).await.map(|_| ()).map_err(|e| e.to_string()) }
    });
}

/// A fatal producer error (fenced, idempotence sequence lost) never heals:
/// readiness fails and the process exits so it restarts with a new producer.
pub fn producer(health: &Health, publisher: Publisher, shutdown: CancellationToken) {
    health.watch_fatal("producer", move || publisher.fatal_error(), shutdown);
}
