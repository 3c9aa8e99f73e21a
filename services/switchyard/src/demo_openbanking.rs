//! The open banking part of `switchyard up`: the Plaid and TrueLayer
//! simulators and an open banking worker on the demo store. The demo plays
//! a product back end on `openbanking.commands.v1` and the user at the
//! provider's page: an account is linked through Plaid Link and its
//! transactions synced; the institution goes down (INSTITUTION_UNAVAILABLE)
//! and comes back; a payment is initiated through TrueLayer, authorized at
//! the hosted payment page and followed to SETTLED on `openbanking.events.v1`.
//!
//! Every line is printed and also kept, so the test below can assert what
//! `up` shows without running the other domains' demos.

use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use switchyard_bus::{AvroDecoder, AvroEncoder, Outbound, Publisher};
use switchyard_canonical::openbanking::{
    CompletionSpec, ConsentScope, ConsentSpec, OpenBankingAction, OpenBankingCommand, PaymentSpec, RefreshSpec, RefreshTrigger,
};
use switchyard_canonical::openbanking_data::OpenBankingDataDelta;
use switchyard_canonical::openbanking_event::OpenBankingEvent;
use switchyard_canonical::openbanking_outcome::{HandoffKind, OpenBankingKind, OpenBankingOutcome};
use switchyard_localstack::{LocalStack, TopicReader};
use switchyard_simulators::plaid::{spawn_plaid, PlaidConfig, PlaidSimulator};
use switchyard_simulators::truelayer::{generate_signing_key, spawn_truelayer, TrueLayerConfig, TrueLayerSimulator};
use switchyard_worker::config::{Environment, SecretSource};
use switchyard_worker::openbanking::config::{
    ObCallbackSettings, ObProviderConfig, ObProviderKind, OpenBankingTopics, OpenBankingWorkerConfig, TokenKeyConfig,
};
use switchyard_worker::openbanking::run::{start_openbanking_worker, RunningOpenBankingWorker};
use switchyard_worker::openbanking::truelayer_config::{PaymentPollingConfig, TrueLayerSection};
use switchyard_worker::openbanking::{OB_COMMAND_SCHEMA, OB_DATA_SCHEMA, OB_EVENT_SCHEMA, OB_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

/// Plaid's sandbox institution the simulator serves (First Platypus Bank).
const INSTITUTION: &str = "ins_109508";
const SIGNING_KID: &str = "switchyard-demo";
const MERCHANT_ACCOUNT: &str = "ma-switchyard-demo";
/// Local only: the example config's token key (32 bytes, base64).
const TOKEN_KEY: &str = "6Q9x3v8mP0m2Zb1C4pW7Hn5Kq0Tt3Ya8Lr6Ue2Jd9Vs=";

/// The running open banking stack; joined after the shutdown token fired.
pub(crate) struct OpenBankingDemo {
    worker: RunningOpenBankingWorker,
    plaid: PlaidSimulator,
    truelayer: TrueLayerSimulator,
    /// What the demo printed, in order (read by the test; `up` has printed it).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) lines: Vec<String>,
}

impl OpenBankingDemo {
    pub(crate) async fn join(self) -> Result<()> {
        self.worker.join.await??;
        self.plaid.shutdown().await;
        self.truelayer.shutdown().await;
        Ok(())
    }
}

/// Prints a line and keeps it.
#[derive(Default)]
struct Out(Vec<String>);

impl Out {
    fn say(&mut self, line: String) {
        println!("{line}");
        self.0.push(line);
    }
}

fn config(stack: &LocalStack, database_url: &str, plaid: &PlaidSimulator, tl: &TrueLayerSimulator, signing_key: &str) -> OpenBankingWorkerConfig {
    let mut kafka = stack.kafka.clone();
    kafka.group_id = stack.topic("openbanking-worker");
    let plaid_local = PlaidConfig::local();
    let tl_local = TrueLayerConfig::local();
    let plaid_entry = ObProviderConfig {
        name: "plaid".into(),
        kind: ObProviderKind::Plaid,
        base_url: plaid.base_url(),
        client_id: plaid_local.client_id,
        secret: SecretSource::inline(&plaid_local.secret),
        timeout_ms: 5_000,
        max_concurrency: 8,
        page_size: 100,
        client_name: "switchyard demo".into(),
        institution_retry_after_ms: 1_000,
        not_ready_retry_after_ms: 1_000,
        truelayer: None,
        tls: None,
    };
    let truelayer_entry = ObProviderConfig {
        name: "truelayer".into(),
        kind: ObProviderKind::TrueLayer,
        base_url: tl.base_url(),
        client_id: tl_local.client_id,
        secret: SecretSource::inline(&tl_local.client_secret),
        truelayer: Some(TrueLayerSection {
            auth_url: tl.base_url(),
            hpp_url: "https://payment.truelayer-sandbox.com".into(),
            signing_key_id: SIGNING_KID.into(),
            signing_key: SecretSource::inline(signing_key),
            redirect_uri: "https://app.example.com/paid".into(),
            merchant_accounts: [("main-gbp".to_owned(), MERCHANT_ACCOUNT.to_owned())].into_iter().collect(),
            resource_token_ttl_ms: 900_000,
            auth_link_ttl_ms: 3_600_000,
            consent_ttl_ms: 90 * 24 * 3_600_000,
        }),
        ..plaid_entry.clone()
    };
    OpenBankingWorkerConfig {
        environment: Environment::Sandbox,
        secret_check_every_ms: 5_000,
        kafka,
        schema_registry_url: stack.registry.base_url(),
        database_url: database_url.into(),
        topics: OpenBankingTopics {
            commands: stack.topic("openbanking.commands.v1"),
            outcomes: stack.topic("openbanking.outcomes.v1"),
            events: stack.topic("openbanking.events.v1"),
            data: stack.topic("openbanking.data.v1"),
            provider_events: stack.topic("openbanking.provider-events.v1"),
        },
        providers: vec![plaid_entry, truelayer_entry],
        // US consents go to Plaid; GB ones (payments) to TrueLayer.
        routing: switchyard_routing::RoutingPolicy {
            mode: switchyard_routing::DomainMode::On,
            primary: "plaid".into(),
            secondary: None,
            breaker: switchyard_routing::BreakerConfig::default(),
            rollout: None,
            shadow: None,
            segments: vec![switchyard_routing::Segment {
                matches: switchyard_routing::SegmentMatch { region: Some("GB".into()), ..Default::default() },
                primary: "truelayer".into(),
                secondary: None,
            }],
        },
        token_keys: vec![TokenKeyConfig { id: "demo".into(), key: SecretSource::inline(TOKEN_KEY) }],
        admin_bind: None,
        max_in_flight: 50,
        max_retry_rounds: 3,
        // One call per delivery: the institution outage is answered at once
        // (INSTITUTION_UNAVAILABLE) instead of being retried in place.
        retry: switchyard_worker::retry::RetryPolicy { max_attempts: 1, ..Default::default() },
        lease_ttl_ms: 5_000,
        institution_breaker: switchyard_routing::BreakerConfig::default(),
        scheduled_refresh: None,
        callbacks: ObCallbackSettings { enabled: false, ..ObCallbackSettings::default() },
        payment_polling: PaymentPollingConfig { interval_ms: 150, batch: 50, ..Default::default() },
    }
}

/// Commands out, answers and events in, filtered to this run.
struct Bus {
    publisher: Publisher,
    encoder: AvroEncoder,
    commands: String,
    outcomes: TopicReader,
    outcome_decoder: AvroDecoder,
    events: TopicReader,
    event_decoder: AvroDecoder,
    data: TopicReader,
    data_decoder: AvroDecoder,
    seen_events: Vec<OpenBankingEvent>,
}

impl Bus {
    async fn ask(&self, command: &OpenBankingCommand) -> Result<OpenBankingOutcome> {
        let record = Outbound {
            topic: self.commands.clone(),
            key: Some(command.consent_id.as_bytes().to_vec()),
            payload: self.encoder.encode(command)?,
            headers: vec![
                ("correlation-id".into(), format!("corr-{}", command.idempotency_key).into_bytes()),
                ("idempotency-key".into(), command.idempotency_key.as_bytes().to_vec()),
            ],
        };
        self.publisher.publish(&record).await?;
        // The topics outlive a run (`up` uses the real names): skip other answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            for r in self.outcomes.read_up_to(100, Duration::from_millis(200)).await? {
                let o: OpenBankingOutcome = self.outcome_decoder.decode(&r.payload).await?;
                if o.idempotency_key == command.idempotency_key {
                    return Ok(o);
                }
            }
        }
        bail!("no answer to {} within 30 s", command.idempotency_key)
    }

    /// Transactions added on the data topic for `consent_id`, read until it is quiet.
    async fn transactions(&self, consent_id: &str) -> Result<usize> {
        let mut n = 0;
        for r in self.data.read_up_to(10_000, Duration::from_millis(500)).await? {
            let d: OpenBankingDataDelta = self.data_decoder.decode(&r.payload).await?;
            if d.consent_id == consent_id {
                n += d.transactions_added.len();
            }
        }
        Ok(n)
    }

    /// New PAYMENT_UPDATED events of `payment_id`, as they arrive.
    async fn payment_events(&mut self, payment_id: &str) -> Result<Vec<OpenBankingEvent>> {
        let mut new = Vec::new();
        for r in self.events.read_up_to(100, Duration::from_millis(200)).await? {
            let e: OpenBankingEvent = self.event_decoder.decode(&r.payload).await?;
            if e.kind == OpenBankingKind::PaymentUpdated
                && e.payment_id.as_deref() == Some(payment_id)
                && !self.seen_events.iter().any(|s| s.event_id == e.event_id)
            {
                self.seen_events.push(e.clone());
                new.push(e);
            }
        }
        Ok(new)
    }
}

