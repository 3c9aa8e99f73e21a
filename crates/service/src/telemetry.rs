//! Trace export over OTLP/HTTP (protobuf) to any OpenTelemetry backend
//! (Jaeger, Tempo, an OpenTelemetry Collector).
//!
//! Off by default; `--otlp-endpoint` / `SWITCHYARD_OTLP_ENDPOINT` (the
//! collector's base URL, e.g. `http://jaeger:4318`) turns it on. Spans are
//! the message hops (`consume`, `publish` in `switchyard_bus::telemetry`),
//! the handler's own span, and each vendor call (`vendor_call` in
//! `switchyard_adapters::http`); a consumed message's span is parented on
//! its `traceparent`, so one payout is one trace across services.
//!
//! Only spans are exported, never log events: what a log line may say is
//! already policed, and a span carries ids, topics and offsets, no payload.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("otlp_endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
}

/// Keeps the exporter alive; dropping it flushes the spans not yet sent
/// (bounded by the exporter's timeout), so hold it until `main` returns.
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// No export.
    pub fn off() -> Self {
        Self { provider: None }
    }

    pub fn is_on(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends every finished span now (tests, and before a planned exit).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            let _ = provider.force_flush();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            switchyard_bus::telemetry::set_exporting(false);
            let _ = provider.shutdown();
        }
    }
}

/// The OTLP traces URL for a collector base URL: `<base>/v1/traces`, as the
/// OTLP/HTTP specification derives it from `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

pub(crate) type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync>;

/// Builds the export pipeline and its `tracing` layer; `None` for no
/// endpoint. The layer only sees spans at info and above.
pub(crate) fn layer<S>(endpoint: Option<&str>) -> Result<(Telemetry, Option<BoxedLayer<S>>), TelemetryError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let Some(endpoint) = endpoint.filter(|e| !e.trim().is_empty()) else { return Ok((Telemetry::off(), None)) };
    let bad = |reason: String| TelemetryError::Endpoint { endpoint: endpoint.to_owned(), reason };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(bad("must be an http:// or https:// URL (OTLP over HTTP, port 4318 by convention)".into()));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url(endpoint))
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut resource = Resource::builder();
    // OTEL_SERVICE_NAME, read by the default detectors, wins over the binary's name.
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service_name());
    }
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
    let tracer = provider.tracer("switchyard");
    let spans_only = tracing_subscriber::filter::filter_fn(|meta| meta.is_span() && *meta.level() <= tracing::Level::INFO);
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(spans_only).boxed();
    switchyard_bus::telemetry::set_exporting(true);
    Ok((Telemetry { provider: Some(provider) }, Some(layer)))
}

fn service_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "switchyard".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_follows_the_otlp_convention() {
        assert_eq!(traces_url("http://jaeger:4318"), "http://jaeger:4318/v1/traces");
        assert_eq!(traces_url("http://jaeger:4318/"), "http://jaeger:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }

    #[test]
    fn no_endpoint_is_off_and_a_bad_one_is_named() {
        let (guard, traces) = layer::<tracing_subscriber::Registry>(None).expect("off");
        assert!(!guard.is_on() && traces.is_none());
        let Err(err) = layer::<tracing_subscriber::Registry>(Some("jaeger:4317")) else { panic!("accepted a non-URL") };
        assert!(err.to_string().contains("otlp_endpoint"), "{err}");
    }
}
