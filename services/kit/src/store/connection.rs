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

/// Opens the pool's connections with the store's own backend, so that a failure says why
/// ("Connection refused", "database … does not exist"): diesel's multi-connection tries each
/// backend in turn and reports only "Invalid connection url for multiconnection".
#[derive(Debug, Clone)]
pub struct Connector {
    pub url: String,
    pub backend: super::Backend,
}

impl diesel::r2d2::ManageConnection for Connector {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        use diesel::Connection;
        match self.backend {
            super::Backend::Postgres => {
                diesel::PgConnection::establish(&self.url).map(AnyConnection::Postgresql)
            }
            super::Backend::Sqlite => {
                diesel::SqliteConnection::establish(&self.url).map(AnyConnection::Sqlite)
            }
        }
        .map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        use diesel::r2d2::R2D2Connection;
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        use diesel::r2d2::R2D2Connection;
        conn.is_broken()
    }
}
