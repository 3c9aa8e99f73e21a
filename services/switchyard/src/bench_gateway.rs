//! `switchyard bench --gateway [--rate R] [--seconds S]`: what the HTTP
//! gateway adds to `POST /v1/payouts` over what it cannot avoid, measured
//! in one run against two baselines served by this same process:
//!
//! 1. **bare axum 202**: reads the same body, parses it as a payout request
//!    and answers 202. The HTTP stack's floor (client, loopback, axum).
//! 2. **broker ack**: the same, then produces the body to a payout commands
//!    topic with the gateway's producer settings (idempotent, acks=all, its
//!    linger and message timeout; `switchyard_bus::Publisher`, as the
//!    gateway) and answers 202 after the acknowledgement. What any
//!    "202 once it is on the bus" service costs.
//! 3. **gateway**: the real one (`switchyard_gateway::start_gateway`, fresh
//!    topic prefix, one API-key team, the store of `--database-url`). No
//!    worker: its 202 comes once the command is acknowledged.
//!
//! Each is driven in turn, open loop: request `i` is due at `i / rate`
//! seconds whatever the earlier ones did, and its latency runs from that
//! due time to the end of its answer, so a stall shows in every request it
//! delayed (coordinated omission is not hidden). Requests go over a pool of
//! [`CONNECTIONS`] keep-alive HTTP/1.1 connections; a request finding none
//! free waits for one, and that wait counts (the "wait p99" column shows
//! it, with the generator's own timer lateness). Each request carries a
//! fresh `Idempotency-Key`. The first [`WARM_UP_SECS`] seconds are not
//! counted. The verdict: the gateway's p99 minus the broker-ack p99 against
//! the issue's 2 ms at 2,000 requests/s.
//!
//! Everything shares this process (generator, all three servers, librdkafka's
//! threads), so the CPU column is the whole process's per request answered.

use super::{stat_cpu_secs, BenchArgs};
use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_bus::topics::TopicsFile;
use switchyard_bus::{MessageContext, Outbound, Publisher};
use switchyard_gateway::config::{GatewayConfig, GatewayTopics};
use switchyard_gateway::payouts::{payout_id, PayoutRequest};
use switchyard_localstack::{repo_root, LocalStack};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Keep-alive connections per target: far above the ~10 in flight that
/// 2,000/s at a few ms needs, so the pool only binds when a target stalls.
const CONNECTIONS: usize = 64;
/// Seconds at the rate before counting: connections, the producer's
/// batches and the store's pool settle.
const WARM_UP_SECS: u64 = 2;
/// A request unanswered this long is an error, not a latency.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The issue's target: at most this much over the broker ack at p99 ...
const TARGET_OVERHEAD: Duration = Duration::from_millis(2);
/// ... at this rate.
const TARGET_RATE: u32 = 2_000;
/// The gateway's publish deadline; the broker-ack baseline uses the same.
const PUBLISH_TIMEOUT_MS: u64 = 5_000;
/// The bench team's key: a constant of this process, not a credential.
const API_KEY: &str = "bench-gateway-key";

