//! The event log: one trait for publishing and consuming events with consumer groups, committed
//! offsets and at-least-once delivery, and two implementations behind it: Kafka
//! ([`KafkaLog`]) and a durable log embedded in SQLite ([`EmbeddedLog`]).
//!
//! Delivery is at least once: a consumer commits offsets after it applied the events (see
//! [`crate::inbox`]), and whatever was delivered but not committed is delivered again after a
//! restart or a rebalance. Events of one key (the aggregate id) stay in order, because they share
//! a partition.

mod embedded;
mod envelope;
mod kafka;
mod typed;

use std::time::Duration;

use async_trait::async_trait;

pub use embedded::EmbeddedLog;
pub use envelope::{Event, EventHeaders, UNREADABLE};
pub use kafka::KafkaLog;
pub use typed::{PayloadError, to_json};

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("topic `{0}` does not exist; create it first")]
    UnknownTopic(String),
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<diesel::result::Error> for EventLogError {
    fn from(value: diesel::result::Error) -> Self {
        Self::Store(value.into())
    }
}

/// An event as a consumer receives it: where it sits in the log, so it can be committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event: Event,
}

#[async_trait]
pub trait EventLog: Send + Sync + std::fmt::Debug {
    /// Creates the topic if it does not exist (topics are never created implicitly).
    async fn create_topic(&self, topic: &str) -> Result<(), EventLogError>;

    /// Appends the events in order; returns once every one is durable in the log.
    async fn publish(&self, topic: &str, events: &[Event]) -> Result<(), EventLogError>;

    /// Joins consumer group `group` on `topics`. Members of one group share the partitions;
    /// each member starts where the group last committed.
    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, EventLogError>;

    /// Answers when the log does: what `/readyz` asks.
    async fn ping(&self) -> Result<(), EventLogError>;
}

/// One member of a consumer group. Dropping it leaves the group.
#[async_trait]
pub trait Subscription: Send {
    /// Up to `max` events from the partitions assigned to this member, waiting at most `wait`
    /// for the first one. An empty batch means nothing arrived in time.
    async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, EventLogError>;

    /// Commits the group's position past each delivery given (per partition, the highest).
    async fn commit(&mut self, deliveries: &[Delivery]) -> Result<(), EventLogError>;

    /// Events that wait in the partitions assigned to this member, per topic: the log's end less
    /// the position it reads from (as last known to the client, for Kafka).
    async fn lag(&mut self) -> Result<Vec<(String, i64)>, EventLogError>;
}

/// Sums per-partition lags by topic.
pub(crate) fn lag_by_topic(parts: impl IntoIterator<Item = (String, i64)>) -> Vec<(String, i64)> {
    let mut out: std::collections::BTreeMap<String, i64> = Default::default();
    for (topic, lag) in parts {
        *out.entry(topic).or_default() += lag.max(0);
    }
    out.into_iter().collect()
}

/// The partition of a key: FNV-1a, stable across processes and versions, so that one aggregate
/// always lands in one partition of the embedded log.
pub(crate) fn partition_for(key: &str, partitions: u32) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % partitions.max(1)) as i32
}

/// The highest offset committed per (topic, partition) for a set of deliveries.
pub(crate) fn next_offsets(deliveries: &[Delivery]) -> Vec<(String, i32, i64)> {
    let mut out: std::collections::BTreeMap<(String, i32), i64> = Default::default();
    for d in deliveries {
        let next = out.entry((d.topic.clone(), d.partition)).or_insert(0);
        *next = (*next).max(d.offset + 1);
    }
    out.into_iter().map(|((t, p), o)| (t, p, o)).collect()
}
