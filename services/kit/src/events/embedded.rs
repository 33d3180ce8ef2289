//! The embedded event log: records and per-group offsets in one SQLite file, so that events and
//! consumer positions survive a restart of `pdp dev`.
//!
//! Group membership lives in the process (the embedded log serves one process): members of a
//! group split each topic's partitions round-robin in the order they joined, and a join or a
//! leave moves partitions, after which a member resumes a partition it gained from the group's
//! committed offset.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use tokio::sync::Notify;

use super::{
    Delivery, Event, EventHeaders, EventLog, EventLogError, Subscription, lag_by_topic,
    next_offsets, partition_for,
};
use crate::store::{AnyConnection, Store, StoreError};

const MIGRATIONS: EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/eventlog");

diesel::table! {
    log_topics (name) {
        name -> Text,
        partitions -> Integer,
    }
}

diesel::table! {
    log_records (topic, part, record_offset) {
        topic -> Text,
        part -> Integer,
        record_offset -> BigInt,
        record_key -> Text,
        headers -> Text,
        payload -> Binary,
        appended_at -> Timestamp,
    }
}

diesel::table! {
    log_offsets (consumer_group, topic, part) {
        consumer_group -> Text,
        topic -> Text,
        part -> Integer,
        next_offset -> BigInt,
    }
}

#[derive(Debug, Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    partitions: u32,
    groups: Mutex<HashMap<String, Group>>,
    /// Woken on every append, so idle consumers answer at once instead of polling.
    appended: Notify,
    next_member: AtomicU64,
}

#[derive(Debug, Default)]
struct Group {
    /// Members in the order they joined.
    members: Vec<u64>,
    generation: u64,
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in the SQLite file at `path`.
    pub fn open(path: &str, partitions: u32) -> Result<Self, EventLogError> {
        let store = Store::open(path, "events", 1)?;
        let mut conn = store.connection()?;
        let AnyConnection::Sqlite(sqlite) = &mut *conn else {
            return Err(StoreError::Open("the embedded log needs a SQLite path".into()).into());
        };
        sqlite
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        drop(conn);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                partitions: partitions.max(1),
                groups: Mutex::new(HashMap::new()),
                appended: Notify::new(),
                next_member: AtomicU64::new(1),
            }),
        })
    }

    async fn sqlite<F, R>(&self, f: F) -> Result<R, EventLogError>
    where
        F: FnOnce(&mut SqliteConnection) -> Result<R, EventLogError> + Send + 'static,
        R: Send + 'static,
    {
        self.inner
            .store
            .run(move |conn| match conn {
                AnyConnection::Sqlite(c) => f(c),
                AnyConnection::Postgresql(_) => unreachable!("opened from a SQLite path"),
            })
            .await
    }
}

/// The next offset `group` will read in a partition: what it committed, or the start.
fn committed_offset(
    conn: &mut SqliteConnection,
    group: &str,
    topic: &str,
    part: i32,
) -> diesel::QueryResult<i64> {
    Ok(log_offsets::table
        .find((group, topic, part))
        .select(log_offsets::next_offset)
        .first::<i64>(conn)
        .optional()?
        .unwrap_or(0))
}