fn command(consent_id: &str, key: &str, action: OpenBankingAction) -> OpenBankingCommand {
    OpenBankingCommand {
        consent_id: consent_id.into(),
        idempotency_key: key.into(),
        action,
        consent: None,
        completion: None,
        refresh: None,
        payment: None,
        reason: None,
        tenant_id: None,
        requested_at_ms: switchyard_canonical::now_ms(),
    }
}

fn consent(scopes: Vec<ConsentScope>, country: &str, institution: Option<&str>) -> ConsentSpec {
    ConsentSpec {
        scopes,
        customer_ref: "cust-demo".into(),
        country: country.into(),
        institution_id: institution.map(Into::into),
        redirect_uri: "https://app.example.com/linked".into(),
        access_days: None,
    }
}

fn refresh(consent_id: &str, key: &str) -> OpenBankingCommand {
    let mut c = command(consent_id, key, OpenBankingAction::Refresh);
    c.refresh = Some(RefreshSpec { datasets: Vec::new(), trigger: RefreshTrigger::OnDemand });
    c
}

fn handoff_kind(kind: HandoffKind) -> &'static str {
    match kind {
        HandoffKind::LinkToken => "LINK_TOKEN",
        HandoffKind::AuthorizationUrl => "AUTHORIZATION_URL",
    }
}

