//! `switchyard certs --config <file>...`: every certificate and PEM key a
//! deployment's worker and ingester configs name, with subject, issuer,
//! not-after and days left. Private keys are never opened.
//!
//! Keys a vendor serves from its own endpoint (Plaid's
//! `/webhook_verification_key/get`) are listed as that endpoint
//! (`jwks_endpoint`), not fetched here: Plaid answers one `kid` at a time and
//! has no list, so only the running ingester knows which keys are in use, and
//! an inventory run would need the production API secret and a call to Plaid.
//! The ingester exports those it fetched as
//! `switchyard_webhooks_verification_key_info{provider,kid,alg,state}`.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use switchyard_adapters::certs::{now, InventoryItem, Table};

#[derive(Args)]
pub(crate) struct CertsArgs {
    /// Payout, KYC/AML/fraud, card worker or webhook ingester config files.
    #[arg(long = "config", required = true, num_args = 1..)]
    configs: Vec<PathBuf>,
    /// Exit 1 when a certificate expires within this many days (or has).
    #[arg(long, default_value_t = 0)]
    fail_within_days: i64,
}

pub(crate) fn run(args: CertsArgs) -> Result<()> {
    let mut items = Vec::new();
    for path in &args.configs {
        items.extend(inventory(path)?);
    }
    let now = now();
    print!("{}", Table { items: &items, now });
    let soon = items.iter().filter(|i| i.not_after.is_some_and(|t| t - now <= args.fail_within_days * 86_400)).count();
    if soon > 0 {
        bail!("{soon} certificate(s) expire within {} days or have expired", args.fail_within_days);
    }
    Ok(())
}

/// The config kinds are told apart by their shape: each refuses unknown
/// fields, so only the right one parses.
fn inventory(path: &Path) -> Result<Vec<InventoryItem>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let at = || format!("{}", path.display());
    let payout = match serde_norway::from_str::<switchyard_worker::PayoutWorkerConfig>(&text) {
        Ok(c) => return c.certificates().with_context(at),
        Err(e) => e,
    };
    let check = match serde_norway::from_str::<switchyard_worker::check_config::CheckWorkerConfig>(&text) {
        Ok(c) => return c.certificates().with_context(at),
        Err(e) => e,
    };
    let card = match serde_norway::from_str::<switchyard_worker::card::config::CardWorkerConfig>(&text) {
        Ok(c) => return c.certificates().with_context(at),
        Err(e) => e,
    };
    let ingester = match serde_norway::from_str::<switchyard_ingester::config::IngesterConfig>(&text) {
        Ok(c) => return c.certificates().with_context(at),
        Err(e) => e,
    };
    bail!("{}: not a payout worker ({payout}), check worker ({check}), card worker ({card}) or webhook ingester ({ingester}) config", path.display())
}
