//! Where routing is decided: which provider gets a command, and whether a
//! refused command may move to another.
//!
//! The rule that prevents double payouts lives here ([`Router::failover_target`]):
//! a command moves from its provider to the secondary only after a *definite*
//! refusal (circuit open, connection refused, 503) in the same delivery that
//! claimed it, never after an ambiguous result (timeout, other 5xx), and never
//! for a claim inherited from an earlier delivery, which may have reached the
//! vendor before a crash. Percentage and shadow rollouts extend
//! [`RoutingPolicy`] later (issue 5).

pub mod breaker;
pub mod catalog;
pub mod ratelimit;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use catalog::{Partner, PartnerCatalog};

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoutingPolicy {
    /// `off` parks new commands with a held outcome until the domain is on again.
    #[serde(default)]
    pub mode: DomainMode,
    /// Catalog name of the provider that takes new commands.
    pub primary: String,
    /// Takes new commands only when the primary definitely refused them.
    #[serde(default)]
    pub secondary: Option<String>,
    /// Circuit breaker settings, shared by every provider of the domain.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Sends a share of new commands to a candidate provider.
    #[serde(default)]
    pub rollout: Option<Rollout>,
    /// Also calls a sandbox provider with every new command and compares its
    /// normalized outcome; never acts on it.
    #[serde(default)]
    pub shadow: Option<String>,
    /// Overrides of primary and secondary for commands matching a segment;
    /// the first match wins, unmatched commands use the defaults above.
    #[serde(default)]
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    #[serde(rename = "match")]
    pub matches: SegmentMatch,
    pub primary: String,
    #[serde(default)]
    pub secondary: Option<String>,
}

/// Every field set must match; unset fields match anything.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SegmentMatch {
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub rail: Option<String>,
    /// The beneficiary's country, ISO 3166-1 alpha-2.
    #[serde(default)]
    pub region: Option<String>,
    /// The command's `tenant_id`; a command without one never matches.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The command's `risk_tier`; a command without one never matches.
    #[serde(default)]
    pub risk_tier: Option<String>,
}

impl SegmentMatch {
    fn accepts(&self, needs: Needs<'_>) -> bool {
        let field = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        let optional = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
        field(&self.currency, needs.currency)
            && field(&self.rail, needs.rail)
            && field(&self.region, needs.region)
            && optional(&self.tenant, needs.tenant)
            && optional(&self.risk_tier, needs.risk_tier)
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DomainMode {
    #[default]
    On,
    Off,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub candidate: String,
    /// Share of new commands, 0..=100; decided per idempotency key, so a
    /// redelivered command lands where it landed before.
    pub percent: f64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoutingError {
    #[error("routing.{field} names provider {name:?}, which is not configured (known: {known})")]
    UnknownProvider { field: &'static str, name: String, known: String },
    #[error("routing.{field}: {message}")]
    Invalid { field: &'static str, message: String },
}

fn with_index(e: RoutingError, i: usize) -> RoutingError {
    match e {
        RoutingError::UnknownProvider { field, name, known } => RoutingError::Invalid {
            field: "segments",
            message: format!("segments[{i}].{}: {name:?} is not configured (known: {known})", field.trim_start_matches("segments[].")),
        },
        other => other,
    }
}

/// A stable bucket in 0..10_000 for a key (FNV-1a: the standard library's
/// hasher may change between releases, and a key must keep its bucket).
pub fn bucket(key: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % 10_000) as u32
}

impl RoutingPolicy {
    /// Checks every name against the configured providers.
    pub fn validate<'a>(&self, known: impl IntoIterator<Item = &'a str> + Clone) -> Result<(), RoutingError> {
        let check = |field: &'static str, name: &str| {
            if known.clone().into_iter().any(|k| k == name) {
                Ok(())
            } else {
                Err(RoutingError::UnknownProvider {
                    field,
                    name: name.to_owned(),
                    known: known.clone().into_iter().collect::<Vec<_>>().join(", "),
                })
            }
        };
        check("primary", &self.primary)?;
        if let Some(s) = &self.secondary {
            check("secondary", s)?;
        }
        if let Some(r) = &self.rollout {
            check("rollout.candidate", &r.candidate)?;
            if !(0.0..=100.0).contains(&r.percent) {
                return Err(RoutingError::Invalid { field: "rollout.percent", message: format!("{} is not within 0..=100", r.percent) });
            }
        }
        for (i, segment) in self.segments.iter().enumerate() {
            check("segments[].primary", &segment.primary).map_err(|e| with_index(e, i))?;
            if let Some(s) = &segment.secondary {
                check("segments[].secondary", s).map_err(|e| with_index(e, i))?;
            }
        }
        if let Some(s) = &self.shadow {
            check("shadow", s)?;
            if *s == self.primary || self.secondary.as_ref() == Some(s) || self.rollout.as_ref().is_some_and(|r| r.candidate == *s) {
                return Err(RoutingError::Invalid {
                    field: "shadow",
                    message: format!("{s:?} also takes live traffic; a shadow provider must be a sandbox of its own"),
                });
            }
        }
        Ok(())
    }

}

/// Why a vendor call failed, as far as failover is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The vendor certainly did not act on the request.
    Definite,
    /// The vendor may have acted on it.
    Ambiguous,
}

/// The live routing table: policy plus a breaker per provider.
#[derive(Debug, Clone)]
pub struct Router {
    policy: RoutingPolicy,
    breakers: HashMap<String, Arc<CircuitBreaker>>,
    /// Capabilities; without a catalog every provider is assumed capable.
    catalog: Option<PartnerCatalog>,
}

/// What a command needs from a partner.
#[derive(Debug, Clone, Copy)]
pub struct Needs<'a> {
    pub currency: &'a str,
    pub rail: &'a str,
    /// The beneficiary's country.
    pub region: &'a str,
    /// Producers on the first command schema send neither.
    pub tenant: Option<&'a str>,
    pub risk_tier: Option<&'a str>,
}

