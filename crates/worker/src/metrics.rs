//! Prometheus metrics for the SLA scorecard and the admin HTTP server
//! (`/metrics`, and `/livez`, `/readyz`, `/health` from `switchyard_service::Health`).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use switchyard_bus::consumer::RuntimeStats;
use tokio_util::sync::CancellationToken;

type Labels = Vec<(String, String)>;

/// Handles of one metric family by label values, found without allocating.
/// A worker sees a handful of label combinations, while building the owned
/// label set for each observation cost several allocations per message.
struct Handles<M> {
    family: Family<Labels, M>,
    domain: String,
    names: &'static [&'static str],
    seen: std::sync::RwLock<Vec<(Vec<String>, M)>>,
}

impl<M: Clone> Handles<M> {
    fn new(family: Family<Labels, M>, domain: &str, names: &'static [&'static str]) -> Self {
        Self { family, domain: domain.to_owned(), names, seen: Default::default() }
    }

    fn get(&self, values: &[&str]) -> M {
        let matches = |seen: &[String]| seen.iter().map(String::as_str).eq(values.iter().copied());
        if let Some((_, m)) = self.seen.read().unwrap_or_else(|e| e.into_inner()).iter().find(|(v, _)| matches(v)) {
            return m.clone();
        }
        let mut labels = vec![("domain".to_owned(), self.domain.clone())];
        labels.extend(self.names.iter().zip(values).map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let handle = self.family.get_or_create(&labels).clone();
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if !seen.iter().any(|(v, _)| matches(v)) {
            seen.push((values.iter().map(|v| (*v).to_owned()).collect(), handle.clone()));
        }
        handle
    }
}

pub struct Metrics {
    registry: Registry,
    processed: Handles<Counter>,
    failures: Handles<Counter>,
    vendor_latency: Handles<Histogram>,
    flow_latency: Histogram,
    collisions: Family<Labels, Counter>,
    replayed: Family<Labels, Counter>,
    /// Processor callbacks by provider and what they did (card worker).
    callbacks: Family<Labels, Counter>,
    in_flight: Family<Labels, Gauge>,
    in_flight_limit: Family<Labels, Gauge>,
    breakers: Handles<Gauge>,
    /// Open banking: breaker state and call results per institution (the
    /// aggregator may be fine while one bank is down).
    institution_breakers: Handles<Gauge>,
    institution_calls: Handles<Counter>,
    shadow: Family<Labels, Counter>,
    dead_lettered: Family<Labels, Gauge>,
    retried: Family<Labels, Gauge>,
    /// The consumer's commit window and head (see `RuntimeSettings`).
    uncommitted: Family<Labels, Gauge>,
    head_age: Family<Labels, Gauge>,
    paused: Family<Labels, Gauge>,
    deadline_exceeded: Family<Labels, Gauge>,
    abandoned_on_revoke: Family<Labels, Gauge>,
    irregular_arrivals: Family<Labels, Gauge>,
    rounds_skipped: Family<Labels, Gauge>,
    assigned: Family<Labels, Gauge>,
    deprecated: Family<Labels, Counter>,
    sunsets: Family<Labels, Gauge>,
    /// Handles per stage, resolved once: this is called several times per message.
    stages: [Histogram; 4],
    domain: String,
    runtime: std::sync::OnceLock<Arc<RuntimeStats>>,
    /// `switchyard_certificate_expiry_seconds` of the providers' TLS material.
    pub certificates: switchyard_service::certificates::CertificateExpiry,
}

/// Processing stages timed per message.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    Claim = 0,
    VendorSlotWait = 1,
    Complete = 2,
    Publish = 3,
}

impl Stage {
    const ALL: [(Stage, &'static str); 4] = [
        (Stage::Claim, "claim"),
        (Stage::VendorSlotWait, "vendor_slot_wait"),
        (Stage::Complete, "complete"),
        (Stage::Publish, "publish"),
    ];
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0].into_iter()
}

