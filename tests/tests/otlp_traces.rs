//! Trace export over OTLP: one payout (command -> worker -> vendor call ->
//! outcome) arrives at an OTLP/HTTP receiver as one trace whose spans are
//! all connected (claim, vendor call, store under the handler), parented on
//! the command's `traceparent`, and the vendor
//! and the outcome's consumers are handed ids of spans in that trace.
//!
//! The receiver is in the test: an axum server accepting protobuf at
//! `/v1/traces`, decoded with the OTLP crate's own message types. The
//! export is set up as every service's `main` does (`otlp_endpoint`), in
//! this process, with the worker in-process. One test per file: the
//! tracing subscriber is process-wide, so the KYC check (the handler every
//! check domain shares) runs in the same test after the payout.

use anyhow::{bail, Context as _, Result};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_bus::publisher::Outbound;
use switchyard_bus::{AvroEncoder, Publisher};
use switchyard_canonical::kyc::{DocumentKind, IdDocument, KycCommand, Person};
use switchyard_e2e::checks::{check_config, provider};
use switchyard_e2e::{command, TestEnv, TopicReader};
use switchyard_simulators::{onfido, stripe};
use switchyard_worker::check_config::CheckVendorKind;
use switchyard_worker::check_run::start_check_worker;
use switchyard_worker::kyc::{Kyc, KYC_COMMAND_SCHEMA};
use switchyard_worker::start_payout_worker;
use tokio_util::sync::CancellationToken;

/// A span as the receiver got it, ids in hex.
#[derive(Debug, Clone)]
struct Got {
    trace_id: String,
    span_id: String,
    parent_id: String,
    name: String,
    service: String,
}

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Got>>>);

impl Received {
    fn spans(&self) -> Vec<Got> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn serve(router: axum::Router) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(url)
}

/// The OTLP/HTTP receiver: what a Jaeger or a Collector would be.
async fn otlp_receiver() -> Result<(String, Received)> {
    let received = Received::default();
    let sink = received.clone();
    let router = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let protobuf = headers.get("content-type").is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return (StatusCode::BAD_REQUEST, Vec::new());
                };
                if !protobuf {
                    return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                }
                let mut spans = sink.0.lock().unwrap_or_else(|e| e.into_inner());
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                        spans.push(Got {
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent_id: hex(&span.parent_span_id),
                            name: span.name,
                            service: service.clone(),
                        });
                    }
                }
                (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
            }
        }),
    );
    Ok((serve(router).await?, received))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A pass-through in front of the vendor simulator that notes the