fn topic_partitions(conn: &mut SqliteConnection, topic: &str) -> Result<i32, EventLogError> {
    log_topics::table
        .find(topic)
        .select(log_topics::partitions)
        .first(conn)
        .optional()?
        .ok_or_else(|| EventLogError::UnknownTopic(topic.to_string()))
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn create_topic(&self, topic: &str) -> Result<(), EventLogError> {
        let topic = topic.to_string();
        let partitions = self.inner.partitions as i32;
        self.sqlite(move |conn| {
            diesel::insert_into(log_topics::table)
                .values((
                    log_topics::name.eq(&topic),
                    log_topics::partitions.eq(partitions),
                ))
                .on_conflict_do_nothing()
                .execute(conn)?;
            Ok(())
        })
        .await
    }

    async fn publish(&self, topic: &str, events: &[Event]) -> Result<(), EventLogError> {
        if events.is_empty() {
            return Ok(());
        }
        let label = topic.to_string();
        let topic = topic.to_string();
        let records: Vec<_> = events
            .iter()
            .map(|e| {
                let headers = serde_json::to_string(&e.headers()).expect("headers serialize");
                (e.key().to_string(), headers, e.payload())
            })
            .collect();
        self.sqlite(move |conn| {
            conn.immediate_transaction(|conn| {
                let partitions = topic_partitions(conn, &topic)? as u32;
                let now = chrono::Utc::now().naive_utc();
                let mut next: BTreeMap<i32, i64> = BTreeMap::new();
                for (key, headers, payload) in records {
                    let part = partition_for(&key, partitions);
                    let offset = match next.get(&part) {
                        Some(o) => *o,
                        None => log_records::table
                            .filter(log_records::topic.eq(&topic))
                            .filter(log_records::part.eq(part))
                            .select(diesel::dsl::max(log_records::record_offset))
                            .first::<Option<i64>>(conn)?
                            .map_or(0, |o| o + 1),
                    };
                    diesel::insert_into(log_records::table)
                        .values((
                            log_records::topic.eq(&topic),
                            log_records::part.eq(part),
                            log_records::record_offset.eq(offset),
                            log_records::record_key.eq(key),
                            log_records::headers.eq(headers),
                            log_records::payload.eq(payload),
                            log_records::appended_at.eq(now),
                        ))
                        .execute(conn)?;
                    next.insert(part, offset + 1);
                }
                Ok::<_, EventLogError>(())
            })
        })
        .await?;
        crate::telemetry::metrics::EVENTS_PUBLISHED
            .with_label_values(&[label.as_str()])
            .inc_by(events.len() as u64);
        self.inner.appended.notify_waiters();
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, EventLogError> {
        let mut partitions = Vec::new();
        for topic in topics {
            let name = topic.to_string();
            let n = self
                .sqlite(move |conn| topic_partitions(conn, &name))
                .await?;
            partitions.push((topic.to_string(), n));
        }
        let member = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
        {
            let mut groups = self.inner.groups.lock().expect("group lock");
            let g = groups.entry(group.to_string()).or_default();
            g.members.push(member);
            g.generation += 1;
        }
        Ok(Box::new(EmbeddedSubscription {
            log: self.clone(),
            group: group.to_string(),
            member,
            topics: partitions,
            generation: 0,
            positions: BTreeMap::new(),
        }))
    }

    async fn ping(&self) -> Result<(), EventLogError> {
        self.sqlite(|conn| {
            log_topics::table.count().get_result::<i64>(conn)?;
            Ok(())
        })
        .await
    }
}

struct EmbeddedSubscription {
    log: EmbeddedLog,
    group: String,
    member: u64,
    topics: Vec<(String, i32)>,
    /// The group generation the positions below belong to.
    generation: u64,
    /// Next offset to fetch per assigned (topic, partition).
    positions: BTreeMap<(String, i32), i64>,
}

impl EmbeddedSubscription {
    /// Re-reads the assignment when the group changed; partitions this member gains start from
    /// the group's committed offsets.
    async fn refresh_assignment(&mut self) -> Result<(), EventLogError> {
        let (generation, index, size) = {
            let groups = self.log.inner.groups.lock().expect("group lock");
            let g = &groups[&self.group];
            let index = g
                .members
                .iter()
                .position(|m| *m == self.member)
                .expect("a live subscription is a member");
            (g.generation, index, g.members.len())
        };
        if generation == self.generation {
            return Ok(());
        }
        let assigned: Vec<(String, i32)> = self
            .topics
            .iter()
            .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
            .filter(|(_, p)| (*p as usize) % size == index)
            .collect();
        let group = self.group.clone();
        let wanted = assigned.clone();
        let committed = self
            .log
            .sqlite(move |conn| {
                let mut out = Vec::new();
                for (topic, part) in wanted {
                    let next = committed_offset(conn, &group, &topic, part)?;
                    out.push(((topic, part), next));
                }
                Ok(out)
            })
            .await?;
        self.positions = committed.into_iter().collect();
        self.generation = generation;
        Ok(())
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery>, EventLogError> {
        let positions = self.positions.clone();
        self.log
            .sqlite(move |conn| {
                let mut out = Vec::new();
                for ((topic, part), from) in positions {
                    if out.len() >= max {
                        break;
                    }
                    let rows: Vec<(i64, String, Vec<u8>)> = log_records::table
                        .filter(log_records::topic.eq(&topic))
                        .filter(log_records::part.eq(part))
                        .filter(log_records::record_offset.ge(from))
                        .order(log_records::record_offset)
                        .limit((max - out.len()) as i64)
                        .select((
                            log_records::record_offset,
                            log_records::headers,
                            log_records::payload,
                        ))
                        .load(conn)?;
                    for (offset, headers, payload) in rows {
                        let event = serde_json::from_str::<EventHeaders>(&headers)
                            .map_err(|e| e.to_string())
                            .and_then(|headers| Event::from_record(&headers, &payload))
                            .unwrap_or_else(|reason| {
                                Event::unreadable(&topic, part, offset, reason, &payload)
                            });
                        out.push(Delivery {
                            topic: topic.clone(),
                            partition: part,
                            offset,
                            event,
                        });
                    }
                }
                Ok(out)
            })
            .await
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, EventLogError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for the wake-up before looking, so an append between the look and the
            // wait is not missed.
            let log = self.log.inner.clone();
            let appended = log.appended.notified();
            self.refresh_assignment().await?;
            let batch = self.fetch(max.max(1)).await?;
            if !batch.is_empty() {
                for d in &batch {
                    self.positions
                        .insert((d.topic.clone(), d.partition), d.offset + 1);
                }
                return Ok(batch);
            }
            // Membership changes do not notify; a short cap on each wait picks them up.
            let nap = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(Duration::from_millis(200));
            if nap.is_zero() {
                return Ok(Vec::new());
            }
            let _ = tokio::time::timeout(nap, appended).await;
        }
    }

    async fn lag(&mut self) -> Result<Vec<(String, i64)>, EventLogError> {
        self.refresh_assignment().await?;
        // As Kafka counts it: the log's end less what the group committed.
        let assigned: Vec<(String, i32)> = self.positions.keys().cloned().collect();
        let group = self.group.clone();
        let parts = self
            .log
            .sqlite(move |conn| {
                let mut out = Vec::new();
                for (topic, part) in assigned {
                    let last: Option<i64> = log_records::table
                        .filter(log_records::topic.eq(&topic))
                        .filter(log_records::part.eq(part))
                        .select(diesel::dsl::max(log_records::record_offset))
                        .first(conn)?;
                    let committed = committed_offset(conn, &group, &topic, part)?;
                    out.push((topic, last.map_or(0, |l| l + 1 - committed)));
                }
                Ok(out)
            })
            .await?;
        Ok(lag_by_topic(parts))
    }

    async fn commit(&mut self, deliveries: &[Delivery]) -> Result<(), EventLogError> {
        let offsets = next_offsets(deliveries);
        let group = self.group.clone();
        self.log
            .sqlite(move |conn| {
                conn.immediate_transaction(|conn| {
                    for (topic, part, next) in offsets {
                        diesel::insert_into(log_offsets::table)
                            .values((
                                log_offsets::consumer_group.eq(&group),
                                log_offsets::topic.eq(&topic),
                                log_offsets::part.eq(part),
                                log_offsets::next_offset.eq(next),
                            ))
                            .on_conflict((
                                log_offsets::consumer_group,
                                log_offsets::topic,
                                log_offsets::part,
                            ))
                            .do_update()
                            .set(log_offsets::next_offset.eq(next))
                            .execute(conn)?;
                    }
                    Ok(())
                })
            })
            .await
    }
}

impl Drop for EmbeddedSubscription {
    fn drop(&mut self) {
        if let Ok(mut groups) = self.log.inner.groups.lock()
            && let Some(g) = groups.get_mut(&self.group)
        {
            g.members.retain(|m| *m != self.member);
            g.generation += 1;
        }
    }
}
