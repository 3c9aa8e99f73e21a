//! `switchyard sandbox`: every vendor simulator on fixed, documented ports,
//! so a team can point its own code, or a vendor's official SDK, at them.
//!
//! Each vendor gets its own port (see [`SANDBOX_HELP`]), a fault profile
//! (a named [`FaultPlan`] or one as JSON) and, for the vendors whose
//! simulators send callbacks, a webhook URL; the callbacks are signed with
//! the vendor's own scheme under sandbox-only secrets printed at start-up.
//! Runs until Ctrl-C (or SIGTERM).

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use switchyard_simulators::{
    adyen, comply_advantage, lithic, marqeta, onfido, open_sanctions, sardine, seon, stripe, sumsub, FaultPlan, MoneyOracle, SimulatorHandle,
    WebhookTarget,
};

/// Shown by `switchyard sandbox --help`, and mirrored in the README.
const SANDBOX_HELP: &str = "\
Default ports (on --host):
  stripe            12111   Stripe: /v1/payouts, /v1/accounts/{id}/external_accounts (stripe-mock's port)
  adyen             12112   Adyen Transfers: /btl/v4/transfers
  onfido            12113   Onfido v3.6: /v3.6/applicants, documents, live_photos, checks, reports
  sumsub            12114   Sumsub: /resources/applicants
  comply_advantage  12115   ComplyAdvantage: /searches
  open_sanctions    12116   OpenSanctions (yente): /match/{dataset}
  sardine           12117   Sardine: /v1/customers, /v1/feedbacks
  seon              12118   SEON: /SeonRestService/fraud-api/v2/
  lithic            12119   Lithic: /v1/cards, /v1/cards/{token}/provision, /v1/disputes
  marqeta           12120   Marqeta Core API: /v3/cards, /v3/cardtransitions, /v3/pins, /v3/chargebacks

Fault profiles (--faults VENDOR=PROFILE, or VENDOR=<FaultPlan JSON>):
  none          no faults (the default)
  slow          300 ms on every reply
  flaky         10% 500/503 and 10% 429 (Retry-After: 1), before anything executes
  rate_limited  50% 429 (Retry-After: 1)
  down          every call 503
  timeout       every call executes, then the reply takes 30 s (an ambiguous result)

VENDOR may be `all` for --faults and --webhook-url; flags apply in order, so
`--faults all=flaky --faults stripe=none` leaves Stripe alone. A webhook URL
may contain `{vendor}`. Stripe, Adyen, Onfido, Sumsub, Lithic and Marqeta send
webhooks (Marqeta: Basic marqeta_sandbox:marqeta_sandbox_password, batches of <= 10).
Every port also serves GET /_sim/ledger, GET /_sim/stats and PUT /_sim/faults.
The credentials and signing secrets are sandbox-only test values.";

#[derive(clap::Args)]
#[command(after_help = SANDBOX_HELP)]
pub(crate) struct SandboxArgs {
    /// Address every simulator listens on (0.0.0.0 to reach it from containers).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// A vendor's port, e.g. `--port stripe=12111`; 0 picks a free one. Repeatable.
    #[arg(long = "port", value_name = "VENDOR=PORT")]
    ports: Vec<String>,
    /// A vendor's fault profile or FaultPlan JSON, e.g. `--faults adyen=flaky`. Repeatable.
    #[arg(long = "faults", value_name = "VENDOR=PROFILE|JSON")]
    faults: Vec<String>,
    /// Where a vendor's webhooks go, e.g. `--webhook-url stripe=http://127.0.0.1:8080/webhooks/stripe`. Repeatable.
    #[arg(long = "webhook-url", value_name = "VENDOR=URL")]
    webhook_urls: Vec<String>,
    /// Replace a vendor's sandbox signing secret (Adyen: the HMAC key as hex). Repeatable.
    #[arg(long = "webhook-secret", value_name = "VENDOR=SECRET")]
    webhook_secrets: Vec<String>,
    /// Also write the URLs, credentials and webhook secrets as JSON to FILE once listening.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
}

/// The simulated vendors, in port order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Vendor {
    Stripe,
    Adyen,
    Onfido,
    Sumsub,
    ComplyAdvantage,
    OpenSanctions,
    Sardine,
    Seon,
    Lithic,
    Marqeta,
}

const FIRST_PORT: u16 = 12111;

/// The Basic credentials the Marqeta simulator presents on its webhooks.
const MARQETA_HOOK_USER: &str = "marqeta_sandbox";
const MARQETA_HOOK_PASSWORD: &str = "marqeta_sandbox_password";

