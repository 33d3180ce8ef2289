//! One contract for every event log: the same test functions run against the embedded log and
//! against Kafka.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pdp_kit::events::{Delivery, Event, EventLog, Subscription};

use crate::support::{LogBackend, event, unique};

fn seq(d: &Delivery) -> u64 {
    d.event.data["seq"].as_u64().expect("seq")
}

async fn topic(log: &Arc<dyn EventLog>) -> String {
    let topic = unique("contract");
    log.create_topic(&topic).await.expect("topic is created");
    topic
}

/// Reads until `count` distinct events arrived or `within` passed, and returns each event's
/// first arrival. Delivery is at least once: a rebalance may replay a partition from its committed
/// offset, and the contract is about what the log holds, not about how often it is read.
async fn read(sub: &mut Box<dyn Subscription>, count: usize, within: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while out.len() < count && Instant::now() < deadline {
        let batch = sub
            .next_batch(count - out.len(), Duration::from_millis(500))
            .await
            .expect("poll succeeds");
        out.extend(
            batch
                .into_iter()
                .filter(|d| seen.insert(d.event.id.clone())),
        );
    }
    out
}

pub async fn publishing_to_a_missing_topic_fails(backend: LogBackend) {
    let log = backend.open();
    let missing = unique("missing");
    let sub = log.subscribe(&unique("g"), &[missing.as_str()]).await;
    let published = tokio::time::timeout(
        Duration::from_secs(5),
        log.publish(&missing, &[event("k", 0)]),
    )
    .await;
    assert!(
        sub.is_err() || !matches!(published, Ok(Ok(()))),
        "a topic that was never created must not be written silently"
    );
}

pub async fn events_round_trip_with_their_envelope(backend: LogBackend) {
    let log = backend.open();
    let topic = topic(&log).await;
    let sent = event("plan-1", 7);
    log.publish(&topic, std::slice::from_ref(&sent))
        .await
        .expect("publish");
    let mut sub = log
        .subscribe(&unique("g"), &[topic.as_str()])
        .await
        .unwrap();
    let got = read(&mut sub, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event, sent);
    assert_eq!(got[0].topic, topic);
}

pub async fn order_is_kept_per_key(backend: LogBackend) {
    let log = backend.open();
    let topic = topic(&log).await;
    let keys = ["a", "b", "c", "d", "e"];
    let mut sent = 0;
    for round in 0..4u64 {
        let batch: Vec<Event> = (0..10u64)
            .flat_map(|i| keys.iter().map(move |k| event(k, round * 10 + i)))
            .collect();
        sent += batch.len();
        log.publish(&topic, &batch).await.expect("publish");
    }
    let mut sub = log
        .subscribe(&unique("g"), &[topic.as_str()])
        .await
        .unwrap();
    let got = read(&mut sub, sent, Duration::from_secs(90)).await;
    assert_eq!(got.len(), sent, "every event arrives");
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    for d in &got {
        let key = d.event.subject.clone();
        let p = *partition_of.entry(key.clone()).or_insert(d.partition);
        assert_eq!(p, d.partition, "a key stays on one partition");
        if let Some(prev) = last.insert(key.clone(), seq(d)) {
            assert!(seq(d) > prev, "key {key}: {} after {prev}", seq(d));
        }
    }
}

pub async fn a_restart_resumes_from_the_committed_offset(backend: LogBackend) {
    let group = unique("g");
    let topic = {
        let log = backend.open();
        let topic = topic(&log).await;
        let batch: Vec<Event> = (0..10).map(|i| event("one-key", i)).collect();
        log.publish(&topic, &batch).await.unwrap();
        let mut sub = log.subscribe(&group, &[topic.as_str()]).await.unwrap();
        let got = read(&mut sub, 10, Duration::from_secs(30)).await;
        assert_eq!(got.len(), 10);
        sub.commit(&got[..6]).await.expect("commit");
        topic
    };
    // A new process: a new client, the same group.
    let log = backend.open();
    let mut sub = log.subscribe(&group, &[topic.as_str()]).await.unwrap();
    let got = read(&mut sub, 4, Duration::from_secs(60)).await;
    let seqs: Vec<u64> = got.iter().map(seq).collect();
    assert_eq!(
        seqs,
        vec![6, 7, 8, 9],
        "exactly the uncommitted events, in order"
    );
}

