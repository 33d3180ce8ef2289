//! Termination's rows: the audit archive (records, chain heads, checkpoints), legal holds and the
//! authorization periods learnt from agreements. Every function takes the connection of a
//! transaction; tenant tables are read through `scope.rows(…)` after `scope.enter`.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::tenant_table;
use pdp_proto::pdp::termination::v1 as api;
use prost::Message;

use crate::TerminationError;
use crate::chain::{ArchivedRecord, GENESIS};
use crate::checkpoint::{Checkpoint, Kind};
use crate::retention::Period;

pub mod cases;

diesel::table! {
    audit_records (tenant, seq, archived_at) {
        tenant -> Text,
        seq -> BigInt,
        event_id -> Text,
        event_type -> Text,
        time -> Timestamp,
        archived_at -> Timestamp,
        source -> Text,
        operation -> Text,
        target -> Text,
        subject -> Text,
        organization -> Text,
        outcome -> Text,
        data -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    audit_heads (tenant) {
        tenant -> Text,
        seq -> BigInt,
        hash -> Text,
    }
}

diesel::table! {
    audit_checkpoints (tenant, seq, kind) {
        tenant -> Text,
        seq -> BigInt,
        kind -> Text,
        hash -> Text,
        signed_at -> Timestamp,
        signature -> Text,
    }
}

diesel::table! {
    legal_holds (id) {
        id -> Text,
        tenant -> Text,
        from_at -> Timestamp,
        to_at -> Timestamp,
        active -> Bool,
        body -> Binary,
    }
}

diesel::table! {
    authorization_periods (tenant, agreement_id) {
        tenant -> Text,
        agreement_id -> Text,
        operator -> Text,
        started_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
    }
}

tenant_table!(audit_records::table, audit_records::tenant);
tenant_table!(audit_checkpoints::table, audit_checkpoints::tenant);
tenant_table!(legal_holds::table, legal_holds::tenant);
tenant_table!(authorization_periods::table, authorization_periods::tenant);

type Result<T> = std::result::Result<T, TerminationError>;

fn utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

// --- the chain ---------------------------------------------------------------------------------

#[derive(QueryableByName)]
struct Head {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    hash: String,
}

/// The end of `tenant`'s chain, its row locked until the transaction ends (PostgreSQL; SQLite
/// has one writer at a time anyway). A chain not begun is at 0, after [`GENESIS`].
pub fn lock_head(conn: &mut AnyConnection, tenant: &str) -> Result<(i64, String)> {
    let head: Head = diesel::sql_query(
        "INSERT INTO audit_heads (tenant, seq, hash) VALUES ($1, 0, $2) \
         ON CONFLICT (tenant) DO UPDATE SET seq = audit_heads.seq RETURNING seq, hash",
    )
    .bind::<Text, _>(tenant)
    .bind::<Text, _>(GENESIS)
    .get_result(conn)?;
    Ok((head.seq, head.hash))
}

/// The end of `tenant`'s chain, unlocked: what `verify` compares the last record with.
pub fn head(conn: &mut AnyConnection, tenant: &str) -> Result<Option<(i64, String)>> {
    Ok(audit_heads::table
        .find(tenant)
        .select((audit_heads::seq, audit_heads::hash))
        .first(conn)
        .optional()?)
}

/// Moves `tenant`'s head to `seq` and `hash`.
pub fn set_head(conn: &mut AnyConnection, tenant: &str, seq: i64, hash: &str) -> Result<()> {
    diesel::update(audit_heads::table.find(tenant))
        .set((audit_heads::seq.eq(seq), audit_heads::hash.eq(hash)))
        .execute(conn)?;
    Ok(())
}

/// Writes linked records of `scope`'s tenant, making the monthly partitions they need
/// (PostgreSQL): one multi-row insert per thousand there, one by one on SQLite, as diesel
/// batches no insert for both backends at once.
pub fn insert_records(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    records: &[ArchivedRecord],
) -> Result<()> {
    let tenant = scope.tenant().as_str();
    let row = |r: &ArchivedRecord| {
        (
            audit_records::tenant.eq(tenant.to_string()),
            audit_records::seq.eq(r.seq),
            audit_records::event_id.eq(r.event_id.clone()),
            audit_records::event_type.eq(r.event_type.clone()),
            audit_records::time.eq(r.time.naive_utc()),
            audit_records::archived_at.eq(r.archived_at.naive_utc()),
            audit_records::source.eq(r.source.clone()),
            audit_records::operation.eq(r.operation.clone()),
            audit_records::target.eq(r.target.clone()),
            audit_records::subject.eq(r.subject.clone()),
            audit_records::organization.eq(r.organization.clone()),
            audit_records::outcome.eq(r.outcome.clone()),
            audit_records::data.eq(r.data.clone()),
            (
                audit_records::prev_hash.eq(r.prev_hash.clone()),
                audit_records::hash.eq(r.hash.clone()),
            ),
        )
    };
    match conn {
        AnyConnection::Postgresql(pg) => {
            let mut months: Vec<_> = records
                .iter()
                .map(|r| r.archived_at.format("%Y-%m").to_string())
                .collect();
            months.dedup();
            for month in months {
                let first = records
                    .iter()
                    .find(|r| r.archived_at.format("%Y-%m").to_string() == month)
                    .map(|r| r.archived_at.naive_utc());
                diesel::sql_query("SELECT pdp_audit_partition($1, $2)")
                    .bind::<Text, _>(tenant)
                    .bind::<Timestamp, _>(first.unwrap_or_default())
                    .execute(pg)?;
            }
            for chunk in records.chunks(1000) {
                let rows: Vec<_> = chunk.iter().map(row).collect();
                diesel::insert_into(audit_records::table)
                    .values(rows)
                    .execute(pg)?;
            }
        }
        AnyConnection::Sqlite(sqlite) => {
            for r in records {
                diesel::insert_into(audit_records::table)
                    .values(row(r))
                    .execute(sqlite)?;
            }
        }
    }
    Ok(())
}

type RecordRow = (
    (
        String,
        i64,
        String,
        String,
        NaiveDateTime,
        NaiveDateTime,
        String,
    ),
    (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    ),
);

fn record_of(row: RecordRow) -> ArchivedRecord {
    let ((tenant, seq, event_id, event_type, time, archived_at, source), rest) = row;
    let (operation, target, subject, organization, outcome, data, prev_hash, hash) = rest;
    ArchivedRecord {
        tenant,
        seq,
        event_id,
        event_type,
        time: utc(time),
        archived_at: utc(archived_at),
        source,
        operation,
        target,
        subject,
        organization,
        outcome,
        data,
        prev_hash,
        hash,
    }
}

macro_rules! record_columns {
    () => {
        (
            (
                audit_records::tenant,
                audit_records::seq,
                audit_records::event_id,
                audit_records::event_type,
                audit_records::time,
                audit_records::archived_at,
                audit_records::source,
            ),
            (
                audit_records::operation,
                audit_records::target,
                audit_records::subject,
                audit_records::organization,
                audit_records::outcome,
                audit_records::data,
                audit_records::prev_hash,
                audit_records::hash,
            ),
        )
    };
}

/// Records after `after_seq` through `through_seq`, in chain order, at most `limit`.
pub fn records_between(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    after_seq: i64,
    through_seq: i64,
    limit: i64,
) -> Result<Vec<ArchivedRecord>> {
    let rows: Vec<RecordRow> = scope
        .rows(audit_records::table)
        .filter(audit_records::seq.gt(after_seq))
        .filter(audit_records::seq.le(through_seq))
        .order(audit_records::seq)
        .limit(limit)
        .select(record_columns!())
        .load(conn)?;
    Ok(rows.into_iter().map(record_of).collect())
}

/// What auditors filter records by.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    pub organization: Option<String>,
    pub subject: Option<String>,
    pub operation: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A page of records matching `filter`, oldest first, after position `after_seq`.
pub fn list_records(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    filter: &RecordFilter,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<ArchivedRecord>> {
    let mut q = scope
        .rows(audit_records::table)
        .filter(audit_records::seq.gt(after_seq))
        .into_boxed();
    if let Some(o) = &filter.organization {
        q = q.filter(audit_records::organization.eq(o.clone()));
    }
    if let Some(s) = &filter.subject {
        q = q.filter(audit_records::subject.eq(s.clone()));
    }
    if let Some(op) = &filter.operation {
        q = q.filter(audit_records::operation.eq(op.clone()));
    }
    if let Some(from) = filter.from {
        q = q.filter(audit_records::time.ge(from.naive_utc()));
    }
    if let Some(to) = filter.to {
        q = q.filter(audit_records::time.lt(to.naive_utc()));
    }
    let rows: Vec<RecordRow> = q
        .order(audit_records::seq)
        .limit(limit)
        .select(record_columns!())
        .load(conn)?;
    Ok(rows.into_iter().map(record_of).collect())
}

/// The first and last positions of records whose time is in `[from, to)`.
pub fn seq_range(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Option<(i64, i64)>> {
    let mut first = scope.rows(audit_records::table).into_boxed();
    let mut last = scope.rows(audit_records::table).into_boxed();
    if let Some(from) = from {
        first = first.filter(audit_records::time.ge(from.naive_utc()));
        last = last.filter(audit_records::time.ge(from.naive_utc()));
    }
    if let Some(to) = to {
        first = first.filter(audit_records::time.lt(to.naive_utc()));
        last = last.filter(audit_records::time.lt(to.naive_utc()));
    }
    let first: Option<i64> = first
        .order(audit_records::seq)
        .select(audit_records::seq)
        .first(conn)
        .optional()?;
    let last: Option<i64> = last
        .order(audit_records::seq.desc())
        .select(audit_records::seq)
        .first(conn)
        .optional()?;
    Ok(first.zip(last))
}

/// The last record archived before `before`: where a purge up to `before` ends.
pub fn last_before(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    before: DateTime<Utc>,
) -> Result<Option<(i64, String)>> {
    Ok(scope
        .rows(audit_records::table)
        .filter(audit_records::archived_at.lt(before.naive_utc()))
        .order(audit_records::seq.desc())
        .select((audit_records::seq, audit_records::hash))
        .first(conn)
        .optional()?)
}

/// Removes the records through `through_seq`, archived before `before`: whole partitions where
/// they hold nothing newer (PostgreSQL), the rest row by row. How many rows went.
pub fn purge(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    through_seq: i64,
    before: DateTime<Utc>,
) -> Result<usize> {
    let held: i64 = scope
        .rows(audit_records::table)
        .filter(audit_records::seq.le(through_seq))
        .count()
        .get_result(conn)?;
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pdp_audit_drop_partitions($1, $2)")
            .bind::<Text, _>(scope.tenant().as_str())
            .bind::<Timestamp, _>(before.naive_utc())
            .execute(pg)?;
    }
    diesel::delete(
        scope
            .rows(audit_records::table)
            .filter(audit_records::seq.le(through_seq)),
    )
    .execute(conn)?;
    Ok(held as usize)
}

// --- checkpoints -------------------------------------------------------------------------------

pub fn insert_checkpoint(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    c: &Checkpoint,
) -> Result<()> {
    diesel::insert_into(audit_checkpoints::table)
        .values((
            audit_checkpoints::tenant.eq(scope.tenant().as_str()),
            audit_checkpoints::seq.eq(c.seq),
            audit_checkpoints::kind.eq(c.kind.name()),
            audit_checkpoints::hash.eq(&c.hash),
            audit_checkpoints::signed_at.eq(c.signed_at.naive_utc()),
            audit_checkpoints::signature.eq(&c.signature),
        ))
        .execute(conn)?;
    Ok(())
}

type CheckpointRow = (String, i64, String, String, NaiveDateTime, String);

fn checkpoint_of(row: CheckpointRow) -> Result<Checkpoint> {
    let (tenant, seq, kind, hash, signed_at, signature) = row;
    let kind = Kind::parse(&kind).ok_or_else(|| {
        TerminationError::Corrupt(format!(
            "audit_checkpoints/{tenant}/{seq}: kind {kind} is no checkpoint kind"
        ))
    })?;
    Ok(Checkpoint {
        tenant,
        seq,
        hash,
        signed_at: utc(signed_at),
        kind,
        signature,
    })
}

const CHECKPOINT_COLUMNS: (
    audit_checkpoints::tenant,
    audit_checkpoints::seq,
    audit_checkpoints::kind,
    audit_checkpoints::hash,
    audit_checkpoints::signed_at,
    audit_checkpoints::signature,
) = (
    audit_checkpoints::tenant,
    audit_checkpoints::seq,
    audit_checkpoints::kind,
    audit_checkpoints::hash,
    audit_checkpoints::signed_at,
    audit_checkpoints::signature,
);

/// Checkpoints at positions in `[from_seq, through_seq]`, in order (an anchor before a regular
/// one at the same position).
pub fn checkpoints_between(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    from_seq: i64,
    through_seq: i64,
) -> Result<Vec<Checkpoint>> {
    let rows: Vec<CheckpointRow> = scope
        .rows(audit_checkpoints::table)
        .filter(audit_checkpoints::seq.ge(from_seq))
        .filter(audit_checkpoints::seq.le(through_seq))
        .order((audit_checkpoints::seq, audit_checkpoints::kind))
        .select(CHECKPOINT_COLUMNS)
        .load(conn)?;
    rows.into_iter().map(checkpoint_of).collect()
}

/// The last checkpoint at or before `seq` (of `kind`, or any).
pub fn checkpoint_at_or_before(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    seq: i64,
    kind: Option<Kind>,
) -> Result<Option<Checkpoint>> {
    let mut q = scope
        .rows(audit_checkpoints::table)
        .filter(audit_checkpoints::seq.le(seq))
        .into_boxed();
    if let Some(kind) = kind {
        q = q.filter(audit_checkpoints::kind.eq(kind.name()));
    }
    q.order(audit_checkpoints::seq.desc())
        .select(CHECKPOINT_COLUMNS)
        .first::<CheckpointRow>(conn)
        .optional()?
        .map(checkpoint_of)
        .transpose()
}

/// The first checkpoint at or after `seq`.
pub fn checkpoint_at_or_after(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    seq: i64,
) -> Result<Option<Checkpoint>> {
    scope
        .rows(audit_checkpoints::table)
        .filter(audit_checkpoints::seq.ge(seq))
        .order(audit_checkpoints::seq)
        .select(CHECKPOINT_COLUMNS)
        .first::<CheckpointRow>(conn)
        .optional()?
        .map(checkpoint_of)
        .transpose()
}

/// A page of checkpoints, newest first, before position `before_seq`.
pub fn list_checkpoints(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    before_seq: Option<i64>,
    limit: i64,
) -> Result<Vec<Checkpoint>> {
    let mut q = scope.rows(audit_checkpoints::table).into_boxed();
    if let Some(before) = before_seq {
        q = q.filter(audit_checkpoints::seq.lt(before));
    }
    let rows: Vec<CheckpointRow> = q
        .order((audit_checkpoints::seq.desc(), audit_checkpoints::kind))
        .limit(limit)
        .select(CHECKPOINT_COLUMNS)
        .load(conn)?;
    rows.into_iter().map(checkpoint_of).collect()
}

/// Every tenant's chain head and its last checkpoint's position (0 for none): what the
/// checkpoint scheduler looks at. Not tenant-scoped: heads are the schedule.
pub fn heads(conn: &mut AnyConnection) -> Result<Vec<(String, i64, String)>> {
    Ok(audit_heads::table
        .filter(audit_heads::seq.gt(0))
        .select((audit_heads::tenant, audit_heads::seq, audit_heads::hash))
        .load(conn)?)
}

// --- legal holds -------------------------------------------------------------------------------

pub fn put_hold(conn: &mut AnyConnection, scope: &TenantScope, h: &api::LegalHold) -> Result<()> {
    let at = |t: &Option<prost_types::Timestamp>| {
        pdp_kit::change::instant(t.as_ref())
            .unwrap_or_default()
            .naive_utc()
    };
    diesel::delete(
        scope
            .rows(legal_holds::table)
            .filter(legal_holds::id.eq(&h.id)),
    )
    .execute(conn)?;
    diesel::insert_into(legal_holds::table)
        .values((
            legal_holds::id.eq(&h.id),
            legal_holds::tenant.eq(scope.tenant().as_str()),
            legal_holds::from_at.eq(at(&h.from)),
            legal_holds::to_at.eq(at(&h.to)),
            legal_holds::active.eq(h.state == api::LegalHoldState::Active as i32),
            legal_holds::body.eq(h.encode_to_vec()),
        ))
        .execute(conn)?;
    Ok(())
}

fn hold_of(bytes: &[u8]) -> Result<api::LegalHold> {
    api::LegalHold::decode(bytes).map_err(|e| TerminationError::Corrupt(e.to_string()))
}

pub fn get_hold(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::LegalHold>> {
    scope
        .rows(legal_holds::table)
        .filter(legal_holds::id.eq(id))
        .select(legal_holds::body)
        .first::<Vec<u8>>(conn)
        .optional()?
        .map(|b| hold_of(&b))
        .transpose()
}

pub fn list_holds(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<api::LegalHold>> {
    let mut q = scope.rows(legal_holds::table).into_boxed();
    if let Some(after) = after {
        q = q.filter(legal_holds::id.gt(after.to_string()));
    }
    let rows: Vec<Vec<u8>> = q
        .order(legal_holds::id)
        .limit(limit)
        .select(legal_holds::body)
        .load(conn)?;
    rows.iter().map(|b| hold_of(b)).collect()
}

/// The start of every active hold: records from it on are kept.
pub fn active_hold_starts(
    conn: &mut AnyConnection,
    scope: &TenantScope,
) -> Result<Vec<DateTime<Utc>>> {
    let rows: Vec<NaiveDateTime> = scope
        .rows(legal_holds::table)
        .filter(legal_holds::active.eq(true))
        .select(legal_holds::from_at)
        .load(conn)?;
    Ok(rows.into_iter().map(utc).collect())
}

// --- authorization periods ---------------------------------------------------------------------

pub fn period_started(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    agreement_id: &str,
    operator: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let exists = scope
        .rows(authorization_periods::table)
        .filter(authorization_periods::agreement_id.eq(agreement_id))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if !exists {
        diesel::insert_into(authorization_periods::table)
            .values((
                authorization_periods::tenant.eq(scope.tenant().as_str()),
                authorization_periods::agreement_id.eq(agreement_id),
                authorization_periods::operator.eq(operator),
                authorization_periods::started_at.eq(at.naive_utc()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Ends the period of `agreement_id` at `at` (starting it there if its start was never seen).
pub fn period_ended(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    agreement_id: &str,
    operator: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    period_started(conn, scope, agreement_id, operator, at)?;
    diesel::update(
        scope
            .rows(authorization_periods::table)
            .filter(authorization_periods::agreement_id.eq(agreement_id))
            .filter(authorization_periods::ended_at.is_null()),
    )
    .set(authorization_periods::ended_at.eq(Some(at.naive_utc())))
    .execute(conn)?;
    Ok(())
}

pub fn periods(conn: &mut AnyConnection, scope: &TenantScope) -> Result<Vec<Period>> {
    let rows: Vec<(NaiveDateTime, Option<NaiveDateTime>)> = scope
        .rows(authorization_periods::table)
        .select((
            authorization_periods::started_at,
            authorization_periods::ended_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(s, e)| Period {
            started: utc(s),
            ended: e.map(utc),
        })
        .collect())
}
