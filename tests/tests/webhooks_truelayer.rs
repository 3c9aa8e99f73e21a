//! TrueLayer webhooks through the ingester, signed by TrueLayer's own
//! implementation of its scheme (the `truelayer-signing` crate: detached
//! ES512 JWS in `Tl-Signature` over method, path, the signed headers and
//! the body, with `jku` naming the JWKS), with a P-521 key this test makes
//! and a JWKS it serves as TrueLayer serves its own.
//!
//! - Verified callbacks are published once on `openbanking.provider-events.v1`,
//!   in our vocabulary, even when TrueLayer delivers one twice.
//! - Another key under the same kid, a tampered body, a `jku` that is not
//!   on the allowlist (never fetched), an old `X-TL-Webhook-Timestamp` and
//!   a `kid` the JWKS does not hold are refused with 401 and counted by
//!   reason; the unknown kid makes the JWKS be fetched once, not per copy.
//! - A rotation (a new kid in the JWKS, the old one gone) is learnt with one
//!   refetch; the keys are exported as `switchyard_webhooks_verification_key_info`.

use anyhow::{Context, Result};
use axum::routing::get;
use base64::Engine as _;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_canonical::ProviderEventKind;
use switchyard_e2e::webhooks::{drain, url};
use switchyard_ingester::config::ProviderConfig;
use switchyard_ingester::start_ingester;
use switchyard_localstack::LocalStack;
use tokio_util::sync::CancellationToken;

const PATH: &str = "/webhooks/truelayer";

/// A P-521 key: its PEM (for TrueLayer's signer) and its JWK.
struct Key {
    kid: String,
    pem: Vec<u8>,
    jwk: String,
}

fn key(kid: &str) -> Result<Key> {
    let group = EcGroup::from_curve_name(Nid::SECP521R1)?;
    let ec = EcKey::generate(&group)?;
    let (mut x, mut y, mut ctx) = (BigNum::new()?, BigNum::new()?, BigNumContext::new()?);
    ec.public_key().affine_coordinates(&group, &mut x, &mut y, &mut ctx)?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwk = format!(
        r#"{{"kty":"EC","alg":"ES512","use":"sig","kid":"{kid}","crv":"P-521","x":"{}","y":"{}"}}"#,
        b64.encode(x.to_vec_padded(66)?),
        b64.encode(y.to_vec_padded(66)?)
    );
    Ok(Key { kid: kid.to_owned(), pem: ec.private_key_to_pem()?, jwk })
}

