//! One connection type over both backends, so that service code is written once.

/// A PostgreSQL or SQLite connection, chosen by the store URL.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

impl std::fmt::Debug for AnyConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgresql(_) => f.write_str("AnyConnection::Postgresql"),
            Self::Sqlite(_) => f.write_str("AnyConnection::Sqlite"),
        }
    }
}