fn expect(o: &OpenBankingOutcome, kind: OpenBankingKind) -> Result<()> {
    if o.kind != kind {
        bail!("{} {}: expected {}, got {} ({:?})", o.action.as_str(), o.consent_id, kind.as_str(), o.kind.as_str(), o.error);
    }
    Ok(())
}

/// The hosted payment page URL without the resource token's value: a
/// credential for the payment, meant for the user's browser, not a terminal.
fn redact_resource_token(url: &str) -> String {
    match url.find("resource_token=") {
        Some(i) => {
            let start = i + "resource_token=".len();
            let end = url[start..].find('&').map_or(url.len(), |j| start + j);
            format!("{}…{}", &url[..start], &url[end..])
        }
        None => url.to_owned(),
    }
}

/// Starts the simulators and the worker, runs the open banking flows and
/// prints them. The worker keeps running until `shutdown`.
pub(crate) async fn show(stack: &LocalStack, database_url: &str, run: &str, shutdown: CancellationToken) -> Result<OpenBankingDemo> {
    let plaid = spawn_plaid(PlaidConfig::local()).await?;
    let truelayer = spawn_truelayer(TrueLayerConfig { step: Duration::from_millis(300), ..TrueLayerConfig::local() }).await?;
    let (private, public) = generate_signing_key();
    truelayer.register_signing_key(SIGNING_KID, &public);
    let cfg = config(stack, database_url, &plaid, &truelayer, &private);
    let worker = start_openbanking_worker(cfg, shutdown).await?;
    let mut out = Out::default();
    out.say(format!("\nopen banking: openbanking-worker (plaid {}, truelayer {})", plaid.base_url(), truelayer.base_url()));
    let result = flows(stack, run, &plaid, &truelayer, &mut out).await;
    result.map(|()| OpenBankingDemo { worker, plaid, truelayer, lines: out.0 })
}

