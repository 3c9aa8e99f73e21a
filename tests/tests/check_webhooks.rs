//! Callbacks of the check vendors (Onfido, Sumsub, ComplyAdvantage, Sardine,
//! SEON) through an in-process webhook ingester against a real broker and
//! PostgreSQL: signed by independent reference signers
//! (`tests/reference/sign_webhook.py`: Python's `hmac`, the `standardwebhooks`
//! package) and by the simulators' own signers; each accepted callback is
//! published once on its domain's provider-events topic, a re-delivery is
//! not published again, and a changed body or a wrong key is refused 401.
//! OpenSanctions answers synchronously and has no callbacks to test.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use switchyard_canonical::ProviderEventKind;
use switchyard_e2e::webhooks::{drain, reference_sign, url};
use switchyard_ingester::config::{IngesterConfig, KeyConfig, ProviderConfig};
use switchyard_ingester::start_ingester;
use switchyard_localstack::LocalStack;
use switchyard_simulators::callbacks::{bodies, Callback, DigestAlg, Signer, WebhookEmitter};
use tokio_util::sync::CancellationToken;

const ONFIDO_TOKEN: &str = "onfido-e2e-webhook-token";
const SUMSUB_SECRET: &str = "sumsub-e2e-webhook-secret";
const CA_SECRET: &str = "whsec_c3dpdGNoeWFyZC1jb21wbHlhZHZhbnRhZ2UtZTJl";
const SARDINE_SECRET: &str = "whsec_c3dpdGNoeWFyZC1zYXJkaW5lLWUyZS1rZXk=";
const SEON_KEY: &str = "seon-e2e-license-key";

fn ingester_config(stack: &LocalStack) -> IngesterConfig {
    let provider = |domain: &str, secret: &str| ProviderConfig::new(domain, vec![KeyConfig::inline(secret)]);
    stack.ingester_config(BTreeMap::from([
        ("onfido".to_owned(), provider("kyc", ONFIDO_TOKEN)),
        ("sumsub".to_owned(), provider("kyc", SUMSUB_SECRET)),
        ("complyadvantage".to_owned(), provider("aml", CA_SECRET)),
        ("sardine".to_owned(), provider("fraud", SARDINE_SECRET)),
        ("seon".to_owned(), provider("fraud", SEON_KEY)),
    ]))
}

fn now_ms() -> i64 {
    switchyard_canonical::now_ms()
}

/// One callback and what the bus must show for it.
struct Case {
    provider: &'static str,
    scheme: &'static str,
    key: &'static str,
    /// Standard Webhooks message id (ignored by body-only schemes).
    id: String,
    body: Vec<u8>,
    domain: &'static str,
    kind: ProviderEventKind,
    reason: &'static str,
    subject: String,
}

