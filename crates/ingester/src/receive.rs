//! `POST /webhooks/{provider}`: verify, map, dedup, publish, then answer.
//!
//! The answer is 2xx only once the event is on the bus (or was already), so
//! an accepted callback is never lost; everything else is a status the vendor
//! retries: 401 forged or stale, 400 malformed, 409 a copy being published
//! right now, 413 too large, 429 over the provider's rate, 503 broker or
//! database unavailable. Logs name the provider, event id and reason, never
//! secrets or payloads.
//!
//! A failed publish is one of two kinds. *Definite* (refused before anything
//! was sent): the claim is released and the vendor's retry publishes.
//! *Unknown* (the producer timed out a record the broker may have written):
//! answered 503 too, but the row is marked unverified, and the retry that
//! takes it over looks for the event on the bus ([`crate::verify`]) before
//! publishing, so the event is neither lost nor published twice.

use crate::metrics::Stage;
use crate::providers::Provider;
use crate::Ingester;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_adapters::webhooks::Refusal;
use switchyard_bus::headers::set_header;
use crate::faults::{PublishOutcome, PublishPlan};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use switchyard_bus::{BusError, HeaderName, MessageContext, Outbound, Publisher};
use switchyard_canonical::ProviderEvent;
use crate::verify::Lookup;
use switchyard_store::webhooks::{DedupClaim, DedupVerdict};

pub(crate) async fn receive(
    State(app): State<Arc<Ingester>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(provider): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(p) = app.providers.get(&provider).cloned() else {
        app.metrics.refused("unknown", "unknown_provider");
        return (StatusCode::NOT_FOUND, "unknown provider").into_response();
    };
    let started = Instant::now();
    app.metrics.received(&p.name);
    let client = crate::source::client_address(peer.ip(), &headers, &app.trusted_proxies);
    if !crate::source::allowed(client, &p.allow_from) {
        // Before the body is verified or mapped: nothing of it is logged.
        app.metrics.refused(&p.name, "source_not_allowed");
        tracing::warn!(provider = %p.name, %client, "callback from outside the provider's allowed sources refused");
        return (StatusCode::FORBIDDEN, "source not allowed").into_response();
    }
    // The path the vendor posted to, which TrueLayer signs.
    let response = handle(&app, &p, uri.path(), &headers, body).await;
    app.metrics.handled(&p.name, started.elapsed().as_secs_f64());
    response
}

async fn handle(app: &Ingester, p: &Provider, path: &str, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            app.metrics.refused(&p.name, "too_large");
            return (rejection.status(), "body refused").into_response();
        }
    };
    if let Some(limiter) = &p.limiter {
        if let Err(wait) = limiter.try_take() {
            app.metrics.refused(&p.name, "rate_limited");
            return retry_after(StatusCode::TOO_MANY_REQUESTS, wait, "rate limited");
        }
    }
    let now = switchyard_canonical::now_ms();
    if let Some(keys) = p.scheme.plaid_keys() {
        // Keys fetched from the vendor: an unknown kid is asked for before
        // the (synchronous) verification; an unreachable endpoint is no
        // verdict on the callback, so the vendor is asked to retry.
        let fetched = keys.prepare(headers, now).await;
        app.metrics.verification_keys(&p.name, &keys.keys(), now);
        if let Err(e) = fetched {
            app.metrics.refused(&p.name, "key_endpoint_unavailable");
            tracing::warn!(provider = %p.name, error = %e, "verification key endpoint unavailable");
            return retry_after(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5), "verification keys unavailable");
        }
    }
    if let Some(keys) = p.scheme.truelayer_keys() {
        // TrueLayer's JWKS, fetched only from an allowed `jku`; as above.
        let fetched = keys.prepare(headers, now).await;
        app.metrics.truelayer_keys(&p.name, &keys.keys());
        if let Err(e) = fetched {
            app.metrics.refused(&p.name, "key_endpoint_unavailable");
            tracing::warn!(provider = %p.name, error = %e, "TrueLayer JWKS unavailable");
            return retry_after(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5), "verification keys unavailable");
        }
    }
    let events = match verify_and_map(p, path, headers, &body, now) {
        Ok(e) => e,
        Err(refusal) => {
            app.metrics.refused(&p.name, refusal.label());
            tracing::info!(provider = %p.name, reason = refusal.label(), "callback refused");
            let status = match refusal {
                Refusal::BadSignature
                | Refusal::StaleTimestamp
                | Refusal::WrongAlgorithm
                | Refusal::UnknownKey
                | Refusal::ExpiredKey
                | Refusal::UntrustedKeyUrl => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_REQUEST,
            };
            return (status, refusal.to_string()).into_response();
        }
    };
    // A batch (Marqeta) is answered 2xx only once every event in it is on
    // the bus. On the first that is not, the vendor gets that answer and
    // retries the whole delivery; the events already published are then
    // duplicates, answered without publishing again.
    for event in events {
        let response = accept(app, p, event).await;
        if !response.status().is_success() {
            return response;
        }
    }
    accepted(p)
}

