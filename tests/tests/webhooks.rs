//! The webhook ingester against a real broker and PostgreSQL: a callback
//! storm with forged, stale, duplicated and reordered deliveries; the broker
//! going away; secret rotation; and callbacks signed by independent
//! reference signers (Python's `standardwebhooks` and `hmac`, OpenSSL).

use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use switchyard_canonical::{EventProgress, ProviderEventKind, Transition};
use switchyard_e2e::webhooks::{drain, reference_sign, url};
use switchyard_ingester::config::{KeyConfig, ProviderConfig};
use switchyard_ingester::start_ingester;
use switchyard_localstack::{repo_root, LocalStack};
use switchyard_simulators::callbacks::{bodies, Callback, CallbackFaults, Signer, WebhookEmitter};
use tokio_util::sync::CancellationToken;

const STRIPE_SECRET: &str = "whsec_storm_stripe_secret";
const LITHIC_SECRET: &str = "whsec_c3dpdGNoeWFyZC1saXRoaWMtdGVzdC1rZXk=";
const ADYEN_HEX: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";

fn key(value: &str, not_after: Option<String>) -> KeyConfig {
    KeyConfig { not_after, ..KeyConfig::inline(value) }
}

fn provider(domain: &str, keys: Vec<KeyConfig>) -> ProviderConfig {
    ProviderConfig::new(domain, keys)
}

