//! Backends for the contract suites. Each test gets its own PostgreSQL schema, SQLite directory
//! and Kafka topics, so tests run in parallel. Servers are taken from `TEST_DATABASE_URL` and
//! `TEST_KAFKA_BROKERS` (defaults: the local servers `.ci/run` starts); a missing server fails
//! the test, it never skips it.

use std::sync::Arc;

use pdp_kit::events::{EmbeddedLog, Event, EventLog, KafkaLog};
use pdp_kit::store::{KIT_MIGRATIONS, Store};

pub fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

pub fn kafka_brokers() -> String {
    std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// An event of aggregate `key` carrying its sequence number, for order checks.
pub fn event(key: &str, seq: u64) -> Event {
    Event::new(
        "contract",
        &"230100".parse().unwrap(),
        "widget",
        "changed",
        key,
        chrono::Utc::now(),
        serde_json::json!({ "seq": seq }),
    )
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Where a test's store lives; `open` can be called again to model a restart.
pub enum StoreBackend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl StoreBackend {
    pub fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().expect("temp dir"))
    }

    pub fn postgres() -> Self {
        Self::Postgres(unique("t"))
    }

    pub fn open(&self, name: &str) -> Store {
        let store = match self {
            Self::Sqlite(dir) => Store::open(
                &dir.path().join(format!("{name}.db")).to_string_lossy(),
                name,
                1,
            ),
            Self::Postgres(schema) => Store::open(&database_url(), &format!("{schema}_{name}"), 4),
        }
        .expect("store opens (is PostgreSQL running? see README)");
        store
            .migrate(&[KIT_MIGRATIONS])
            .expect("kit migrations apply");
        store
    }
}

/// Where a test's event log lives; `open` again models a restart of the process.
pub enum LogBackend {
    Embedded(tempfile::TempDir),
    Kafka,
}

impl LogBackend {
    pub fn embedded() -> Self {
        Self::Embedded(tempfile::tempdir().expect("temp dir"))
    }

    pub fn kafka() -> Self {
        Self::Kafka
    }

    pub fn open(&self) -> Arc<dyn EventLog> {
        match self {
            Self::Embedded(dir) => Arc::new(
                EmbeddedLog::open(&dir.path().join("events.db").to_string_lossy(), 3)
                    .expect("embedded log opens"),
            ),
            Self::Kafka => Arc::new(
                // tansu holds an empty fetch for the whole wait (`events.fetch_wait_ms`).
                KafkaLog::connect(&kafka_brokers(), 3, 1)
                    .expect("kafka client is created")
                    .with_fetch_wait_ms(100),
            ),
        }
    }
}