/// Dedups and publishes one event of a verified delivery.
async fn accept(app: &Ingester, p: &Provider, event: ProviderEvent) -> Response {
    let claim = DedupClaim {
        provider: p.name.clone(),
        event_id: event.event_id.clone(),
        payload_sha256: event.payload_sha256.clone(),
        subject_id: event.subject_id.clone(),
        lease_ms: app.lease.as_millis() as i64,
    };
    let claiming = Instant::now();
    let verdict = app.dedup.claim(claim).await;
    app.metrics.stage(Stage::Claim, claiming.elapsed().as_secs_f64());
    match verdict {
        Err(e) => {
            tracing::warn!(provider = %p.name, error = %e, "dedup store unavailable");
            app.metrics.refused(&p.name, "store_unavailable");
            retry_after(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5), "store unavailable")
        }
        Ok(DedupVerdict::Duplicate) => {
            app.metrics.duplicate(&p.name);
            accepted(p)
        }
        Ok(DedupVerdict::InFlight) => {
            app.metrics.refused(&p.name, "in_flight");
            retry_after(StatusCode::CONFLICT, Duration::from_secs(1), "another delivery of this event is in progress")
        }
        Ok(DedupVerdict::IdReused) => {
            // Only a published event is judged so (a never-published row
            // takes the retry's body), so answering 200 loses nothing: the
            // published body stands, ops hear about the other. Refusing
            // would have the vendor retry for days.
            app.metrics.id_reused(&p.name);
            tracing::warn!(provider = %p.name, event_id = %event.event_id, "event id already published with a different body; not published again");
            app.audit_id_reuse(&event).await;
            accepted(p)
        }
        Ok(DedupVerdict::Claimed) => publish(app, p, event).await,
        Ok(DedupVerdict::Unverified { since_ms }) => publish_unverified(app, p, event, since_ms).await,
    }
}

/// An earlier attempt may have put the event on the bus: look before publishing.
async fn publish_unverified(app: &Ingester, p: &Provider, event: ProviderEvent, since_ms: i64) -> Response {
    let lookup = Lookup { topic: p.route(&event.vendor_event_type).1.to_owned(), provider: p.name.clone(), event_id: event.event_id.clone(), since_ms };
    let looking = Instant::now();
    let found = crate::verify::on_bus(&app.kafka, lookup).await;
    app.metrics.stage(Stage::Verify, looking.elapsed().as_secs_f64());
    match found {
        Ok(false) => publish(app, p, event).await,
        Ok(true) => {
            // Its earlier publication landed after all. Counted as published
            // only if this mark is the one that moves the row: the attempt
            // that published it may have been acknowledged and marked late,
            // after its lease ran out, and then counts it itself. The mark is
            // awaited, as the next copy would otherwise look again.
            tracing::info!(provider = %p.name, event_id = %event.event_id, "event of unknown fate found on the bus; not published again");
            app.metrics.found_on_bus(&p.name);
            let lag = (switchyard_canonical::now_ms() - event.occurred_at_ms) as f64 / 1000.0;
            match app.dedup.mark_published(&p.name, &event.event_id).await {
                Ok(moved) => {
                    if moved {
                        app.metrics.published(&p.name, lag);
                    }
                    accepted(p)
                }
                Err(e) => {
                    tracing::warn!(provider = %p.name, error = %e, "found on the bus but not marked");
                    release(app, p, &event).await;
                    retry_after(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5), "store unavailable")
                }
            }
        }
        Err(e) => {
            // Without knowing, neither publishing (a duplicate) nor
            // acknowledging (a loss) is safe: the vendor retries.
            tracing::warn!(provider = %p.name, event_id = %event.event_id, error = %e, "cannot look for an event of unknown fate on the bus");
            app.metrics.refused(&p.name, "broker_unavailable");
            release(app, p, &event).await;
            retry_after(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5), "broker unavailable")
        }
    }
}

