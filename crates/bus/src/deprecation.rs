//! Deprecated topics: a topic in `topics.yaml` may carry
//! `deprecated: { sunset: YYYY-MM-DD, use_instead: <topic> }`.
//!
//! A new major version of a contract is a new topic (`payouts.commands.v2`);
//! the old one is marked deprecated with a sunset date and both are served
//! until then. Consumers count what still arrives on a deprecated topic
//! ([`DeprecatedTraffic`]) so the teams still producing to it are found
//! before the sunset, not after (`SwitchyardDeprecatedTopicInUse`).
//!
//! The catalog that decides is the `topics.yaml` the binary was built with
//! ([`deployed`]): a deprecation ships with a release, as the topic did.

use crate::BusError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawDeprecation")]
pub struct Deprecation {
    /// The last day the topic is served, `YYYY-MM-DD` (UTC).
    pub sunset: String,
    /// Unix seconds of the sunset day's midnight, UTC.
    pub sunset_unix: i64,
    /// The topic that replaces it.
    pub use_instead: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeprecation {
    sunset: String,
    #[serde(default)]
    use_instead: Option<String>,
}

impl TryFrom<RawDeprecation> for Deprecation {
    type Error = String;

    fn try_from(raw: RawDeprecation) -> Result<Self, String> {
        let sunset_unix = unix_midnight(&raw.sunset).ok_or_else(|| format!("deprecated.sunset `{}` is not a date (YYYY-MM-DD)", raw.sunset))?;
        Ok(Self { sunset: raw.sunset, sunset_unix, use_instead: raw.use_instead })
    }
}

fn unix_midnight(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let day = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(day.midnight().assume_utc().unix_timestamp())
}

/// Every deprecated topic of a `topics.yaml` text, by name. A `use_instead`
/// must name a topic of the same file.
pub fn deprecations(text: &str) -> Result<BTreeMap<String, Deprecation>, BusError> {
    #[derive(Deserialize)]
    struct File {
        topics: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        name: String,
        #[serde(default)]
        deprecated: Option<Deprecation>,
    }
    let err = |message: String| BusError::TopicsFile { path: "<text>".into(), message };
    crate::topics::TopicsFile::parse(text)?;
    let file: File = serde_norway::from_str(text).map_err(|e| err(e.to_string()))?;
    let names: Vec<&str> = file.topics.iter().map(|t| t.name.as_str()).collect();
    let mut found = BTreeMap::new();
    for entry in &file.topics {
        let Some(deprecation) = &entry.deprecated else { continue };
        if let Some(next) = deprecation.use_instead.as_deref().filter(|next| !names.contains(next)) {
            return Err(err(format!("topics[{}].deprecated.use_instead names `{next}`, which is not in this file", entry.name)));
        }
        found.insert(entry.name.clone(), deprecation.clone());
    }
    Ok(found)
}

/// The deprecations of the `topics.yaml` this binary was built with.
pub fn deployed() -> BTreeMap<String, Deprecation> {
    // Checked by a test (`the_deployed_catalog_parses`), so an invalid file
    // fails the build's tests, not a worker's start.
    deprecations(include_str!("../../../topics.yaml")).unwrap_or_default()
}

/// The deprecation that applies to `topic`: its own, or that of the topic
/// it is the retry copy of. Test stacks prefix every name (`run-1.`).
pub fn applying_to<'a>(catalog: &'a BTreeMap<String, Deprecation>, topic: &str) -> Option<(&'a str, &'a Deprecation)> {
    let topic = topic.strip_suffix(".retry").unwrap_or(topic);
    catalog.iter().find(|(name, _)| topic == name.as_str() || topic.strip_suffix(name.as_str()).is_some_and(|p| p.ends_with('.'))).map(|(n, d)| (n.as_str(), d))
}

/// Messages received on deprecated topics since start, per topic as the
/// consumer subscribed to it.
#[derive(Debug, Default)]
pub struct DeprecatedTraffic {
    topics: BTreeMap<String, (Deprecation, AtomicU64)>,
}

impl DeprecatedTraffic {
    /// Watches those of `subscribed` that `catalog` deprecates.
    pub fn watching(catalog: &BTreeMap<String, Deprecation>, subscribed: &[&str]) -> Self {
        let topics = subscribed
            .iter()
            .filter_map(|topic| applying_to(catalog, topic).map(|(_, d)| ((*topic).to_owned(), (d.clone(), AtomicU64::new(0)))))
            .collect();
        Self { topics }
    }

    pub fn count(&self, topic: &str) {
        if let Some((_, n)) = self.topics.get(topic) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (topic, its deprecation, messages so far) for every watched topic.
    pub fn snapshot(&self) -> Vec<(String, Deprecation, u64)> {
        self.topics.iter().map(|(t, (d, n))| (t.clone(), d.clone(), n.load(Ordering::Relaxed))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "topics:\n\
        - { name: payouts.commands.v1, partitions: 1, key: k, value_schema: null, producer: p, consumer: c,\n\
            deprecated: { sunset: 2027-06-30, use_instead: payouts.commands.v2 } }\n\
        - { name: payouts.commands.v2, partitions: 1, key: k, value_schema: null, producer: p, consumer: c }\n";

    #[test]
    fn a_deprecated_topic_names_its_sunset_and_successor() {
        let found = deprecations(FILE).expect("valid");
        let d = &found["payouts.commands.v1"];
        assert_eq!(d.sunset_unix, 1_814_313_600, "2027-06-30T00:00:00Z");
        assert_eq!(d.use_instead.as_deref(), Some("payouts.commands.v2"));
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn errors_name_the_topic_and_field() {
        let bad_date = FILE.replace("2027-06-30", "2027-13-01");
        let e = deprecations(&bad_date).expect_err("month 13").to_string();
        assert!(e.contains("deprecated.sunset `2027-13-01`"), "{e}");
        let bad_successor = FILE.replace("use_instead: payouts.commands.v2", "use_instead: payouts.commands.v3");
        let e = deprecations(&bad_successor).expect_err("unknown successor").to_string();
        assert!(e.contains("topics[payouts.commands.v1].deprecated.use_instead names `payouts.commands.v3`"), "{e}");
        let unknown_field = FILE.replace("use_instead:", "replaced_by:");
        assert!(deprecations(&unknown_field).is_err(), "unknown fields are refused");
    }

    #[test]
    fn the_deployed_catalog_parses() {
        deprecations(include_str!("../../../topics.yaml")).expect("topics.yaml is valid");
    }

    #[test]
    fn a_prefixed_topic_and_its_retry_copy_are_watched_and_nothing_else() {
        let catalog = deprecations(FILE).expect("valid");
        let traffic = DeprecatedTraffic::watching(
            &catalog,
            &["run-1.payouts.commands.v1", "run-1.payouts.commands.v1.retry", "run-1.payouts.commands.v2", "xpayouts.commands.v1"],
        );
        traffic.count("run-1.payouts.commands.v1");
        traffic.count("run-1.payouts.commands.v1.retry");
        traffic.count("run-1.payouts.commands.v1.retry");
        traffic.count("run-1.payouts.commands.v2");
        let seen: Vec<(String, u64)> = traffic.snapshot().into_iter().map(|(t, _, n)| (t, n)).collect();
        assert_eq!(seen, vec![("run-1.payouts.commands.v1".to_owned(), 1), ("run-1.payouts.commands.v1.retry".to_owned(), 2)]);
    }
}
