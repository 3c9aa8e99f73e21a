//! Routing events: what the shared runtime announces about partner health.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

/// Published on `routing.circuit-events.v1` whenever a breaker changes state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitStateChanged {
    pub domain: String,
    pub provider: String,
    pub state: CircuitState,
    pub changed_at_ms: i64,
}