impl Vendor {
    const ALL: [Vendor; 10] = [
        Vendor::Stripe,
        Vendor::Adyen,
        Vendor::Onfido,
        Vendor::Sumsub,
        Vendor::ComplyAdvantage,
        Vendor::OpenSanctions,
        Vendor::Sardine,
        Vendor::Seon,
        Vendor::Lithic,
        Vendor::Marqeta,
    ];

    fn name(self) -> &'static str {
        match self {
            Vendor::Stripe => "stripe",
            Vendor::Adyen => "adyen",
            Vendor::Onfido => "onfido",
            Vendor::Sumsub => "sumsub",
            Vendor::ComplyAdvantage => "comply_advantage",
            Vendor::OpenSanctions => "open_sanctions",
            Vendor::Sardine => "sardine",
            Vendor::Seon => "seon",
            Vendor::Lithic => "lithic",
            Vendor::Marqeta => "marqeta",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        let alias = match wanted.as_str() {
            "complyadvantage" => "comply_advantage",
            "opensanctions" | "yente" => "open_sanctions",
            other => other,
        };
        Self::ALL.into_iter().find(|v| v.name() == alias)
    }

    fn default_port(self) -> u16 {
        FIRST_PORT + self as u16
    }

    /// The signing scheme and sandbox secret of a vendor whose simulator
    /// sends webhooks; `None` for the others.
    fn webhook(self) -> Option<(&'static str, &'static str)> {
        match self {
            Vendor::Stripe => Some(("Stripe-Signature (t=..,v1=HMAC-SHA256); endpoint secret", "whsec_switchyard_sandbox")),
            // Hex of "switchyard-sandbox-adyen-hmac-01": 32 bytes, as Adyen's keys are.
            Vendor::Adyen => Some(("HmacSignature (base64 HMAC-SHA256); HMAC key (hex)", "737769746368796172642d73616e64626f782d616479656e2d686d61632d3031")),
            Vendor::Onfido => Some(("X-SHA2-Signature (hex HMAC-SHA256); webhook token", "onfido_sandbox_webhook_token")),
            Vendor::Sumsub => Some(("X-Payload-Digest (hex HMAC-SHA256); secret key", "sumsub_sandbox_webhook_secret")),
            Vendor::Lithic => Some(("Standard Webhooks (webhook-signature v1,HMAC-SHA256); whsec_ secret", "whsec_c3dpdGNoeWFyZC1zYW5kYm94LWxpdGhpYy1rZXktMDE=")),
            Vendor::Marqeta => Some(("Basic auth + X-Marqeta-Signature (hex HMAC-SHA256); signature secret", "marqeta_sandbox_signature_secret")),
            _ => None,
        }
    }
}

/// One vendor's resolved settings.
#[derive(Clone, Debug)]
struct Plan {
    port: u16,
    profile: String,
    faults: FaultPlan,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
}

/// `VENDOR=VALUE` with `all` allowed where `allow_all`: the vendors it names.
fn split(arg: &str, flag: &str, allow_all: bool) -> Result<(Vec<Vendor>, String)> {
    let (who, value) = arg.split_once('=').ok_or_else(|| anyhow!("--{flag} {arg:?}: expected VENDOR=VALUE"))?;
    let vendors = if allow_all && who.trim().eq_ignore_ascii_case("all") {
        Vendor::ALL.to_vec()
    } else {
        let names: Vec<&str> = Vendor::ALL.iter().map(|v| v.name()).collect();
        vec![Vendor::parse(who).ok_or_else(|| anyhow!("--{flag} {arg:?}: unknown vendor {who:?} (one of {})", names.join(", ")))?]
    };
    Ok((vendors, value.to_owned()))
}

/// A named profile, or a FaultPlan as JSON.
fn fault_profile(value: &str) -> Result<FaultPlan> {
    let value = value.trim();
    if value.starts_with('{') {
        return serde_json::from_str(value).with_context(|| format!("fault plan JSON {value:?}"));
    }
    let none = FaultPlan::default();
    Ok(match value.to_ascii_lowercase().replace('-', "_").as_str() {
        "none" => none,
        "slow" => FaultPlan { latency_ms: 300, ..none },
        "flaky" => FaultPlan { server_error_ratio: 0.1, rate_limit_ratio: 0.1, retry_after_secs: 1, seed: 42, ..none },
        "rate_limited" => FaultPlan { rate_limit_ratio: 0.5, retry_after_secs: 1, seed: 42, ..none },
        "down" => FaultPlan { unavailable_ratio: 1.0, ..none },
        "timeout" => FaultPlan { hang_after_accept_ratio: 1.0, hang_ms: 30_000, ..none },
        other => bail!("unknown fault profile {other:?} (none, slow, flaky, rate_limited, down, timeout, or FaultPlan JSON)"),
    })
}