pub async fn uncommitted_events_are_delivered_again(backend: LogBackend) {
    let group = unique("g");
    let log = backend.open();
    let topic = topic(&log).await;
    let batch: Vec<Event> = (0..5).map(|i| event("k", i)).collect();
    log.publish(&topic, &batch).await.unwrap();
    {
        let mut sub = log.subscribe(&group, &[topic.as_str()]).await.unwrap();
        assert_eq!(read(&mut sub, 5, Duration::from_secs(30)).await.len(), 5);
        // Dropped without committing: a consumer that crashed before applying.
    }
    let log = backend.open();
    let mut sub = log.subscribe(&group, &[topic.as_str()]).await.unwrap();
    let again = read(&mut sub, 5, Duration::from_secs(60)).await;
    assert_eq!(
        again.iter().map(seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
}

pub async fn two_members_of_a_group_share_the_partitions(backend: LogBackend) {
    let log = backend.open();
    let topic = topic(&log).await;
    let group = unique("g");
    let mut first = log.subscribe(&group, &[topic.as_str()]).await.unwrap();
    let mut second = log.subscribe(&group, &[topic.as_str()]).await.unwrap();
    // Let the group settle before anything is published, so no partition moves mid-test.
    let settle = Instant::now() + Duration::from_secs(8);
    while Instant::now() < settle {
        let (a, b) = tokio::join!(
            first.next_batch(1, Duration::from_millis(300)),
            second.next_batch(1, Duration::from_millis(300))
        );
        assert!(a.unwrap().is_empty() && b.unwrap().is_empty());
    }

    let total = 120;
    let batch: Vec<Event> = (0..total).map(|i| event(&format!("key-{i}"), i)).collect();
    log.publish(&topic, &batch).await.unwrap();

    let mut seen: Vec<(usize, Delivery)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < total as usize && Instant::now() < deadline {
        let (a, b) = tokio::join!(
            first.next_batch(50, Duration::from_millis(300)),
            second.next_batch(50, Duration::from_millis(300))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        first.commit(&a).await.unwrap();
        second.commit(&b).await.unwrap();
        seen.extend(a.into_iter().map(|d| (1, d)));
        seen.extend(b.into_iter().map(|d| (2, d)));
    }
    let ids: HashSet<&str> = seen.iter().map(|(_, d)| d.event.id.as_str()).collect();
    assert_eq!(seen.len(), total as usize, "no event twice, none lost");
    assert_eq!(ids.len(), total as usize);
    let members: HashSet<usize> = seen.iter().map(|(m, _)| *m).collect();
    assert_eq!(members.len(), 2, "both members got partitions");
    let mut owner: BTreeMap<i32, usize> = BTreeMap::new();
    for (m, d) in &seen {
        assert_eq!(
            *owner.entry(d.partition).or_insert(*m),
            *m,
            "one owner per partition"
        );
    }
}

pub async fn a_member_knows_how_many_events_wait_for_it(backend: LogBackend) {
    let log = backend.open();
    let topic = topic(&log).await;
    let batch: Vec<Event> = (0..10).map(|i| event("one-key", i)).collect();
    log.publish(&topic, &batch).await.unwrap();
    let mut sub = log
        .subscribe(&unique("g"), &[topic.as_str()])
        .await
        .unwrap();
    let got = read(&mut sub, 4, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 4);
    sub.commit(&got).await.expect("commit");
    // Kafka's client reports it in its statistics, every few seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let lag = loop {
        let lags = sub.lag().await.expect("lag is known");
        let lag = lags.iter().find(|(t, _)| *t == topic).map(|(_, n)| *n);
        if lag == Some(6) || Instant::now() > deadline {
            break lag;
        }
        // Statistics are served from the client's poll: poll on; what is read and not committed
        // still waits.
        sub.next_batch(10, Duration::from_millis(200))
            .await
            .expect("poll");
    };
    assert_eq!(lag, Some(6), "ten published, four read and committed");
}

macro_rules! event_log_contract {
    ($name:ident, $backend:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn events_round_trip_with_their_envelope() {
                super::events_round_trip_with_their_envelope($backend).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn publishing_to_a_missing_topic_fails() {
                super::publishing_to_a_missing_topic_fails($backend).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn order_is_kept_per_key() {
                super::order_is_kept_per_key($backend).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_restart_resumes_from_the_committed_offset() {
                super::a_restart_resumes_from_the_committed_offset($backend).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn uncommitted_events_are_delivered_again() {
                super::uncommitted_events_are_delivered_again($backend).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_member_knows_how_many_events_wait_for_it() {
                super::a_member_knows_how_many_events_wait_for_it($backend).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_members_of_a_group_share_the_partitions() {
                super::two_members_of_a_group_share_the_partitions($backend).await
            }
        }
    };
}

event_log_contract!(embedded, LogBackend::embedded());
event_log_contract!(kafka, LogBackend::kafka());
