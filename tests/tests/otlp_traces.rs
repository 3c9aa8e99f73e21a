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
//! check domain shares) and a Marqeta card (its commands' vendor calls, and
//! a processor callback's claim and store) run in the same test after the
//! payout.

use anyhow::{bail, ensure, Context as _, Result};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_bus::publisher::Outbound;
use switchyard_bus::{AvroEncoder, Publisher};
use switchyard_canonical::card::{CardAction, PinSpec};
use switchyard_canonical::card_outcome::{CardOutcome, CardOutcomeStatus};
use switchyard_canonical::kyc::{DocumentKind, IdDocument, KycCommand, Person};
use switchyard_canonical::{ProviderEvent, ProviderEventKind};
use switchyard_e2e::cards::{self, Processors};
use switchyard_e2e::checks::{check_config, provider};
use switchyard_e2e::{command, TestEnv, TopicReader};
use switchyard_simulators::{onfido, stripe};
use switchyard_worker::card::callback::PROVIDER_EVENT_SCHEMA;
use switchyard_worker::card::run::start_card_worker;
use switchyard_worker::card::{CARD_COMMAND_SCHEMA, CARD_OUTCOME_SCHEMA};
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
    one_marqeta_card_is_traced_through_its_calls_and_callbacks(&env, &telemetry, &received).await?;
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

/// A fresh trace id and the id of the producer's own span in it (the remote
/// root, never exported here).
fn new_trace() -> (String, String) {
    (uuid::Uuid::new_v4().simple().to_string(), uuid::Uuid::new_v4().simple().to_string()[..16].to_owned())
}