impl SandboxArgs {
    /// Every vendor's settings, flags applied in order over the defaults.
    fn plans(&self) -> Result<BTreeMap<Vendor, Plan>> {
        let mut plans: BTreeMap<Vendor, Plan> = Vendor::ALL
            .into_iter()
            .map(|v| {
                let plan = Plan {
                    port: v.default_port(),
                    profile: "none".to_owned(),
                    faults: FaultPlan::default(),
                    webhook_url: None,
                    webhook_secret: v.webhook().map(|(_, secret)| secret.to_owned()),
                };
                (v, plan)
            })
            .collect();
        for arg in &self.ports {
            let (vendors, value) = split(arg, "port", false)?;
            let port = value.trim().parse::<u16>().with_context(|| format!("--port {arg:?}: not a port number"))?;
            for v in vendors {
                if let Some(p) = plans.get_mut(&v) {
                    p.port = port;
                }
            }
        }
        for arg in &self.faults {
            let (vendors, value) = split(arg, "faults", true)?;
            let faults = fault_profile(&value).with_context(|| format!("--faults {arg:?}"))?;
            let profile = if value.trim().starts_with('{') { "custom".to_owned() } else { value.trim().to_ascii_lowercase() };
            for v in vendors {
                if let Some(p) = plans.get_mut(&v) {
                    p.faults = faults.clone();
                    p.profile = profile.clone();
                }
            }
        }
        for arg in &self.webhook_urls {
            let (vendors, value) = split(arg, "webhook-url", true)?;
            let all = vendors.len() > 1;
            if !value.starts_with("http://") && !value.starts_with("https://") {
                bail!("--webhook-url {arg:?}: expected an http:// or https:// URL");
            }
            for v in vendors {
                if v.webhook().is_none() {
                    if all {
                        continue;
                    }
                    bail!("--webhook-url {arg:?}: the {} simulator sends no webhooks (stripe, adyen, onfido, sumsub, lithic and marqeta do)", v.name());
                }
                if let Some(p) = plans.get_mut(&v) {
                    p.webhook_url = Some(value.replace("{vendor}", v.name()));
                }
            }
        }
        for arg in &self.webhook_secrets {
            let (vendors, value) = split(arg, "webhook-secret", false)?;
            for v in vendors {
                if v.webhook().is_none() {
                    bail!("--webhook-secret {arg:?}: the {} simulator sends no webhooks", v.name());
                }
                if v == Vendor::Adyen && (value.len() % 2 != 0 || !value.bytes().all(|b| b.is_ascii_hexdigit()) || value.is_empty()) {
                    bail!("--webhook-secret {arg:?}: Adyen's HMAC key is hex");
                }
                if let Some(p) = plans.get_mut(&v) {
                    p.webhook_secret = Some(value.clone());
                }
            }
        }
        let mut taken: BTreeMap<u16, Vendor> = BTreeMap::new();
        for (v, p) in &plans {
            if p.port != 0 {
                if let Some(other) = taken.insert(p.port, *v) {
                    bail!("{} and {} both on port {}: give one another --port", other.name(), v.name(), p.port);
                }
            }
        }
        Ok(plans)
    }
}

impl Plan {
    fn target(&self) -> Option<WebhookTarget> {
        Some(WebhookTarget { url: self.webhook_url.clone()?, secret: self.webhook_secret.clone()? })
    }
}

/// A started simulator with what a client needs to reach it.
struct Running {
    vendor: Vendor,
    handle: SimulatorHandle,
    credentials: Value,
}