fn cases(run: &str) -> Vec<Case> {
    let created = now_ms();
    let sumsub = |alg: &'static str, n: usize, answer: &'static str, reject: Option<&'static str>, reason: &'static str| Case {
        provider: "sumsub",
        scheme: alg,
        key: SUMSUB_SECRET,
        id: String::new(),
        body: bodies::sumsub_reviewed(&format!("app{run}{n}"), &format!("flow-{run}.kyc.{n}"), answer, reject, created),
        domain: "kyc",
        kind: ProviderEventKind::KycCheckCompleted,
        reason,
        subject: format!("flow-{run}.kyc.{n}"),
    };
    let search = i64::from(rand::random::<u32>());
    vec![
        Case {
            provider: "onfido",
            scheme: "onfido",
            key: ONFIDO_TOKEN,
            id: String::new(),
            body: bodies::onfido_check("check.completed", &format!("chk-{run}"), "complete"),
            domain: "kyc",
            kind: ProviderEventKind::KycCheckCompleted,
            reason: "complete",
            subject: format!("chk-{run}"),
        },
        sumsub("sumsub", 1, "GREEN", None, "GREEN"),
        sumsub("sumsub-sha1", 2, "RED", Some("RETRY"), "RED:RETRY"),
        sumsub("sumsub-sha512", 3, "RED", Some("FINAL"), "RED:FINAL"),
        Case {
            provider: "complyadvantage",
            scheme: "standard",
            key: CA_SECRET,
            id: format!("msg_ca_{run}_1"),
            body: bodies::complyadvantage_match_status(search, &format!("flow-{run}.aml.1"), &format!("app-{run}"), "true_positive"),
            domain: "aml",
            kind: ProviderEventKind::AmlMatchUpdated,
            reason: "true_positive",
            subject: format!("app-{run}"),
        },
        Case {
            provider: "complyadvantage",
            scheme: "standard",
            key: CA_SECRET,
            id: format!("msg_ca_{run}_2"),
            body: bodies::complyadvantage_monitor(search, &format!("app-{run}"), 2),
            domain: "aml",
            kind: ProviderEventKind::AmlMonitorAlert,
            reason: "new=2,updated=0,removed=0",
            subject: format!("app-{run}"),
        },
        Case {
            provider: "sardine",
            scheme: "standard",
            key: SARDINE_SECRET,
            id: format!("msg_sd_{run}"),
            body: bodies::sardine_risk_level(&format!("evt-sd-{run}"), &format!("flow-{run}.fraud.1"), &format!("app-{run}"), "very_high"),
            domain: "fraud",
            kind: ProviderEventKind::FraudDecisionUpdated,
            reason: "very_high",
            subject: format!("app-{run}"),
        },
        Case {
            provider: "seon",
            scheme: "seon",
            key: SEON_KEY,
            id: String::new(),
            body: bodies::seon_status_update(&format!("seon-{run}"), &format!("flow-{run}.fraud.1"), &format!("app-{run}"), "DECLINE"),
            domain: "fraud",
            kind: ProviderEventKind::FraudDecisionUpdated,
            reason: "DECLINE",
            subject: format!("app-{run}"),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_signed_check_callbacks_are_published_once_and_tampering_is_refused() -> Result<()> {
    let stack = LocalStack::new("check-webhooks").await?;
    let shutdown = CancellationToken::new();
    let ingester = start_ingester(ingester_config(&stack), shutdown.clone()).await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let cases = cases(&run);
    let client = reqwest::Client::new();
    for case in &cases {
        let headers = reference_sign(case.scheme, case.key, &case.id, &case.body)?;
        let post = |body: Vec<u8>| {
            let mut r = client.post(url(&ingester, case.provider)).header("content-type", "application/json").body(body);
            for (k, v) in &headers {
                r = r.header(k.as_str(), v.as_str());
            }
            r.send()
        };
        let mut tampered = case.body.clone();
        tampered.extend_from_slice(b" ");
        let what = format!("{} ({})", case.provider, case.scheme);
        assert_eq!(post(tampered).await?.status().as_u16(), 401, "{what}: a changed body is refused");
        assert_eq!(post(case.body.clone()).await?.status().as_u16(), 200, "{what}: the reference signature verifies");
        // The first copy is marked published off the answer path, so a copy
        // right behind it may get 409 (in flight), which a vendor retries.
        let mut again = post(case.body.clone()).await?.status().as_u16();
        for _ in 0..50 {
            if again != 409 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            again = post(case.body.clone()).await?.status().as_u16();
        }
        assert_eq!(again, 200, "{what}: a re-delivery is acknowledged");
    }

    let mut published = Vec::new();
    for (domain, expect) in [("kyc", 4), ("aml", 2), ("fraud", 2)] {
        let topic = stack.topic(&format!("{domain}.provider-events.v1"));
        let events = drain(&stack, &topic, expect, Duration::from_secs(2)).await?;
        assert_eq!(events.len(), expect, "{domain}: one event per callback, re-deliveries not republished");
        published.extend(events);
    }
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (_, e) in &published {
        *ids.entry(e.event_id.as_str()).or_default() += 1;
    }
    assert!(ids.values().all(|n| *n == 1), "each event id once: {ids:?}");
    for case in &cases {
        let found = published
            .iter()
            .find(|(_, e)| e.provider == case.provider && e.kind == case.kind && e.subject_id == case.subject && e.reason.as_deref() == Some(case.reason));
        let Some((key, e)) = found else {
            bail!("{} ({}): no {:?} {:?} for {} on the bus: {published:#?}", case.provider, case.scheme, case.kind, case.reason, case.subject);
        };
        assert_eq!(key, &e.subject_id, "keyed by subject");
        assert_eq!(e.domain, case.domain);
        if case.scheme == "standard" {
            assert_eq!(e.event_id, case.id, "{}: the webhook-id is the event id", case.provider);
        }
    }
    for (provider, published_count) in [("onfido", 1), ("sumsub", 3), ("complyadvantage", 2), ("sardine", 1), ("seon", 1)] {
        assert_eq!(ingester.metrics.published_count(provider), published_count, "{provider}: published");
        assert_eq!(ingester.metrics.duplicate_count(provider), published_count, "{provider}: every re-delivery counted as a duplicate");
        assert_eq!(ingester.metrics.refused_count(provider, "bad_signature"), published_count, "{provider}: every tampered body refused");
    }
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_signers_are_accepted_and_a_wrong_key_is_not() -> Result<()> {
    let stack = LocalStack::new("check-webhooks-sim").await?;
    let shutdown = CancellationToken::new();
    let ingester = start_ingester(ingester_config(&stack), shutdown.clone()).await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let signers = [
        ("onfido", Signer::OnfidoSha2 { token: ONFIDO_TOKEN.into() }),
        ("sumsub", Signer::SumsubDigest { secret: SUMSUB_SECRET.into(), alg: DigestAlg::Sha512 }),
        ("complyadvantage", Signer::StandardWebhooks { secret: CA_SECRET.into() }),
        ("sardine", Signer::StandardWebhooks { secret: SARDINE_SECRET.into() }),
        ("seon", Signer::SeonDigest { key: SEON_KEY.into() }),
    ];
    for ((provider, signer), case) in signers.iter().zip(cases(&run).into_iter().filter(|c| c.scheme != "sumsub-sha1" && c.scheme != "sumsub-sha512" && c.id != format!("msg_ca_{run}_2"))) {
        assert_eq!(*provider, case.provider);
        let emitter = WebhookEmitter::new(url(&ingester, provider), signer.clone());
        let callback = Callback { id: case.id.clone(), body: case.body.clone() };
        let now_s = now_ms() / 1000;
        assert_eq!(emitter.send_once(&signer.forged(), &callback, now_s).await, 401, "{provider}: a wrong key is refused");
        assert_eq!(emitter.send_once(signer, &callback, now_s).await, 200, "{provider}: the simulator's signature verifies");
    }
    let kyc = drain(&stack, &stack.topic("kyc.provider-events.v1"), 2, Duration::from_secs(1)).await?;
    let aml = drain(&stack, &stack.topic("aml.provider-events.v1"), 1, Duration::from_secs(1)).await?;
    let fraud = drain(&stack, &stack.topic("fraud.provider-events.v1"), 2, Duration::from_secs(1)).await?;
    let mut providers: Vec<_> = kyc.iter().chain(&aml).chain(&fraud).map(|(_, e)| e.provider.clone()).collect();
    providers.sort();
    assert_eq!(providers, ["complyadvantage", "onfido", "sardine", "seon", "sumsub"]);
    shutdown.cancel();
    Ok(())
}

fn kyc_command(run: &str, name: &str, last_name: &str) -> switchyard_canonical::kyc::KycCommand {
    use switchyard_canonical::kyc::{DocumentKind, IdDocument, KycCommand, Person};
    KycCommand {
        subject_id: format!("{run}app-{name}"),
        idempotency_key: format!("{run}.kyc.{name}"),
        flow_id: Some(format!("{run}flow-{name}")),
        person: Person { first_name: "Ada".into(), last_name: last_name.into(), date_of_birth: Some("1990-12-10".into()), email: None },
        document: IdDocument { kind: DocumentKind::Passport, issuing_country: "GBR".into(), front_ref: format!("doc://{name}/front"), back_ref: None },
        selfie_ref: Some(format!("doc://{name}/selfie")),
        requested_at_ms: now_ms(),
    }
}

/// The Onfido and Sumsub simulators call back when a check settles; the
/// KYC adapters, polling as the worker does, and the callbacks agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onfido_and_sumsub_simulators_call_back_with_the_result_the_adapters_poll() -> Result<()> {
    use switchyard_adapters::kyc::{onfido::OnfidoAdapter, sumsub::SumsubAdapter, Polling};
    use switchyard_adapters::http::Transport;
    use switchyard_adapters::{CallContext, Secret};
    use switchyard_simulators::{onfido, sumsub, WebhookTarget};
    let stack = LocalStack::new("check-webhooks-sims").await?;
    let shutdown = CancellationToken::new();
    let ingester = start_ingester(ingester_config(&stack), shutdown.clone()).await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let onfido_sim = onfido::spawn_onfido(onfido::OnfidoConfig {
        webhook: Some(WebhookTarget { url: url(&ingester, "onfido"), secret: ONFIDO_TOKEN.into() }),
        ..onfido::OnfidoConfig::local()
    })
    .await?;
    let sumsub_sim = sumsub::spawn_sumsub(sumsub::SumsubConfig {
        webhook: Some(WebhookTarget { url: url(&ingester, "sumsub"), secret: SUMSUB_SECRET.into() }),
        ..sumsub::SumsubConfig::local()
    })
    .await?;
    let ctx = CallContext { correlation_id: "c".into(), traceparent: switchyard_canonical::TraceParent::new_root().to_string() };
    let polling = Polling { interval: Duration::from_millis(50), budget: Duration::from_secs(5) };
    let onfido = OnfidoAdapter::new("onfido", &onfido_sim.base_url(), Secret::new("api_sandbox.switchyard"), Transport::new(Duration::from_secs(2), 4), polling)?;
    let sumsub = SumsubAdapter::new(
        "sumsub",
        &sumsub_sim.base_url(),
        Secret::new("sbx:switchyard"),
        Secret::new("sumsub-secret"),
        "basic-kyc-level",
        Transport::new(Duration::from_secs(2), 4),
        polling,
    )?;
    let clear = kyc_command(&run, "clear", "Lovelace");
    let forged = kyc_command(&run, "forged", "Forged");
    let onfido_verdict = onfido.verify(&clear, &clear.idempotency_key, &ctx).await?;
    let sumsub_verdict = sumsub.verify(&forged, &forged.idempotency_key, &ctx).await?;

    // Onfido: one check.completed. Sumsub: applicantPending, then applicantReviewed.
    let events = drain(&stack, &stack.topic("kyc.provider-events.v1"), 3, Duration::from_secs(2)).await?;
    assert_eq!(events.len(), 3, "{events:#?}");
    let find = |provider: &str, kind: ProviderEventKind| events.iter().map(|(_, e)| e).find(|e| e.provider == provider && e.kind == kind);
    let o = find("onfido", ProviderEventKind::KycCheckCompleted).context("onfido check.completed")?;
    assert_eq!((o.provider_reference.as_str(), o.reason.as_deref()), (onfido_verdict.vendor_reference.as_str(), Some("complete")));
    let s = find("sumsub", ProviderEventKind::KycCheckCompleted).context("sumsub applicantReviewed")?;
    assert_eq!(s.provider_reference, sumsub_verdict.vendor_reference, "the applicant the adapter polled");
    assert_eq!((s.subject_id.as_str(), s.reason.as_deref()), (forged.idempotency_key.as_str(), Some("RED:FINAL")));
    let pending = find("sumsub", ProviderEventKind::KycReviewPending).context("sumsub applicantPending")?;
    assert!(pending.occurred_at_ms <= s.occurred_at_ms);
    onfido_sim.shutdown().await;
    sumsub_sim.shutdown().await;
    shutdown.cancel();
    Ok(())
}