impl Router {
    pub fn new(policy: RoutingPolicy) -> Self {
        let mut breakers = HashMap::new();
        let candidate = policy.rollout.as_ref().map(|r| &r.candidate);
        let segments = policy.segments.iter().flat_map(|s| std::iter::once(&s.primary).chain(s.secondary.as_ref()));
        for name in std::iter::once(&policy.primary).chain(policy.secondary.as_ref()).chain(candidate).chain(segments) {
            breakers.insert(name.clone(), Arc::new(CircuitBreaker::new(policy.breaker.clone())));
        }
        Self { policy, breakers, catalog: None }
    }

    /// A router for a new policy that keeps the breakers (and their state)
    /// of providers it shares with this one, when the breaker settings are
    /// unchanged: a policy edit must not reset a tripped breaker.
    pub fn reconfigured(&self, policy: RoutingPolicy) -> Self {
        let mut next = Router::new(policy);
        if next.policy.breaker == self.policy.breaker {
            for (name, breaker) in next.breakers.iter_mut() {
                if let Some(old) = self.breakers.get(name) {
                    *breaker = old.clone();
                }
            }
        }
        next.catalog = self.catalog.clone();
        next
    }

    pub fn policy(&self) -> &RoutingPolicy {
        &self.policy
    }

    pub fn with_catalog(mut self, catalog: PartnerCatalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Primary and secondary for a command: its segment's, or the defaults.
    fn pair_for(&self, needs: Needs<'_>) -> (&str, Option<&str>) {
        match self.policy.segments.iter().find(|s| s.matches.accepts(needs)) {
            Some(s) => (&s.primary, s.secondary.as_deref()),
            None => (&self.policy.primary, self.policy.secondary.as_deref()),
        }
    }

    fn capable(&self, provider: &str, needs: Needs<'_>) -> bool {
        match &self.catalog {
            Some(c) => c.partner(provider).is_some_and(|p| p.supports(needs.currency, needs.rail)),
            None => true,
        }
    }

    pub fn breaker(&self, provider: &str) -> Option<&Arc<CircuitBreaker>> {
        self.breakers.get(provider)
    }

    pub fn breakers(&self) -> impl Iterator<Item = (&String, &Arc<CircuitBreaker>)> {
        self.breakers.iter()
    }

    /// The sandbox provider shadowing live traffic, if any.
    pub fn shadow(&self) -> Option<&str> {
        self.policy.shadow.as_deref()
    }

    /// The provider for a command seen for the first time: the rollout
    /// candidate for its share of keys, else the primary, else the secondary;
    /// skipping providers whose breaker is open or that lack the capability.
    /// With every capable breaker open, the first capable provider is still
    /// chosen (the call then fails fast and is retried). None when no
    /// configured partner can carry the command at all.
    pub fn choose_new(&self, idempotency_key: &str, needs: Needs<'_>) -> Option<&str> {
        let rollout = self
            .policy
            .rollout
            .as_ref()
            .filter(|r| f64::from(bucket(idempotency_key)) < r.percent * 100.0)
            .map(|r| r.candidate.as_str());
        let (primary, secondary) = self.pair_for(needs);
        let order = rollout.into_iter().chain(std::iter::once(primary)).chain(secondary);
        let capable: Vec<&str> = order.filter(|p| self.capable(p, needs)).collect();
        let open = |name: &str| self.breakers.get(name).is_some_and(|b| !b.would_allow());
        capable.iter().find(|p| !open(p)).or(capable.first()).copied()
    }

    /// Where a command refused by `current` may go, if anywhere. `fresh` is
    /// whether this delivery created the claim; `refusals` every failure seen
    /// for it in this delivery.
    pub fn failover_target(&self, current: &str, fresh: bool, refusals: &[Refusal], needs: Needs<'_>) -> Option<&str> {
        if !fresh || refusals.is_empty() || refusals.contains(&Refusal::Ambiguous) {
            return None;
        }
        let secondary = self.pair_for(needs).1?;
        if secondary == current || !self.capable(secondary, needs) {
            return None;
        }
        self.breakers.get(secondary).is_none_or(|b| b.would_allow()).then_some(secondary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_reported_with_the_field() {
        let p = RoutingPolicy { primary: "stripe".into(), secondary: Some("wise".into()), ..policy() };
        let err = p.validate(["stripe", "adyen"]).expect_err("wise is unknown");
        assert!(err.to_string().contains("routing.secondary"));
        assert!(RoutingPolicy { primary: "adyen".into(), secondary: None, ..policy() }.validate(["adyen"]).is_ok());
        let live_shadow = RoutingPolicy { shadow: Some("adyen".into()), ..policy() };
        assert!(live_shadow.validate(["stripe", "adyen"]).is_err_and(|e| e.to_string().contains("routing.shadow")));
    }

    const EUR: Needs<'static> = Needs { currency: "EUR", rail: "standard", region: "DE", tenant: None, risk_tier: None };

    #[test]
    fn segments_match_tenant_and_risk_tier_only_when_the_command_names_them() {
        let tier = |risk: &str, tenant: Option<&str>| Segment {
            matches: SegmentMatch { risk_tier: Some(risk.into()), tenant: tenant.map(Into::into), ..SegmentMatch::default() },
            primary: "adyen".into(),
            secondary: None,
        };
        let r = Router::new(RoutingPolicy { segments: vec![tier("high", Some("bank-a"))], ..policy() });
        let high_a = Needs { tenant: Some("bank-a"), risk_tier: Some("high"), ..EUR };
        assert_eq!(r.choose_new("k", high_a), Some("adyen"));
        assert_eq!(r.choose_new("k", Needs { tenant: Some("bank-b"), ..high_a }), Some("stripe"), "another tenant");
        assert_eq!(r.choose_new("k", Needs { risk_tier: Some("low"), ..high_a }), Some("stripe"), "another tier");
        assert_eq!(r.choose_new("k", EUR), Some("stripe"), "a command on the first schema names neither");
        let any_tenant = Router::new(RoutingPolicy { segments: vec![tier("high", None)], ..policy() });
        assert_eq!(any_tenant.choose_new("k", Needs { tenant: None, ..high_a }), Some("adyen"), "an unset match field matches anything");
    }

    #[test]
    fn a_segment_overrides_the_default_pair() {
        let r = Router::new(RoutingPolicy {
            segments: vec![Segment {
                matches: SegmentMatch { currency: Some("GBP".into()), rail: Some("instant".into()), ..SegmentMatch::default() },
                primary: "adyen".into(),
                secondary: None,
            }],
            ..policy()
        });
        let gbp_instant = Needs { currency: "GBP", rail: "instant", region: "GB", ..EUR };
        assert_eq!(r.choose_new("k", gbp_instant), Some("adyen"));
        assert_eq!(r.failover_target("adyen", true, &[Refusal::Definite], gbp_instant), None, "the segment has no secondary");
        assert_eq!(r.choose_new("k", Needs { rail: "standard", ..gbp_instant }), Some("stripe"), "other rails use the defaults");
        let bad = RoutingPolicy { segments: vec![Segment { matches: SegmentMatch::default(), primary: "wise".into(), secondary: None }], ..policy() };
        assert!(bad.validate(["stripe", "adyen"]).is_err_and(|e| e.to_string().contains("segments[0].primary")));
    }

    #[test]
    fn capability_gaps_steer_routing() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/partners.yaml");
        let catalog = PartnerCatalog::load(&path).expect("catalog");
        let r = Router::new(policy()).with_catalog(catalog);
        let usd = Needs { currency: "USD", rail: "standard", region: "US", ..EUR };
        assert_eq!(r.choose_new("k", usd), Some("stripe"), "only stripe pays USD");
        assert_eq!(r.failover_target("stripe", true, &[Refusal::Definite], usd), None, "adyen cannot take USD");
        let jpy = Needs { currency: "JPY", rail: "standard", region: "JP", ..EUR };
        assert_eq!(r.choose_new("k", jpy), None);
    }

    fn policy() -> RoutingPolicy {
        RoutingPolicy {
            mode: DomainMode::On,
            primary: "stripe".into(),
            secondary: Some("adyen".into()),
            breaker: BreakerConfig::default(),
            rollout: None,
            shadow: None,
            segments: Vec::new(),
        }
    }

    #[test]
    fn a_rollout_takes_its_share_of_keys_and_keeps_each_key_in_place() {
        let r = Router::new(RoutingPolicy { rollout: Some(Rollout { candidate: "adyen".into(), percent: 10.0 }), ..policy() });
        let picked = (0..20_000).filter(|i| r.choose_new(&format!("key-{i}"), EUR) == Some("adyen")).count();
        assert!((1_700..=2_300).contains(&picked), "10 % of 20,000 within 1.5 points, got {picked}");
        assert_eq!(r.choose_new("key-7", EUR), r.choose_new("key-7", EUR));
    }

    fn router() -> Router {
        Router::new(RoutingPolicy {
            breaker: BreakerConfig { window_ms: 60_000, min_calls: 2, failure_ratio: 0.5, open_ms: 60_000 },
            ..policy()
        })
    }

    #[test]
    fn ambiguity_or_an_inherited_claim_never_fails_over() {
        let r = router();
        assert_eq!(r.failover_target("stripe", true, &[Refusal::Definite], EUR), Some("adyen"));
        assert_eq!(r.failover_target("stripe", true, &[Refusal::Definite, Refusal::Ambiguous], EUR), None);
        assert_eq!(r.failover_target("stripe", false, &[Refusal::Definite], EUR), None, "an earlier delivery may have sent it");
        assert_eq!(r.failover_target("adyen", true, &[Refusal::Definite], EUR), None, "nowhere further to go");
        assert_eq!(r.failover_target("stripe", true, &[], EUR), None);
    }

    #[test]
    fn an_open_primary_sends_new_commands_to_the_secondary() {
        let r = router();
        assert_eq!(r.choose_new("k", EUR), Some("stripe"));
        let b = r.breaker("stripe").expect("breaker");
        b.record(true);
        b.record(true);
        assert_eq!(r.choose_new("k", EUR), Some("adyen"));
    }
}