async fn start(vendor: Vendor, host: IpAddr, plan: &Plan, oracle: &MoneyOracle) -> Result<Running> {
    let bind = SocketAddr::new(host, plan.port);
    let faults = plan.faults.clone();
    let webhook = plan.target();
    let (handle, credentials) = match vendor {
        Vendor::Stripe => {
            let c = stripe::StripeConfig { bind, faults, webhook, oracle: oracle.clone(), ..stripe::StripeConfig::local() };
            let creds = json!({ "api_key": c.api_key, "platform_account": stripe::PLATFORM_ACCOUNT_ID });
            (stripe::spawn_stripe(c).await, creds)
        }
        Vendor::Adyen => {
            let c = adyen::AdyenConfig { bind, faults, webhook, oracle: oracle.clone(), ..adyen::AdyenConfig::local() };
            let creds = json!({ "x_api_key": c.api_key, "balance_account_id": c.balance_account_id });
            (adyen::spawn_adyen(c).await, creds)
        }
        Vendor::Onfido => {
            let c = onfido::OnfidoConfig { bind, faults, webhook, ..onfido::OnfidoConfig::local() };
            let creds = json!({ "api_token": c.api_token });
            (onfido::spawn_onfido(c).await, creds)
        }
        Vendor::Sumsub => {
            let c = sumsub::SumsubConfig { bind, faults, webhook, ..sumsub::SumsubConfig::local() };
            let creds = json!({ "app_token": c.app_token, "secret_key": c.secret_key });
            (sumsub::spawn_sumsub(c).await, creds)
        }
        Vendor::ComplyAdvantage => {
            let c = comply_advantage::ComplyAdvantageConfig { bind, faults, ..comply_advantage::ComplyAdvantageConfig::local() };
            let creds = json!({ "api_key": c.api_key });
            (comply_advantage::spawn_comply_advantage(c).await, creds)
        }
        Vendor::OpenSanctions => {
            let c = open_sanctions::OpenSanctionsConfig { bind, faults, ..open_sanctions::OpenSanctionsConfig::local() };
            let creds = json!({ "api_key": c.api_key });
            (open_sanctions::spawn_open_sanctions(c).await, creds)
        }
        Vendor::Sardine => {
            let c = sardine::SardineConfig { bind, faults, ..sardine::SardineConfig::local() };
            let creds = json!({ "client_id": c.client_id, "client_secret": c.client_secret });
            (sardine::spawn_sardine(c).await, creds)
        }
        Vendor::Seon => {
            let c = seon::SeonConfig { bind, faults, ..seon::SeonConfig::local() };
            let creds = json!({ "api_key": c.api_key });
            (seon::spawn_seon(c).await, creds)
        }
        Vendor::Lithic => {
            let c = lithic::LithicConfig { bind, faults, webhook, ..lithic::LithicConfig::local() };
            let creds = json!({ "api_key": c.api_key });
            (lithic::spawn_lithic(c).await, creds)
        }
        Vendor::Marqeta => {
            let hook = webhook.map(|w| marqeta::MarqetaWebhook {
                secret: Some(w.secret),
                ..marqeta::MarqetaWebhook::new(w.url, MARQETA_HOOK_USER, MARQETA_HOOK_PASSWORD)
            });
            let c = marqeta::MarqetaConfig { bind, faults, webhook: hook, ..marqeta::MarqetaConfig::local() };
            let creds = json!({
                "application_token": c.application_token,
                "access_token": c.access_token,
                "base_path": "/v3",
                "webhook_basic_auth": format!("{MARQETA_HOOK_USER}:{MARQETA_HOOK_PASSWORD}"),
            });
            (marqeta::spawn_marqeta(c).await, creds)
        }
    };
    let handle = handle.with_context(|| {
        format!("{}: cannot listen on {bind} (already in use? choose another with --port {}=PORT)", vendor.name(), vendor.name())
    })?;
    Ok(Running { vendor, handle, credentials })
}

