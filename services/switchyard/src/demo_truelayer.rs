//! The bank-transfer payout of `switchyard up`: TrueLayer as a third payout
//! rail beside Stripe and Adyen, chosen by routing (GBP payouts go to
//! TrueLayer), paid from a funded merchant account. The payout is still
//! `pending` when the worker reads it back, so its outcome is `SUBMITTED`;
//! TrueLayer's signed `payout_executed` webhook then reaches the ingester
//! and lands on `payouts.provider-events.v1` keyed by our payout id.

use anyhow::Result;
use std::time::Duration;
use switchyard_canonical::{Beneficiary, PayoutCommand};
use switchyard_routing::{Segment, SegmentMatch};
use switchyard_simulators::truelayer::{generate_signing_key, spawn_truelayer, TrueLayerConfig, TrueLayerSimulator, WebhookDelivery};
use switchyard_worker::payout::truelayer_config::TrueLayerPayoutSection;
use switchyard_worker::{PayoutWorkerConfig, ProviderConfig, ProviderKind, SecretSource};

const MERCHANT_ACCOUNT: &str = "ma-switchyard-gbp";
const SIGNING_KID: &str = "kid-demo-payouts";

pub(crate) struct TrueLayerRail {
    pub(crate) sim: TrueLayerSimulator,
    private_key: String,
    client_id: String,
    client_secret: String,
}

impl TrueLayerRail {
    /// The simulator, funded, with payouts that execute 800 ms after creation.
    pub(crate) async fn spawn() -> Result<Self> {
        let config = TrueLayerConfig::local();
        let sim = spawn_truelayer(config.clone()).await?;
        let (private_key, public) = generate_signing_key();
        sim.register_signing_key(SIGNING_KID, &public);
        sim.fund_merchant_account(MERCHANT_ACCOUNT, "GBP", 10_000_000);
        sim.set_payout_step(Duration::from_millis(800));
        Ok(Self { sim, private_key, client_id: config.client_id, client_secret: config.client_secret })
    }

    /// TrueLayer's webhooks, to the ingester's `truelayer` endpoint.
    pub(crate) fn send_webhooks_to(&self, url: &str) {
        self.sim.send_webhooks(url, WebhookDelivery::default());
    }

    /// Adds TrueLayer to the payout worker's providers and routes GBP to it.
    pub(crate) fn wire(&self, config: &mut PayoutWorkerConfig) {
        config.providers.push(ProviderConfig {
            name: "truelayer".into(),
            kind: ProviderKind::TrueLayer,
            base_url: self.sim.base_url(),
            api_key: SecretSource::inline(&self.client_secret),
            balance_account_id: None,
            connected_account: None,
            key_retention_ms: None,
            timeout_ms: 2000,
            max_concurrency: 64,
            http2_prior_knowledge: false,
            sandbox_only: false,
            tls: None,
            truelayer: Some(TrueLayerPayoutSection {
                auth_url: self.sim.base_url(),
                client_id: self.client_id.clone(),
                signing_key_id: SIGNING_KID.into(),
                signing_key: SecretSource::inline(&self.private_key),
                merchant_account_id: MERCHANT_ACCOUNT.into(),
            }),
        });
        config.routing.segments.push(Segment {
            matches: SegmentMatch { currency: Some("GBP".into()), ..SegmentMatch::default() },
            primary: "truelayer".into(),
            secondary: None,
        });
    }
}

/// A GBP payout to a UK account.
pub(crate) fn gbp_payout(payout_id: &str, key: &str, amount_minor: i64) -> PayoutCommand {
    PayoutCommand {
        currency: "GBP".into(),
        beneficiary: Beneficiary { name: "Grace Hopper".into(), iban: "GB33BUKB20201555555555".into(), country: "GB".into() },
        ..switchyard_localstack::command(payout_id, key, amount_minor)
    }
}