async fn flows(stack: &LocalStack, run: &str, plaid: &PlaidSimulator, tl: &TrueLayerSimulator, out: &mut Out) -> Result<()> {
    let commands = stack.topic("openbanking.commands.v1");
    let mut bus = Bus {
        publisher: Publisher::new(&stack.kafka)?,
        encoder: AvroEncoder::register(&stack.registry_client, &commands, OB_COMMAND_SCHEMA).await?,
        commands: commands.clone(),
        outcomes: TopicReader::new(&stack.kafka, &stack.topic("openbanking.outcomes.v1"))?,
        outcome_decoder: AvroDecoder::new(stack.registry_client.clone(), OB_OUTCOME_SCHEMA)?,
        events: TopicReader::new(&stack.kafka, &stack.topic("openbanking.events.v1"))?,
        event_decoder: AvroDecoder::new(stack.registry_client.clone(), OB_EVENT_SCHEMA)?,
        data: TopicReader::new(&stack.kafka, &stack.topic("openbanking.data.v1"))?,
        data_decoder: AvroDecoder::new(stack.registry_client.clone(), OB_DATA_SCHEMA)?,
        seen_events: Vec::new(),
    };
    out.say(format!("publishing to {commands} (run {run}):"));

    // Linking an account through Plaid Link.
    let consent_id = format!("con-{run}-link");
    let mut create = command(&consent_id, &format!("{consent_id}-create"), OpenBankingAction::CreateConsent);
    create.consent = Some(consent(vec![ConsentScope::Accounts, ConsentScope::Balances, ConsentScope::Transactions], "US", Some(INSTITUTION)));
    let created = bus.ask(&create).await?;
    expect(&created, OpenBankingKind::AuthRequired)?;
    let handoff = created.handoff.clone().context("AUTH_REQUIRED without a hand-off")?;
    out.say(format!(
        "  {consent_id:<18} CREATE_CONSENT   -> {} via {} (hand-off {}, to the user's app)",
        created.kind.as_str(),
        created.provider.as_deref().unwrap_or("-"),
        handoff_kind(handoff.kind)
    ));
    // The user finishes Link; the product back end gets a public token.
    let public = plaid.complete_link(&handoff.value).context("the simulator refused the link token")?;
    out.say(format!("  {consent_id:<18} (the user completes Plaid Link; the app receives a public token)"));
    let mut complete = command(&consent_id, &format!("{consent_id}-complete"), OpenBankingAction::CompleteConsent);
    complete.completion = Some(CompletionSpec { public_token: Some(public), authorization_code: None });
    let completed = bus.ask(&complete).await?;
    expect(&completed, OpenBankingKind::ConsentActive)?;
    out.say(format!("  {consent_id:<18} COMPLETE_CONSENT -> {} (item {})", completed.kind.as_str(), completed.provider_reference.as_deref().unwrap_or("-")));
    let refreshed = bus.ask(&refresh(&consent_id, &format!("{consent_id}-refresh-1"))).await?;
    expect(&refreshed, OpenBankingKind::DataRefreshed)?;
    let transactions = bus.transactions(&consent_id).await?;
    out.say(format!(
        "  {consent_id:<18} REFRESH          -> {} ({} pages, {transactions} transactions on {})",
        refreshed.kind.as_str(),
        refreshed.data_pages,
        stack.topic("openbanking.data.v1")
    ));

    // The institution goes down, then comes back.
    plaid.institution_down(INSTITUTION, Duration::from_secs(2));
    let down = bus.ask(&refresh(&consent_id, &format!("{consent_id}-refresh-2"))).await?;
    expect(&down, OpenBankingKind::InstitutionUnavailable)?;
    out.say(format!(
        "  {consent_id:<18} REFRESH          -> {} (institution {INSTITUTION} down; retry after {} ms)",
        down.kind.as_str(),
        down.retry_after_ms.unwrap_or(0)
    ));
    // The product back end waits as told, and at least until the simulated
    // outage (2 s) is over.
    let told = Duration::from_millis(u64::try_from(down.retry_after_ms.unwrap_or(0)).unwrap_or(0));
    tokio::time::sleep(told.max(Duration::from_millis(2_200))).await;
    let back = bus.ask(&refresh(&consent_id, &format!("{consent_id}-refresh-3"))).await?;
    expect(&back, OpenBankingKind::DataRefreshed)?;
    out.say(format!("  {consent_id:<18} REFRESH          -> {} (institution back)", back.kind.as_str()));

    // A payment by bank transfer through TrueLayer.
    let consent_id = format!("con-{run}-pay");
    let payment_id = format!("pay-{run}-1");
    let spec = PaymentSpec {
        payment_id: payment_id.clone(),
        amount_minor: 12_345,
        currency: "GBP".into(),
        beneficiary_ref: "main-gbp".into(),
        reference: "invoice 42".into(),
    };
    let mut create = command(&consent_id, &format!("{consent_id}-create"), OpenBankingAction::CreateConsent);
    create.consent = Some(consent(vec![ConsentScope::PaymentInitiation], "GB", None));
    create.payment = Some(spec.clone());
    let created = bus.ask(&create).await?;
    expect(&created, OpenBankingKind::AuthRequired)?;
    out.say(format!("  {consent_id:<18} CREATE_CONSENT   -> {} via {} (payment consent)", created.kind.as_str(), created.provider.as_deref().unwrap_or("-")));
    let mut complete = command(&consent_id, &format!("{consent_id}-complete"), OpenBankingAction::CompleteConsent);
    complete.completion = Some(CompletionSpec { public_token: None, authorization_code: Some(tl.grant_code()) });
    let completed = bus.ask(&complete).await?;
    expect(&completed, OpenBankingKind::ConsentActive)?;
    out.say(format!("  {consent_id:<18} COMPLETE_CONSENT -> {}", completed.kind.as_str()));
    let mut initiate = command(&consent_id, &format!("{consent_id}-initiate"), OpenBankingAction::InitiatePayment);
    initiate.payment = Some(spec);
    let answer = bus.ask(&initiate).await?;
    expect(&answer, OpenBankingKind::AuthRequired)?;
    let payment = answer.payment.clone().context("INITIATE_PAYMENT answered without a payment")?;
    let provider_id = payment.provider_reference.clone().context("no TrueLayer payment id")?;
    let page = answer.handoff.as_ref().map(|h| redact_resource_token(&h.value)).unwrap_or_default();
    out.say(format!("  {payment_id:<18} INITIATE_PAYMENT -> {} (GBP 123.45 by bank transfer)", payment.status.as_str()));
    out.say(format!("  {payment_id:<18}   hosted payment page: {page}"));
    if !tl.authorize(&provider_id) {
        bail!("the simulator does not know payment {provider_id}");
    }
    out.say(format!("  {payment_id:<18} (the user authorizes at the hosted payment page)"));
    out.say(format!("payment statuses on {}:", stack.topic("openbanking.events.v1")));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut ended = false;
        for e in bus.payment_events(&payment_id).await? {
            if let Some(s) = e.to_payment_status {
                out.say(format!("  {payment_id:<18} {}", s.as_str()));
                ended |= s.terminal();
            }
        }
        if ended {
            break;
        }
        if Instant::now() > deadline {
            bail!("payment {payment_id} did not end within 30 s");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The open banking lines `switchyard up` prints, on a prefixed stack
    /// and the test database (DATABASE_URL), without the other domains.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn up_shows_a_linked_account_an_outage_and_a_settled_payment() -> Result<()> {
        let stack = LocalStack::new("ob-demo").await?;
        let shutdown = CancellationToken::new();
        let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
        let demo = show(&stack, &switchyard_localstack::database_url(), &run, shutdown.clone()).await?;
        let text = demo.lines.join("\n");
        // Column padding aside: runs of spaces count as one.
        let flat = text.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        for needle in [
            format!("con-{run}-link CREATE_CONSENT -> AUTH_REQUIRED via plaid (hand-off LINK_TOKEN"),
            format!("con-{run}-link COMPLETE_CONSENT -> CONSENT_ACTIVE (item "),
            format!("con-{run}-link REFRESH -> INSTITUTION_UNAVAILABLE (institution ins_109508 down"),
            format!("con-{run}-link REFRESH -> DATA_REFRESHED (institution back)"),
            format!("con-{run}-pay CREATE_CONSENT -> AUTH_REQUIRED via truelayer (payment consent)"),
            format!("pay-{run}-1 INITIATE_PAYMENT -> AUTHORIZATION_REQUIRED"),
            "hosted payment page: https://payment.truelayer-sandbox.com/payments#payment_id=".to_owned(),
            // The resource token authorizes the payment page: not for a terminal.
            "&resource_token=…&return_uri=".to_owned(),
        ] {
            assert!(flat.contains(&needle), "{needle:?} not in:\n{text}");
        }
        let synced = demo.lines.iter().find(|l| l.contains("REFRESH          -> DATA_REFRESHED (")).context("no first refresh line")?;
        let n: usize = synced.split(" transactions on").next().and_then(|s| s.rsplit(' ').next()).and_then(|s| s.parse().ok()).context(synced.clone())?;
        assert!(n > 0, "transactions were synced: {synced}");
        let statuses: Vec<&str> =
            demo.lines.iter().filter_map(|l| l.strip_prefix(&format!("  pay-{run}-1"))).map(str::trim).filter(|s| !s.contains(' ')).collect();
        assert_eq!(statuses, ["AUTHORIZATION_REQUIRED", "AUTHORIZING", "AUTHORIZED", "EXECUTED", "SETTLED"], "\n{text}");
        assert!(!text.contains("tl-sim-") && !text.contains("public-sandbox"), "no token in the output:\n{text}");
        shutdown.cancel();
        demo.join().await
    }
}