impl Metrics {
    pub fn new(domain: &str) -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let certificates = switchyard_service::certificates::CertificateExpiry::default();
        registry.register_collector(Box::new(certificates.clone()));
        let processed = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let vendor_latency = Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()));
        let flow_latency = Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()));
        let stage_latency = Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()));
        let collisions = Family::<Labels, Counter>::default();
        let replayed = Family::<Labels, Counter>::default();
        let callbacks = Family::<Labels, Counter>::default();
        let in_flight = Family::<Labels, Gauge>::default();
        let in_flight_limit = Family::<Labels, Gauge>::default();
        let breakers = Family::<Labels, Gauge>::default();
        let shadow = Family::<Labels, Counter>::default();
        let dead_lettered = Family::<Labels, Gauge>::default();
        let retried = Family::<Labels, Gauge>::default();
        registry.register("commands_processed", "Commands answered with an outcome, by status", processed.clone());
        registry.register("failures", "Failures by error class", failures.clone());
        registry.register("vendor_call_duration_seconds", "Vendor call latency by provider, operation and result", vendor_latency.clone());
        registry.register("flow_duration_seconds", "Command requested -> outcome published", flow_latency.clone());
        registry.register("stage_duration_seconds", "Time per processing stage (store claim, vendor slot wait, store completion, publish)", stage_latency.clone());
        registry.register("idempotency_collisions", "Same idempotency key, different payload", collisions.clone());
        registry.register("replayed_outcomes", "Duplicates answered from the store without a vendor call", replayed.clone());
        registry.register(
            "provider_callbacks",
            "Processor callbacks consumed, by provider and result (changed, unchanged, duplicate, not_modeled, contradiction)",
            callbacks.clone(),
        );
        registry.register("shadow_comparisons", "Shadow candidate vs live outcome: agree, disagree, error, skipped", shadow.clone());
        registry.register("circuit_state", "Circuit breaker per provider: 0 closed, 1 open, 2 half-open", breakers.clone());
        let institution_breakers = Family::<Labels, Gauge>::default();
        let institution_calls = Family::<Labels, Counter>::default();
        registry.register("institution_circuit_state", "Open banking breaker per provider and institution: 0 closed, 1 open, 2 half-open", institution_breakers.clone());
        registry.register("institution_calls", "Open banking provider calls per institution by result (ok, error, timeout, other); error and timeout ratios come from these", institution_calls.clone());
        registry.register("in_flight_messages", "Messages received and not yet finished", in_flight.clone());
        registry.register("in_flight_limit", "max_in_flight as configured: consumption stops while in_flight_messages is at it", in_flight_limit.clone());
        registry.register("dead_lettered_messages", "Messages sent to the DLQ since start", dead_lettered.clone());
        registry.register("retry_topic_messages", "Messages sent to the retry topic since start", retried.clone());
        let (uncommitted, head_age, paused, deadline_exceeded) =
            (Family::<Labels, Gauge>::default(), Family::<Labels, Gauge>::default(), Family::<Labels, Gauge>::default(), Family::<Labels, Gauge>::default());
        registry.register(
            "consumer_uncommitted_messages",
            "The widest partition window held back from the commit (unfinished, or finished behind an unfinished head)",
            uncommitted.clone(),
        );
        registry.register("consumer_head_age_seconds", "How long the oldest unfinished message has held its partition's commit back", head_age.clone());
        registry.register("consumer_paused_partitions", "Partitions paused because their uncommitted window is full", paused.clone());
        registry.register("handler_deadline_exceeded_messages", "Handler calls cut off at their deadline since start", deadline_exceeded.clone());
        let abandoned_on_revoke = Family::<Labels, Gauge>::default();
        registry.register(
            "consumer_abandoned_on_revoke_messages",
            "Messages given up since start because a rebalance took their partition (waiting out a retry delay, or failed): the new owner handles them",
            abandoned_on_revoke.clone(),
        );
        let irregular_arrivals = Family::<Labels, Gauge>::default();
        registry.register(
            "consumer_irregular_arrival_messages",
            "Messages received since start whose offset did not follow the previous one on their partition (skipped or rewound): zero on topics without compaction or transactions",
            irregular_arrivals.clone(),
        );
        let rounds_skipped = Family::<Labels, Gauge>::default();
        registry.register(
            "consumer_retry_rounds_skipped_messages",
            "Retry records re-read since start (after a rebalance) and finished without being handled again, because the round ledger knew them",
            rounds_skipped.clone(),
        );
        let assigned = Family::<Labels, Gauge>::default();
        registry.register("consumer_assigned_partitions", "Partitions (input and retry topic) this member owns", assigned.clone());
        let (deprecated, sunsets) = (Family::<Labels, Counter>::default(), Family::<Labels, Gauge>::default());
        registry.register("deprecated_messages", "Messages received on a deprecated topic since start (topics.yaml `deprecated`)", deprecated.clone());
        registry.register("topic_sunset_timestamp_seconds", "Sunset of each deprecated topic this worker consumes, Unix seconds", sunsets.clone());
        let label = |name: &str| vec![("domain".to_owned(), domain.to_owned()), ("stage".to_owned(), name.to_owned())];
        let stages = Stage::ALL.map(|(_, name)| stage_latency.get_or_create(&label(name)).clone());
        let flow_latency = flow_latency.get_or_create(&vec![("domain".to_owned(), domain.to_owned())]).clone();
        Self {
            stages,
            registry,
            processed: Handles::new(processed, domain, &["status"]),
            failures: Handles::new(failures, domain, &["class"]),
            vendor_latency: Handles::new(vendor_latency, domain, &["provider", "operation", "result"]),
            flow_latency,
            collisions,
            replayed,
            callbacks,
            in_flight,
            in_flight_limit,
            breakers: Handles::new(breakers, domain, &["provider"]),
            institution_breakers: Handles::new(institution_breakers, domain, &["provider", "institution"]),
            institution_calls: Handles::new(institution_calls, domain, &["provider", "institution", "result"]),
            shadow,
            dead_lettered,
            uncommitted,
            head_age,
            paused,
            deadline_exceeded,
            abandoned_on_revoke,
            irregular_arrivals,
            rounds_skipped,
            assigned,
            deprecated,
            sunsets,
            retried,
            domain: domain.to_owned(),
            runtime: std::sync::OnceLock::new(),
            certificates,
        }
    }

    fn labels(&self, extra: &[(&str, &str)]) -> Labels {
        let mut l = vec![("domain".to_owned(), self.domain.clone())];
        l.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        l
    }

    /// Messages received and not yet finished.
    pub fn in_flight(&self) -> u64 {
        self.runtime.get().map_or(0, |r| r.in_flight())
    }

    pub fn attach_runtime(&self, stats: Arc<RuntimeStats>) {
        let _ = self.runtime.set(stats);
    }

    pub fn processed(&self, status: &str, flow: Option<Duration>) {
        self.processed.get(&[status]).inc();
        if let Some(flow) = flow {
            self.flow_latency.observe(flow.as_secs_f64());
        }
    }

    pub fn failure(&self, class: &str) {
        self.failures.get(&[class]).inc();
    }

    pub fn vendor_call(&self, provider: &str, operation: &str, result: &str, took: Duration) {
        self.vendor_latency.get(&[provider, operation, result]).observe(took.as_secs_f64());
    }

    pub fn stage(&self, stage: Stage, took: Duration) {
        self.stages[stage as usize].observe(took.as_secs_f64());
    }

    pub fn breaker(&self, provider: &str, state: switchyard_routing::BreakerState) {
        self.breakers.get(&[provider]).set(state.as_gauge());
    }

    pub fn institution_breaker(&self, provider: &str, institution: &str, state: switchyard_routing::BreakerState) {
        self.institution_breakers.get(&[provider, institution]).set(state.as_gauge());
    }

    pub fn institution_call(&self, provider: &str, institution: &str, result: &str) {
        self.institution_calls.get(&[provider, institution, result]).inc();
    }

    pub fn shadow(&self, candidate: &str, result: &str) {
        self.shadow.get_or_create(&self.labels(&[("candidate", candidate), ("result", result)])).inc();
    }

    pub fn collision(&self) {
        self.collisions.get_or_create(&self.labels(&[])).inc();
    }

    /// One processor callback consumed, and what it did.
    pub fn callback(&self, provider: &str, result: &str) {
        self.callbacks.get_or_create(&self.labels(&[("provider", provider), ("result", result)])).inc();
    }

    pub fn replayed(&self) {
        self.replayed.get_or_create(&self.labels(&[])).inc();
    }

    pub fn render(&self) -> String {
        if let Some(rt) = self.runtime.get() {
            let l = self.labels(&[]);
            self.in_flight.get_or_create(&l).set(rt.in_flight() as i64);
            self.in_flight_limit.get_or_create(&l).set(rt.max_in_flight.load(Ordering::Relaxed) as i64);
            self.dead_lettered.get_or_create(&l).set(rt.dead_lettered.load(Ordering::Relaxed) as i64);
            self.retried.get_or_create(&l).set(rt.retried.load(Ordering::Relaxed) as i64);
            self.uncommitted.get_or_create(&l).set(rt.max_uncommitted.load(Ordering::Relaxed) as i64);
            self.head_age.get_or_create(&l).set((rt.oldest_head_ms.load(Ordering::Relaxed) / 1000) as i64);
            self.paused.get_or_create(&l).set(rt.paused_partitions.load(Ordering::Relaxed) as i64);
            self.deadline_exceeded.get_or_create(&l).set(rt.deadline_exceeded.load(Ordering::Relaxed) as i64);
            self.assigned.get_or_create(&l).set(rt.assigned_partitions.load(Ordering::Relaxed) as i64);
            self.abandoned_on_revoke.get_or_create(&l).set(rt.abandoned_on_revoke.load(Ordering::Relaxed) as i64);
            self.irregular_arrivals.get_or_create(&l).set(rt.irregular_arrivals.load(Ordering::Relaxed) as i64);
            self.rounds_skipped.get_or_create(&l).set(rt.rounds_skipped.load(Ordering::Relaxed) as i64);
            for (topic, deprecation, seen) in rt.deprecated.snapshot() {
                let version = major_version(&topic);
                let counter = self.deprecated.get_or_create(&self.labels(&[("topic", &topic), ("version", version)])).clone();
                counter.inc_by(seen.saturating_sub(counter.get()));
                self.sunsets.get_or_create(&self.labels(&[("topic", &topic)])).set(deprecation.sunset_unix);
            }
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

async fn render_metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.render())
}

