//! The event log on Kafka, through rdkafka (librdkafka built by the crate).
//!
//! The producer batches (`linger.ms`) and keeps one request in flight per broker, so that a
//! retry never reorders a partition; a retry may repeat an event, which every consumer already
//! takes once by its id (the relay can repeat one too). Consumers never auto-commit: the caller
//! commits after it applied the events, which is what makes delivery at-least-once rather than
//! at-most-once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::{
    Delivery, Event, EventHeaders, EventLog, EventLogError, Subscription, lag_by_topic,
    next_offsets,
};

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct KafkaLog {
    brokers: String,
    /// This process's stable name in its consumer groups (`events.member`).
    member: Option<String>,
    /// `events.fetch_wait_ms`.
    fetch_wait_ms: u32,
    partitions: i32,
    replication: i32,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

fn unavailable(err: KafkaError) -> EventLogError {
    EventLogError::Unavailable(err.to_string())
}

/// What a consumer does with an error its client reports: librdkafka reconnects and rejoins by
/// itself after a broker is lost or restarts (`AllBrokersDown`, a transport failure), so those
/// are logged and consuming goes on; only a fatal error ends the subscription. Re-creating the
/// consumer instead would leave its old member in the group, and the group's rebalance would
/// then wait for that member (with tansu, for good).
fn passing(err: KafkaError) -> Result<(), EventLogError> {
    match err {
        KafkaError::MessageConsumption(code) => {
            tracing::warn!(error = %code, "the broker is unreachable for now; consuming goes on");
            Ok(())
        }
        fatal => Err(unavailable(fatal)),
    }
}

impl KafkaLog {
    pub fn connect(
        brokers: &str,
        partitions: u32,
        replication: u32,
    ) -> Result<Self, EventLogError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            // Not librdkafka's idempotent producer (2.12): it counts the *messages* in flight on
            // a partition against its limit of five *requests*, and while five are in flight and
            // more have waited past `linger.ms`, its broker thread polls without pause until the
            // broker answers. A relay batch whose enqueueing outlasts the linger (a busy
            // machine) set it off: ~400 µs of the gateway's CPU per read on the two-core cluster
            // bench, 0.6 ms per message against a broker answering in 30 ms. One request in
            // flight keeps a partition in order through retries without that; a retry may repeat
            // an event, as the relay already may, and consumers take each event once by its id.
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("compression.type", "none")
            .set("message.timeout.ms", "30000")
            // Java clients hash keys with murmur2; doing the same keeps a key on one partition
            // whichever client wrote it.
            .set("partitioner", "murmur2_random")
            .create()
            .map_err(unavailable)?;
        let admin = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .map_err(unavailable)?;
        Ok(Self {
            brokers: brokers.to_string(),
            member: None,
            fetch_wait_ms: crate::config::EventsConfig::default().fetch_wait_ms,
            partitions: partitions.max(1) as i32,
            replication: replication.max(1) as i32,
            producer,
            admin,
        })
    }
}

impl KafkaLog {
    /// Joins consumer groups as a static member named `member` (KIP-345): a process restarted
    /// under the same name (a container restarted in its pod) takes its partitions back at once,
    /// where a new member would wait for the group to give up on the killed one.
    pub fn with_member(mut self, member: Option<String>) -> Self {
        self.member = member.filter(|m| !m.is_empty());
        self
    }

    /// Lets the broker hold an empty fetch up to `ms` (`events.fetch_wait_ms`).
    pub fn with_fetch_wait_ms(mut self, ms: u32) -> Self {
        self.fetch_wait_ms = ms;
        self
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn create_topic(&self, topic: &str) -> Result<(), EventLogError> {
        let new = NewTopic::new(
            topic,
            self.partitions,
            TopicReplication::Fixed(self.replication),
        );
        let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
        let results = self
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(unavailable)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(EventLogError::Unavailable(format!(
                        "cannot create topic {name}: {code}"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, events: &[Event]) -> Result<(), EventLogError> {
        // Enqueue everything first, then await the deliveries: librdkafka batches what is
        // queued, and the idempotent producer keeps each partition in enqueue order.
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let mut headers = OwnedHeaders::new_with_capacity(12);
            for (k, v) in event.headers() {
                headers = headers.insert(Header {
                    key: &k,
                    value: Some(v.as_bytes()),
                });
            }
            let payload = event.payload();
            let record = FutureRecord::to(topic)
                .key(event.key())
                .payload(&payload)
                .headers(headers);
            let future = self
                .producer
                .send_result(record)
                .map_err(|(e, _)| unavailable(e))?;
            pending.push(future);
        }
        for result in join_all(pending).await {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((err, _))) => return Err(unavailable(err)),
                Err(_) => return Err(EventLogError::Unavailable("producer dropped".into())),
            }
        }
        crate::telemetry::metrics::EVENTS_PUBLISHED
            .with_label_values(&[topic])
            .inc_by(events.len() as u64);
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, EventLogError> {
        let lags = LagStatistics::default();
        let mut config = ClientConfig::new();
        if let Some(member) = &self.member {
            config.set("group.instance.id", member);
        }
        let consumer: StreamConsumer<LagStatistics> = config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // Also the rebalance's timeout: how long the group waits for a member that was
            // killed (`kill -9`, a node lost) before its partitions go to the others or to the
            // restarted process. A batch is applied in well under it.
            .set("max.poll.interval.ms", "20000")
            .set("fetch.wait.max.ms", self.fetch_wait_ms.to_string())
            // The client reports each partition's lag in its statistics: read without a call.
            .set("statistics.interval.ms", "5000")
            .create_with_context(lags.clone())
            .map_err(unavailable)?;
        consumer.subscribe(topics).map_err(unavailable)?;
        Ok(Box::new(KafkaSubscription { consumer, lags }))
    }

    async fn ping(&self) -> Result<(), EventLogError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(3))
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
        .map_err(|e| EventLogError::Unavailable(e.to_string()))?
    }
}