pub(super) async fn run(args: &BenchArgs, run: &str, database_url: &str) -> Result<()> {
    let (rate, seconds) = (args.rate, args.seconds);
    println!(
        "gateway: POST /v1/payouts at {rate} req/s open loop, {seconds} s counted after {WARM_UP_SECS} s warm-up, per target; \
         {CONNECTIONS} keep-alive HTTP/1.1 connections; latency from each request's scheduled send to its answer read"
    );
    println!("load average before: {}", load_average());
    let shutdown = CancellationToken::new();
    let stack = LocalStack::open(format!("bench-{run}-gw."), args.brokers.clone()).await?;
    let mut kafka = stack.kafka.clone();
    kafka.group_id = format!("{}gateway", stack.prefix);

    let bare = serve(axum::Router::new().route("/v1/payouts", axum::routing::post(bare_accept)), &shutdown).await?;

    // The gateway adds this property to its producer itself (start_gateway).
    let mut ack_kafka = kafka.clone();
    ack_kafka.extra.insert("message.timeout.ms".into(), PUBLISH_TIMEOUT_MS.to_string());
    let ack_topic = create_ack_topic(&ack_kafka, run).await?;
    let publisher = Publisher::new(&ack_kafka)?;
    publisher.warm_up(&[&ack_topic], Duration::from_millis(PUBLISH_TIMEOUT_MS)).await.context("warming the broker-ack producer")?;
    let ack_state_topic = ack_topic.clone();
    let ack_state = Arc::new(AckState { publisher, topic: ack_topic });
    let ack = serve(axum::Router::new().route("/v1/payouts", axum::routing::post(ack_accept)).with_state(ack_state), &shutdown).await?;

    let gateway = switchyard_gateway::start_gateway(gateway_config(&stack.prefix, &stack.registry.base_url(), &kafka, database_url)?, shutdown.clone()).await.context("starting the gateway")?;
    println!("topics {}*; the broker-ack baseline produces to {}", stack.prefix, ack_state_topic);
    println!();

    let targets = [("bare axum 202", bare), ("broker ack", ack), ("gateway", gateway.addr)];
    let mut results = Vec::new();
    for (i, (name, addr)) in targets.iter().enumerate() {
        let url = format!("http://{addr}/v1/payouts");
        let label = format!("{run}-{i}");
        let (samples, cpu) = drive(&url, &label, rate, seconds).await.with_context(|| format!("driving {name}"))?;
        let summary = summarize(&samples);
        let cpu_per_request = cpu.map(|secs| secs * 1e6 / summary.accepted.max(1) as f64);
        results.push((*name, summary, cpu_per_request));
    }

    println!(
        "{:<14} {:>7} {:>7} {:>7} {:>9}  {:>7} {:>7} {:>7} {:>7}  {:>8}  {:>10}",
        "target", "sent", "202", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "wait p99", "CPU us/req"
    );
    for (name, s, cpu) in &results {
        println!(
            "{:<14} {:>7} {:>7} {:>7} {:>9.0}  {:>7} {:>7} {:>7} {:>7}  {:>8}  {:>10}",
            name,
            s.sent,
            s.accepted,
            s.error_count(),
            s.per_sec,
            ms(s.p50),
            ms(s.p95),
            ms(s.p99),
            ms(s.max),
            ms(s.wait_p99),
            cpu.map_or("-".to_owned(), |c| format!("{c:.0}"))
        );
    }
    for (name, s, _) in &results {
        for (what, n) in s.errors.iter().take(3) {
            println!("  {name}: {n} x {what}");
        }
    }
    println!("(CPU: the whole process per 202, generator and all three servers included; wait: generator lateness plus waiting for a free connection)");
    println!();
    let [bare, ack, gw] = [&results[0].1, &results[1].1, &results[2].1];
    if let (Some(a), Some(b)) = (ack.p99, bare.p99) {
        println!("broker ack p99 - bare p99   = {:>7.2} ms  (the broker's acknowledgement)", signed_ms(a, b));
    }
    println!("gateway p99 - broker ack p99 = {}", verdict(gw, ack, rate));
    println!("load average after: {}", load_average());

    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(15), gateway.join).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("gateway stopped with: {e}"),
        Ok(Err(e)) => eprintln!("gateway task: {e}"),
        Err(_) => eprintln!("gateway did not stop within 15 s"),
    }
    Ok(())
}

