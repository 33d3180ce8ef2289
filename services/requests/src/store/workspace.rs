//! The rows of grants' workspace tables: what each table is and where its Parquet lies.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::tenant_table;
use pdp_proto::pdp::requests::v1 as api;
use prost::Message;

use super::Result;
use crate::RequestError;

diesel::table! {
    workspace_tables (tenant, grant_id, name) {
        tenant -> Text,
        grant_id -> Text,
        name -> Text,
        operator -> Text,
        location -> Text,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

tenant_table!(workspace_tables::table, workspace_tables::tenant);

/// A workspace table and where its data lies.
#[derive(Debug, Clone)]
pub struct Stored {
    pub table: api::WorkspaceTable,
    pub operator: String,
    pub location: String,
}

fn decode((body, operator, location): (Vec<u8>, String, String)) -> Result<Stored> {
    let table = api::WorkspaceTable::decode(body.as_slice())
        .map_err(|e| RequestError::Corrupt(e.to_string()))?;
    if api::WorkspaceTableSource::try_from(table.source)
        .map_or(true, |s| s == api::WorkspaceTableSource::Unspecified)
    {
        return Err(RequestError::Corrupt(format!(
            "workspace table {}/{} names no source",
            table.grant_id, table.name
        )));
    }
    Ok(Stored {
        table,
        operator,
        location,
    })
}

pub fn put(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    stored: &Stored,
    now: DateTime<Utc>,
) -> Result<()> {
    delete(conn, scope, &stored.table.grant_id, &stored.table.name)?;
    diesel::insert_into(workspace_tables::table)
        .values((
            workspace_tables::tenant.eq(scope.tenant().as_str()),
            workspace_tables::grant_id.eq(&stored.table.grant_id),
            workspace_tables::name.eq(&stored.table.name),
            workspace_tables::operator.eq(&stored.operator),
            workspace_tables::location.eq(&stored.location),
            workspace_tables::body.eq(stored.table.encode_to_vec()),
            workspace_tables::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
    name: &str,
) -> Result<Option<Stored>> {
    scope
        .rows(workspace_tables::table)
        .filter(workspace_tables::grant_id.eq(grant_id))
        .filter(workspace_tables::name.eq(name))
        .select((
            workspace_tables::body,
            workspace_tables::operator,
            workspace_tables::location,
        ))
        .first::<(Vec<u8>, String, String)>(conn)
        .optional()?
        .map(decode)
        .transpose()
}

/// The grant's tables, by name.
pub fn list(conn: &mut AnyConnection, scope: &TenantScope, grant_id: &str) -> Result<Vec<Stored>> {
    scope
        .rows(workspace_tables::table)
        .filter(workspace_tables::grant_id.eq(grant_id))
        .order(workspace_tables::name.asc())
        .select((
            workspace_tables::body,
            workspace_tables::operator,
            workspace_tables::location,
        ))
        .load::<(Vec<u8>, String, String)>(conn)?
        .into_iter()
        .map(decode)
        .collect()
}

pub fn delete(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
    name: &str,
) -> Result<()> {
    diesel::delete(
        scope
            .rows(workspace_tables::table)
            .filter(workspace_tables::grant_id.eq(grant_id))
            .filter(workspace_tables::name.eq(name)),
    )
    .execute(conn)?;
    Ok(())
}
