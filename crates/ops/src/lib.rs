//! Operator tooling behind `switchyard dlq` and `switchyard trace`. The CLI
//! parses arguments and prints; everything that touches the broker or the
//! store lives here, so tests drive the same code the operator runs.
//!
//! # Layout
//! - [`read`]: reads a topic start to end without a consumer group (manual
//!   assignment), robust to the local broker's unreliable watermarks.
//! - [`dlq`]: DLQ records with decoded failure headers; list, show, and
//!   replay with selection, dry run, rate limit, replay ledger and audit.
//! - [`trace`]: one flow's timeline from the audit log and the topics
//!   (payouts, onboarding flows, cards, open-banking consents and payments).
//! - [`table`]: aligned tables with optional ANSI colour, time formatting.
//! - [`view`]: the tables each command prints.

pub mod dlq;
pub mod read;
pub mod table;
pub mod trace;
mod trace_cards;
mod trace_onboarding;
mod trace_openbanking;
mod trace_read;
pub mod view;

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Bus(#[from] switchyard_bus::BusError),
    #[error("store: {0}")]
    Store(#[from] switchyard_store::StoreError),
    #[error("topic {0} does not exist on the broker")]
    UnknownTopic(String),
    #[error("{0}")]
    Usage(String),
}

/// Parses `90s`, `15m`, `2h`, `7d` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration like 90s, 15m, 2h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        other => return Err(format!("unknown unit {other:?} in {text:?}; use s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("2w").is_err());
        assert!(parse_duration("m").is_err());
    }
}
