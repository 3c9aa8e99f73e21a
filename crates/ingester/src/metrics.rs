//! The ingester's share of the SLA scorecard: webhook lag (vendor timestamp
//! -> published on the bus) per provider, refusals by reason, duplicates.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    /// `switchyard_certificate_expiry_seconds`: named like the workers'
    /// (one alert for all), so outside this registry's `switchyard_webhooks` prefix.
    expiry_registry: Registry,
    pub certificates: switchyard_service::certificates::CertificateExpiry,
    received: Family<Labels, Counter>,
    /// Events whose dedup row this process moved to published: each event
    /// once, however many attempts published it or found it on the bus.
    published: Family<Labels, Counter>,
    /// Retries that found the event of an earlier, unknown publish on the
    /// bus and did not publish it again (counted in `published` only if
    /// their mark moved the row).
    found_on_bus: Family<Labels, Counter>,
    /// Published and acknowledged, but the mark failed: the event is on the
    /// bus and not (yet) in `published`.
    unmarked: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    duplicates: Family<Labels, Counter>,
    id_reused: Family<Labels, Counter>,
    lag: Family<Labels, Histogram>,
    handling: Family<Labels, Histogram>,
    stages: Family<Labels, Histogram>,
    /// `verification_key_info{provider,kid,alg,state}`: keys fetched from a
    /// vendor's endpoint (Plaid), which only the running ingester knows.
    verification_keys: Family<Labels, prometheus_client::metrics::gauge::Gauge>,
    /// Sum of nanoseconds and count per stage, for the benchmark's breakdown.
    stage_totals: [(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64); Stage::ALL.len()],
}