/// `traceparent` of every request the worker sends.
async fn header_tap(upstream: String) -> Result<(String, Arc<Mutex<Vec<String>>>)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let noted = seen.clone();
    let client = reqwest::Client::new();
    let router = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (noted, client, upstream) = (noted.clone(), client.clone(), upstream.clone());
        async move {
            let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            noted.lock().unwrap_or_else(|e| e.into_inner()).push(traceparent);
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut req = client.request(method, format!("{upstream}{path}")).body(body);
            for (name, value) in &headers {
                if name != "host" && name != "content-length" {
                    req = req.header(name, value);
                }
            }
            match req.send().await {
                Ok(reply) => {
                    let status = StatusCode::from_u16(reply.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                    let content_type = reply.headers().get("content-type").cloned();
                    let body = reply.bytes().await.unwrap_or_default();
                    let mut out = axum::response::Response::new(axum::body::Body::from(body));
                    *out.status_mut() = status;
                    if let Some(ct) = content_type {
                        out.headers_mut().insert("content-type", ct);
                    }
                    out
                }
                Err(_) => {
                    let mut out = axum::response::Response::new(axum::body::Body::empty());
                    *out.status_mut() = StatusCode::BAD_GATEWAY;
                    out
                }
            }
        }
    });
    Ok((serve(router).await?, seen))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_payout_is_one_connected_trace_from_command_to_outcome() -> Result<()> {
    let (otlp_url, received) = otlp_receiver().await?;
    let telemetry = switchyard_service::init_logging_with(switchyard_service::LogFormat::Text, "warn", Some(&otlp_url))?;
    assert!(telemetry.is_on());

    let env = TestEnv::new("otlp").await?;
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let (vendor_url, vendor_traceparents) = header_tap(sim.base_url()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(env.worker_config(&vendor_url, None, "stripe"), shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;

    // Core banking's own span: the trace's remote root, never exported here.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let core_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let run = &env.prefix;
    let cmd = command(&format!("{run}po-1"), &format!("{run}key-1"), 4200);
    let record = Outbound {
        topic: producer.topic.clone(),
        key: Some(cmd.payout_id.clone().into_bytes()),
        payload: producer.encoder.encode(&cmd)?,
        headers: vec![
            ("correlation-id".into(), b"corr-otlp".to_vec()),
            ("idempotency-key".into(), cmd.idempotency_key.clone().into_bytes()),
            ("traceparent".into(), format!("00-{trace_id}-{core_span}-01").into_bytes()),
        ],
    };
    producer.publisher.publish(&record).await?;
    let outcome = reader.collect(1, Duration::from_secs(60)).await?.remove(0);
    shutdown.cancel();
    worker.join.await??;
    telemetry.flush();

    // The batch exporter sends on its own thread; wait for the outcome's publish span.
    let outcome_tp = outcome.headers.get("traceparent").context("outcome without traceparent")?.clone();
    let outcome_span = outcome_tp.split('-').nth(2).unwrap_or_default().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans: Vec<Got> = received.spans().into_iter().filter(|s| s.trace_id == trace_id).collect();
        if spans.iter().any(|s| s.span_id == outcome_span) {
            break spans;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the outcome's span {outcome_tp} never arrived; got {:#?}", received.spans());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(outcome_tp.starts_with(&format!("00-{trace_id}-")), "the outcome continues the command's trace: {outcome_tp}");

    // One connected tree: the only parent outside the trace is core banking's span.
    let by_id: HashMap<&str, &Got> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    assert_eq!(by_id.len(), spans.len(), "span ids are unique: {spans:#?}");
    let roots: Vec<&Got> = spans.iter().filter(|s| !by_id.contains_key(s.parent_id.as_str())).collect();
    assert_eq!(roots.len(), 1, "one root, the rest hang under it: {spans:#?}");
    assert_eq!(roots[0].parent_id, core_span, "parented on the command's traceparent: {spans:#?}");
    assert_eq!(roots[0].name, "publish", "the core producer's publish: {spans:#?}");

    let ancestors = |span: &Got| -> Vec<String> {
        let mut names = Vec::new();
        let mut at = by_id.get(span.parent_id.as_str());
        while let Some(parent) = at {
            names.push(parent.name.clone());
            at = by_id.get(parent.parent_id.as_str());
        }
        names
    };
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let consume = named("consume");
    assert_eq!(consume.len(), 1, "one consumed command: {spans:#?}");
    assert_eq!(by_id[consume[0].parent_id.as_str()].name, "publish", "the command's consume hangs under its publish");
    assert!(named("decode").iter().any(|s| ancestors(s).contains(&"consume".to_owned())), "decode inside consume: {spans:#?}");
    for step in ["claim", "store"] {
        let found = named(step);
        assert_eq!(found.len(), 1, "one {step} span: {spans:#?}");
        assert_eq!(ancestors(found[0]).first().map(String::as_str), Some("payout"), "{step} is the handler's child: {spans:#?}");
    }
    let calls = named("vendor_call");
    assert!(!calls.is_empty(), "the vendor call is a span: {spans:#?}");
    for call in &calls {
        assert!(ancestors(call).contains(&"consume".to_owned()), "vendor call inside the consume: {spans:#?}");
    }
    assert_eq!(ancestors(by_id[outcome_span.as_str()]).first().map(String::as_str), Some("payout"), "the outcome's publish is the handler's child");
    assert!(ancestors(by_id[outcome_span.as_str()]).contains(&"consume".to_owned()));

    // The vendor saw, on each request, the id of a vendor_call span of this trace.
    let sent = vendor_traceparents.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(sent.len(), calls.len(), "one span per vendor request: {sent:?}");
    for tp in &sent {
        let span_id = tp.split('-').nth(2).unwrap_or_default();
        assert!(tp.starts_with(&format!("00-{trace_id}-")), "vendor request outside the trace: {tp}");
        assert_eq!(by_id.get(span_id).map(|s| s.name.as_str()), Some("vendor_call"), "vendor got {tp}");
    }
    assert!(spans.iter().all(|s| s.service.contains("otlp_traces")), "service.name is the binary's: {:?}", spans.first());

    one_kyc_check_is_one_connected_trace(&env, &telemetry, &received).await?;
    drop(telemetry);
    Ok(())
}

/// A KYC check (the check handler KYC, AML and fraud share) traced like a
/// payout: claim, vendor calls, store and the outcome's publish all hang
/// under the `check` handler span of the one consumed command.
async fn one_kyc_check_is_one_connected_trace(env: &TestEnv, telemetry: &switchyard_service::Telemetry, received: &Received) -> Result<()> {
    let sim = onfido::spawn_onfido(onfido::OnfidoConfig::local()).await?;
    let shutdown = CancellationToken::new();
    let vendor = provider("onfido", CheckVendorKind::Onfido, &sim.base_url(), "api_sandbox.switchyard");
    let worker = start_check_worker::<Kyc>(check_config(env, "kyc", vec![vendor], "onfido"), shutdown.clone()).await?;
    let topic = env.topic("kyc.commands.v1");
    let encoder = AvroEncoder::register(&env.registry_client, &topic, KYC_COMMAND_SCHEMA).await?;
    let reader = TopicReader::new(&env.kafka, &env.topic("kyc.outcomes.v1"))?;

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let core_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let run = &env.prefix;
    let cmd = KycCommand {
        subject_id: format!("{run}app-1"),
        idempotency_key: format!("{run}kyc-1"),
        flow_id: None,
        person: Person { first_name: "Ada".into(), last_name: "Lovelace".into(), date_of_birth: Some("1990-12-10".into()), email: None },
        document: IdDocument { kind: DocumentKind::Passport, issuing_country: "GBR".into(), front_ref: "doc://1/front".into(), back_ref: None },
        selfie_ref: Some("doc://1/selfie".into()),
        requested_at_ms: switchyard_canonical::now_ms(),
    };
    let record = Outbound {
        topic,
        key: Some(cmd.subject_id.clone().into_bytes()),
        payload: encoder.encode(&cmd)?,
        headers: vec![
            ("correlation-id".into(), b"corr-otlp-kyc".to_vec()),
            ("idempotency-key".into(), cmd.idempotency_key.clone().into_bytes()),
            ("traceparent".into(), format!("00-{trace_id}-{core_span}-01").into_bytes()),
        ],
    };
    Publisher::new(&env.kafka)?.publish(&record).await?;
    let outcome = reader.collect(1, Duration::from_secs(60)).await?.remove(0);
    shutdown.cancel();
    worker.join.await??;
    telemetry.flush();

    let outcome_tp = outcome.headers.get("traceparent").context("KYC outcome without traceparent")?.clone();
    assert!(outcome_tp.starts_with(&format!("00-{trace_id}-")), "the outcome continues the command's trace: {outcome_tp}");
    let outcome_span = outcome_tp.split('-').nth(2).unwrap_or_default().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans: Vec<Got> = received.spans().into_iter().filter(|s| s.trace_id == trace_id).collect();
        if spans.iter().any(|s| s.span_id == outcome_span) {
            break spans;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the KYC outcome's span {outcome_tp} never arrived; got {:#?}", received.spans());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_id: HashMap<&str, &Got> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let roots: Vec<&Got> = spans.iter().filter(|s| !by_id.contains_key(s.parent_id.as_str())).collect();
    assert_eq!(roots.len(), 1, "one root, the rest hang under it: {spans:#?}");
    assert_eq!(roots[0].parent_id, core_span, "parented on the command's traceparent: {spans:#?}");
    let parent_of = |span: &Got| by_id.get(span.parent_id.as_str()).map(|p| p.name.clone());
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    assert_eq!(named("consume").len(), 1, "one consumed KYC command: {spans:#?}");
    let checks = named("check");
    assert_eq!(checks.len(), 1, "one check handler span: {spans:#?}");
    assert_eq!(parent_of(checks[0]).as_deref(), Some("consume"), "the handler runs inside the consume: {spans:#?}");
    for step in ["claim", "store"] {
        let found = named(step);
        assert_eq!(found.len(), 1, "one {step} span in the KYC trace: {spans:#?}");
        assert_eq!(parent_of(found[0]).as_deref(), Some("check"), "{step} is the check handler's child: {spans:#?}");
    }
    let calls = named("vendor_call");
    assert!(!calls.is_empty(), "the Onfido calls are spans: {spans:#?}");
    let under_check = |span: &Got| {
        let mut at = by_id.get(span.parent_id.as_str());
        while let Some(parent) = at {
            if parent.name == "check" {
                return true;
            }
            at = by_id.get(parent.parent_id.as_str());
        }
        false
    };
    assert!(calls.iter().all(|c| under_check(c)), "every vendor call inside the check: {spans:#?}");
    assert_eq!(parent_of(by_id[outcome_span.as_str()]).as_deref(), Some("check"), "the outcome's publish is the handler's child: {spans:#?}");
    Ok(())
}
