//! Prometheus metrics of the orchestrator and its admin server: `/metrics`,
//! and `/livez`, `/readyz`, `/health` from `switchyard_service::Health`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use switchyard_bus::consumer::RuntimeStats;
use tokio_util::sync::CancellationToken;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    /// Transitions applied, by the state entered.
    transitions: Family<Labels, Counter>,
    /// Inputs that changed nothing, by reason (duplicate, not_awaited, finished, ...).
    ignored: Family<Labels, Counter>,
    /// Outbox messages published, by kind; re-sends included.
    published: Family<Labels, Counter>,
    /// Compare-and-set losses that were retried on a fresh read.
    conflicts: Counter,
    /// Per input topic: messages in flight and dead-lettered so far.
    in_flight: Family<Labels, Gauge>,
    dead_lettered: Family<Labels, Gauge>,
    runtimes: Mutex<Vec<(String, Arc<RuntimeStats>)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard_onboarding");
        let transitions = Family::<Labels, Counter>::default();
        let ignored = Family::<Labels, Counter>::default();
        let published = Family::<Labels, Counter>::default();
        let conflicts = Counter::default();
        registry.register("transitions", "Flow transitions applied, by state entered", transitions.clone());
        registry.register("ignored_inputs", "Inputs that changed no flow, by reason", ignored.clone());
        registry.register("published", "Outbox messages published, by kind", published.clone());
        registry.register("version_conflicts", "Compare-and-set losses retried on a fresh read", conflicts.clone());
        let in_flight = Family::<Labels, Gauge>::default();
        let dead_lettered = Family::<Labels, Gauge>::default();
        registry.register("in_flight", "Inputs received and not finished, by input", in_flight.clone());
        registry.register("dead_lettered", "Inputs sent to onboarding.commands.v1.dlq since start, by input", dead_lettered.clone());
        Self { registry, transitions, ignored, published, conflicts, in_flight, dead_lettered, runtimes: Mutex::new(Vec::new()) }
    }

    /// Exports a consumer runtime's counters under `input` (commands, kyc, aml, fraud).
    pub fn attach_runtime(&self, input: &str, stats: Arc<RuntimeStats>) {
        self.runtimes.lock().unwrap_or_else(|e| e.into_inner()).push((input.to_owned(), stats));
    }

    pub fn transition(&self, state: &str) {
        self.transitions.get_or_create(&vec![("state".into(), state.into())]).inc();
    }

    pub fn ignored(&self, reason: &str) {
        self.ignored.get_or_create(&vec![("reason".into(), reason.into())]).inc();
    }

    pub fn published(&self, kind: &str) {
        self.published.get_or_create(&vec![("kind".into(), kind.into())]).inc();
    }

    pub fn conflict(&self) {
        self.conflicts.inc();
    }

    /// For tests and the demo: how many inputs were ignored for `reason`.
    pub fn ignored_count(&self, reason: &str) -> u64 {
        self.ignored.get_or_create(&vec![("reason".into(), reason.into())]).get()
    }

    pub fn transition_count(&self, state: &str) -> u64 {
        self.transitions.get_or_create(&vec![("state".into(), state.into())]).get()
    }

    pub fn render(&self) -> String {
        for (input, rt) in self.runtimes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let l = vec![("input".to_owned(), input.clone())];
            self.in_flight.get_or_create(&l).set(rt.in_flight() as i64);
            self.dead_lettered.get_or_create(&l).set(rt.dead_lettered.load(Ordering::Relaxed) as i64);
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
