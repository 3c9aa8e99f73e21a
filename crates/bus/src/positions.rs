//! Where each message is on the bus, remembered as it passes.
//!
//! Kafka has no index by key or header, so finding one flow's messages
//! means reading whole topics: fine at a thousand messages, not at a
//! million. The consumer runtime and the publisher tell a [`PositionSink`]
//! the topic, partition and offset of every message they consume or publish,
//! with its key and correlation id; `switchyard trace` then asks the store
//! for a flow's positions and reads only those records.
//! Best effort by design: a position that was not recorded only means the
//! trace reads that topic in full, so the sink never fails or slows a
//! message beyond queueing its row.

use crate::headers::{header_text, HeaderName};

/// Whether the message was read or written by this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Consumed,
    Published,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Consumed => "message_consumed",
            Direction::Published => "message_published",
        }
    }
}

/// One message's place on the bus and the ids a trace looks it up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePosition {
    pub direction: Direction,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record key as text (a subject id on every switchyard topic).
    pub key: String,
    pub correlation_id: String,
}

impl MessagePosition {
    pub fn new(direction: Direction, topic: &str, partition: i32, offset: i64, key: Option<&[u8]>, headers: &[(String, Vec<u8>)]) -> Self {
        Self {
            direction,
            topic: topic.to_owned(),
            partition,
            offset,
            key: key.map(String::from_utf8_lossy).unwrap_or_default().into_owned(),
            correlation_id: header_text(headers, HeaderName::CORRELATION_ID).unwrap_or_default().to_owned(),
        }
    }
}

/// Records positions (the store implements it). Never fails the caller.
pub trait PositionSink: Send + Sync + 'static {
    fn record(&self, position: MessagePosition) -> PositionFuture<'_>;
}

/// What [`PositionSink::record`] returns (boxed: the runtime holds the sink
/// as a trait object).
pub type PositionFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
