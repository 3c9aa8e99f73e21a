//! Identifiers that travel with every message: the correlation id ties a
//! command to its outcome and to every vendor call, the W3C `traceparent`
//! lets any tracing system stitch the hops together.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CorrelationId(pub String);

impl CorrelationId {
    pub fn new_random() -> Self {
        Self(random_hex(16))
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// W3C Trace Context `traceparent` (version 00).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: String,
    pub parent_id: String,
    pub sampled: bool,
}

impl TraceParent {
    pub fn new_root() -> Self {
        Self { trace_id: random_hex(16), parent_id: random_hex(8), sampled: true }
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids are invalid per the spec.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let is_hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if version == "ff" || !is_hex(version, 2) || !is_hex(trace_id, 32) || !is_hex(parent_id, 16) {
            return None;
        }
        if !is_hex(flags, 2) || (version == "00" && parts.next().is_some()) {
            return None;
        }
        if trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self { trace_id: trace_id.to_owned(), parent_id: parent_id.to_owned(), sampled: flags & 1 == 1 })
    }

    /// The context for a hop we start: same trace, new span id.
    pub fn child(&self) -> Self {
        Self { trace_id: self.trace_id.clone(), parent_id: random_hex(8), sampled: self.sampled }
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", self.trace_id, self.parent_id, u8::from(self.sampled))
    }
}

fn random_hex(bytes: usize) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded per process from the OS; mixing a counter and the
    // clock keeps successive ids distinct without pulling in an RNG crate.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let mut raw = Vec::with_capacity(bytes + 8);
    while raw.len() < bytes {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        h.write_i64(crate::now_ms());
        raw.extend_from_slice(&h.finish().to_be_bytes());
    }
    raw.truncate(bytes);
    // One encode of the whole id: a `format!` per word was 1 % of the hot
    // path's CPU.
    hex::encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_invalid() {
        let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let tp = tp.expect("valid header");
        assert!(tp.sampled);
        assert_eq!(tp.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(TraceParent::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none());
        assert!(TraceParent::parse("garbage").is_none());
        let child = tp.child();
        assert_eq!(child.trace_id, tp.trace_id);
        assert_ne!(child.parent_id, tp.parent_id);
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(CorrelationId::new_random(), CorrelationId::new_random());
        assert_eq!(TraceParent::new_root().to_string().len(), 55);
        let root = TraceParent::new_root().to_string();
        assert!(TraceParent::parse(&root).is_some(), "generated ids are lowercase hex of the right length: {root}");
    }
}
