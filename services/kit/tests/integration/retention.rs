//! Sent outbox rows and applied inbox ids are purged after their retention, in batches; pending
//! rows and recent ids stay. On both stores.

use chrono::{Duration, Utc};
use diesel::prelude::*;
use pdp_kit::events::Delivery;
use pdp_kit::inbox;
use pdp_kit::outbox;
use pdp_kit::retention::{Purged, Retention, purge_once};
use pdp_kit::store::{Store, StoreError};

use crate::support::{StoreBackend, event};

async fn count(store: &Store, table: &'static str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    store
        .run(move |conn| {
            let n: N =
                diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}")).get_result(conn)?;
            Ok::<_, StoreError>(n.n)
        })
        .await
        .unwrap()
}

/// Ages every row of `table` whose `column` is set to `days` ago.
async fn age(store: &Store, table: &'static str, column: &'static str, days: i64, upto: u64) {
    let when = (Utc::now() - Duration::days(days)).naive_utc();
    store
        .run(move |conn| {
            diesel::sql_query(format!(
                "UPDATE {table} SET {column} = '{}' WHERE {column} IS NOT NULL AND {}",
                when.format("%Y-%m-%d %H:%M:%S"),
                if table == "pdp_outbox" {
                    format!("id <= {upto}")
                } else {
                    format!("event_offset < {upto}")
                }
            ))
            .execute(conn)?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
}

pub async fn sent_rows_and_old_ids_go_pending_rows_and_recent_ids_stay(stores: StoreBackend) {
    let store = stores.open("retention");
    // 25 events written; the first 20 sent.
    store
        .transaction(|conn| {
            for i in 0..25 {
                outbox::enqueue(conn, "pdp.contract", &event("agg", i))?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    store
        .run(|conn| {
            diesel::sql_query(format!(
                "UPDATE pdp_outbox SET sent_at = '{}' WHERE id <= 20",
                Utc::now().naive_utc().format("%Y-%m-%d %H:%M:%S")
            ))
            .execute(conn)?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    // A consumer applied 30 events.
    for i in 0..30_u64 {
        let delivery = Delivery {
            topic: "pdp.contract".into(),
            partition: 0,
            offset: i as i64,
            event: event("agg", 100 + i),
        };
        store
            .transaction(move |conn| {
                inbox::apply_once(conn, "contract-consumer", &delivery, |_, _| {
                    Ok::<_, std::io::Error>(())
                })
                .map_err(|e| StoreError::Task(e.to_string()))
            })
            .await
            .unwrap();
    }
    let retention = Retention {
        sent_outbox: Duration::hours(24),
        applied_inbox: Duration::days(14),
        batch: 7,
    };
    assert_eq!(
        purge_once(&store, retention, Utc::now()).await.unwrap(),
        Purged::default(),
        "nothing is old yet"
    );
    // Rows 1..=12 were sent two days ago, ids of offsets 0..18 applied 15 days ago.
    age(&store, "pdp_outbox", "sent_at", 2, 12).await;
    age(&store, "pdp_inbox", "applied_at", 15, 18).await;
    let purged = purge_once(&store, retention, Utc::now()).await.unwrap();
    assert_eq!(
        purged,
        Purged {
            outbox_rows: 12,
            inbox_ids: 18
        },
        "in batches of 7"
    );
    assert_eq!(
        count(&store, "pdp_outbox").await,
        13,
        "8 recent sent + 5 pending stay"
    );
    assert_eq!(count(&store, "pdp_inbox").await, 12);
    // Pending rows are never purged, however old.
    let pending = store
        .run(|conn| Ok::<_, StoreError>(outbox::pending(conn)?))
        .await
        .unwrap();
    assert_eq!(pending, 5);
    let far = purge_once(&store, retention, Utc::now() + Duration::days(365))
        .await
        .unwrap();
    assert_eq!(far.outbox_rows, 8);
    assert_eq!(count(&store, "pdp_outbox").await, 5);
}

mod sqlite {
    #[tokio::test]
    async fn sent_rows_and_old_ids_go_pending_rows_and_recent_ids_stay() {
        super::sent_rows_and_old_ids_go_pending_rows_and_recent_ids_stay(
            crate::support::StoreBackend::sqlite(),
        )
        .await
    }
}

mod postgres {
    #[tokio::test]
    async fn sent_rows_and_old_ids_go_pending_rows_and_recent_ids_stay() {
        super::sent_rows_and_old_ids_go_pending_rows_and_recent_ids_stay(
            crate::support::StoreBackend::postgres(),
        )
        .await
    }
}