fn verify_and_map(p: &Provider, path: &str, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<Vec<ProviderEvent>, Refusal> {
    let verified = p.scheme.verify_at(path, headers, body, now_ms)?;
    let facts = p.vendor.map_all(body, &verified)?;
    // The digest is the delivery's (a batch's events share it, and a
    // re-rendered batch is judged per event id as any re-rendered body is),
    // except where a vendor repeats events in later bodies by design
    // (Lithic's card transactions): there it is the event's own.
    Ok(facts
        .into_iter()
        .map(|f| {
            let digest = p.vendor.digest(body, &f);
            let (domain, _) = p.route(&f.vendor_event_type);
            let domain = domain.to_owned();
            f.into_event(&p.name, &domain, now_ms, digest)
        })
        .collect())
}

async fn publish(app: &Ingester, p: &Provider, event: ProviderEvent) -> Response {
    let topic = p.route(&event.vendor_event_type).1.to_owned();
    let Some(encoder) = app.encoders.get(&topic) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no encoder for topic").into_response();
    };
    let payload = match encoder.encode(&event) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(provider = %p.name, error = %e, "provider event does not fit its schema");
            release(app, p, &event).await;
            return (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed").into_response();
        }
    };
    let mut headers = MessageContext::new_root().outbound_headers(Some(encoder.schema_id()));
    set_header(&mut headers, HeaderName::PROVIDER, p.name.as_bytes());
    set_header(&mut headers, HeaderName::PROVIDER_EVENT_ID, event.event_id.as_bytes());
    let record = Outbound { topic, key: Some(event.subject_id.as_bytes().to_vec()), payload, headers };
    let publisher = app.publisher();
    let plan = app.faults.plan(&event.event_id);
    let publishing = Instant::now();
    let published = tokio::time::timeout(app.publish_timeout, send(&publisher, &record, plan)).await;
    app.metrics.stage(Stage::Publish, publishing.elapsed().as_secs_f64());
    match published {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if never_sent(&e) => {
            tracing::warn!(provider = %p.name, event_id = %event.event_id, error = %e, "publish refused; vendor will retry");
            app.renew_publisher(&publisher);
            return unavailable(app, p, &event).await;
        }
        Ok(Err(e)) => {
            // A timed-out batch may have been written by the broker.
            tracing::warn!(provider = %p.name, event_id = %event.event_id, error = %e, "publish result unknown; vendor will retry");
            app.renew_publisher(&publisher);
            return unknown(app, p, &event).await;
        }
        Err(_) => {
            // Not reached while librdkafka's message timeout is the shorter
            // one. Dropping the delivery future would not unqueue the record.
            tracing::warn!(provider = %p.name, event_id = %event.event_id, "broker did not acknowledge in time; vendor will retry");
            app.renew_publisher(&publisher);
            return unknown(app, p, &event).await;
        }
    }
    if !plan.delay_after.is_zero() {
        tokio::time::sleep(plan.delay_after).await;
    }
    let lag = (switchyard_canonical::now_ms() - event.occurred_at_ms) as f64 / 1000.0;
    let marking = Instant::now();
    let queued = app.dedup.mark_published_later(&p.name, &event.event_id).await;
    app.metrics.stage(Stage::MarkPublished, marking.elapsed().as_secs_f64());
    match queued {
        // Counted when the mark commits, and only if it moved the row: a
        // mark that lands after the lease ran out may find a copy already
        // found the event on the bus and counted it (each event once).
        Ok(mark) => {
            let (metrics, provider, event_id) = (app.metrics.clone(), p.name.clone(), event.event_id.clone());
            tokio::spawn(async move {
                match mark.await {
                    Ok(true) => metrics.published(&provider, lag),
                    Ok(false) => {}
                    Err(e) => unmarked(&metrics, &provider, &event_id, &e),
                }
            });
        }
        Err(e) => unmarked(&app.metrics, &p.name, &event.event_id, &e),
    }
    accepted(p)
}

