//! The store: diesel over PostgreSQL or SQLite behind one connection type, with pooling and
//! embedded migrations per backend.
//!
//! The URL chooses the backend: `postgres://…` (or `postgresql://…`) is PostgreSQL, anything else
//! a SQLite file path. In PostgreSQL each service owns a schema (its `search_path`); in SQLite each
//! service owns a file. Diesel is synchronous, so work runs on tokio's blocking pool.

mod connection;
mod tenant;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{CustomizeConnection, Pool, PooledConnection};
pub use diesel_migrations::EmbeddedMigrations;
use diesel_migrations::MigrationHarness;
#[doc(hidden)]
pub use diesel_migrations::embed_migrations;

pub use connection::{AnyConnection, Connector, MultiBackend};
pub use tenant::{Access, ScopeError, TenantScope, TenantTable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The OpenTelemetry name of the database system.
    pub fn system_name(self) -> &'static str {
        match self {
            Self::Postgres => "postgresql",
            Self::Sqlite => "sqlite",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store: {0}")]
    Open(String),
    #[error("no connection available: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("store task failed: {0}")]
    Task(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Migrations of one owner (kit or a service), written once per backend.
#[derive(Clone, Copy)]
pub struct Migrations {
    pub postgres: &'static EmbeddedMigrations,
    pub sqlite: &'static EmbeddedMigrations,
}

impl std::fmt::Debug for Migrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Migrations")
    }
}

/// The migrations of the calling crate, embedded from its `migrations/postgres` and
/// `migrations/sqlite` folders: `pub const MIGRATIONS: Migrations = pdp_kit::migrations!();`.
#[macro_export]
macro_rules! migrations {
    () => {{
        static POSTGRES: $crate::store::EmbeddedMigrations =
            $crate::store::embed_migrations!("migrations/postgres");
        static SQLITE: $crate::store::EmbeddedMigrations =
            $crate::store::embed_migrations!("migrations/sqlite");
        $crate::store::Migrations {
            postgres: &POSTGRES,
            sqlite: &SQLITE,
        }
    }};
}

/// Lends a static set of embedded migrations to diesel, which wants a source by value.
struct Source(&'static EmbeddedMigrations);

impl<DB: diesel::backend::Backend> diesel::migration::MigrationSource<DB> for Source {
    fn migrations(
        &self,
    ) -> diesel::migration::Result<Vec<Box<dyn diesel::migration::Migration<DB>>>> {
        diesel::migration::MigrationSource::<DB>::migrations(self.0)
    }
}

/// Read-only connections a SQLite store keeps beside its one writer: WAL lets them read while
/// it writes, so concurrent reads no longer queue behind one connection.
const SQLITE_READERS: u32 = 4;

/// A pool of connections to one service's data.
#[derive(Clone)]
pub struct Store {
    /// PostgreSQL: the pool. SQLite: the one writer.
    pool: Pool<Connector>,
    /// SQLite only: the read-only connections that serve reading scopes, outside a transaction.
    readers: Option<Pool<Connector>>,
    backend: Backend,
    /// PostgreSQL schema of the owning service; `None` for SQLite.
    schema: Option<String>,
    /// What a trace calls this store's work: `store planning`.
    span_name: Arc<str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Session {
    backend: Backend,
    schema: Option<String>,
    read_only: bool,
}

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for Session {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        let sql = match (self.backend, &self.schema) {
            (Backend::Postgres, Some(schema)) => format!("SET search_path TO \"{schema}\""),
            (Backend::Postgres, None) => String::new(),
            // A reader refuses to write: a reading scope that writes is a bug, caught here.
            (Backend::Sqlite, _) if self.read_only => {
                "PRAGMA busy_timeout = 10000; PRAGMA query_only = ON;".to_string()
            }
            // WAL lets readers run beside the writer; the busy timeout waits out a writer in
            // another process instead of failing at once.
            (Backend::Sqlite, _) => "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;"
                .to_string(),
        };
        conn.batch_execute(&sql)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Runs `f` in one transaction on `conn`: committed when it returns `Ok`, rolled back otherwise.
/// SQLite's takes the write lock at its start (`BEGIN IMMEDIATE`): a transaction that read first
/// and wrote later would otherwise fail at once (SQLITE_BUSY) when another process wrote between,
/// instead of waiting its turn.
fn in_transaction<F, R, E>(conn: &mut AnyConnection, f: F) -> Result<R, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<R, E>,
    E: From<diesel::result::Error>,
{
    use diesel::Connection;
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    type Manager = <AnyConnection as Connection>::TransactionManager;
    match conn {
        AnyConnection::Sqlite(sqlite) => {
            AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
        }
        AnyConnection::Postgresql(_) => return conn.transaction(f),
    }
    // As diesel's own `transaction` ends one (the manager is the SQLite connection's).
    match f(conn) {
        Ok(value) => {
            Manager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(err) => match Manager::rollback_transaction(conn) {
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(err),
            Err(rollback) => Err(rollback.into()),
        },
    }
}

/// Creates a SQLite file (and its folder) that only the process's user can read: it holds
/// personal data and the audit trail. SQLite gives its -wal and -shm files the same mode.
fn owner_only_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
    }
    Ok(())
}

pub fn backend_of(url: &str) -> Backend {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

impl Store {
    /// Opens the store of `owner` (a service name, used as the PostgreSQL schema).
    pub fn open(url: &str, owner: &str, pool_size: u32) -> StoreResult<Self> {
        if !owner
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StoreError::Open(format!(
                "owner `{owner}` must be lowercase letters, digits and underscores"
            )));
        }
        let backend = backend_of(url);
        let (url, schema, size) = match backend {
            Backend::Postgres => (url.to_string(), Some(owner.to_string()), pool_size.max(1)),
            Backend::Sqlite => {
                let path = url.strip_prefix("sqlite://").unwrap_or(url);
                owner_only_file(Path::new(path))
                    .map_err(|e| StoreError::Open(format!("{path}: {e}")))?;
                // One connection: SQLite has one writer, and a deferred transaction that turns
                // into a write would fail with SQLITE_BUSY rather than wait.
                (path.to_string(), None, 1)
            }
        };
        if let Some(schema) = &schema {
            use diesel::Connection;
            let mut conn = diesel::PgConnection::establish(&url)
                .map_err(|e| StoreError::Open(e.to_string()))?;
            // Two processes opening a new schema at once would both try to create it
            // (`IF NOT EXISTS` does not stop the race); one waits for the other instead.
            conn.batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock(hashtext('pdp.schema.{schema}')); \
                 CREATE SCHEMA IF NOT EXISTS \"{schema}\"; COMMIT;"
            ))
            .map_err(|e| StoreError::Open(e.to_string()))?;
        }
        // Connections are opened as work needs them, up to `size`: a process holds a pool per
        // store (eight in `pdp dev`), and opening every pool full at start would take most of
        // PostgreSQL's 100 connections before a single call, leaving a CLI or a second
        // process none.
        let session = |read_only| Session {
            backend,
            schema: schema.clone(),
            read_only,
        };
        // r2d2 checks each connection it hands out with `SELECT 1`. A PostgreSQL connection can
        // die with its server (the chaos runs restart it) and is better replaced at checkout
        // than failing a caller's first statement; a SQLite connection is a file handle in this
        // process and cannot, so there the check was a statement per store call for nothing
        // (3 % of `pdp dev`'s CPU under the gateway bench: `ping` and its checkout).
        let checks_out_tested = backend == Backend::Postgres;
        let pool = Pool::builder()
            .max_size(size)
            .min_idle(Some(1))
            .test_on_check_out(checks_out_tested)
            .connection_timeout(Duration::from_secs(10))
            .connection_customizer(Box::new(session(false)))
            .build(Connector {
                url: url.clone(),
                backend,
            })
            .map_err(|e| StoreError::Open(e.to_string()))?;
        // Opened after the writer, which has put the file in WAL mode.
        let readers = match backend {
            Backend::Sqlite => Some(
                Pool::builder()
                    .max_size(SQLITE_READERS)
                    .min_idle(Some(0))
                    .test_on_check_out(false)
                    .connection_timeout(Duration::from_secs(10))
                    .connection_customizer(Box::new(session(true)))
                    .build(Connector { url, backend })
                    .map_err(|e| StoreError::Open(e.to_string()))?,
            ),
            Backend::Postgres => None,
        };
        Ok(Self {
            pool,
            readers,
            backend,
            schema,
            span_name: format!("store {owner}").into(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// A connection for blocking code already off the async runtime.
    pub fn connection(&self) -> StoreResult<PooledConnection<Connector>> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` with a connection on the blocking pool.
    pub async fn run<F, R, E>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.run_on(&self.pool, f).await
    }

    /// Runs `f` on a read-only connection where the store has them (SQLite), else as [`run`].
    ///
    /// [`run`]: Self::run
    pub async fn run_reading<F, R, E>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.run_on(self.readers.as_ref().unwrap_or(&self.pool), f)
            .await
    }

    async fn run_on<F, R, E>(&self, pool: &Pool<Connector>, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let pool = pool.clone();
        // The work is part of the caller's trace: one span per unit of work, entered on the
        // blocking thread, so that the events it writes carry it to their consumers.
        let span = crate::telemetry::child_span(|| {
            tracing::info_span!(
                "store",
                otel.name = &*self.span_name,
                db.system.name = self.backend.system_name(),
                db.namespace = self.schema().unwrap_or("main"),
            )
        });
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut conn = pool.get().map_err(StoreError::from)?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled back otherwise.
    pub async fn transaction<F, R, E>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + From<diesel::result::Error> + Send + 'static,
    {
        self.run(move |conn| in_transaction(conn, f)).await
    }

    /// Runs `f` in one transaction in the tenant of `scope`: the way to read and write tenant rows.
    pub async fn scoped<F, R, E>(&self, scope: &TenantScope, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + From<diesel::result::Error> + Send + 'static,
    {
        // A reading scope on SQLite reads on a read-only connection, statement by statement: no
        // BEGIN/COMMIT, and never behind the writer. PostgreSQL reads in a transaction, where
        // the tenant setting the isolation views check lives.
        if scope.access() == Access::Read && self.readers.is_some() {
            return self.run_reading(f).await;
        }
        let scope = scope.clone();
        self.transaction(move |conn| {
            scope.enter(conn)?;
            f(conn)
        })
        .await
    }

    /// Runs `f` in one transaction in the tenant of `scope`, handing it the scope and `now`: the
    /// shape of every operation of a domain service (load, apply the rules, store, record).
    pub async fn operate<F, R, E>(
        &self,
        scope: &TenantScope,
        now: chrono::DateTime<chrono::Utc>,
        f: F,
    ) -> Result<R, E>
    where
        F: FnOnce(&mut AnyConnection, &TenantScope, chrono::DateTime<chrono::Utc>) -> Result<R, E>
            + Send
            + 'static,
        R: Send + 'static,
        E: From<StoreError> + From<diesel::result::Error> + Send + 'static,
    {
        let inner = scope.clone();
        self.scoped(scope, move |conn| f(conn, &inner, now)).await
    }

    /// Applies the pending migrations of each owner, in order. In PostgreSQL one process at a
    /// time migrates a schema (a session advisory lock): the chart's Job and a person running
    /// `pdp migrate` at once both succeed, and each migration is applied once.
    pub fn migrate(&self, sets: &[Migrations]) -> StoreResult<Vec<String>> {
        let mut conn = self.connection()?;
        let lock = self.migration_lock();
        if let Some(key) = &lock {
            conn.batch_execute(&format!("SELECT pg_advisory_lock({key})"))?;
        }
        let result = (|| {
            let mut applied = Vec::new();
            for set in sets {
                let versions = match &mut *conn {
                    AnyConnection::Postgresql(c) => c.run_pending_migrations(Source(set.postgres)),
                    AnyConnection::Sqlite(c) => c.run_pending_migrations(Source(set.sqlite)),
                }
                .map_err(|e| StoreError::Migration(e.to_string()))?;
                applied.extend(versions.into_iter().map(|v| v.to_string()));
            }
            Ok(applied)
        })();
        if let Some(key) = &lock {
            // Ending the session would release it too; a pooled connection lives on.
            conn.batch_execute(&format!("SELECT pg_advisory_unlock({key})"))?;
        }
        result
    }

    /// The migrations of `sets` not applied yet (`<version>_<name>`), in order: what a process
    /// that leaves migrating to `pdp migrate` waits for.
    pub fn pending(&self, sets: &[Migrations]) -> StoreResult<Vec<String>> {
        let mut conn = self.connection()?;
        let mut pending = Vec::new();
        for set in sets {
            let names: Vec<String> = match &mut *conn {
                AnyConnection::Postgresql(c) => c
                    .pending_migrations(Source(set.postgres))
                    .map(|ms| ms.iter().map(|m| m.name().to_string()).collect()),
                AnyConnection::Sqlite(c) => c
                    .pending_migrations(Source(set.sqlite))
                    .map(|ms| ms.iter().map(|m| m.name().to_string()).collect()),
            }
            .map_err(|e| StoreError::Migration(e.to_string()))?;
            pending.extend(names);
        }
        Ok(pending)
    }

    /// The advisory lock key of this store's migrations (PostgreSQL only): one per schema.
    fn migration_lock(&self) -> Option<String> {
        // The schema name is checked to be [a-z0-9_] in `open`, so it is safe inside a literal.
        self.schema
            .as_ref()
            .map(|schema| format!("hashtext('pdp.migrate.{schema}')"))
    }

    /// Answers when the database does: what `/readyz` asks.
    pub async fn ping(&self) -> StoreResult<()> {
        self.run(|conn| {
            conn.batch_execute("SELECT 1")?;
            Ok::<_, StoreError>(())
        })
        .await
    }
}

/// The migrations of kit's own tables (outbox, inbox), which every service store carries.
pub const KIT_MIGRATIONS: Migrations = Migrations {
    postgres: &KIT_POSTGRES,
    sqlite: &KIT_SQLITE,
};

static KIT_POSTGRES: EmbeddedMigrations =
    diesel_migrations::embed_migrations!("migrations/postgres");
static KIT_SQLITE: EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/sqlite");

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sqlite_files_and_their_folder_are_the_owners_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("planning.db");
        let store = Store::open(&path.to_string_lossy(), "planning", 1).unwrap();
        store.migrate(&[KIT_MIGRATIONS]).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    /// Statements a store's connection runs between two checkouts with nothing done in between.
    fn statements_between_checkouts(store: &Store, reading: bool) -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = match (reading, &store.readers) {
            (true, Some(readers)) => readers,
            _ => &store.pool,
        };
        let ran = Arc::new(AtomicUsize::new(0));
        let mut conn = pool.get().unwrap();
        let counter = ran.clone();
        diesel::Connection::set_instrumentation(
            &mut *conn,
            move |event: diesel::connection::InstrumentationEvent<'_>| {
                if let diesel::connection::InstrumentationEvent::StartQuery { .. } = event {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            },
        );
        drop(conn);
        // The pools hold one idle connection at most here: the same one comes back.
        drop(pool.get().unwrap());
        ran.load(Ordering::SeqCst)
    }

    #[test]
    fn a_sqlite_connection_is_handed_out_without_a_statement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("planning.db");
        let store = Store::open(&path.to_string_lossy(), "planning", 1).unwrap();
        assert_eq!(statements_between_checkouts(&store, false), 0, "writer");
        assert_eq!(statements_between_checkouts(&store, true), 0, "reader");
    }

    #[test]
    fn a_postgres_connection_is_tested_before_it_is_handed_out() {
        let url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let owner = format!("t_{}_checkout", uuid::Uuid::now_v7().simple());
        // One connection, so that the second checkout gets the first one back.
        let store = Store::open(&url, &owner, 1).expect("is PostgreSQL running? see README");
        assert_eq!(statements_between_checkouts(&store, false), 1);
        let mut conn = store.connection().unwrap();
        conn.batch_execute(&format!("DROP SCHEMA \"{owner}\""))
            .unwrap();
    }

    /// `.cargo/config.toml` builds the bundled SQLite with the planner stability guarantee:
    /// without it, every statement with `LIMIT ?` is prepared again at each execution.
    #[test]
    fn the_bundled_sqlite_never_plans_by_a_bound_value() {
        use diesel::RunQueryDsl as _;
        #[derive(diesel::QueryableByName)]
        struct CompileOption {
            #[diesel(sql_type = diesel::sql_types::Text)]
            compile_options: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("planning.db");
        let store = Store::open(&path.to_string_lossy(), "planning", 1).unwrap();
        let mut conn = store.connection().unwrap();
        let AnyConnection::Sqlite(sqlite) = &mut *conn else {
            panic!("a SQLite store holds SQLite connections");
        };
        let options: Vec<String> = diesel::sql_query("PRAGMA compile_options")
            .load::<CompileOption>(sqlite)
            .unwrap()
            .into_iter()
            .map(|o| o.compile_options)
            .collect();
        assert!(
            options.iter().any(|o| o == "ENABLE_QPSG"),
            "SQLite was built without SQLITE_ENABLE_QPSG: {options:?}"
        );
    }
}
