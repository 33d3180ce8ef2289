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

async fn with_widgets(store: &Store) {
    store
        .run(|conn| {
            conn.batch_execute(
                "CREATE TABLE widgets (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL)",
            )?;
            for (id, t) in [("h1", "230100"), ("h2", "230100"), ("q1", "230200")] {
                diesel::insert_into(widgets::table)
                    .values((widgets::id.eq(id), widgets::tenant.eq(t), widgets::name.eq("w")))
                    .execute(conn)?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
}

pub async fn a_tenant_scope_sees_and_changes_only_its_rows(backend: StoreBackend) {
    let store = backend.open("scope");
    with_widgets(&store).await;
    let harbin = TenantScope::system(tenant("230100"));
    let qiqihar = TenantScope::system(tenant("230200"));
    let (mine, updated, deleted, left) = store
        .run(move |conn| {
            let mine: Vec<String> = harbin
                .rows(widgets::table)
                .select(widgets::id)
                .order(widgets::id)
                .load(conn)?;
            // Harbin tries to rename and delete Qiqihar's widget by id: the scope stops it.
            let updated = diesel::update(harbin.rows(widgets::table).filter(widgets::id.eq("q1")))
                .set(widgets::name.eq("stolen"))
                .execute(conn)?;
            let deleted = diesel::delete(harbin.rows(widgets::table).filter(widgets::id.eq("q1")))
                .execute(conn)?;
            let left: Vec<(String, String)> = qiqihar
                .rows(widgets::table)
                .select((widgets::id, widgets::name))
                .load(conn)?;
            Ok::<_, StoreError>((mine, updated, deleted, left))
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
        .transaction(|conn| {
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
    let count: i64 = store
        .run(|conn| Ok::<_, StoreError>(widgets::table.count().get_result(conn)?))
        .await
        .unwrap();
    assert_eq!(count, 3);
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
            let name: String = widgets::table
                .find("h1")
                .select(widgets::name)
                .first(conn)?;
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
