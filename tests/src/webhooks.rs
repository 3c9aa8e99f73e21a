//! What the webhook tests share: where to post, what reached the bus, and
//! the independent reference signers.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_bus::AvroDecoder;
use switchyard_canonical::ProviderEvent;
use switchyard_ingester::{RunningIngester, PROVIDER_EVENT_SCHEMA};
use switchyard_localstack::{repo_root, LocalStack, TopicReader};

pub fn url(ingester: &RunningIngester, provider: &str) -> String {
    format!("http://{}/webhooks/{provider}", ingester.addr)
}

/// Every provider event on `topic` (with its key) until `idle` passes
/// without one after `expect` arrived: anything more would be a duplicate.
/// Checks the `provider-event-id` header against the event.
pub async fn drain(stack: &LocalStack, topic: &str, expect: usize, idle: Duration) -> Result<Vec<(String, ProviderEvent)>> {
    let reader = TopicReader::new(&stack.kafka, topic)?;
    let decoder = AvroDecoder::new(stack.registry_client.clone(), PROVIDER_EVENT_SCHEMA)?;
    let mut records = reader.read_up_to(expect, Duration::from_secs(60)).await?;
    records.extend(reader.read_up_to(usize::MAX, idle).await?);
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let event: ProviderEvent = decoder.decode(&r.payload).await.context("decoding a provider event")?;
        let id = r.headers.get("provider-event-id").cloned().unwrap_or_default();
        if id != event.event_id {
            bail!("provider-event-id header {id:?} differs from the event's id {:?}", event.event_id);
        }
        out.push((String::from_utf8_lossy(&r.key).into_owned(), event));
    }
    Ok(out)
}

/// Runs `tests/reference/sign_webhook.py` (Python's `hmac`, the
/// `standardwebhooks` package, `cryptography`), an implementation of each
/// scheme that shares no code with ours; returns the headers to send.
pub fn reference_sign(scheme: &str, key: &str, id: &str, body: &[u8]) -> Result<Vec<(String, String)>> {
    let dir = std::env::temp_dir().join(format!("switchyard-ref-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let body_path = dir.join("body.json");
    std::fs::write(&body_path, body)?;
    let out = std::process::Command::new("python3")
        .arg(repo_root().join("tests/reference/sign_webhook.py"))
        .args([scheme, key, id])
        .arg(&body_path)
        .output()
        .context("python3 is needed for the reference signers (ops/scripts/test.sh installs its packages)")?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!("reference signer failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let headers: BTreeMap<String, String> = serde_json::from_slice(&out.stdout)?;
    Ok(headers.into_iter().collect())
}
