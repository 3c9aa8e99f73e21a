//! The webhook part of `switchyard up`: an ingester the payout simulators
//! send their signed status callbacks to, and a look at what reached
//! `payouts.provider-events.v1`, next to a forged callback being refused.

use anyhow::Result;
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_bus::AvroDecoder;
use switchyard_canonical::ProviderEvent;
use switchyard_ingester::config::{KeyConfig, ProviderConfig};
use switchyard_ingester::{start_ingester, RunningIngester, PROVIDER_EVENT_SCHEMA};
use switchyard_localstack::{LocalStack, TopicReader};
use switchyard_simulators::callbacks::{bodies, Callback, Signer, WebhookEmitter};
use switchyard_simulators::WebhookTarget;
use tokio_util::sync::CancellationToken;

/// Demo-only secrets, shared by the simulators and the ingester.
const STRIPE_SECRET: &str = "whsec_switchyard_demo";
const ADYEN_HMAC_HEX: &str = "5357495443485941524444454d4f4b4559";
/// Standard Webhooks secret (`whsec_` + base64 key) for Lithic's callbacks.
const LITHIC_SECRET: &str = "whsec_c3dpdGNoeWFyZC1saXRoaWMtZGVtby1rZXk=";

pub(crate) struct DemoIngester {
    pub(crate) running: RunningIngester,
}

impl DemoIngester {
    /// `truelayer_jwks`: the JWKS URL TrueLayer's simulator signs with.
    pub(crate) async fn start(stack: &LocalStack, database_url: &str, truelayer_jwks: &str, shutdown: CancellationToken) -> Result<Self> {
        let provider = |domain: &str, secret: &str| ProviderConfig::new(domain, vec![KeyConfig::inline(secret)]);
        // TrueLayer's one webhook URI carries payments (open banking) and
        // payouts: `payout_*` go to the payouts' topic.
        let mut truelayer = ProviderConfig { jwks_urls: vec![truelayer_jwks.to_owned()], ..ProviderConfig::new("openbanking", Vec::new()) };
        truelayer.event_domains.insert("payout_".into(), "payouts".into());
        let mut config = stack.ingester_config(BTreeMap::from([
            ("stripe".to_owned(), provider("payouts", STRIPE_SECRET)),
            ("adyen".to_owned(), provider("payouts", ADYEN_HMAC_HEX)),
            ("lithic".to_owned(), provider("cards", LITHIC_SECRET)),
            ("truelayer".to_owned(), truelayer),
        ]));
        config.database_url = database_url.to_owned();
        config.max_body_bytes = 256 * 1024;
        config.publish_timeout_ms = 10_000;
        let running = start_ingester(config, shutdown).await?;
        println!("webhook ingester http://{}/webhooks/{{stripe,adyen,lithic,truelayer}}  metrics http://{}/metrics", running.addr, running.addr);
        Ok(Self { running })
    }

    pub(crate) fn target(&self, provider: &str) -> WebhookTarget {
        let secret = match provider {
            "stripe" => STRIPE_SECRET,
            "lithic" => LITHIC_SECRET,
            _ => ADYEN_HMAC_HEX,
        };
        WebhookTarget { url: format!("http://{}/webhooks/{provider}", self.running.addr), secret: secret.to_owned() }
    }

    /// Shows a forged callback refused, then the provider events of this run.
    pub(crate) async fn report(&self, stack: &LocalStack, run: &str, expected: usize) -> Result<()> {
        let forger = Signer::Stripe { secret: "whsec_not_ours".into() };
        let emitter = WebhookEmitter::new(format!("http://{}/webhooks/stripe", self.running.addr), forger.clone());
        let body = bodies::stripe_payout("evt_forged", "payout.paid", &format!("po-{run}-1"), "po_forged", 1_000_000, now_s());
        let status = emitter.send_once(&forger, &Callback { id: "evt_forged".into(), body }, now_s()).await;
        println!("\na forged payout.paid callback for po-{run}-1: HTTP {status} (refused, never published)");

        let reader = TopicReader::new(&stack.kafka, "payouts.provider-events.v1")?;
        let decoder = AvroDecoder::new(stack.registry_client.clone(), PROVIDER_EVENT_SCHEMA)?;
        let prefix = format!("po-{run}-");
        let mut events: Vec<ProviderEvent> = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while events.len() < expected && tokio::time::Instant::now() < deadline {
            for r in reader.read_up_to(1000, Duration::from_millis(500)).await? {
                if let Ok(e) = decoder.decode::<ProviderEvent>(&r.payload).await {
                    if e.subject_id.starts_with(&prefix) {
                        events.push(e);
                    }
                }
            }
        }
        println!("verified callbacks on payouts.provider-events.v1 (signed by the simulators, deduplicated):");
        println!("  {:<16} {:<8} {:<18} {:<34} {:>8}", "payout", "provider", "kind", "vendor event", "lag ms");
        events.sort_by(|a, b| (&a.subject_id, a.occurred_at_ms).cmp(&(&b.subject_id, b.occurred_at_ms)));
        for e in &events {
            println!(
                "  {:<16} {:<8} {:<18} {:<34} {:>8}",
                e.subject_id,
                e.provider,
                e.kind.as_str(),
                e.vendor_event_type,
                e.received_at_ms - e.occurred_at_ms
            );
        }
        Ok(())
    }
}

fn now_s() -> i64 {
    switchyard_canonical::now_ms() / 1000
}
