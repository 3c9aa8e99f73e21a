//! Marqeta's webhooks through the ingester: batches of up to ten events
//! with HTTP Basic credentials, sent by the Marqeta simulator itself (not a
//! hand-built body), some batches twice, events delayed out of order, the
//! first deliveries refused so Marqeta retries. Each event reaches
//! `cards.provider-events.v1` exactly once; a delivery with the wrong
//! credentials is refused and publishes nothing.

use anyhow::Result;
use base64::Engine as _;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use switchyard_e2e::webhooks::{drain, url};
use switchyard_ingester::config::{KeyConfig, ProviderConfig};
use switchyard_ingester::start_ingester;
use switchyard_localstack::LocalStack;
use switchyard_simulators::marqeta::{spawn_marqeta, MarqetaConfig, MarqetaWebhook};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_of_marqetas_batches_is_published_once_and_wrong_credentials_publish_nothing() -> Result<()> {
    let stack = LocalStack::new("marqeta-hooks").await?;
    let shutdown = CancellationToken::new();
    let providers = BTreeMap::from([("marqeta".to_owned(), ProviderConfig::new("cards", vec![KeyConfig::inline("hookuser:hookpass")]))]);
    let ingester = start_ingester(stack.ingester_config(providers), shutdown.clone()).await?;

    let mut hook = MarqetaWebhook::new(url(&ingester, "marqeta"), "hookuser", "hookpass");
    hook.duplicate_ratio = 0.5;
    hook.max_jitter = Duration::from_millis(300);
    hook.backoff = Duration::from_millis(50);
    let sim = spawn_marqeta(MarqetaConfig { webhook: Some(hook), ..MarqetaConfig::local() }).await?;
    let http = reqwest::Client::new();
    // Transition tokens are Marqeta's event ids, and the dedup store outlives
    // a test run: each run's are its own.
    let run = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let cards = 35;
    for i in 0..cards {
        let body = serde_json::json!({"token": format!("tok-{i}"), "user_token": "user-1", "card_product_token": "prod-1",
            "metadata": {"switchyard_card_id": format!("card-{i}")}});
        let r = http
            .post(format!("{}/v3/cards", sim.base_url()))
            .basic_auth("app_token_switchyard", Some("access_token_switchyard"))
            .json(&body)
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 201, "card {i}");
    }
    for i in 0..cards / 2 {
        let body = serde_json::json!({"card_token": format!("tok-{i}"), "state": "ACTIVE", "channel": "API", "reason_code": "00",
            "token": format!("transition-{run}-{i}")});
        let r = http
            .post(format!("{}/v3/cardtransitions", sim.base_url()))
            .basic_auth("app_token_switchyard", Some("access_token_switchyard"))
            .json(&body)
            .send()
            .await?;
        assert!(r.status().is_success(), "activate {i}: {}", r.status());
    }

    // A forged delivery: right shape, wrong password.
    let forged = serde_json::json!({"cardtransitions": [{"token": "forged-1", "card_token": "tok-0", "type": "state.terminated",
        "created_time": "2026-12-06T10:00:00Z", "state": "TERMINATED"}]});
    let wrong = base64::engine::general_purpose::STANDARD.encode("hookuser:guess");
    let r = http.post(url(&ingester, "marqeta")).header("Authorization", format!("Basic {wrong}")).json(&forged).send().await?;
    assert_eq!(r.status().as_u16(), 401);
    let r = http.post(url(&ingester, "marqeta")).json(&forged).send().await?;
    assert_eq!(r.status().as_u16(), 400, "no credentials at all");

    let expected = cards + cards / 2;
    let published = drain(&stack, &stack.topic("cards.provider-events.v1"), expected, Duration::from_secs(4)).await?;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (key, e) in &published {
        assert_eq!(key, &e.subject_id, "keyed by the card token");
        assert_eq!(e.provider, "marqeta");
        *counts.entry(e.event_id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    assert!(!counts.contains_key("forged-1"), "the forged event reached the bus");
    assert_eq!(published.len(), expected, "one event per card issued and per activation: {counts:?}");
    assert!(ingester.metrics.duplicate_count("marqeta") > 0, "some batches came twice and were absorbed");
    sim.shutdown().await;
    shutdown.cancel();
    Ok(())
}