struct KafkaSubscription {
    consumer: StreamConsumer<LagStatistics>,
    lags: LagStatistics,
}

/// The consumer's lag per topic as librdkafka's statistics last reported it (every 5 s): the
/// broker's high watermark less the client's position, over the partitions it is assigned.
#[derive(Debug, Clone, Default)]
struct LagStatistics {
    by_topic: Arc<std::sync::Mutex<Vec<(String, i64)>>>,
}

impl rdkafka::ClientContext for LagStatistics {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let parts = statistics.topics.into_iter().flat_map(|(topic, t)| {
            t.partitions
                .into_iter()
                // -1 is librdkafka's unassigned partition; a lag of -1 is not known yet.
                .filter(|(id, p)| *id >= 0 && p.consumer_lag >= 0)
                .map(move |(_, p)| (topic.clone(), p.consumer_lag))
        });
        *self.by_topic.lock().expect("lag lock") = lag_by_topic(parts);
    }
}

impl rdkafka::consumer::ConsumerContext for LagStatistics {}

impl KafkaSubscription {
    fn delivery(msg: &rdkafka::message::BorrowedMessage<'_>) -> Delivery {
        let mut headers = EventHeaders::new();
        if let Some(h) = msg.headers() {
            for header in h.iter() {
                if let Some(value) = header.value {
                    headers.insert(
                        header.key.to_string(),
                        String::from_utf8_lossy(value).into_owned(),
                    );
                }
            }
        }
        let payload = msg.payload().unwrap_or_default();
        let event = Event::from_record(&headers, payload).unwrap_or_else(|reason| {
            Event::unreadable(msg.topic(), msg.partition(), msg.offset(), reason, payload)
        });
        Delivery {
            topic: msg.topic().to_string(),
            partition: msg.partition(),
            offset: msg.offset(),
            event,
        }
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, EventLogError> {
        let mut out = Vec::new();
        let first = match tokio::time::timeout(wait, self.consumer.recv()).await {
            Err(_) => return Ok(out),
            Ok(Ok(msg)) => msg,
            Ok(Err(err)) => return passing(err).map(|()| out),
        };
        out.push(Self::delivery(&first));
        drop(first);
        // Drain what is already fetched without waiting for more.
        while out.len() < max {
            match tokio::time::timeout(Duration::from_millis(1), self.consumer.recv()).await {
                Ok(Ok(msg)) => out.push(Self::delivery(&msg)),
                Ok(Err(err)) => {
                    passing(err)?;
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(out)
    }

    async fn lag(&mut self) -> Result<Vec<(String, i64)>, EventLogError> {
        Ok(self.lags.by_topic.lock().expect("lag lock").clone())
    }

    async fn commit(&mut self, deliveries: &[Delivery]) -> Result<(), EventLogError> {
        let mut list = TopicPartitionList::new();
        for (topic, partition, next) in next_offsets(deliveries) {
            list.add_partition_offset(&topic, partition, Offset::Offset(next))
                .map_err(unavailable)?;
        }
        if list.count() == 0 {
            return Ok(());
        }
        // Asynchronously: a commit waiting on a broker that is away would hold a runtime thread,
        // and one that is lost costs only a redelivery, which each consumer's inbox absorbs; the
        // next commit covers these offsets too.
        if let Err(err) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(error = %err, "offsets not committed; the next commit covers them");
        }
        Ok(())
    }
}
