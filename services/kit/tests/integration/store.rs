//! One contract for both stores: tenant scoping, transactions, migrations, the inbox.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use pdp_kit::events::{Delivery, Event};
use pdp_kit::identity::TenantCode;
use pdp_kit::inbox::{Outcome, apply_once};
use pdp_kit::store::{AnyConnection, KIT_MIGRATIONS, Store, StoreError, TenantScope};

use crate::support::StoreBackend;

diesel::table! {
    widgets (id) {
        id -> Text,
        tenant -> Text,
        name -> Text,
    }
}

pdp_kit::tenant_table!(widgets::table, widgets::tenant);

fn tenant(code: &str) -> TenantCode {
    code.parse().unwrap()
}

/// A tenant table as a service's migration makes it (isolated in PostgreSQL), with two Harbin
/// widgets and one of Qiqihar's.
async fn with_widgets(store: &Store) {
    store
        .run(|conn| {
            conn.batch_execute(
                "CREATE TABLE widgets (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL)",
            )?;
            if let AnyConnection::Postgresql(_) = conn {
                conn.batch_execute("SELECT pdp_isolate_tenant('widgets')")?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    for (id, t) in [("h1", "230100"), ("h2", "230100"), ("q1", "230200")] {
        store
            .scoped(&TenantScope::system(tenant(t)), move |conn| {
                diesel::insert_into(widgets::table)
                    .values((
                        widgets::id.eq(id),
                        widgets::tenant.eq(t),
                        widgets::name.eq("w"),
                    ))
                    .execute(conn)?;
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    }
}

async fn count_in(store: &Store, code: &str) -> i64 {
    let scope = TenantScope::system(tenant(code));
    let inner = scope.clone();
    store
        .scoped(&scope, move |conn| {
            Ok::<_, StoreError>(inner.rows(widgets::table).count().get_result(conn)?)
        })
        .await
        .unwrap()
}

pub async fn a_tenant_scope_sees_and_changes_only_its_rows(backend: StoreBackend) {
    let store = backend.open("scope");
    with_widgets(&store).await;
    let harbin = TenantScope::system(tenant("230100"));
    let qiqihar = TenantScope::system(tenant("230200"));
    let h = harbin.clone();
    let (mine, updated, deleted) = store
        .scoped(&harbin, move |conn| {
            let mine: Vec<String> = h
                .rows(widgets::table)
                .select(widgets::id)
                .order(widgets::id)
                .load(conn)?;
            // Harbin tries to rename and delete Qiqihar's widget by id: the scope stops it.
            let updated = diesel::update(h.rows(widgets::table).filter(widgets::id.eq("q1")))
                .set(widgets::name.eq("stolen"))
                .execute(conn)?;
            let deleted = diesel::delete(h.rows(widgets::table).filter(widgets::id.eq("q1")))
                .execute(conn)?;
            Ok::<_, StoreError>((mine, updated, deleted))
        })
        .await
        .unwrap();
    let q = qiqihar.clone();
    let left: Vec<(String, String)> = store
        .scoped(&qiqihar, move |conn| {
            Ok::<_, StoreError>(
                q.rows(widgets::table)
                    .select((widgets::id, widgets::name))
                    .load(conn)?,
            )
        })
        .await
        .unwrap();
    assert_eq!(mine, vec!["h1", "h2"]);
    assert_eq!((updated, deleted), (0, 0));
    assert_eq!(left, vec![("q1".to_string(), "w".to_string())]);
}

pub async fn a_failed_transaction_leaves_nothing(backend: StoreBackend) {
    let store = backend.open("tx");
    with_widgets(&store).await;
    let result: Result<(), StoreError> = store
        .scoped(&TenantScope::system(tenant("230100")), |conn| {
            diesel::insert_into(widgets::table)
                .values((
                    widgets::id.eq("h3"),
                    widgets::tenant.eq("230100"),
                    widgets::name.eq("w"),
                ))
                .execute(conn)?;
            Err(StoreError::Task("validation failed after the write".into()))
        })
        .await;
    assert!(result.is_err());
    assert_eq!(count_in(&store, "230100").await, 2);
}

/// A read in a reading scope goes on while a writer holds its transaction open, and sees what
/// was committed before, not what the writer has yet to commit.
pub async fn a_read_is_not_held_up_by_a_writer(backend: StoreBackend) {
    let store = backend.open("readers");
    with_widgets(&store).await;
    let (holding, held) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .scoped(&TenantScope::system(tenant("230100")), move |conn| {
                    diesel::insert_into(widgets::table)
                        .values((
                            widgets::id.eq("h3"),
                            widgets::tenant.eq("230100"),
                            widgets::name.eq("w"),
                        ))
                        .execute(conn)?;
                    holding.send(()).unwrap();
                    released.recv().unwrap();
                    Ok::<_, StoreError>(())
                })
                .await
        })
    };
    tokio::task::spawn_blocking(move || held.recv().unwrap())
        .await
        .unwrap();
    let scope = TenantScope::system_read(tenant("230100"));
    let inner = scope.clone();
    let read = store.scoped(&scope, move |conn| {
        Ok::<_, StoreError>(inner.rows(widgets::table).count().get_result::<i64>(conn)?)
    });
    let seen = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
    release.send(()).unwrap();
    writer.await.unwrap().unwrap();
    let seen = seen.expect("the read waited for the writer").unwrap();
    assert_eq!(seen, 2, "the uncommitted widget is not seen");
    assert_eq!(count_in(&store, "230100").await, 3);
}

/// SQLite serves reading scopes from read-only connections: a reading scope that writes fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_a_write_in_a_reading_scope() {
    let backend = StoreBackend::sqlite();
    let store = backend.open("read_only");
    with_widgets(&store).await;
    let written = store
        .scoped(&TenantScope::system_read(tenant("230100")), |conn| {
            diesel::delete(widgets::table).execute(conn)?;
            Ok::<_, StoreError>(())
        })
        .await;
    let err = written.expect_err("a reading scope may not write");
    assert!(err.to_string().contains("readonly"), "{err}");
    assert_eq!(count_in(&store, "230100").await, 2);
}

pub async fn migrations_apply_once(backend: StoreBackend) {
    let store = backend.open("migrations");
    // `open` migrated already: nothing is pending on a second run, nor after a restart.
    assert!(store.migrate(&[KIT_MIGRATIONS]).unwrap().is_empty());
    let again = backend.open("migrations");
    assert!(again.migrate(&[KIT_MIGRATIONS]).unwrap().is_empty());
    again.ping().await.unwrap();
}

pub async fn the_inbox_applies_an_event_once(backend: StoreBackend) {
    let store = backend.open("inbox");
    with_widgets(&store).await;
    let delivery = Delivery {
        topic: "pdp.contract".into(),
        partition: 0,
        offset: 41,
        event: Event::new(
            "contract",
            &tenant("230100"),
            "widget",
            "renamed",
            "h1",
            chrono::Utc::now(),
            serde_json::json!({"name": "renamed"}),
        ),
    };
    let rename = |conn: &mut AnyConnection, e: &Event| {
        let scope = TenantScope::system(e.tenant.clone());
        scope.enter(conn)?;
        diesel::update(
            scope
                .rows(widgets::table)
                .filter(widgets::id.eq(&e.subject)),
        )
        .set(widgets::name.eq(widgets::name.concat("+")))
        .execute(conn)
        .map(|_| ())
    };
    let outcomes = store
        .run(move |conn| {
            let first = apply_once(conn, "renamer", &delivery, rename)?;
            let second = apply_once(conn, "renamer", &delivery, rename)?;
            let other = apply_once(conn, "another-consumer", &delivery, |_, _| {
                Ok::<_, diesel::result::Error>(())
            })?;
            let name: String = conn.transaction(|conn| {
                TenantScope::system(tenant("230100")).enter(conn)?;
                widgets::table.find("h1").select(widgets::name).first(conn)
            })?;
            Ok::<_, pdp_kit::inbox::InboxError<diesel::result::Error>>((first, second, other, name))
        })
        .await
        .unwrap();
    assert_eq!(outcomes.0, Outcome::Applied);
    assert_eq!(
        outcomes.1,
        Outcome::Duplicate,
        "a redelivery changes nothing"
    );
    assert_eq!(
        outcomes.2,
        Outcome::Applied,
        "each consumer keeps its own inbox"
    );
    assert_eq!(outcomes.3, "w+", "the effect ran once");
}

pub async fn a_failed_effect_is_not_recorded(backend: StoreBackend) {
    let store = backend.open("inbox_fail");
    let delivery = Delivery {
        topic: "pdp.contract".into(),
        partition: 0,
        offset: 1,
        event: Event::new(
            "contract",
            &tenant("230100"),
            "widget",
            "renamed",
            "h1",
            chrono::Utc::now(),
            serde_json::json!({}),
        ),
    };
    let outcome = store
        .run(move |conn| {
            let failed = apply_once(conn, "c", &delivery, |_, _| {
                Err(diesel::result::Error::RollbackTransaction)
            });
            assert!(failed.is_err());
            apply_once(conn, "c", &delivery, |_, _| {
                Ok::<_, diesel::result::Error>(())
            })
        })
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Outcome::Applied,
        "the failed attempt left no inbox record"
    );
}