fn default_providers() -> BTreeMap<String, ProviderConfig> {
    let wise_public = std::fs::read_to_string(repo_root().join("ops/dev-keys/wise-webhook-dev-public.pem")).unwrap_or_default();
    BTreeMap::from([
        ("stripe".to_owned(), provider("payouts", vec![key(STRIPE_SECRET, None)])),
        ("lithic".to_owned(), provider("cards", vec![key(LITHIC_SECRET, None)])),
        ("adyen".to_owned(), provider("payouts", vec![key(ADYEN_HEX, None)])),
        ("wise".to_owned(), provider("payouts", vec![key(&wise_public, None)])),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storm_publishes_every_genuine_callback_once_and_nothing_forged_or_stale() -> Result<()> {
    let stack = LocalStack::new("webhook-storm").await?;
    let shutdown = CancellationToken::new();
    let ingester = start_ingester(stack.ingester_config(default_providers()), shutdown.clone()).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();

    // Two states per object, in life order, so reordering produces regressions.
    let mut stripe_events = Vec::new();
    for i in 0..1050 {
        let payout = format!("po-{run}-{i}");
        for (n, kind) in [(0, "payout.updated"), (1, "payout.paid")] {
            let id = format!("evt_{run}_{i}_{n}");
            let body = bodies::stripe_payout(&id, kind, &payout, &format!("po_{run}{i}"), 1000 + i, now_s() - 5 + n);
            stripe_events.push(Callback { id, body });
        }
    }
    let mut card_events = Vec::new();
    for i in 0..1050 {
        let card = format!("card-{run}-{i}");
        for (n, kind) in [(0, "card.created"), (1, "card.shipped")] {
            let id = format!("msg_{run}_{i}_{n}");
            card_events.push(Callback { body: bodies::lithic_card(&id, kind, &card, &format!("tok-{run}-{i}")), id });
        }
    }
    let faults = |seed| CallbackFaults {
        duplicate_ratio: 0.10,
        forged_ratio: 0.05,
        stale_ratio: 0.05,
        reorder_ratio: 0.05,
        drop_ratio: 0.0,
        max_delay_ms: 5,
        seed,
    };
    let stripe = WebhookEmitter::new(url(&ingester, "stripe"), Signer::Stripe { secret: STRIPE_SECRET.into() });
    let lithic = WebhookEmitter::new(url(&ingester, "lithic"), Signer::StandardWebhooks { secret: LITHIC_SECRET.into() });
    let (stripe_faults, lithic_faults) = (faults(7), faults(11));
    let (s, l) = tokio::join!(stripe.storm(stripe_events, &stripe_faults, 32), lithic.storm(card_events, &lithic_faults, 32));
    let callbacks = [&s, &l]
        .iter()
        .map(|r| r.delivered.len() + r.duplicated.len() + r.forged.len() + r.stale.len())
        .sum::<usize>();
    assert!(callbacks >= 5_000, "a storm of at least 5,000 callbacks, got {callbacks}");
    for (name, r) in [("stripe", &s), ("lithic", &l)] {
        assert!(r.attacks_accepted.is_empty(), "{name}: forged or stale accepted: {:?}", &r.attacks_accepted[..r.attacks_accepted.len().min(5)]);
        assert!(
            r.undelivered.is_empty(),
            "{name}: genuine callbacks never accepted: {}; refusals:\n{}",
            r.undelivered.len(),
            ingester.metrics.render().lines().filter(|l| l.contains("refused") && !l.starts_with('#')).collect::<Vec<_>>().join("\n")
        );
        assert!(r.forged.len() > 50 && r.stale.len() > 50 && r.duplicated.len() > 100, "{name}: the storm had its faults");
        assert_eq!(ingester.metrics.refused_count(name, "bad_signature") as usize, r.forged.len(), "{name}: each forgery refused as such");
        assert_eq!(ingester.metrics.refused_count(name, "stale_timestamp") as usize, r.stale.len(), "{name}: each stale callback refused as such");
    }

    for (topic, report, provider) in [("payouts.provider-events.v1", &s, "stripe"), ("cards.provider-events.v1", &l, "lithic")] {
        let published = drain(&stack, &stack.topic(topic), report.delivered.len(), Duration::from_secs(3)).await?;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (_, e) in &published {
            *counts.entry(e.event_id.as_str()).or_default() += 1;
        }
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect();
        assert!(twice.is_empty(), "{provider}: published more than once: {twice:?}");
        assert_eq!(published.len(), report.delivered.len(), "{provider}: every genuine callback published");
        for id in &report.delivered {
            assert!(counts.contains_key(id.as_str()), "{provider}: {id} accepted but not on the bus");
        }
        for id in report.forged.iter().chain(&report.stale) {
            assert!(!counts.contains_key(id.as_str()), "{provider}: attack {id} reached the bus");
        }
        assert_eq!(ingester.metrics.published_count(provider) as usize, report.delivered.len());

        // A consumer folding in bus order ends in the latest state whatever
        // the arrival order, and notices the regressions it ignored.
        let mut progress: HashMap<&str, EventProgress> = HashMap::new();
        let mut regressions = 0;
        for (key, e) in &published {
            assert_eq!(key, &e.subject_id, "keyed by subject");
            if progress.entry(e.subject_id.as_str()).or_default().apply(e.kind) == Transition::Regression {
                regressions += 1;
            }
        }
        let last = if provider == "stripe" { ProviderEventKind::PayoutPaid } else { ProviderEventKind::CardShipped };
        assert!(progress.values().all(|p| p.latest == Some(last)), "{provider}: every subject ends {last:?}");
        assert!(regressions > 0, "{provider}: reordering happened and was ignored");
    }
    shutdown.cancel();
    Ok(())
}

fn now_s() -> i64 {
    switchyard_canonical::now_ms() / 1000
}

fn stripe_callback(run: &str, i: usize) -> Callback {
    let id = format!("evt_{run}_{i}");
    Callback { body: bodies::stripe_payout(&id, "payout.paid", &format!("po-{run}-{i}"), &format!("po_{run}{i}"), 500, now_s()), id }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_accepts_old_and_new_secret_during_the_overlap_and_refuses_the_old_after() -> Result<()> {
    let stack = LocalStack::new("webhook-rotation").await?;
    let shutdown = CancellationToken::new();
    let overlap_ends = switchyard_canonical::now_ms() + 4_000;
    let not_after = switchyard_simulators::iso8601(overlap_ends);
    let providers = BTreeMap::from([(
        "stripe".to_owned(),
        provider("payouts", vec![key("whsec_old", Some(not_after)), key("whsec_new", None)]),
    )]);
    let ingester = start_ingester(stack.ingester_config(providers), shutdown.clone()).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let old = WebhookEmitter::new(url(&ingester, "stripe"), Signer::Stripe { secret: "whsec_old".into() });
    let new = WebhookEmitter::new(url(&ingester, "stripe"), Signer::Stripe { secret: "whsec_new".into() });
    assert_eq!(old.send_once(&Signer::Stripe { secret: "whsec_old".into() }, &stripe_callback(&run, 1), now_s()).await, 200);
    assert_eq!(new.send_once(&Signer::Stripe { secret: "whsec_new".into() }, &stripe_callback(&run, 2), now_s()).await, 200);
    let wait = overlap_ends - switchyard_canonical::now_ms() + 500;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    assert_eq!(old.send_once(&Signer::Stripe { secret: "whsec_old".into() }, &stripe_callback(&run, 3), now_s()).await, 401);
    assert_eq!(new.send_once(&Signer::Stripe { secret: "whsec_new".into() }, &stripe_callback(&run, 4), now_s()).await, 200);
    let published = drain(&stack, &stack.topic("payouts.provider-events.v1"), 3, Duration::from_secs(2)).await?;
    let mut ids: Vec<_> = published.iter().map(|(_, e)| e.event_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, vec![format!("evt_{run}_1"), format!("evt_{run}_2"), format!("evt_{run}_4")]);
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_signed_by_reference_implementations_are_accepted_and_tampering_is_not() -> Result<()> {
    let stack = LocalStack::new("webhook-reference").await?;
    let shutdown = CancellationToken::new();
    let ingester = start_ingester(stack.ingester_config(default_providers()), shutdown.clone()).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let wise_private = repo_root().join("ops/dev-keys/wise-webhook-dev-private.pem");
    let cases: Vec<(&str, &str, String, String, Vec<u8>)> = vec![
        ("stripe", "stripe", STRIPE_SECRET.to_owned(), format!("evt_ref_{run}"), stripe_callback(&run, 0).body.clone()),
        ("lithic", "standard", LITHIC_SECRET.to_owned(), format!("msg_ref_{run}"), bodies::lithic_card(&format!("msg_ref_{run}"), "card.created", &format!("card-{run}"), "tok")),
        ("adyen", "adyen", ADYEN_HEX.to_owned(), format!("adyen-{run}"), bodies::adyen_transfer(&format!("TR{run}"), &format!("po-{run}"), "booked", 2, 700)),
        ("wise", "wise", wise_private.display().to_string(), format!("wise-{run}"), bodies::wise_state_change(rand::random::<u32>() as i64, "outgoing_payment_sent", "processing")),
    ];
    let client = reqwest::Client::new();
    for (provider, scheme, key, id, body) in &cases {
        // The stripe body's id must be the one we sign for.
        let body = if *provider == "stripe" { String::from_utf8_lossy(body).replace(&format!("evt_{run}_0"), id).into_bytes() } else { body.clone() };
        let headers = reference_sign(scheme, key, id, &body)?;
        let post = |body: Vec<u8>| {
            let mut r = client.post(url(&ingester, provider)).header("content-type", "application/json").body(body);
            for (k, v) in &headers {
                r = r.header(k.as_str(), v.as_str());
            }
            r.send()
        };
        let mut tampered = body.clone();
        tampered.extend_from_slice(b" ");
        assert_eq!(post(tampered).await?.status().as_u16(), 401, "{provider}: a changed body is refused");
        assert_eq!(post(body.clone()).await?.status().as_u16(), 200, "{provider}: the reference signature verifies");
    }
    let payouts = drain(&stack, &stack.topic("payouts.provider-events.v1"), 3, Duration::from_secs(2)).await?;
    let cards = drain(&stack, &stack.topic("cards.provider-events.v1"), 1, Duration::from_secs(1)).await?;
    let mut providers: Vec<_> = payouts.iter().chain(&cards).map(|(_, e)| e.provider.clone()).collect();
    providers.sort();
    assert_eq!(providers, ["adyen", "lithic", "stripe", "wise"]);
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_provider_is_404_and_oversized_or_garbage_bodies_are_refused_without_harm() -> Result<()> {
    let stack = LocalStack::new("webhook-hardening").await?;
    let shutdown = CancellationToken::new();
    let ingester = start_ingester(stack.ingester_config(default_providers()), shutdown.clone()).await?;
    let client = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(client.post(format!("http://{}/webhooks/nobody", ingester.addr)).body("{}").send().await?), 404);
    assert_eq!(status(client.post(url(&ingester, "stripe")).body(vec![b'x'; 100 * 1024]).send().await?), 413);
    for garbage in [&b""[..], b"\xff\xfe", b"{\"id\":", b"[[[[[[[[[[[["] {
        assert_eq!(status(client.post(url(&ingester, "stripe")).header("stripe-signature", "t=1,v1=zz").body(garbage.to_vec()).send().await?), 401);
        assert_eq!(status(client.post(url(&ingester, "lithic")).body(garbage.to_vec()).send().await?), 400);
    }
    // A correctly signed body that is not a Stripe event: refused, not published.
    let signer = Signer::Stripe { secret: STRIPE_SECRET.into() };
    let emitter = WebhookEmitter::new(url(&ingester, "stripe"), signer.clone());
    assert_eq!(emitter.send_once(&signer, &Callback { id: "x".into(), body: b"{\"not\":\"an event\"}".to_vec() }, now_s()).await, 400);
    let health = client.get(format!("http://{}/health", ingester.addr)).send().await?;
    assert_eq!(health.status().as_u16(), 200, "still serving");
    let published = drain(&stack, &stack.topic("payouts.provider-events.v1"), 0, Duration::from_secs(1)).await?;
    assert!(published.is_empty());
    shutdown.cancel();
    Ok(())
}

/// A private tansu on its own port, so stopping it cannot disturb other tests.
struct PrivateBroker {
    port: u16,
}

impl PrivateBroker {
    fn script(&self, action: &str) -> Result<()> {
        let status = std::process::Command::new(repo_root().join("ops/scripts/broker.sh"))
            .arg(action)
            .env("SWITCHYARD_BROKER_PORT", self.port.to_string())
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            bail!("broker.sh {action} failed on port {}", self.port);
        }
        Ok(())
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// An ingester on a private broker the test can stop and start.
struct OutageStack {
    broker: PrivateBroker,
    prefix: String,
    stack: LocalStack,
    shutdown: CancellationToken,
    ingester: switchyard_ingester::RunningIngester,
    run: String,
    signer: Signer,
    emitter: WebhookEmitter,
}

impl OutageStack {
    async fn start(name: &str) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let broker = PrivateBroker { port };
        broker.script("start")?;
        let prefix = format!("{name}-{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let stack = LocalStack::open(prefix.clone(), broker.brokers()).await?;
        let shutdown = CancellationToken::new();
        let ingester = start_ingester(stack.ingester_config(default_providers()), shutdown.clone()).await?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let signer = Signer::Stripe { secret: STRIPE_SECRET.into() };
        let emitter = WebhookEmitter::new(url(&ingester, "stripe"), signer.clone());
        Ok(Self { broker, prefix, stack, shutdown, ingester, run, signer, emitter })
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.script("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_answers_503_publishes_nothing_and_retried_callbacks_land_once_it_is_back() -> Result<()> {
    let OutageStack { broker, prefix, stack, shutdown, ingester, run, signer, emitter } = OutageStack::start("webhook-outage").await?;
    assert_eq!(emitter.send_once(&signer, &stripe_callback(&run, 0), now_s()).await, 200, "accepted while the broker is up");

    broker.script("stop")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during: Vec<Callback> = (1..=5).map(|i| stripe_callback(&run, i)).collect();
    let statuses = futures::future::join_all(during.iter().map(|c| emitter.send_once(&signer, c, now_s()))).await;
    assert!(statuses.iter().all(|s| *s == 503), "refused with 503 while the broker is down: {statuses:?}");

    // The vendor keeps retrying; the broker comes back (the memory engine
    // forgets topics, so they are created again) and the retries land.
    let retries = {
        let mut emitter = emitter.clone();
        emitter.max_attempts = 12;
        let during = during.clone();
        tokio::spawn(async move { futures::future::join_all(during.iter().map(|c| emitter.deliver(c))).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.script("start")?;
    let _ = LocalStack::open(prefix, broker.brokers()).await?;
    let delivered = retries.await?;
    assert!(
        delivered.iter().all(|(ok, _)| *ok),
        "every retried callback accepted once the broker is back; metrics:\n{}",
        ingester.metrics.render().lines().filter(|l| l.contains("refused") && !l.starts_with('#')).collect::<Vec<_>>().join("\n")
    );

    let published = drain(&stack, &stack.topic("payouts.provider-events.v1"), 5, Duration::from_secs(3)).await?;
    let mut ids: Vec<String> = published.iter().map(|(_, e)| e.event_id.clone()).collect();
    ids.sort();
    let mut expected: Vec<String> = (1..=5).map(|i| format!("evt_{run}_{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected, "each refused callback published exactly once after the outage (event 0 went down with the old broker's memory)");
    shutdown.cancel();
    Ok(())
}

/// Vendors re-render a retried callback (Stripe counts down
/// `pending_webhooks`, others add a retry counter), so the retry's digest
/// differs from the first delivery's. A first delivery whose publish failed
/// was answered 503 and put nothing on the bus: the retry must be published,
/// not acknowledged as a reused id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_rendered_retry_after_a_failed_publish_is_published() -> Result<()> {
    let OutageStack { broker, prefix, stack, shutdown, ingester: _running, run, signer, emitter } = OutageStack::start("webhook-rerender").await?;
    let first = stripe_callback(&run, 0);
    let needle = "\"pending_webhooks\":1";
    assert!(String::from_utf8_lossy(&first.body).contains(needle), "the body carries Stripe's delivery counter");

    broker.script("stop")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(emitter.send_once(&signer, &first, now_s()).await, 503, "nothing published while the broker is down");

    broker.script("start")?;
    let _ = LocalStack::open(prefix, broker.brokers()).await?;
    let retry = Callback { id: first.id.clone(), body: String::from_utf8_lossy(&first.body).replace(needle, "\"pending_webhooks\":2").into_bytes() };
    let mut emitter = emitter.clone();
    emitter.max_attempts = 12;
    let (delivered, _) = emitter.deliver(&retry).await;
    assert!(delivered, "the retry is accepted once the broker is back");

    let published = drain(&stack, &stack.topic("payouts.provider-events.v1"), 1, Duration::from_secs(2)).await?;
    let ids: Vec<String> = published.iter().map(|(_, e)| e.event_id.clone()).collect();
    assert_eq!(ids, vec![first.id.clone()], "the event answered 200 is on the bus, once");
    let digest = switchyard_adapters::webhooks::body_sha256_hex(&retry.body);
    assert_eq!(published[0].1.payload_sha256, digest, "the retried body is the one published");
    shutdown.cancel();
    Ok(())
}

/// A provider with `allow_from` takes callbacks only from its vendor's
/// published ranges; `X-Forwarded-For` counts only from a trusted proxy,
/// and only what that proxy appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_from_outside_a_providers_published_ranges_are_refused() -> Result<()> {
    let stack = LocalStack::new("webhook-sources").await?;
    let shutdown = CancellationToken::new();
    let mut stripe = provider("payouts", vec![key(STRIPE_SECRET, None)]);
    // Documentation ranges (RFC 5737) standing in for Stripe's published list.
    stripe.allow_from = vec!["192.0.2.0/24".into(), "198.51.100.7".into()];
    let mut config = stack.ingester_config(BTreeMap::from([("stripe".to_owned(), stripe)]));
    let direct = start_ingester(config.clone(), shutdown.clone()).await?;
    config.trusted_proxies = vec!["127.0.0.0/8".into()];
    let behind_proxy = start_ingester(config, shutdown.clone()).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let signer = Signer::Stripe { secret: STRIPE_SECRET.into() };
    let client = reqwest::Client::new();
    let send = |ingester: &switchyard_ingester::RunningIngester, i: usize, forwarded: Option<&'static str>| {
        let callback = stripe_callback(&run, i);
        let headers = signer.headers(&callback.id, now_s(), &callback.body).expect("signs");
        let mut request = client.post(url(ingester, "stripe")).header("Content-Type", "application/json").body(callback.body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(f) = forwarded {
            request = request.header("X-Forwarded-For", f);
        }
        async move { request.send().await.map(|r| r.status().as_u16()) }
    };
    // Loopback is not Stripe, whatever the client claims when nobody vouches.
    assert_eq!(send(&direct, 0, None).await?, 403);
    assert_eq!(send(&direct, 1, Some("192.0.2.10")).await?, 403, "X-Forwarded-For from an untrusted peer is ignored");
    // Behind our proxy: the address the proxy appended decides.
    assert_eq!(send(&behind_proxy, 2, Some("192.0.2.10")).await?, 200);
    assert_eq!(send(&behind_proxy, 3, Some("198.51.100.7")).await?, 200);
    assert_eq!(send(&behind_proxy, 4, Some("192.0.2.10, 203.0.113.5")).await?, 403, "a forged hop left of the proxy's is not believed");
    assert_eq!(send(&behind_proxy, 5, Some("203.0.113.5")).await?, 403);
    assert_eq!(direct.metrics.refused_count("stripe", "source_not_allowed"), 2);
    assert_eq!(behind_proxy.metrics.refused_count("stripe", "source_not_allowed"), 2);
    let published = drain(&stack, &stack.topic("payouts.provider-events.v1"), 2, Duration::from_secs(2)).await?;
    let ids: Vec<&str> = published.iter().map(|(_, e)| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "only the two allowed callbacks were published: {ids:?}");
    shutdown.cancel();
    Ok(())
}
