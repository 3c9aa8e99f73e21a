//! TrueLayer Payouts as a payout rail, end to end: real broker, real
//! PostgreSQL, the payout worker in-process, TrueLayer's simulator as the
//! primary and Stripe's as the secondary, both reporting to one money
//! oracle, so a second payout anywhere (a forgotten key, a failover after
//! an ambiguous reply) shows up as a second movement of the same payout id.

use anyhow::Result;
use std::time::Duration;
use switchyard_canonical::{ErrorClass, ErrorCode, PayoutCommand, PayoutOutcome, PayoutStatus};
use switchyard_e2e::{command, TestEnv, TopicReader};
use switchyard_simulators::truelayer::{generate_signing_key, spawn_truelayer, PayoutScenario, TrueLayerConfig, TrueLayerSimulator};
use switchyard_simulators::{stripe, MoneyOracle, SimulatorHandle};
use switchyard_worker::payout::truelayer_config::TrueLayerPayoutSection;
use switchyard_worker::{start_payout_worker, ProviderConfig, ProviderKind, RunningWorker, SecretSource};
use tokio_util::sync::CancellationToken;

const MERCHANT_ACCOUNT: &str = "ma-switchyard-eur";
const FUNDS: i64 = 1_000_000;

struct Rig {
    env: TestEnv,
    tl: TrueLayerSimulator,
    stripe: SimulatorHandle,
    oracle: MoneyOracle,
    worker: RunningWorker,
    shutdown: CancellationToken,
    producer: switchyard_localstack::CoreProducer,
    reader: TopicReader,
}

impl Rig {
    async fn new(name: &str) -> Result<Self> {
        let env = TestEnv::new(name).await?;
        let oracle = MoneyOracle::new();
        let stripe = stripe::spawn_stripe(stripe::StripeConfig { oracle: oracle.clone(), ..stripe::StripeConfig::local() }).await?;
        let tl_config = TrueLayerConfig::local();
        let tl = spawn_truelayer(tl_config.clone()).await?;
        let (private, public) = generate_signing_key();
        tl.register_signing_key("kid-payouts", &public);
        tl.set_money_oracle(oracle.clone());
        tl.fund_merchant_account(MERCHANT_ACCOUNT, "EUR", FUNDS);
        // Final at once, so the read right after the create sees where it ends.
        tl.set_payout_step(Duration::ZERO);
        let mut config = env.worker_config(&stripe.base_url(), None, "truelayer");
        config.providers.push(ProviderConfig {
            name: "truelayer".into(),
            kind: ProviderKind::TrueLayer,
            base_url: tl.base_url(),
            api_key: SecretSource::inline(&tl_config.client_secret),
            balance_account_id: None,
            connected_account: None,
            key_retention_ms: None,
            timeout_ms: 2000,
            max_concurrency: 64,
            http2_prior_knowledge: false,
            sandbox_only: false,
            tls: None,
            truelayer: Some(TrueLayerPayoutSection {
                auth_url: tl.base_url(),
                client_id: tl_config.client_id.clone(),
                signing_key_id: "kid-payouts".into(),
                signing_key: SecretSource::inline(&private),
                merchant_account_id: MERCHANT_ACCOUNT.into(),
            }),
        });
        // A definite refusal at TrueLayer may go to Stripe; nothing else may.
        config.routing.secondary = Some("stripe".into());
        let shutdown = CancellationToken::new();
        let worker = start_payout_worker(config, shutdown.clone()).await?;
        let producer = env.core_producer().await?;
        let reader = env.outcome_reader()?;
        Ok(Self { env, tl, stripe, oracle, worker, shutdown, producer, reader })
    }

    fn command(&self, name: &str, amount_minor: i64) -> PayoutCommand {
        command(&format!("{}{name}", self.env.prefix), &format!("{}key-{name}", self.env.prefix), amount_minor)
    }