/// PostgreSQL refuses what the typed scope only makes hard: a query with no scope, and a row
/// written for another tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fails_loudly_without_a_tenant_scope() {
    let store = StoreBackend::postgres().open("isolation");
    with_widgets(&store).await;
    let unscoped = store
        .run(|conn| Ok::<_, StoreError>(widgets::table.count().get_result::<i64>(conn)?))
        .await;
    let err = unscoped.expect_err("an unscoped read must fail");
    assert!(err.to_string().contains("without a tenant scope"), "{err}");

    let unscoped_write = store
        .transaction(|conn| {
            diesel::delete(widgets::table).execute(conn)?;
            Ok::<_, StoreError>(())
        })
        .await;
    assert!(unscoped_write.is_err(), "an unscoped delete must fail");

    let foreign = store
        .scoped(&TenantScope::system(tenant("230100")), |conn| {
            diesel::insert_into(widgets::table)
                .values((
                    widgets::id.eq("x"),
                    widgets::tenant.eq("230200"),
                    widgets::name.eq("w"),
                ))
                .execute(conn)?;
            Ok::<_, StoreError>(())
        })
        .await;
    assert!(foreign.is_err(), "Harbin cannot write a Qiqihar row");
    assert_eq!(count_in(&store, "230100").await, 2);
    assert_eq!(count_in(&store, "230200").await, 1);
}

macro_rules! store_contract {
    ($name:ident, $backend:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_tenant_scope_sees_and_changes_only_its_rows() {
                super::a_tenant_scope_sees_and_changes_only_its_rows($backend).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_failed_transaction_leaves_nothing() {
                super::a_failed_transaction_leaves_nothing($backend).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_read_is_not_held_up_by_a_writer() {
                super::a_read_is_not_held_up_by_a_writer($backend).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn migrations_apply_once() {
                super::migrations_apply_once($backend).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_inbox_applies_an_event_once() {
                super::the_inbox_applies_an_event_once($backend).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_failed_effect_is_not_recorded() {
                super::a_failed_effect_is_not_recorded($backend).await
            }
        }
    };
}

store_contract!(sqlite, StoreBackend::sqlite());
store_contract!(postgres, StoreBackend::postgres());
