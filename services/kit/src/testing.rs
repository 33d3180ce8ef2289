//! What the tests of every crate share (the `testing` feature): the store backend matrix, the
//! servers' addresses and unique names. Each test gets its own PostgreSQL schema or SQLite
//! directory, so tests run in parallel. Servers come from `TEST_DATABASE_URL` and
//! `TEST_KAFKA_BROKERS` (defaults: the local servers `.ci/run` starts); a missing server fails the
//! test, it never skips it.

use crate::store::{KIT_MIGRATIONS, Migrations, Store};

pub fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

pub fn kafka_brokers() -> String {
    std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// A name no other test (or earlier run) uses: `prefix_<uuid>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Where a test's stores live. Opening the same name again models a restart of the process.
#[derive(Debug)]
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    pub fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().expect("temp dir"))
    }

    /// A schema prefix of its own on the test server.
    pub fn postgres() -> Self {
        Self::Postgres(unique("t"))
    }

    /// The store `name` (a SQLite file, or a PostgreSQL schema), not migrated.
    pub fn open(&self, name: &str) -> Store {
        match self {
            Self::Sqlite(dir) => Store::open(
                &dir.path().join(format!("{name}.db")).to_string_lossy(),
                name,
                1,
            ),
            Self::Postgres(prefix) => Store::open(&database_url(), &format!("{prefix}_{name}"), 4),
        }
        .expect("store opens (is PostgreSQL running? see README)")
    }

    /// The store `name` with kit's migrations and `migrations` applied.
    pub fn store(&self, name: &str, migrations: &[Migrations]) -> Store {
        let store = self.open(name);
        let mut sets = vec![KIT_MIGRATIONS];
        sets.extend_from_slice(migrations);
        store.migrate(&sets).expect("migrations apply");
        store
    }
}

/// Asserts that every event written to `topic` through `store`'s outbox is a type the AsyncAPI
/// document lists, and that the flow wrote some.
pub async fn assert_events_documented(store: &Store, topic: &str) {
    use diesel::prelude::*;

    use crate::outbox::pdp_outbox;
    let topic = topic.to_string();
    let envelopes: Vec<String> = store
        .run(move |conn| {
            pdp_outbox::table
                .filter(pdp_outbox::topic.eq(topic))
                .select(pdp_outbox::envelope)
                .load::<String>(conn)
                .map_err(crate::store::StoreError::from)
        })
        .await
        .expect("the outbox reads");
    let doc: serde_yaml::Value =
        serde_yaml::from_str(pdp_proto::ASYNCAPI).expect("the AsyncAPI document parses");
    let documented: Vec<&str> = doc["components"]["messages"]
        .as_mapping()
        .expect("the document lists messages")
        .values()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(!envelopes.is_empty(), "the flow wrote events");
    for envelope in envelopes {
        let event: crate::events::Event =
            serde_json::from_str(&envelope).expect("outbox rows hold events");
        assert!(
            documented.contains(&event.event_type.as_str()),
            "{} is not in proto/asyncapi/pdp.yaml",
            event.event_type
        );
    }
}

/// Runs each named flow of the test crate's `flows` module on SQLite and on PostgreSQL: each
/// `flows::name(backend: Backend)` becomes `sqlite::name` and `postgres::name`.
// `crate::flows` is the calling test crate's module, on purpose.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::flows::$name($crate::testing::Backend::sqlite()).await;
            }
        )*}
        mod postgres {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::flows::$name($crate::testing::Backend::postgres()).await;
            }
        )*}
    };
}