/// The event is on the bus: the callback is answered 2xx all the same. The
/// row stays pending until its lease ends; a later copy then finds the
/// event on the bus, marks and counts it. Until one comes it is counted here
/// only, so `published` never counts an event twice.
fn unmarked(metrics: &crate::metrics::Metrics, provider: &str, event_id: &str, e: &switchyard_store::StoreError) {
    metrics.unmarked(provider);
    tracing::warn!(%provider, %event_id, error = %e, "published but not marked");
}

/// The publish itself, through the test seam ([`crate::faults`]).
async fn send(publisher: &Publisher, record: &Outbound, plan: PublishPlan) -> Result<(i32, i64), BusError> {
    if !plan.delay_before.is_zero() {
        tokio::time::sleep(plan.delay_before).await;
    }
    let produced = |code| BusError::Kafka(KafkaError::MessageProduction(code));
    match plan.outcome {
        PublishOutcome::Normal => publisher.publish(record).await,
        PublishOutcome::Refused => Err(produced(RDKafkaErrorCode::QueueFull)),
        PublishOutcome::AckLost => {
            publisher.publish(record).await?;
            Err(produced(RDKafkaErrorCode::MessageTimedOut))
        }
    }
}

/// Failures librdkafka reports only for records that never left the
/// process or that the broker refused outright (its idempotent retries
/// answer a written record as written). Anything else may be on the bus.
fn never_sent(e: &BusError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e,
        BusError::Kafka(KafkaError::MessageProduction(
            C::QueueFull
                | C::PurgeQueue
                | C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::UnknownTopic
                | C::UnknownPartition
                | C::UnknownTopicOrPartition
                | C::TopicAuthorizationFailed
        ))
    )
}

async fn unknown(app: &Ingester, p: &Provider, event: &ProviderEvent) -> Response {
    app.metrics.refused(&p.name, "publish_unknown");
    if let Err(e) = app.dedup.mark_unknown(&p.name, &event.event_id, app.unknown_hold.as_millis() as i64).await {
        // The claim's lease still runs; when it ends the row is unverified
        // all the same, so the next copy looks on the bus.
        tracing::warn!(provider = %p.name, error = %e, "unknown publish result not recorded; the lease will expire");
    }
    retry_after(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5), "broker unavailable")
}

async fn unavailable(app: &Ingester, p: &Provider, event: &ProviderEvent) -> Response {
    app.metrics.refused(&p.name, "broker_unavailable");
    release(app, p, event).await;
    retry_after(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5), "broker unavailable")
}

async fn release(app: &Ingester, p: &Provider, event: &ProviderEvent) {
    if let Err(e) = app.dedup.release(&p.name, &event.event_id).await {
        tracing::warn!(provider = %p.name, error = %e, "claim not released; the lease will expire");
    }
}

/// Adyen wants `[accepted]` as the body; the others read only the status.
fn accepted(p: &Provider) -> Response {
    let body = match p.vendor {
        switchyard_adapters::webhooks::WebhookVendor::Adyen => "[accepted]",
        _ => "{\"received\":true}",
    };
    (StatusCode::OK, body).into_response()
}

fn retry_after(status: StatusCode, wait: Duration, message: &'static str) -> Response {
    let mut response = (status, message).into_response();
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert("retry-after", v);
    }
    response
}
