//! `webhook-ingester bench`: verified + deduplicated + published callbacks per
//! second and latency percentiles, beside a bare axum handler answering 200
//! measured with the same client in the same run (the HTTP floor of this
//! machine). Needs the broker (SWITCHYARD_TEST_BROKERS, default
//! 127.0.0.1:9092) and DATABASE_URL (default: the local PostgreSQL).

use anyhow::Result;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use switchyard_ingester::config::{KeyConfig, ProviderConfig};
use switchyard_localstack::LocalStack;
use switchyard_simulators::callbacks::{bodies, Signer};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_bench";

/// A signed callback body and the headers the vendor would send with it.
type SignedRequest = (Vec<u8>, Vec<(&'static str, String)>);

struct Figures {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    failures: usize,
}

async fn fire(url: &str, requests: Vec<SignedRequest>, concurrency: usize) -> Figures {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap_or_default();
    let started = Instant::now();
    let results: Vec<(bool, Duration)> = futures::stream::iter(requests)
        .map(|(body, headers)| {
            let client = client.clone();
            async move {
                let t = Instant::now();
                let mut r = client.post(url).header("content-type", "application/json").body(body);
                for (k, v) in headers {
                    r = r.header(k, v);
                }
                let ok = matches!(r.send().await, Ok(resp) if resp.status().is_success());
                (ok, t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    let at = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    Figures {
        per_second: results.len() as f64 / elapsed,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        failures: results.iter().filter(|(ok, _)| !ok).count(),
    }
}

pub(crate) async fn run(callbacks: usize, concurrency: usize) -> Result<()> {
    // Baseline: the same client against a handler that only answers 200.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = listener.local_addr()?;
    let bare = axum::Router::new().route("/webhooks/{provider}", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, bare).await });

    let stack = LocalStack::new("bench-webhooks").await?;
    let shutdown = CancellationToken::new();
    let mut config = stack.ingester_config(BTreeMap::from([(
        "stripe".to_owned(),
        ProviderConfig::new("payouts", vec![KeyConfig::inline(SECRET)]),
    )]));
    config.publish_timeout_ms = 10_000;
    let ingester = switchyard_ingester::start_ingester(config, shutdown.clone()).await?;
    let signer = Signer::Stripe { secret: SECRET.into() };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let now_s = switchyard_canonical::now_ms() / 1000;
    let sign_all = |prefix: &str| -> Result<Vec<SignedRequest>> {
        (0..callbacks)
            .map(|i| {
                let id = format!("evt_{prefix}{run}_{i}");
                let body = bodies::stripe_payout(&id, "payout.paid", &format!("po-{run}-{i}"), &format!("po_{run}{i}"), 100, now_s);
                let headers = signer.headers(&id, now_s, &body)?;
                Ok((body, headers))
            })
            .collect()
    };
    let warmup = sign_all("warm")?.into_iter().take(callbacks / 10).collect();
    let measured = sign_all("")?;
    let bare_requests = measured.clone();

    let url = format!("http://{}/webhooks/stripe", ingester.addr);
    let _ = fire(&url, warmup, concurrency).await;
    let base = fire(&format!("http://{bare_addr}/webhooks/stripe"), bare_requests, concurrency).await;
    let real = fire(&url, measured, concurrency).await;
    let published = ingester.metrics.published_count("stripe");
    println!("webhook ingester benchmark: {callbacks} signed Stripe callbacks, {concurrency} concurrent, same client for both");
    println!("{:<44} {:>10} {:>9} {:>9} {:>8}", "", "req/s", "p50 ms", "p99 ms", "failed");
    println!("{:<44} {:>10.0} {:>9.2} {:>9.2} {:>8}", "bare axum handler answering 200", base.per_second, base.p50_ms, base.p99_ms, base.failures);
    println!(
        "{:<44} {:>10.0} {:>9.2} {:>9.2} {:>8}",
        "verified + deduplicated + published", real.per_second, real.p50_ms, real.p99_ms, real.failures
    );
    println!("published in total (warm-up included): {published}; ratio to bare: {:.2}", real.per_second / base.per_second.max(1.0));
    use switchyard_ingester::metrics::Stage;
    let stages: Vec<String> =
        Stage::ALL.iter().map(|s| format!("{} {:.2} ms", s.as_str(), ingester.metrics.stage_mean_ms(*s))).collect();
    println!("mean per stage (warm-up included): {}", stages.join(", "));
    println!("targets: >= 10,000/s and p99 <= 25 ms");
    shutdown.cancel();
    Ok(())
}