/// Steps of the request path timed per callback.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    Claim = 0,
    Publish = 1,
    MarkPublished = 2,
    /// Looking on the bus for an event whose earlier publish had an unknown result.
    Verify = 3,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Claim, Stage::Publish, Stage::MarkPublished, Stage::Verify];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Claim => "claim",
            Stage::Publish => "publish",
            Stage::MarkPublished => "mark_published",
            Stage::Verify => "verify",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard_webhooks");
        let m = Self {
            received: Family::default(),
            published: Family::default(),
            found_on_bus: Family::default(),
            unmarked: Family::default(),
            refused: Family::default(),
            duplicates: Family::default(),
            id_reused: Family::default(),
            lag: Family::new_with_constructor(|| {
                Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0])
            }),
            handling: Family::new_with_constructor(|| {
                Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0])
            }),
            stages: Family::new_with_constructor(|| {
                Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0])
            }),
            verification_keys: Family::default(),
            stage_totals: Default::default(),
            registry: Registry::default(),
            expiry_registry: Registry::with_prefix("switchyard"),
            certificates: Default::default(),
        };
        registry.register("received", "Callbacks received, by provider", m.received.clone());
        registry.register("published", "Provider events on the bus and marked published, each once", m.published.clone());
        registry.register(
            "found_on_bus",
            "Retries that found an earlier publish of unknown result on the bus and did not publish again",
            m.found_on_bus.clone(),
        );
        registry.register("unmarked", "Events on the bus whose published mark failed (not in published until a copy marks them)", m.unmarked.clone());
        registry.register("refused", "Callbacks refused, by provider and reason", m.refused.clone());
        registry.register("duplicates", "Callbacks already published, acknowledged without publishing", m.duplicates.clone());
        registry.register("id_reused", "Callbacks reusing a seen event id with another body", m.id_reused.clone());
        registry.register("lag_seconds", "Vendor event timestamp to published on the bus", m.lag.clone());
        registry.register("handling_seconds", "Time to answer a callback", m.handling.clone());
        registry.register("stage_seconds", "Time per step of the request path (claim, publish, mark_published, verify)", m.stages.clone());
        registry.register(
            "verification_key_info",
            "Webhook verification keys fetched from the vendor's endpoint (1 each), by provider, kid, algorithm and state (live, expired, withdrawn)",
            m.verification_keys.clone(),
        );
        let mut expiry_registry = Registry::with_prefix("switchyard");
        expiry_registry.register_collector(Box::new(m.certificates.clone()));
        Self { registry, expiry_registry, ..m }
    }

    fn provider(provider: &str) -> Labels {
        vec![("provider", provider.to_owned())]
    }

    /// Reports the keys a provider has fetched so far.
    pub fn verification_keys(&self, provider: &str, keys: &[switchyard_adapters::webhooks::plaid::VerificationKey], now_ms: i64) {
        for k in keys {
            let expired = k.expired_at_s.is_some_and(|t| t * 1000 <= now_ms);
            let labels = |state: &str| {
                vec![("provider", provider.to_owned()), ("kid", k.kid.clone()), ("alg", k.alg.clone()), ("state", state.to_owned())]
            };
            let (now, was) = if expired { ("expired", "live") } else { ("live", "expired") };
            self.verification_keys.remove(&labels(was));
            self.verification_keys.get_or_create(&labels(now)).set(1);
        }
    }

    /// Reports TrueLayer's keys: `live` while its JWKS lists them,
    /// `withdrawn` once a later fetch no longer does.
    pub fn truelayer_keys(&self, provider: &str, keys: &[switchyard_adapters::webhooks::truelayer::VerificationKey]) {
        for k in keys {
            let labels = |state: &str| {
                vec![("provider", provider.to_owned()), ("kid", k.kid.clone()), ("alg", k.alg.clone()), ("state", state.to_owned())]
            };
            let (now, was) = if k.withdrawn { ("withdrawn", "live") } else { ("live", "withdrawn") };
            self.verification_keys.remove(&labels(was));
            self.verification_keys.get_or_create(&labels(now)).set(1);
        }
    }

    pub fn received(&self, provider: &str) {
        self.received.get_or_create(&Self::provider(provider)).inc();
    }

    pub fn published(&self, provider: &str, lag_seconds: f64) {
        self.published.get_or_create(&Self::provider(provider)).inc();
        self.lag.get_or_create(&Self::provider(provider)).observe(lag_seconds.max(0.0));
    }

    pub fn found_on_bus(&self, provider: &str) {
        self.found_on_bus.get_or_create(&Self::provider(provider)).inc();
    }

    pub fn unmarked(&self, provider: &str) {
        self.unmarked.get_or_create(&Self::provider(provider)).inc();
    }

    pub fn refused(&self, provider: &str, reason: &'static str) {
        self.refused.get_or_create(&vec![("provider", provider.to_owned()), ("reason", reason.to_owned())]).inc();
    }

    pub fn duplicate(&self, provider: &str) {
        self.duplicates.get_or_create(&Self::provider(provider)).inc();
    }

    pub fn id_reused(&self, provider: &str) {
        self.id_reused.get_or_create(&Self::provider(provider)).inc();
    }

    pub fn handled(&self, provider: &str, seconds: f64) {
        self.handling.get_or_create(&Self::provider(provider)).observe(seconds);
    }

    pub fn stage(&self, stage: Stage, seconds: f64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stages.get_or_create(&vec![("stage", stage.as_str().to_owned())]).observe(seconds);
        let (sum, count) = &self.stage_totals[stage as usize];
        sum.fetch_add((seconds * 1e9) as u64, Relaxed);
        count.fetch_add(1, Relaxed);
    }

    /// Mean milliseconds of a stage since start.
    pub fn stage_mean_ms(&self, stage: Stage) -> f64 {
        use std::sync::atomic::Ordering::Relaxed;
        let (sum, count) = &self.stage_totals[stage as usize];
        sum.load(Relaxed) as f64 / 1e6 / count.load(Relaxed).max(1) as f64
    }

    /// A counter's current value, for tests and the benchmark.
    pub fn refused_count(&self, provider: &str, reason: &'static str) -> u64 {
        self.refused.get_or_create(&vec![("provider", provider.to_owned()), ("reason", reason.to_owned())]).get()
    }

    pub fn published_count(&self, provider: &str) -> u64 {
        self.published.get_or_create(&Self::provider(provider)).get()
    }

    pub fn found_on_bus_count(&self, provider: &str) -> u64 {
        self.found_on_bus.get_or_create(&Self::provider(provider)).get()
    }

    pub fn duplicate_count(&self, provider: &str) -> u64 {
        self.duplicates.get_or_create(&Self::provider(provider)).get()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        if encode_registry(&mut out, &self.registry).and_then(|_| encode_registry(&mut out, &self.expiry_registry)).and_then(|_| encode_eof(&mut out)).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn certificate_expiry_is_named_like_the_workers() {
        let metrics = super::Metrics::new();
        metrics.certificates.set([("wise".to_owned(), "webhook_key".to_owned(), "CN=wise".to_owned(), i64::MAX / 2)]);
        metrics.received("wise");
        let text = metrics.render();
        assert!(text.contains(r#"switchyard_certificate_expiry_seconds{provider="wise",kind="webhook_key",subject="CN=wise"} "#), "{text}");
        assert!(text.contains("switchyard_webhooks_received_total"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