/// Built through serde, as a config file would be, so fields the gateway
/// gains with a default (auth schemes, limits) need no change here.
fn gateway_config(prefix: &str, registry_url: &str, kafka: &switchyard_bus::KafkaConfig, database_url: &str) -> Result<GatewayConfig> {
    // Overwritten below with the prefixed names; listed only to parse.
    let topics: serde_json::Map<String, serde_json::Value> = RELEASED_TOPICS.iter().map(|(field, name)| ((*field).to_owned(), (*name).into())).collect();
    let document = serde_json::json!({
        "bind": "127.0.0.1:0",
        "kafka": {"brokers": kafka.brokers, "group_id": kafka.group_id, "session_timeout_ms": kafka.session_timeout_ms},
        "schema_registry_url": registry_url,
        "database_url": database_url,
        "topics": topics,
        "max_body_bytes": 16 * 1024,
        "publish_timeout_ms": PUBLISH_TIMEOUT_MS,
        "lease_ms": PUBLISH_TIMEOUT_MS + 5_000,
        "max_wait_ms": 10_000,
        // Unlimited: the bench measures the path, not the token bucket.
        "teams": [{"name": "bench", "api_keys": [{"value": API_KEY}], "scopes": ["payouts:write"]}],
    });
    let mut config: GatewayConfig = serde_json::from_value(document).context("the bench's gateway config")?;
    config.topics = GatewayTopics::with_prefix(prefix);
    config.validate()?;
    Ok(config)
}

/// `GatewayTopics`' fields and topics.yaml's names.
const RELEASED_TOPICS: &[(&str, &str)] = &[
    ("payout_commands", "payouts.commands.v1"),
    ("payout_outcomes", "payouts.outcomes.v1"),
    ("kyc_commands", "kyc.commands.v1"),
    ("kyc_outcomes", "kyc.outcomes.v1"),
    ("aml_commands", "aml.commands.v1"),
    ("aml_outcomes", "aml.outcomes.v1"),
    ("fraud_commands", "fraud.commands.v1"),
    ("fraud_outcomes", "fraud.outcomes.v1"),
    ("onboarding_commands", "onboarding.commands.v1"),
    ("onboarding_events", "onboarding.events.v1"),
    ("card_commands", "cards.commands.v1"),
    ("card_outcomes", "cards.outcomes.v1"),
    ("openbanking_commands", "openbanking.commands.v1"),
    ("openbanking_outcomes", "openbanking.outcomes.v1"),
    ("openbanking_events", "openbanking.events.v1"),
];

/// The payout commands topic as topics.yaml has it (partitions included),
/// under the baseline's own prefix so its log starts empty like the gateway's.
async fn create_ack_topic(kafka: &switchyard_bus::KafkaConfig, run: &str) -> Result<String> {
    let mut topics = TopicsFile::load(&repo_root().join("topics.yaml"))?.with_prefix(&format!("bench-{run}-ack.")).capped_replication(1);
    topics.topics.retain(|t| t.name.ends_with(".payouts.commands.v1"));
    let Some(name) = topics.topics.first().map(|t| t.name.clone()) else { bail!("topics.yaml has no payouts.commands.v1") };
    topics.create_all(kafka).await?;
    Ok(name)
}

async fn serve(app: axum::Router, shutdown: &CancellationToken) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await {
            eprintln!("baseline server on {addr}: {e}");
        }
    });
    Ok(addr)
}

/// What both baselines check before answering, so a generator sending a
/// body the gateway would refuse is caught there too: the key, and the body
/// as the gateway parses it.
fn checked_key(headers: &HeaderMap, body: &[u8]) -> Result<String, Refusal> {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty());
    let Some(key) = key else { return Err(bad_request("Idempotency-Key required".into())) };
    if let Err(e) = serde_json::from_slice::<PayoutRequest>(body) {
        return Err(bad_request(format!("body: {e}")));
    }
    Ok(key.to_owned())
}

/// Boxed: a `Response` is large for an `Err` every call carries.
type Refusal = Box<Response>;

fn bad_request(why: String) -> Refusal {
    Box::new((StatusCode::BAD_REQUEST, why).into_response())
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, "application/json")], r#"{"status":"accepted"}"#).into_response()
}

async fn bare_accept(headers: HeaderMap, body: Bytes) -> Response {
    match checked_key(&headers, &body) {
        Ok(_) => accepted(),
        Err(refused) => *refused,
    }
}

struct AckState {
    publisher: Publisher,
    topic: String,
}

