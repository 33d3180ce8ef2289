//! The tables that would only grow: the outbox keeps the rows it has sent, each inbox the ids of
//! the events it applied; a province's instance would carry years of them. Both are purged after
//! a retention, in batches of their own transactions, so that the relay and the consumers never
//! wait behind one long delete.
//!
//! A sent outbox row serves nothing once the broker holds its event: it is kept a day
//! (`events.outbox_retention_hours`) for whoever investigates an incident. An inbox id guards
//! against a redelivery, and nothing older than the topics' own retention can be delivered again
//! (Kafka keeps 7 days by default; the embedded log keeps everything, but its consumers commit as
//! they go): ids are kept 14 days (`events.inbox_retention_days`). A topic kept longer, or a
//! consumer group reset to the start of one, needs the inbox retention raised to match.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::EventsConfig;
use crate::inbox;
use crate::outbox;
use crate::store::{Store, StoreError};

/// How long sent rows and applied ids are kept, and how many go per transaction.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub sent_outbox: chrono::Duration,
    pub applied_inbox: chrono::Duration,
    pub batch: i64,
}

impl Retention {
    pub fn of(config: &EventsConfig) -> Self {
        Self {
            sent_outbox: chrono::Duration::hours(config.outbox_retention_hours as i64),
            applied_inbox: chrono::Duration::days(config.inbox_retention_days as i64),
            batch: 1000,
        }
    }
}

/// What one purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub outbox_rows: usize,
    pub inbox_ids: usize,
}

/// Deletes, batch by batch, what `now` has put past its retention.
pub async fn purge_once(
    store: &Store,
    retention: Retention,
    now: DateTime<Utc>,
) -> Result<Purged, StoreError> {
    let mut purged = Purged::default();
    let sent_before = (now - retention.sent_outbox).naive_utc();
    loop {
        let n = store
            .transaction(move |conn| {
                outbox::purge_sent(conn, sent_before, retention.batch).map_err(StoreError::from)
            })
            .await?;
        purged.outbox_rows += n;
        if (n as i64) < retention.batch {
            break;
        }
    }
    let applied_before = (now - retention.applied_inbox).naive_utc();
    loop {
        let n = store
            .transaction(move |conn| {
                inbox::purge_applied(conn, applied_before, retention.batch)
                    .map_err(StoreError::from)
            })
            .await?;
        purged.inbox_ids += n;
        if (n as i64) < retention.batch {
            break;
        }
    }
    Ok(purged)
}

/// Purges `store` every `interval` until `shutdown`.
pub async fn run(
    store: Store,
    retention: Retention,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match purge_once(&store, retention, Utc::now()).await {
            Ok(p) if p != Purged::default() => {
                tracing::info!(
                    outbox_rows = p.outbox_rows,
                    inbox_ids = p.inbox_ids,
                    "purged"
                )
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "purging the outbox and inbox failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
