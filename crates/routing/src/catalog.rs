//! The partner catalog (`ops/partners.yaml`): inventory, not tribal
//! knowledge. Per partner its domains, regions, currencies and rails, rate
//! limit, owners, last disaster test, known gaps and SLA thresholds.
//! Validated at start-up; every error names the field.

use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerCatalog {
    pub partners: Vec<Partner>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    /// Catalog name; providers in worker configs refer to it.
    pub name: String,
    /// The vendor product, e.g. "Stripe Payouts".
    pub product: String,
    pub domains: Vec<String>,
    /// ISO 3166-1 alpha-2 codes, or "*" for anywhere.
    pub regions: Vec<String>,
    /// ISO 4217 codes the partner pays out in.
    pub currencies: Vec<String>,
    /// `standard`, `instant`.
    pub rails: Vec<String>,
    pub rate_limit: RateLimit,
    pub contract_owner: String,
    pub technical_owner: String,
    /// YYYY-MM-DD of the last failover drill against this partner.
    pub last_disaster_test: String,
    #[serde(default)]
    pub known_gaps: Vec<String>,
    pub sla: Sla,
    /// How long after a successful payout core banking's posting may still
    /// arrive before the reconciler calls it missing (`30m`, `24h`, `2d`).
    #[serde(default = "default_settlement_window", deserialize_with = "duration_text")]
    pub settlement_window: Duration,
    /// How long the vendor remembers an idempotency key (Stripe: 24 h; Adyen:
    /// at least 7 days). Past it a create under the old key would execute
    /// again, so the worker only looks the payout up.
    #[serde(default = "default_key_retention", deserialize_with = "duration_text")]
    pub idempotency_key_retention: Duration,
}

/// The shortest retention a payout vendor documents (Stripe's 24 h): the
/// safe assumption for a partner that does not say.
fn default_key_retention() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// One business day: the reconciler's window for partners that do not set one.
fn default_settlement_window() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn duration_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a duration like 90s, 30m, 24h or 2d")))
}

/// `<n><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    /// Calls that may go out at once after a quiet period.
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sla {
    pub p99_latency_ms: u64,
    pub error_ratio: f64,
    pub timeout_ratio: f64,
    /// The lower edge of the latency band, where the contract states one.
    #[serde(default)]
    pub p95_latency_ms: Option<u64>,
    /// The vendor's event timestamp to the event on our bus, at p95, where
    /// the contract bounds how late its webhooks may arrive.
    #[serde(default)]
    pub webhook_delay_p95_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("partner catalog {path}: {message}")]
pub struct CatalogError {
    pub path: String,
    pub message: String,
}

impl PartnerCatalog {
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let err = |message: String| CatalogError { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let catalog: Self = serde_norway::from_str(&text).map_err(|e| err(e.to_string()))?;
        catalog.validate().map_err(err)?;
        Ok(catalog)
    }

    pub fn validate(&self) -> Result<(), String> {
        for (i, p) in self.partners.iter().enumerate() {
            let at = |field: &str| format!("partners[{i}] ({}).{field}", p.name);
            if self.partners[..i].iter().any(|q| q.name == p.name) {
                return Err(format!("{}: {:?} is listed twice", at("name"), p.name));
            }
            for (field, list) in [("domains", &p.domains), ("regions", &p.regions), ("currencies", &p.currencies), ("rails", &p.rails)] {
                if list.is_empty() {
                    return Err(format!("{} must not be empty", at(field)));
                }
            }
            if let Some(c) = p.currencies.iter().find(|c| c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase())) {
                return Err(format!("{}: {c:?} is not an ISO 4217 code", at("currencies")));
            }
            if let Some(r) = p.rails.iter().find(|r| !matches!(r.as_str(), "standard" | "instant")) {
                return Err(format!("{}: {r:?} is not one of standard, instant", at("rails")));
            }
            let positive_rate = p.rate_limit.per_second.is_finite() && p.rate_limit.per_second > 0.0;
            if !positive_rate || p.rate_limit.burst == 0 {
                return Err(format!("{} needs per_second > 0 and burst >= 1", at("rate_limit")));
            }
            if !is_date(&p.last_disaster_test) {
                return Err(format!("{}: {:?} is not YYYY-MM-DD", at("last_disaster_test"), p.last_disaster_test));
            }
            for (field, ratio) in [("sla.error_ratio", p.sla.error_ratio), ("sla.timeout_ratio", p.sla.timeout_ratio)] {
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(format!("{}: {ratio} is not within 0..=1", at(field)));
                }
            }
            if p.sla.p95_latency_ms.is_some_and(|p95| p95 > p.sla.p99_latency_ms) {
                return Err(format!("{} must not exceed sla.p99_latency_ms", at("sla.p95_latency_ms")));
            }
            if p.contract_owner.trim().is_empty() || p.technical_owner.trim().is_empty() {
                return Err(format!("{} and technical_owner must name someone", at("contract_owner")));
            }
        }
        Ok(())
    }

    pub fn partner(&self, name: &str) -> Option<&Partner> {
        self.partners.iter().find(|p| p.name == name)
    }
}

impl Partner {
    /// Whether the partner can carry a payout in `currency` on `rail`.
    pub fn supports(&self, currency: &str, rail: &str) -> bool {
        self.currencies.iter().any(|c| c == currency) && self.rails.iter().any(|r| r == rail)
    }
}

fn is_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    matches!(parts.as_slice(), [y, m, d]
        if y.len() == 4 && m.len() == 2 && d.len() == 2
        && [y, m, d].iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        && (1..=12).contains(&m.parse::<u8>().unwrap_or(0))
        && (1..=31).contains(&d.parse::<u8>().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_catalog() -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/partners.yaml")).unwrap_or_default()
    }

    #[test]
    fn the_repository_catalog_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/partners.yaml");
        let catalog = PartnerCatalog::load(&path).expect("ops/partners.yaml is valid");
        assert!(catalog.partner("stripe").is_some_and(|p| p.supports("EUR", "standard")));
        assert!(catalog.partners.iter().all(|p| p.settlement_window >= Duration::from_secs(60)));
    }

    #[test]
    fn settlement_windows_parse_and_reject_nonsense() {
        assert_eq!(parse_duration("36h"), Some(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("3 weeks"), None);
        let broken = repo_catalog().replacen("settlement_window: ", "settlement_window: soon", 1);
        let err = serde_norway::from_str::<PartnerCatalog>(&broken).expect_err("bad window").to_string();
        assert!(err.contains("not a duration"), "{err}");
    }

    #[test]
    fn errors_name_the_partner_and_field() {
        let broken = repo_catalog().replacen("last_disaster_test: 2026-", "last_disaster_test: 26-", 1);
        let catalog: PartnerCatalog = serde_norway::from_str(&broken).expect("parses");
        let err = catalog.validate().expect_err("bad date");
        assert!(err.contains("partners[0] (stripe).last_disaster_test"), "{err}");
        let band = repo_catalog().replacen("p95_latency_ms: 800", "p95_latency_ms: 1600", 1);
        let catalog: PartnerCatalog = serde_norway::from_str(&band).expect("parses");
        let err = catalog.validate().expect_err("p95 above p99");
        assert!(err.contains("partners[0] (stripe).sla.p95_latency_ms"), "{err}");
        let typo = repo_catalog().replacen("known_gaps", "known_gapz", 1);
        let err = serde_norway::from_str::<PartnerCatalog>(&typo).expect_err("unknown field").to_string();
        assert!(err.contains("known_gapz"), "{err}");
    }
}