/// The body as the record's value, keyed and headed as the gateway keys and
/// heads its command, answered once the broker acknowledged it.
async fn ack_accept(State(state): State<Arc<AckState>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = match checked_key(&headers, &body) {
        Ok(key) => key,
        Err(refused) => return *refused,
    };
    let mut context = MessageContext::new_root();
    context.idempotency_key = Some(key.clone());
    let record = Outbound { topic: state.topic.clone(), key: Some(payout_id(&key).into_bytes()), payload: body.to_vec(), headers: context.outbound_headers(None) };
    match tokio::time::timeout(Duration::from_millis(PUBLISH_TIMEOUT_MS + 2_000), state.publisher.publish(&record)).await {
        Ok(Ok(_)) => accepted(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not acknowledged: {e}")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "no acknowledgement in time").into_response(),
    }
}

fn payout_body() -> Bytes {
    let body = serde_json::json!({
        "amount_minor": 1250,
        "currency": "EUR",
        "beneficiary": {"name": "Ada Lovelace", "iban": "DE89370400440532013000", "country": "DE"},
        "rail": "instant",
        "reference": "bench",
    });
    Bytes::from(body.to_string())
}

/// One request's times, from the run's start.
#[derive(Debug, Clone)]
struct Sample {
    /// When the schedule said to send it.
    scheduled: Duration,
    /// When it got a connection and went out: the generator's lateness
    /// plus any wait for a free connection.
    sent: Duration,
    /// When its answer had been read in full.
    done: Duration,
    /// `None` for a 202; else what came instead (status and the start of
    /// the body, or the transport error).
    error: Option<String>,
}

/// Sends `WARM_UP_SECS + seconds` worth of requests at `rate`, open loop,
/// and returns the counted ones with the process's CPU seconds over them.
async fn drive(url: &str, label: &str, rate: u32, seconds: u64) -> Result<(Vec<Sample>, Option<f64>)> {
    let client = reqwest::Client::builder().http1_only().tcp_nodelay(true).pool_max_idle_per_host(CONNECTIONS).timeout(REQUEST_TIMEOUT).build()?;
    let body = payout_body();
    let request = |i: u64| {
        client
            .post(url)
            .bearer_auth(API_KEY)
            .header("Idempotency-Key", format!("bench-{label}-{i}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.clone())
    };
    // One request first: a misconfigured target fails here, with its answer.
    let probe = request(u64::MAX).send().await?;
    if probe.status() != StatusCode::ACCEPTED {
        bail!("{url} answered {}: {}", probe.status(), probe.text().await.unwrap_or_default());
    }

    let warm = u64::from(rate) * WARM_UP_SECS;
    let total = warm + u64::from(rate) * seconds;
    let connections = Arc::new(Semaphore::new(CONNECTIONS));
    let mut tasks = Vec::with_capacity(total as usize);
    let start = Instant::now() + Duration::from_millis(10);
    let mut cpu_before = None;
    for i in 0..total {
        let scheduled = scheduled_offset(i, rate);
        let due = start + scheduled;
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        if i == warm {
            cpu_before = process_cpu_secs();
        }
        let (request, connections) = (request(i), connections.clone());
        tasks.push(tokio::spawn(async move {
            // Fair (FIFO): requests take free connections in schedule order.
            let _permit = connections.acquire_owned().await;
            let sent = start.elapsed();
            let error = match request.send().await {
                Ok(answer) => {
                    let status = answer.status();
                    match answer.bytes().await {
                        Ok(_) if status == StatusCode::ACCEPTED => None,
                        Ok(text) => Some(format!("HTTP {}: {}", status.as_u16(), String::from_utf8_lossy(&text[..text.len().min(120)]))),
                        Err(e) => Some(format!("reading the answer: {e}")),
                    }
                }
                Err(e) if e.is_timeout() => Some(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())),
                Err(e) => Some(format!("transport: {e}")),
            };
            Sample { scheduled, sent, done: start.elapsed(), error }
        }));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.into_iter().enumerate() {
        let sample = task.await.context("request task")?;
        if i as u64 >= warm {
            samples.push(sample);
        }
    }
    let cpu = cpu_before.zip(process_cpu_secs()).map(|(before, after)| after - before);
    Ok((samples, cpu))
}

/// When request `i` is due: exact nanoseconds from the start, so the
/// schedule does not drift at rates that do not divide a second.
fn scheduled_offset(i: u64, rate: u32) -> Duration {
    let nanos = u128::from(i) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[derive(Debug)]
struct Summary {
    sent: usize,
    accepted: usize,
    /// Each kind of non-202 answer and how often it came, most frequent first.
    errors: Vec<(String, usize)>,
    /// 202s per second from the first counted request's due time to the
    /// last answer.
    per_sec: f64,
    /// Of the 202s: scheduled send to answer read.
    p50: Option<Duration>,
    p95: Option<Duration>,
    p99: Option<Duration>,
    max: Option<Duration>,
    /// Scheduled to actually sent, over every request.
    wait_p99: Option<Duration>,
}

impl Summary {
    fn error_count(&self) -> usize {
        self.errors.iter().map(|(_, n)| n).sum()
    }
}

fn summarize(samples: &[Sample]) -> Summary {
    let mut latencies: Vec<Duration> = samples.iter().filter(|s| s.error.is_none()).map(|s| s.done.saturating_sub(s.scheduled)).collect();
    latencies.sort_unstable();
    let mut waits: Vec<Duration> = samples.iter().map(|s| s.sent.saturating_sub(s.scheduled)).collect();
    waits.sort_unstable();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for e in samples.iter().filter_map(|s| s.error.as_deref()) {
        *kinds.entry(e).or_default() += 1;
    }
    let mut errors: Vec<(String, usize)> = kinds.into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
    errors.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let first = samples.iter().map(|s| s.scheduled).min().unwrap_or_default();
    let last = samples.iter().map(|s| s.done).max().unwrap_or_default();
    let span = last.saturating_sub(first).as_secs_f64();
    Summary {
        sent: samples.len(),
        accepted: latencies.len(),
        errors,
        per_sec: if span > 0.0 { latencies.len() as f64 / span } else { 0.0 },
        p50: percentile(&latencies, 500),
        p95: percentile(&latencies, 950),
        p99: percentile(&latencies, 990),
        max: latencies.last().copied(),
        wait_p99: percentile(&waits, 990),
    }
}

/// Nearest rank: the smallest value with at least `per_mille`/1000 of the
/// samples at or below it. Integer arithmetic, so p99 of 1,000 is the 990th.
fn percentile(sorted: &[Duration], per_mille: usize) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (per_mille * sorted.len()).div_ceil(1000).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The issue's verdict line: the gateway's p99 over the broker ack's.
fn verdict(gateway: &Summary, ack: &Summary, rate: u32) -> String {
    let (Some(g), Some(a)) = (gateway.p99, ack.p99) else { return "not judged: no 202 answers to compare".into() };
    let excess = signed_ms(g, a);
    let judged = if gateway.error_count() + ack.error_count() > 0 {
        format!("not judged: {} gateway and {} broker-ack non-202 answers", gateway.error_count(), ack.error_count())
    } else if g.saturating_sub(a) <= TARGET_OVERHEAD {
        "met".to_owned()
    } else {
        "NOT met".to_owned()
    };
    let at = if rate == TARGET_RATE { String::new() } else { format!("; this run at {rate} req/s, the target is stated at {TARGET_RATE}") };
    format!("{excess:>7.2} ms  (target <= {} ms at {TARGET_RATE} req/s{at}): {judged}", TARGET_OVERHEAD.as_millis())
}

fn signed_ms(a: Duration, b: Duration) -> f64 {
    (a.as_secs_f64() - b.as_secs_f64()) * 1e3
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    stat_cpu_secs(&stat, false).map(|(_, secs)| secs)
}

/// The machine's 1, 5 and 15 minute load averages: the bench shares it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "unknown".into(), |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn the_schedule_is_exact_and_does_not_drift() {
        assert_eq!(scheduled_offset(0, 2_000), Duration::ZERO);
        assert_eq!(scheduled_offset(1, 2_000), Duration::from_micros(500));
        assert_eq!(scheduled_offset(2_000, 2_000), Duration::from_secs(1));
        // A rate that does not divide a second: each step rounds down, yet
        // the 3rd request of 3/s is due at exactly one second.
        assert_eq!(scheduled_offset(1, 3), Duration::from_nanos(333_333_333));
        assert_eq!(scheduled_offset(3, 3), Duration::from_secs(1));
        assert_eq!(scheduled_offset(60_000, 3), Duration::from_secs(20_000));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<Duration> = (1..=1000).map(at).collect();
        assert_eq!(percentile(&sorted, 500), Some(at(500)));
        assert_eq!(percentile(&sorted, 990), Some(at(990)));
        assert_eq!(percentile(&sorted, 1000), Some(at(1000)));
        assert_eq!(percentile(&sorted, 0), Some(at(1)));
        let hundred: Vec<Duration> = (1..=100).map(at).collect();
        assert_eq!(percentile(&hundred, 950), Some(at(95)));
        assert_eq!(percentile(&[at(7)], 990), Some(at(7)));
        assert_eq!(percentile(&[], 500), None);
    }

    #[test]
    fn latency_runs_from_the_scheduled_send_and_errors_are_counted_apart() {
        // Ten requests due every 100 ms; the 5th waited 300 ms for a
        // connection (a stall): its latency includes the wait.
        let mut samples: Vec<Sample> = (0..10).map(|i| Sample { scheduled: at(100 * i), sent: at(100 * i), done: at(100 * i + 2), error: None }).collect();
        samples[4].sent = at(700);
        samples[4].done = at(705);
        samples[9].error = Some("HTTP 503: bus".into());
        samples.push(Sample { scheduled: at(1000), sent: at(1000), done: at(1001), error: Some("HTTP 503: bus".into()) });
        let s = summarize(&samples);
        assert_eq!((s.sent, s.accepted, s.error_count()), (11, 9, 2));
        assert_eq!(s.errors, vec![("HTTP 503: bus".to_owned(), 2)]);
        assert_eq!(s.p50, Some(at(2)));
        assert_eq!(s.max, Some(at(305)));
        assert_eq!(s.p99, Some(at(305)));
        assert_eq!(s.wait_p99, Some(at(300)));
        // Nine 202s between 0 and the last answer at 1,001 ms.
        assert!((s.per_sec - 9.0 / 1.001).abs() < 1e-9, "{}", s.per_sec);
    }

    #[test]
    fn the_gateway_config_parses_and_validates_with_prefixed_topics() {
        let kafka = switchyard_bus::KafkaConfig::new("127.0.0.1:1", "bench-x.gateway");
        let config = gateway_config("bench-x.", "http://127.0.0.1:2", &kafka, "postgres://u@h/db").expect("a valid config");
        assert_eq!(config.topics.payout_commands, "bench-x.payouts.commands.v1");
        assert_eq!(config.topics.openbanking_events, "bench-x.openbanking.events.v1");
        assert_eq!(config.kafka.group_id, "bench-x.gateway");
        assert_eq!(config.teams.len(), 1);
        assert!(config.teams[0].rate_limit.is_none(), "the bench team is not rate limited");
    }

    fn with_p99(p99_ms: u64, errors: usize) -> Summary {
        let errors = if errors > 0 { vec![("HTTP 503".to_owned(), errors)] } else { Vec::new() };
        Summary { sent: 1, accepted: 1, errors, per_sec: 1.0, p50: None, p95: None, p99: Some(at(p99_ms)), max: None, wait_p99: None }
    }

    #[test]
    fn the_verdict_compares_p99s_and_refuses_to_judge_runs_with_errors() {
        assert!(verdict(&with_p99(12, 0), &with_p99(10, 0), 2_000).ends_with(": met"));
        assert!(verdict(&with_p99(13, 0), &with_p99(10, 0), 2_000).ends_with(": NOT met"));
        assert!(verdict(&with_p99(9, 0), &with_p99(10, 0), 2_000).ends_with(": met"), "faster than the baseline is met");
        assert!(verdict(&with_p99(11, 1), &with_p99(10, 0), 2_000).contains("not judged: 1 gateway"));
        assert!(verdict(&with_p99(11, 0), &with_p99(10, 0), 500).contains("this run at 500 req/s"));
    }
}
