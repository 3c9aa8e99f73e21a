//! `switchyard catalog`: the partner inventory and how traffic is routed.

use anyhow::{Context, Result};
use std::path::PathBuf;
use switchyard_routing::PartnerCatalog;
use switchyard_worker::PayoutWorkerConfig;

#[derive(clap::Args)]
pub(crate) struct CatalogArgs {
    #[arg(long, default_value = "ops/partners.yaml")]
    file: PathBuf,
    /// A worker config whose routing table to show.
    #[arg(long, default_value = "ops/payout-worker.example.yaml")]
    config: PathBuf,
    /// A running worker's /metrics, for live breaker state and shadow agreement.
    #[arg(long)]
    metrics_url: Option<String>,
}

pub(crate) async fn run(args: CatalogArgs) -> Result<()> {
    let catalog = PartnerCatalog::load(&args.file)?;
    println!("partners ({})", args.file.display());
    println!("  {:<10} {:<36} {:<10} {:<16} {:<18} {:>10} {:>7} {:>6} {:<12}", "name", "product", "domains", "currencies", "rails", "rate/s", "burst", "p99ms", "last drill");
    for p in &catalog.partners {
        println!(
            "  {:<10} {:<36} {:<10} {:<16} {:<18} {:>10} {:>7} {:>6} {:<12}",
            p.name,
            p.product,
            p.domains.join(","),
            p.currencies.join(","),
            p.rails.join(","),
            p.rate_limit.per_second,
            p.rate_limit.burst,
            p.sla.p99_latency_ms,
            p.last_disaster_test
        );
        for gap in &p.known_gaps {
            println!("  {:<10} gap: {gap}", "");
        }
        println!("  {:<10} owners: {} / {}", "", p.contract_owner, p.technical_owner);
    }

    let text = std::fs::read_to_string(&args.config).with_context(|| format!("reading {}", args.config.display()))?;
    let config: PayoutWorkerConfig = serde_norway::from_str(&text).with_context(|| format!("parsing {}", args.config.display()))?;
    config.validate()?;
    let r = &config.routing;
    println!("\nrouting: payouts ({})", args.config.display());
    println!("  primary    {}", r.primary);
    println!("  secondary  {}", r.secondary.as_deref().unwrap_or("-"));
    match &r.rollout {
        Some(roll) => println!("  rollout    {} for {}% of new idempotency keys", roll.candidate, roll.percent),
        None => println!("  rollout    -"),
    }
    println!("  shadow     {}", r.shadow.as_deref().unwrap_or("-"));
    println!("  mode       {:?}", r.mode);
    for seg in &r.segments {
        let m = &seg.matches;
        println!(
            "  segment    currency={} rail={} region={} -> primary {} secondary {}",
            m.currency.as_deref().unwrap_or("*"),
            m.rail.as_deref().unwrap_or("*"),
            m.region.as_deref().unwrap_or("*"),
            seg.primary,
            seg.secondary.as_deref().unwrap_or("-")
        );
    }
    println!(
        "  breaker    opens at {:.0}% failures of >= {} calls in {} ms; half-open after {} ms",
        r.breaker.failure_ratio * 100.0,
        r.breaker.min_calls,
        r.breaker.window_ms,
        r.breaker.open_ms
    );

    if let Some(url) = &args.metrics_url {
        let text = reqwest::get(url).await?.error_for_status()?.text().await?;
        println!("\nlive ({url})");
        for line in text.lines().filter(|l| l.starts_with("switchyard_circuit_state") || l.starts_with("switchyard_institution_circuit_state")) {
            println!("  {line}");
        }
        let mut per_candidate: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
        for line in text.lines().filter(|l| l.starts_with("switchyard_shadow_comparisons_total")) {
            let candidate = label(line, "candidate");
            let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let entry = per_candidate.entry(candidate).or_default();
            if label(line, "result") == "agree" {
                entry.0 += value;
            }
            if label(line, "result") != "skipped" {
                entry.1 += value;
            }
        }
        for (candidate, (agree, total)) in per_candidate {
            let rate = if total > 0.0 { agree / total * 100.0 } else { 0.0 };
            println!("  shadow {candidate}: {rate:.1}% agreement over {total} comparisons");
        }
    }
    Ok(())
}

fn label(line: &str, name: &str) -> String {
    line.split(&format!("{name}=\"")).nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_default().to_owned()
}