    async fn outcomes(&self, n: usize) -> Result<Vec<PayoutOutcome>> {
        self.env.collect_outcomes(&self.reader, n, Duration::from_secs(60)).await
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.worker.join.await??;
        self.tl.shutdown().await;
        self.stripe.shutdown().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payout_is_paid_from_the_merchant_account_once_to_its_beneficiary() -> Result<()> {
    let rig = Rig::new("tlpay").await?;
    let cmd = rig.command("po-happy", 12_345);
    rig.producer.send(&cmd).await?;
    let outcome = rig.outcomes(1).await?.remove(0);
    assert_eq!(outcome.status, PayoutStatus::Paid, "{outcome:?}");
    assert_eq!(outcome.provider.as_deref(), Some("truelayer"));
    let reference = outcome.provider_reference.clone().unwrap_or_default();
    assert_eq!(rig.tl.payout_status(&reference), Some("executed"), "the outcome names TrueLayer's payout");
    switchyard_e2e::money::assert_paid_exactly_once(&rig.oracle, std::slice::from_ref(&cmd));
    assert_eq!(rig.tl.merchant_balance(MERCHANT_ACCOUNT, "EUR"), Some(FUNDS - 12_345));
    assert_eq!(rig.stripe.stats().requests, 0);
    rig.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reply_lost_after_creation_and_three_deliveries_move_the_money_once_across_vendors() -> Result<()> {
    let rig = Rig::new("tllost").await?;
    rig.tl.lose_payout_replies(1);
    let cmd = rig.command("po-lost", 20_000);
    for _ in 0..3 {
        rig.producer.send(&cmd).await?;
    }
    let outcomes = rig.outcomes(3).await?;
    switchyard_e2e::money::assert_paid_exactly_once(&rig.oracle, std::slice::from_ref(&cmd));
    assert_eq!(rig.tl.payouts_total(), 1, "one payout at TrueLayer");
    assert!(rig.stripe.ledger().is_empty(), "an ambiguous 500 never fails over");
    for o in &outcomes {
        assert_eq!(o.status, PayoutStatus::Paid, "{o:?}");
        assert_eq!(o.provider_reference, outcomes[0].provider_reference, "every answer names the same payout");
    }
    assert!(outcomes[0].attempts >= 2, "the lost reply was followed by a status query: {:?}", outcomes[0]);
    assert_eq!(rig.tl.calls("POST /v3/payouts"), 2, "the create and its replay; the redeliveries called no one");
    rig.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incomplete_beneficiary_is_refused_before_anything_is_sent() -> Result<()> {
    let rig = Rig::new("tlbenef").await?;
    // Both pass the command's own shape check; neither names a payable account.
    let mut blank_name = rig.command("po-noname", 1000);
    blank_name.beneficiary.name = "   ".into();
    let mut bad_iban = rig.command("po-badiban", 1000);
    bad_iban.beneficiary.iban = "DE89370400440532013001".into();
    rig.producer.send(&blank_name).await?;
    rig.producer.send(&bad_iban).await?;
    for o in rig.outcomes(2).await? {
        assert!(matches!(o.status, PayoutStatus::Failed | PayoutStatus::Rejected), "{o:?}");
        let error = o.error.clone().unwrap_or_else(|| panic!("no error on {o:?}"));
        assert_eq!((error.class, error.code), (ErrorClass::Permanent, ErrorCode::InvalidBeneficiary), "{o:?}");
    }
    assert_eq!(rig.tl.calls("POST /v3/payouts"), 0, "never sent to TrueLayer");
    assert_eq!(rig.stripe.stats().requests, 0, "nor failed over");
    assert!(rig.oracle.movements().is_empty());
    rig.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_payout_is_a_permanent_failure_and_moves_nothing() -> Result<()> {
    let rig = Rig::new("tlfail").await?;
    let broke = rig.command("po-broke", FUNDS + 1);
    rig.producer.send(&broke).await?;
    let o = rig.outcomes(1).await?.remove(0);
    assert_eq!(o.status, PayoutStatus::Failed, "{o:?}");
    let error = o.error.clone().unwrap_or_else(|| panic!("no error on {o:?}"));
    assert_eq!((error.class, error.code), (ErrorClass::Permanent, ErrorCode::InsufficientFunds), "{o:?}");
    rig.tl.set_payout_scenario(PayoutScenario::Blocked);
    let blocked = rig.command("po-blocked", 500);
    rig.producer.send(&blocked).await?;
    let o = rig.outcomes(1).await?.remove(0);
    assert_eq!(o.status, PayoutStatus::Failed, "{o:?}");
    assert_eq!(o.error.as_ref().map(|e| e.class), Some(ErrorClass::Permanent), "{o:?}");
    assert!(rig.oracle.movements().is_empty(), "{:?}", rig.oracle.movements());
    assert_eq!(rig.tl.merchant_balance(MERCHANT_ACCOUNT, "EUR"), Some(FUNDS));
    assert_eq!(rig.stripe.stats().requests, 0, "a failed payout is not retried elsewhere");
    rig.stop().await
}

/// A payout still pending when first read is answered SUBMITTED; what it
/// became arrives later as TrueLayer's payout webhook. TrueLayer calls one
/// webhook URI per app for payments and payouts alike, so the ingester's
/// one `truelayer` provider (open banking's) routes `payout_*` to the
/// payouts' provider-event topic, keyed by our payout id (from the payout's
/// metadata) where the reconciler meets the command and the ledger, and
/// nothing of it reaches open banking's topic. Each webhook is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn truelayer_payout_webhooks_confirm_pending_payouts_on_the_payouts_topic_keyed_by_our_id() -> Result<()> {
    use std::collections::BTreeMap;
    use switchyard_canonical::ProviderEventKind;
    use switchyard_ingester::config::ProviderConfig as WebhookProvider;
    use switchyard_simulators::truelayer::{WebhookDelivery, WebhookOrder};

    let rig = Rig::new("tlhook").await?;
    rig.tl.set_payout_step(Duration::from_millis(1_500));
    let mut provider = WebhookProvider { jwks_urls: vec![rig.tl.webhook_jwks_url()], ..WebhookProvider::new("openbanking", Vec::new()) };
    provider.event_domains.insert("payout_".into(), "payouts".into());
    let mut config = rig.env.ingester_config(BTreeMap::from([("truelayer".to_owned(), provider)]));
    let (payout_events, ob_events) = (rig.env.topic("payouts.provider-events.v1"), rig.env.topic("openbanking.provider-events.v1"));
    config.topics.insert("openbanking".into(), ob_events.clone());
    let stop = CancellationToken::new();
    let ingester = switchyard_ingester::start_ingester(config, stop.clone()).await?;
    rig.tl.send_webhooks(&switchyard_e2e::webhooks::url(&ingester, "truelayer"), WebhookDelivery { copies: 2, order: WebhookOrder::AsTheyHappen });

    let paid = rig.command("po-hooked", 4_200);
    rig.producer.send(&paid).await?;
    let first = rig.outcomes(1).await?.remove(0);
    rig.tl.set_payout_scenario(PayoutScenario::Returned);
    let returned = rig.command("po-returned", 900);
    rig.producer.send(&returned).await?;
    let second = rig.outcomes(1).await?.remove(0);
    for o in [&first, &second] {
        assert_eq!(o.status, PayoutStatus::Submitted, "pending when read: {o:?}");
    }

    // paid: executed; returned: executed, then failed.
    let events = switchyard_e2e::webhooks::drain(&rig.env, &payout_events, 3, Duration::from_secs(3)).await?;
    let of = |cmd: &PayoutCommand| -> Vec<ProviderEventKind> {
        events.iter().filter(|(key, e)| *key == cmd.payout_id && e.subject_id == cmd.payout_id).map(|(_, e)| e.kind).collect()
    };
    assert_eq!(of(&paid), [ProviderEventKind::PayoutPaid], "{events:#?}");
    assert_eq!(of(&returned), [ProviderEventKind::PayoutPaid, ProviderEventKind::PayoutFailed], "{events:#?}");
    assert_eq!(events.len(), 3, "each webhook published once though sent twice: {events:#?}");
    for (_, e) in &events {
        assert_eq!((e.provider.as_str(), e.domain.as_str()), ("truelayer", "payouts"), "{e:?}");
        let ours = if e.subject_id == paid.payout_id { &first } else { &second };
        assert_eq!(Some(&e.provider_reference), ours.provider_reference.as_ref(), "TrueLayer's payout id is the reference");
    }
    let on_ob = switchyard_e2e::TopicReader::new(&rig.env.kafka, &ob_events)?.read_up_to(usize::MAX, Duration::from_secs(1)).await?;
    assert!(on_ob.is_empty(), "payout webhooks are not open banking's: {} records", on_ob.len());
    let sent = rig.tl.webhooks_sent();
    assert_eq!(sent.iter().filter(|(t, s)| t.starts_with("payout_") && *s == 200).count(), 6, "{sent:?}");
    stop.cancel();
    rig.stop().await
}