/// A JWKS served at `/.well-known/jwks`, counting its fetches.
struct Jwks {
    url: String,
    doc: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl Jwks {
    async fn serve(keys: &[&Key]) -> Result<Self> {
        let doc = Arc::new(Mutex::new(String::new()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (d, f) = (doc.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/.well-known/jwks",
            get(move || {
                let (d, f) = (d.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let body = d.lock().map(|d| d.clone()).unwrap_or_default();
                    ([("content-type", "application/json")], body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/.well-known/jwks", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        let jwks = Self { url, doc, fetches };
        jwks.publish(keys);
        Ok(jwks)
    }

    fn publish(&self, keys: &[&Key]) {
        let list: Vec<&str> = keys.iter().map(|k| k.jwk.as_str()).collect();
        if let Ok(mut d) = self.doc.lock() {
            *d = format!(r#"{{"keys":[{}]}}"#, list.join(","));
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A delivery as TrueLayer sends one: `Tl-Signature` by `signer` naming
/// `jku`, `X-TL-Webhook-Timestamp` `sent_at_s` signed with it.
struct Delivery {
    body: String,
    signature: String,
    timestamp: String,
}

fn sign(signer: &Key, jku: &str, body: &str, sent_at_s: i64) -> Result<Delivery> {
    let timestamp = rfc3339(sent_at_s);
    let signature = truelayer_signing::sign_with_pem(&signer.kid, &signer.pem)
        .jku(jku)
        .method(truelayer_signing::Method::Post)
        .path(PATH)
        .header("X-TL-Webhook-Timestamp", timestamp.as_bytes())
        .header("Content-Type", b"application/json")
        .body(body.as_bytes())
        .build_signer()
        .sign()
        .context("TrueLayer's signer")?;
    Ok(Delivery { body: body.to_owned(), signature, timestamp })
}

fn rfc3339(unix_s: i64) -> String {
    let days = unix_s.div_euclid(86_400);
    let secs = unix_s.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm), independent of the code under test.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn payment(t: &str, event_id: &str, payment_id: &str) -> String {
    let verb = t.trim_start_matches("payment_");
    format!(
        r#"{{"type":"{t}","event_version":1,"event_id":"{event_id}","payment_id":"{payment_id}","{verb}_at":"2026-12-01T10:00:00.000Z","payment_method":{{"type":"bank_transfer","provider_id":"mock-payments-gb-redirect","scheme_id":"faster_payments_service"}}}}"#
    )
}

async fn post(http: &reqwest::Client, to: &str, d: Delivery) -> Result<u16> {
    let reply = http
        .post(to)
        .header("Tl-Signature", d.signature)
        .header("X-TL-Webhook-Timestamp", d.timestamp)
        .header("Content-Type", "application/json")
        .body(d.body)
        .send()
        .await?;
    Ok(reply.status().as_u16())
}

/// As TrueLayer delivers: a non-2xx answer is retried, each retry a new
/// send signed anew (the ingester tells a copy of an event whose
/// publication is still being recorded to retry, with 409).
async fn deliver(http: &reqwest::Client, to: &str, signer: &Key, jku: &str, body: String) -> Result<u16> {
    let mut status = 0;
    for _ in 0..50 {
        status = post(http, to, sign(signer, jku, &body, switchyard_canonical::now_ms() / 1000)?).await?;
        if status != 409 && status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(status)
}

#[tokio::test(flavor = "multi_thread")]
async fn truelayer_callbacks_are_verified_published_once_and_forgeries_refused() -> Result<()> {
    let stack = LocalStack::new("tlwh").await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (k1, k2, never, attacker) = (key("tl-k1")?, key("tl-k2")?, key("tl-never-issued")?, key("tl-k1")?);
    let jwks = Jwks::serve(&[&k1]).await?;
    let foreign = Jwks::serve(&[&attacker]).await?;
    let provider = ProviderConfig { jwks_urls: vec![jwks.url.clone()], ..ProviderConfig::new("openbanking", Vec::new()) };
    let mut config = stack.ingester_config(BTreeMap::from([("truelayer".to_owned(), provider)]));
    let topic = stack.topic("openbanking.provider-events.v1");
    config.topics.insert("openbanking".to_owned(), topic.clone());
    let shutdown = CancellationToken::new();
    let ingester = start_ingester(config, shutdown.clone()).await?;
    let to = url(&ingester, "truelayer");
    let m = &ingester.metrics;
    let http = reqwest::Client::new();
    let post = |d: Delivery| post(&http, &to, d);
    let now_s = || switchyard_canonical::now_ms() / 1000;
    let id = |n: &str| format!("{n}-{run}");

    // Genuine callbacks; the first delivered twice.
    let executed = payment("payment_executed", &id("ev-1"), &id("pay-1"));
    assert_eq!(deliver(&http, &to, &k1, &jwks.url, executed.clone()).await?, 200);
    assert_eq!(deliver(&http, &to, &k1, &jwks.url, executed.clone()).await?, 200, "TrueLayer's retry, re-signed, is answered 200 too");
    let settled = payment("payment_settled", &id("ev-2"), &id("pay-2"));
    assert_eq!(deliver(&http, &to, &k1, &jwks.url, settled.clone()).await?, 200);
    assert_eq!(jwks.fetches(), 1, "the JWKS is fetched once and cached");

    // Forgeries, each refused and counted under its reason.
    let forged = payment("payment_settled", &id("ev-forged"), &id("pay-1"));
    assert_eq!(post(sign(&attacker, &jwks.url, &forged, now_s())?).await?, 401, "another key under TrueLayer's kid");
    let mut tampered = sign(&k1, &jwks.url, &payment("payment_failed", &id("ev-3"), &id("pay-1")), now_s())?;
    tampered.body = tampered.body.replace("payment_failed", "payment_settled");
    assert_eq!(post(tampered).await?, 401, "tampered body");
    assert_eq!(post(sign(&attacker, &foreign.url, &forged, now_s())?).await?, 401, "a jku not on the allowlist");
    assert_eq!(foreign.fetches(), 0, "a jku not on the allowlist is never fetched");
    assert_eq!(post(sign(&k1, &jwks.url, &forged, now_s() - 301)?).await?, 401, "timestamp older than the tolerance (a replay)");
    assert_eq!(post(sign(&never, &jwks.url, &forged, now_s())?).await?, 401, "unknown kid");
    assert_eq!(post(sign(&never, &jwks.url, &forged, now_s())?).await?, 401, "unknown kid, again");
    assert_eq!(jwks.fetches(), 2, "an unknown kid refetches the JWKS once, not per delivery");
    assert_eq!(m.refused_count("truelayer", "bad_signature"), 2);
    assert_eq!(m.refused_count("truelayer", "untrusted_key_url"), 1);
    assert_eq!(m.refused_count("truelayer", "stale_timestamp"), 1);
    assert_eq!(m.refused_count("truelayer", "unknown_key"), 2);

    // TrueLayer rotates: k2 replaces k1 in its JWKS. The new kid is learnt
    // with one refetch; k1 then no longer verifies.
    jwks.publish(&[&k2]);
    let payout = format!(
        r#"{{"type":"payout_executed","event_version":1,"event_id":"{}","payout_id":"{}","executed_at":"2026-12-01T10:00:00Z"}}"#,
        id("ev-4"),
        id("po-1")
    );
    assert_eq!(deliver(&http, &to, &k2, &jwks.url, payout.clone()).await?, 200, "signed by the rotated key");
    assert_eq!(jwks.fetches(), 3, "one refetch for the new kid");
    assert_eq!(post(sign(&k1, &jwks.url, &forged, now_s())?).await?, 401, "a key TrueLayer withdrew");
    assert_eq!(m.refused_count("truelayer", "unknown_key"), 3);
    let metrics = m.render();
    for (kid, state) in [(k1.kid.as_str(), "withdrawn"), (k2.kid.as_str(), "live")] {
        let line = format!("provider=\"truelayer\",kid=\"{kid}\",alg=\"ES512\",state=\"{state}\"");
        assert!(metrics.contains(&line), "{line} not exported:\n{metrics}");
    }

    let published = drain(&stack, &topic, 3, Duration::from_secs(3)).await?;
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (key, e) in &published {
        assert_eq!((key, e.provider.as_str(), e.domain.as_str()), (&e.subject_id, "truelayer", "openbanking"));
        let kind = if e.kind == ProviderEventKind::PayoutPaid { "payout_paid" } else { "other" };
        *seen.entry((e.subject_id.clone(), format!("{kind}:{}", e.reason.clone().unwrap_or_default()))).or_default() += 1;
    }
    let expected: HashMap<(String, String), usize> =
        [(id("pay-1"), "other:EXECUTED"), (id("pay-2"), "other:SETTLED"), (id("po-1"), "payout_paid:EXECUTED")]
            .into_iter()
            .map(|(s, r)| ((s, r.to_owned()), 1))
            .collect();
    assert_eq!(seen, expected, "each verified callback once, no forgery");
    assert_eq!(m.duplicate_count("truelayer"), 1, "the second copy was absorbed");
    shutdown.cancel();
    Ok(())
}

/// The TrueLayer simulator's sender (`switchyard_simulators::truelayer_webhooks`)
/// through the ingester: accepted, published once, and its rotation learnt.
#[tokio::test(flavor = "multi_thread")]
async fn the_simulators_truelayer_webhooks_pass_the_ingester() -> Result<()> {
    use switchyard_simulators::truelayer_webhooks::{TrueLayerWebhooks, JWKS_PATH};
    let stack = LocalStack::new("tlsim").await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hooks = Arc::new(TrueLayerWebhooks::new(&format!("http://{}{JWKS_PATH}", listener.local_addr()?))?);
    let router = hooks.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let provider = ProviderConfig { jwks_urls: vec![hooks.jku().to_owned()], ..ProviderConfig::new("openbanking", Vec::new()) };
    let mut config = stack.ingester_config(BTreeMap::from([("truelayer".to_owned(), provider)]));
    let topic = stack.topic("openbanking.provider-events.v1");
    config.topics.insert("openbanking".to_owned(), topic.clone());
    let shutdown = CancellationToken::new();
    let ingester = start_ingester(config, shutdown.clone()).await?;
    let to = url(&ingester, "truelayer");
    let failed = format!(
        r#"{{"type":"payment_failed","event_version":1,"event_id":"sim-1-{run}","payment_id":"pay-{run}","failed_at":"2026-12-01T10:00:00Z","failure_stage":"authorized","failure_reason":"provider_rejected"}}"#
    );
    assert_eq!(hooks.send(&to, failed.as_bytes(), 2, 50).await, vec![200, 200]);
    hooks.rotate()?;
    let settled = format!(r#"{{"type":"payment_settled","event_version":1,"event_id":"sim-2-{run}","payment_id":"pay-{run}"}}"#);
    assert_eq!(hooks.send(&to, settled.as_bytes(), 1, 50).await, vec![200], "signed by the rotated key");
    let published = drain(&stack, &topic, 2, Duration::from_secs(3)).await?;
    let reasons: Vec<String> = published.iter().map(|(_, e)| e.reason.clone().unwrap_or_default()).collect();
    assert_eq!(reasons, ["FAILED:provider_rejected", "SETTLED"], "one partition (one payment), in order, each once");
    shutdown.cancel();
    Ok(())
}