/// `key value, key value` for the start-up table.
fn credentials_line(credentials: &Value) -> String {
    credentials
        .as_object()
        .map(|o| o.iter().map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn manifest(host: IpAddr, running: &[Running], plans: &BTreeMap<Vendor, Plan>) -> Value {
    let vendors: serde_json::Map<String, Value> = running
        .iter()
        .filter_map(|r| {
            let plan = plans.get(&r.vendor)?;
            let webhook = r.vendor.webhook().map(|(scheme, _)| {
                json!({ "url": plan.webhook_url, "secret": plan.webhook_secret, "scheme": scheme })
            });
            let entry = json!({
                "url": r.handle.base_url(), "credentials": r.credentials, "fault_profile": plan.profile,
                "faults": plan.faults, "webhook": webhook,
            });
            Some((r.vendor.name().to_owned(), entry))
        })
        .collect();
    json!({ "host": host.to_string(), "vendors": vendors })
}

fn print_banner(running: &[Running], plans: &BTreeMap<Vendor, Plan>) {
    println!("switchyard sandbox: vendor simulators (sandbox-only credentials and secrets, never real ones)\n");
    println!("  {:<17} {:<24} {:<9} credentials", "vendor", "base url", "faults");
    for r in running {
        let profile = plans.get(&r.vendor).map_or("none", |p| p.profile.as_str());
        println!("  {:<17} {:<24} {:<9} {}", r.vendor.name(), r.handle.base_url(), profile, credentials_line(&r.credentials));
    }
    println!("\nwebhooks:");
    for r in running {
        let (Some((scheme, _)), Some(plan)) = (r.vendor.webhook(), plans.get(&r.vendor)) else { continue };
        let url = plan.webhook_url.clone().unwrap_or_else(|| format!("(not sent: --webhook-url {}=URL)", r.vendor.name()));
        println!("  {:<17} -> {url}", r.vendor.name());
        println!("  {:<17}    {scheme} {}", "", plan.webhook_secret.as_deref().unwrap_or_default());
    }
    println!("\ncontrol routes on every port: GET /_sim/ledger, GET /_sim/stats, PUT /_sim/faults (FaultPlan JSON)");
    println!("sandbox ready; Ctrl-C stops it");
}

/// Resolves when the process is asked to stop: Ctrl-C, or SIGTERM on Unix.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

pub(crate) async fn run(args: SandboxArgs) -> Result<()> {
    let plans = args.plans()?;
    let oracle = MoneyOracle::new();
    let mut running = Vec::with_capacity(plans.len());
    for (vendor, plan) in &plans {
        match start(*vendor, args.host, plan, &oracle).await {
            Ok(r) => running.push(r),
            Err(e) => {
                futures::future::join_all(running.into_iter().map(|r| r.handle.shutdown())).await;
                return Err(e);
            }
        }
    }
    print_banner(&running, &plans);
    if let Some(path) = &args.manifest {
        let text = serde_json::to_string_pretty(&manifest(args.host, &running, &plans))?;
        // Written whole, then renamed, so a reader polling for it never sees half.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))?;
    }
    stopped().await;
    println!("stopping");
    futures::future::join_all(running.into_iter().map(|r| r.handle.shutdown())).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(ports: &[&str], faults: &[&str], urls: &[&str]) -> SandboxArgs {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        SandboxArgs {
            host: IpAddr::from([127, 0, 0, 1]),
            ports: own(ports),
            faults: own(faults),
            webhook_urls: own(urls),
            webhook_secrets: Vec::new(),
            manifest: None,
        }
    }

    #[test]
    fn defaults_are_the_documented_block() {
        let plans = args(&[], &[], &[]).plans().expect("plans");
        let ports: Vec<(&str, u16)> = plans.iter().map(|(v, p)| (v.name(), p.port)).collect();
        assert_eq!(ports[0], ("stripe", 12111));
        assert_eq!(ports[7], ("seon", 12118));
        assert_eq!(ports[8], ("lithic", 12119));
        assert_eq!(ports[9], ("marqeta", 12120));
        for (v, p) in &plans {
            assert!(SANDBOX_HELP.contains(&format!("{:<17} {}", v.name(), p.port)), "{} missing from --help", v.name());
        }
    }

    #[test]
    fn flags_apply_in_order_and_all_expands() {
        let plans = args(&["stripe=0", "seon=13000"], &["all=flaky", "stripe=none"], &["all=http://127.0.0.1:9/{vendor}"])
            .plans()
            .expect("plans");
        let stripe = &plans[&Vendor::Stripe];
        assert_eq!((stripe.port, stripe.profile.as_str(), stripe.faults.rate_limit_ratio), (0, "none", 0.0));
        assert_eq!(plans[&Vendor::Adyen].profile, "flaky");
        assert_eq!(plans[&Vendor::Seon].port, 13000);
        assert_eq!(plans[&Vendor::Onfido].webhook_url.as_deref(), Some("http://127.0.0.1:9/onfido"));
        assert_eq!(plans[&Vendor::Seon].webhook_url, None);
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let err = |a: SandboxArgs| a.plans().map(|_| ()).expect_err("refused").to_string();
        assert!(err(args(&["paypal=1"], &[], &[])).contains("unknown vendor \"paypal\""));
        assert!(err(args(&["stripe=12112"], &[], &[])).contains("stripe and adyen both on port 12112"));
        assert!(format!("{:#}", args(&[], &["adyen=wobbly"], &[]).plans().map(|_| ()).expect_err("refused")).contains("unknown fault profile"));
        assert!(err(args(&[], &[], &["seon=http://x"])).contains("sends no webhooks"));
        let custom = args(&[], &[r#"onfido={"latency_ms":5}"#], &[]).plans().expect("json plan");
        assert_eq!((custom[&Vendor::Onfido].faults.latency_ms, custom[&Vendor::Onfido].profile.as_str()), (5, "custom"));
    }
}