/// The spans of `trace_id` once the span `last` (a publish at the end of
/// the hop) has arrived.
async fn spans_of(received: &Received, trace_id: &str, last: &str) -> Result<Vec<Got>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let spans: Vec<Got> = received.spans().into_iter().filter(|s| s.trace_id == trace_id).collect();
        if spans.iter().any(|s| s.span_id == last) {
            return Ok(spans);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("span {last} of trace {trace_id} never arrived; got {spans:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Marqeta card traced like a payout: every HTTP request the card worker
/// sends Marqeta (SET_PIN with a PIN block is two, the control token and
/// `PUT /pins`) is a `vendor_call` span under the `card` handler, and its id
/// is the `traceparent` Marqeta receives. A processor callback for the card
/// (it was suspended at Marqeta) hangs its `claim` (the card read by its
/// token) and `store` (the compare-and-set write recording the event)
/// under the `card_callback` span, and calls no vendor.
async fn one_marqeta_card_is_traced_through_its_calls_and_callbacks(
    env: &TestEnv,
    telemetry: &switchyard_service::Telemetry,
    received: &Received,
) -> Result<()> {
    let processors = Processors::start(switchyard_simulators::FaultPlan::default()).await?;
    let (tap_url, marqeta_saw) = header_tap(processors.marqeta.base_url()).await?;
    let mut config = cards::config(env, &processors, "marqeta", 2_000);
    for p in config.providers.iter_mut().filter(|p| p.name == "marqeta") {
        p.base_url = format!("{tap_url}/v3");
    }
    let shutdown = CancellationToken::new();
    let worker = start_card_worker(config, shutdown.clone()).await?;
    let publisher = Publisher::new(&env.kafka)?;
    let commands = env.topic("cards.commands.v1");
    let encoder = AvroEncoder::register(&env.registry_client, &commands, CARD_COMMAND_SCHEMA).await?;
    let outcomes = TopicReader::new(&env.kafka, &env.topic("cards.outcomes.v1"))?;
    let events = TopicReader::new(&env.kafka, &env.topic("cards.events.v1"))?;
    let decoder = switchyard_bus::AvroDecoder::new(env.registry_client.clone(), CARD_OUTCOME_SCHEMA)?;

    let run = &env.prefix;
    let card_id = format!("{run}card-1");
    let mut pin = cards::command(&card_id, &format!("{run}card-pin"), CardAction::SetPin);
    pin.pin = Some(PinSpec { encrypted_pin_block: Some("0412AC89FF3E21D7".into()), hosted_flow_token: None });
    let sequence = [
        cards::command(&card_id, &format!("{run}card-issue"), CardAction::Issue),
        cards::command(&card_id, &format!("{run}card-activate"), CardAction::Activate),
        pin,
    ];
    // (trace id, the outcome's publish span) per command, each in its own trace.
    let mut traced = Vec::new();
    let mut token = None;
    for cmd in &sequence {
        let (trace_id, core_span) = new_trace();
        let record = Outbound {
            topic: commands.clone(),
            key: Some(card_id.clone().into_bytes()),
            payload: encoder.encode(cmd)?,
            headers: vec![
                ("correlation-id".into(), format!("corr-{}", cmd.idempotency_key).into_bytes()),
                ("idempotency-key".into(), cmd.idempotency_key.clone().into_bytes()),
                ("traceparent".into(), format!("00-{trace_id}-{core_span}-01").into_bytes()),
            ],
        };
        publisher.publish(&record).await?;
        // One at a time: the card's next step needs this one done.
        let answer = outcomes.collect(1, Duration::from_secs(60)).await?.remove(0);
        let outcome: CardOutcome = decoder.decode(&answer.payload).await?;
        ensure!((outcome.status, outcome.provider.as_deref()) == (CardOutcomeStatus::Succeeded, Some("marqeta")), "{outcome:?}");
        if token.is_none() {
            token = outcome.processor_reference.clone();
        }
        let tp = answer.headers.get("traceparent").context("card outcome without traceparent")?;
        ensure!(tp.starts_with(&format!("00-{trace_id}-")), "the card outcome continues its command's trace: {tp}");
        traced.push((trace_id, tp.split('-').nth(2).unwrap_or_default().to_owned()));
    }

    // Marqeta suspended the card: its callback, as the ingester publishes it.
    let token = token.context("the ISSUE outcome names the Marqeta card token")?;
    let (callback_trace, callback_parent) = new_trace();
    let topic = env.topic("cards.provider-events.v1");
    let event_encoder = AvroEncoder::register(&env.registry_client, &topic, PROVIDER_EVENT_SCHEMA).await?;
    let now = switchyard_canonical::now_ms();
    let event = ProviderEvent {
        event_id: format!("{run}ev-suspended"),
        provider: "marqeta".into(),
        domain: "cards".into(),
        subject_id: token.clone(),
        provider_reference: token.clone(),
        kind: ProviderEventKind::Other,
        vendor_event_type: "state.suspended".into(),
        amount_minor: None,
        currency: None,
        reason: None,
        occurred_at_ms: now,
        received_at_ms: now,
        payload_sha256: String::new(),
    };
    let record = Outbound {
        topic,
        key: Some(token.into_bytes()),
        payload: event_encoder.encode(&event)?,
        headers: vec![
            ("correlation-id".into(), b"corr-otlp-card-callback".to_vec()),
            ("traceparent".into(), format!("00-{callback_trace}-{callback_parent}-01").into_bytes()),
        ],
    };
    publisher.publish(&record).await?;
    // The card events of the commands come first; the callback's is its trace's.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let suspended_span = loop {
        let record = events.collect(1, Duration::from_secs(60)).await?.remove(0);
        let tp = record.headers.get("traceparent").cloned().unwrap_or_default();
        if tp.starts_with(&format!("00-{callback_trace}-")) {
            break tp.split('-').nth(2).unwrap_or_default().to_owned();
        }
        ensure!(tokio::time::Instant::now() < deadline, "no card event from the callback");
    };
    shutdown.cancel();
    worker.join.await??;
    telemetry.flush();

    // Every request Marqeta got names a vendor_call span of its command's trace.
    let mut all = Vec::new();
    for (trace_id, outcome_span) in &traced {
        all.extend(spans_of(received, trace_id, outcome_span).await?);
    }
    let by_id: HashMap<&str, &Got> = all.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let sent = marqeta_saw.lock().unwrap_or_else(|e| e.into_inner()).clone();
    ensure!(sent.len() > sequence.len(), "SET_PIN alone is two Marqeta requests: {sent:?}");
    for tp in &sent {
        let span_id = tp.split('-').nth(2).unwrap_or_default();
        assert_eq!(by_id.get(span_id).map(|s| s.name.as_str()), Some("vendor_call"), "Marqeta got {tp}, not a vendor_call span: {all:#?}");
    }
    let calls: Vec<&&Got> = by_id.values().filter(|s| s.name == "vendor_call").collect();
    assert_eq!(calls.len(), sent.len(), "one vendor_call span per Marqeta request: {sent:?}");
    for call in &calls {
        let mut at = by_id.get(call.parent_id.as_str());
        while at.is_some_and(|p| p.name != "card") {
            at = at.and_then(|p| by_id.get(p.parent_id.as_str()));
        }
        assert!(at.is_some(), "the Marqeta call is inside the card handler: {all:#?}");
    }
    let (pin_trace, _) = &traced[2];
    let pin_calls = calls.iter().filter(|c| &c.trace_id == pin_trace).count();
    assert_eq!(pin_calls, 2, "SET_PIN: the control token and PUT /pins, each a span: {all:#?}");

    let spans = spans_of(received, &callback_trace, &suspended_span).await?;
    let by_id: HashMap<&str, &Got> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let parent_of = |span: &Got| by_id.get(span.parent_id.as_str()).map(|p| p.name.clone());
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let handler = named("card_callback");
    assert_eq!(handler.len(), 1, "one callback handler span: {spans:#?}");
    assert_eq!(parent_of(handler[0]).as_deref(), Some("consume"), "the callback handler runs inside the consume: {spans:#?}");
    for step in ["claim", "store"] {
        let found = named(step);
        assert_eq!(found.len(), 1, "one {step} span in the callback's trace: {spans:#?}");
        assert_eq!(parent_of(found[0]).as_deref(), Some("card_callback"), "{step} is the callback handler's child: {spans:#?}");
    }
    assert!(named("vendor_call").is_empty(), "a callback calls no vendor: {spans:#?}");
    let mut at = by_id.get(suspended_span.as_str()).copied();
    while at.is_some_and(|p| p.name != "card_callback") {
        at = at.and_then(|p| by_id.get(p.parent_id.as_str()).copied());
    }
    assert!(at.is_some(), "the card event's publish is inside the callback handler: {spans:#?}");
    Ok(())
}
