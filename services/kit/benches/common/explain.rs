//! The plan of the very statement a store function sends: the function runs on a connection that
//! records what it sends (diesel's instrumentation), and the recorded SELECT is explained on the
//! same connection, in the same tenant scope — `EXPLAIN (ANALYZE, BUFFERS)` on PostgreSQL, with
//! the rows each step really read, and `EXPLAIN QUERY PLAN` on SQLite.
//!
//! The bind values are written into the statement as literals (PostgreSQL 15 cannot explain a
//! statement with parameters left open): the plan is the one a first execution gets.

use std::sync::{Arc, Mutex};

use diesel::connection::{Connection, InstrumentationEvent};
use diesel::prelude::*;
use diesel::sql_types::Text;
use pdp_kit::store::AnyConnection;

#[derive(QueryableByName)]
struct PgLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

#[derive(QueryableByName)]
struct SqliteLine {
    #[diesel(sql_type = Text)]
    detail: String,
}

/// Runs `work` on `conn`, then explains the last SELECT it sent whose text contains `table`.
pub fn explain<T>(
    conn: &mut AnyConnection,
    table: &str,
    work: impl FnOnce(&mut AnyConnection) -> T,
) -> (String, Vec<String>) {
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorder = sent.clone();
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            recorder.lock().unwrap().push(query.to_string());
        }
    });
    work(conn);
    conn.set_instrumentation(|_: InstrumentationEvent<'_>| {});
    let sent = sent.lock().unwrap().clone();
    let statement = sent
        .iter()
        .rev()
        .find(|s| s.trim_start().starts_with("SELECT") && s.contains(table))
        .unwrap_or_else(|| panic!("no SELECT of {table} among {sent:#?}"));
    let sql = with_literals(statement);
    let plan = match conn {
        AnyConnection::Postgresql(pg) => {
            diesel::sql_query(format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}"))
                .load::<PgLine>(pg)
                .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"))
                .into_iter()
                .map(|l| l.line)
                .collect()
        }
        AnyConnection::Sqlite(lite) => diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
            .load::<SqliteLine>(lite)
            .unwrap_or_else(|e| panic!("EXPLAIN QUERY PLAN {sql}: {e}"))
            .into_iter()
            .map(|l| l.detail)
            .collect(),
    };
    (sql, plan)
}

/// `SELECT … $1 … -- binds: ["230100", 50]` with its binds written in as SQL literals.
fn with_literals(statement: &str) -> String {
    let (sql, binds) = statement
        .rsplit_once(" -- binds: ")
        .unwrap_or((statement, "[]"));
    let binds: Vec<serde_json::Value> = serde_json::from_str(binds)
        .unwrap_or_else(|e| panic!("binds of `{sql}` are not plain values ({e}): {binds}"));
    fn literal(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
            serde_json::Value::Null => "NULL".into(),
            // PostgreSQL's `= ANY($1)` binds a whole array.
            serde_json::Value::Array(items) => {
                let items: Vec<String> = items.iter().map(literal).collect();
                format!("ARRAY[{}]", items.join(", "))
            }
            other => other.to_string(),
        }
    }
    if sql.contains('?') {
        // SQLite: positional, in order.
        let mut out = String::with_capacity(sql.len());
        let mut values = binds.iter();
        for c in sql.chars() {
            match c {
                '?' => out.push_str(&literal(values.next().expect("a bind per parameter"))),
                c => out.push(c),
            }
        }
        out
    } else {
        // PostgreSQL: numbered; the highest first, so that `$1` never eats `$10`'s start.
        let mut out = sql.to_string();
        for (i, value) in binds.iter().enumerate().rev() {
            out = out.replace(&format!("${}", i + 1), &literal(value));
        }
        out
    }
}