/// Serves `/metrics`, `/livez`, `/readyz` and `/health` (= `/readyz`)
/// until shutdown; returns the bound address.
pub async fn serve_admin(
    bind: SocketAddr,
    metrics: Arc<Metrics>,
    health: &switchyard_service::Health,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/metrics", get(render_metrics)).with_state(metrics).merge(health.router());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    });
    Ok(addr)
}

/// `v1` of `run-1.payouts.commands.v1.retry`: the topic's major version.
fn major_version(topic: &str) -> &str {
    let topic = topic.strip_suffix(".retry").unwrap_or(topic);
    topic.rsplit('.').next().filter(|v| v.len() > 1 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit())).unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_bus::deprecation::{deprecations, DeprecatedTraffic};

    const TOPICS: &str = "topics:\n\
        - { name: payouts.commands.v1, partitions: 1, key: k, value_schema: null, producer: p, consumer: c,\n\
            deprecated: { sunset: 2027-06-30, use_instead: payouts.commands.v2 } }\n\
        - { name: payouts.commands.v2, partitions: 1, key: k, value_schema: null, producer: p, consumer: c }\n";

    #[test]
    fn traffic_on_a_deprecated_topic_is_counted_with_its_version_and_sunset() {
        let catalog = deprecations(TOPICS).expect("valid");
        let stats = RuntimeStats {
            deprecated: DeprecatedTraffic::watching(&catalog, &["run.payouts.commands.v1", "run.payouts.commands.v1.retry"]),
            ..RuntimeStats::default()
        };
        for _ in 0..3 {
            stats.deprecated.count("run.payouts.commands.v1");
        }
        let metrics = Metrics::new("payouts");
        metrics.attach_runtime(Arc::new(stats));
        // Rendered twice: a scrape must not count the same messages again.
        let _ = metrics.render();
        let text = metrics.render();
        let line = |needle: &str| text.lines().find(|l| l.starts_with(needle)).map(str::to_owned);
        assert_eq!(
            line(r#"switchyard_deprecated_messages_total{domain="payouts",topic="run.payouts.commands.v1",version="v1"}"#).as_deref(),
            Some(r#"switchyard_deprecated_messages_total{domain="payouts",topic="run.payouts.commands.v1",version="v1"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"switchyard_deprecated_messages_total{domain="payouts",topic="run.payouts.commands.v1.retry",version="v1"} 0"#), "{text}");
        assert!(text.contains(r#"switchyard_topic_sunset_timestamp_seconds{domain="payouts",topic="run.payouts.commands.v1"} 1814313600"#), "{text}");
    }

    #[test]
    fn the_in_flight_limit_is_exported_beside_the_in_flight_count() {
        let stats = RuntimeStats { max_in_flight: std::sync::atomic::AtomicU64::new(500), ..RuntimeStats::default() };
        stats.received.store(7, Ordering::Relaxed);
        let metrics = Metrics::new("cards");
        metrics.attach_runtime(Arc::new(stats));
        let text = metrics.render();
        assert!(text.contains(r#"switchyard_in_flight_messages{domain="cards"} 7"#), "{text}");
        assert!(text.contains(r#"switchyard_in_flight_limit{domain="cards"} 500"#), "{text}");
    }

    #[test]
    fn the_major_version_comes_from_the_topic_name() {
        assert_eq!(major_version("run-1.payouts.commands.v12.retry"), "v12");
        assert_eq!(major_version("payouts.commands.v1"), "v1");
        assert_eq!(major_version("payouts.commands"), "unknown");
        assert_eq!(major_version("payouts.vx"), "unknown");
    }
}
