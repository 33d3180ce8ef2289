//! A grant's workspace (第二十二条): tables an operator keeps inside the platform — derived from
//! the grant's data by `CREATE TABLE workspace.<name> AS SELECT …` (see `sandbox.rs`), or its
//! own data uploaded (社会数据) — readable by queries on that grant only, under the same
//! disclosure control, never as rows from outside.

use chrono::{DateTime, Utc};
use pdp_kit::change::timestamp;
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::{Identity, Role};
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, TenantScope};
use pdp_proto::pdp::requests::v1 as api;
use pdp_sandbox::load::Field;

use crate::RequestError;
use crate::sandbox::{
    audit, check_usable, chunk, chunk_violations, engine_error, within_rate, workspace_root,
};
use crate::service::{RECORDER, Requests};
use crate::store as db;

type Result<T> = std::result::Result<T, RequestError>;

/// Tables one grant's workspace may hold.
pub const MAX_TABLES: usize = 50;
/// Columns an uploaded table may declare.
const MAX_COLUMNS: usize = 200;
/// The types an upload may declare, as resources register theirs.
const TYPES: &[&str] = &["string", "integer", "decimal", "date", "boolean"];

/// What is wrong with a workspace table's name (the engine's rule: it becomes a path).
pub fn name_violations(field: &str, name: &str) -> Vec<FieldViolation> {
    if pdp_sandbox::engine::is_table_name(name) {
        Vec::new()
    } else {
        vec![FieldViolation::new(
            field,
            pdp_sandbox::engine::TABLE_NAME_RULE,
        )]
    }
}

/// What is wrong with the columns an upload declares.
fn column_violations(columns: &[api::WorkspaceColumn]) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if columns.is_empty() || columns.len() > MAX_COLUMNS {
        v.push(FieldViolation::new(
            "columns",
            format!("the chunk that creates a table declares 1 to {MAX_COLUMNS} columns"),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in columns.iter().enumerate() {
        v.extend(name_violations(&format!("columns[{i}].name"), &c.name));
        if !seen.insert(c.name.as_str()) {
            v.push(FieldViolation::new(
                format!("columns[{i}].name"),
                format!("`{}` is declared twice", c.name),
            ));
        }
        if !TYPES.contains(&c.r#type.as_str()) {
            v.push(FieldViolation::new(
                format!("columns[{i}].type"),
                format!("one of {}", TYPES.join(", ")),
            ));
        }
    }
    v
}

/// Refuses a new table once the grant's workspace holds [`MAX_TABLES`].
pub(crate) fn check_room(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
) -> Result<()> {
    if db::workspace::list(conn, scope, grant_id)?.len() >= MAX_TABLES {
        return Err(RequestError::precondition(
            format!("grants/{grant_id}/workspace"),
            format!("the workspace holds {MAX_TABLES} tables: delete one first"),
        ));
    }
    Ok(())
}

/// Refused when the grant's workspace would hold more than `quota` bytes with table `name` at
/// `bytes` (whatever `name` held before no longer counting).
pub(crate) fn within_quota(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
    name: &str,
    bytes: u64,
    quota: u64,
) -> Result<()> {
    let others: u64 = db::workspace::list(conn, scope, grant_id)?
        .iter()
        .filter(|t| t.table.name != name)
        .map(|t| t.table.bytes)
        .sum();
    let total = others.saturating_add(bytes);
    if total > quota {
        return Err(RequestError::exhausted(
            "WORKSPACE_QUOTA",
            format!(
                "workspace.{name} would bring the grant's workspace to {}, over its {}: delete a \
                 table first",
                said(total),
                said(quota)
            ),
        ));
    }
    Ok(())
}

/// A size as people read it.
fn said(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes.div_ceil(1 << 20))
    } else {
        format!("{} KiB", bytes.div_ceil(1 << 10))
    }
}

/// Where a workspace table goes: the grant's operator's workspace, at `location`.
pub(crate) struct Place<'a> {
    pub operator: &'a str,
    pub location: &'a str,
}

/// Records `table` at `place`; a new one is announced (its label, never its data).
pub(crate) fn record(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    who: &Identity,
    now: DateTime<Utc>,
    table: api::WorkspaceTable,
    place: Place<'_>,
    new: bool,
) -> Result<()> {
    let stored = db::workspace::Stored {
        operator: place.operator.to_string(),
        location: place.location.to_string(),
        table,
    };
    db::workspace::put(conn, scope, &stored, now)?;
    if new {
        let t = &stored.table;
        RECORDER.change(scope, Some(who), now).emit(
            conn,
            api::WORKSPACE_TABLE_CREATED,
            &format!("{}/{}", t.grant_id, t.name),
            &changed(t, &stored.operator),
        )?;
    }
    Ok(())
}

pub(crate) fn changed(t: &api::WorkspaceTable, operator: &str) -> api::WorkspaceTableChanged {
    api::WorkspaceTableChanged {
        grant_id: t.grant_id.clone(),
        operator: operator.to_string(),
        name: t.name.clone(),
        source: t.source,
        classification: t.classification,
        sensitivity: t.sensitivity,
        personal_information: t.personal_information,
        inputs: t.inputs.clone(),
    }
}

/// Grant `grant_id` as `who` may see its workspace: its operator's, or one of the operator's
/// approved developers' (第二十条(三)); bureaus and supervisors too when `watchers` are let in.
/// Anyone else gets NOT_FOUND.
fn workspace_grant(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    who: &Identity,
    grant_id: &str,
    watchers: bool,
) -> Result<api::Grant> {
    let found = db::find_grant(conn, scope, grant_id)?;
    let allowed = match &found {
        Some(g) if g.operator == who.organization && who.has_any(&[Role::Operator]) => true,
        Some(g) if who.has_any(&[Role::Developer]) => {
            db::is_approved_developer(conn, scope, &who.organization, &g.operator)?
        }
        Some(_) => {
            watchers
                && (who.has_any(&Role::BUREAU)
                    || who.has_any(&[Role::Supervisor, Role::Auditor, Role::Supervision]))
        }
        None => false,
    };
    found
        .filter(|_| allowed)
        .ok_or_else(|| RequestError::not_found("grant", grant_id))
}

impl Requests {
    /// The grant's workspace tables: for its operator, and for the bureaus and supervisors who
    /// watch what is kept in the platform.
    pub async fn list_workspace_tables(
        &self,
        who: &Identity,
        tenant: &str,
        grant_id: String,
    ) -> Result<Vec<api::WorkspaceTable>> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            workspace_grant(conn, scope, &who, &grant_id, true)?;
            Ok(db::workspace::list(conn, scope, &grant_id)?
                .into_iter()
                .map(|s| s.table)
                .collect())
        })
        .await
    }

    /// Appends a chunk of the operator's own data — or its approved developers' — to a
    /// workspace table, creating it (with the columns the chunk declares) on the first; a chunk
    /// with a line that does not fit is refused whole.
    pub async fn append_workspace_rows(
        &self,
        who: &Identity,
        tenant: &str,
        request: api::AppendWorkspaceRowsRequest,
    ) -> Result<api::WorkspaceTable> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(
            who,
            &[Role::Operator, Role::Developer],
            "uploading into the workspace",
        )?;
        let sandbox = self.sandbox()?.clone();
        let mut v = name_violations("name", &request.name);
        v.extend(chunk_violations(&request.header, &request.lines));
        RequestError::check("upload", v)?;
        let (caller, req) = (who.clone(), request.clone());
        // The table as it stands (or as the chunk declares it), checked before anything is
        // written.
        let (table, location) = self
            .in_scope(&scope, move |conn, scope, now| {
                let g = workspace_grant(conn, scope, &caller, &req.grant_id, false)?;
                check_usable(conn, scope, &g, now)?;
                // Uploads count against the grant's rate too: no flood of chunks.
                let settings = db::sandbox_settings(conn, scope)?;
                within_rate(conn, scope, &g.id, &settings, now)?;
                upload_target(conn, scope, &req)
            })
            .await?;
        let fields: Vec<Field> = table
            .columns
            .iter()
            .map(|c| Field {
                name: c.name.clone(),
                kind: c.r#type.clone(),
                personal: c.personal_information,
            })
            .collect();
        let part = crate::sandbox::part_in(&location);
        let loaded = sandbox
            .load_csv(
                &part,
                &fields,
                chunk(request.header, &request.lines).as_bytes(),
                2,
            )
            .await
            .map_err(engine_error)?;
        let caller = who.clone();
        let object = loaded.object.clone();
        let added = match crate::sandbox::weigh(&sandbox, &object).await {
            Ok(bytes) => bytes,
            Err(why) => {
                let _ = sandbox.delete(&object).await;
                return Err(crate::sandbox::unweighed(&why));
            }
        };
        let quota = sandbox.workspace_quota();
        let recorded = self
            .in_scope(&scope, move |conn, scope, now| {
                let g = workspace_grant(conn, scope, &caller, &table.grant_id, false)?;
                check_usable(conn, scope, &g, now)?;
                let current = db::workspace::find(conn, scope, &table.grant_id, &table.name)?;
                let new = current.is_none();
                let bytes = current.as_ref().map_or(0, |c| c.table.bytes) + added;
                within_quota(conn, scope, &table.grant_id, &table.name, bytes, quota)?;
                // Created or removed meanwhile by another call: this chunk joins nothing.
                if current.is_some_and(|c| c.location != location) {
                    return Err(RequestError::precondition(
                        format!("workspace/{}", table.name),
                        "the table changed while the chunk was written: send it again",
                    ));
                }
                if new {
                    check_room(conn, scope, &table.grant_id)?;
                }
                let table = api::WorkspaceTable {
                    created_by: if new {
                        caller.subject.clone()
                    } else {
                        table.created_by
                    },
                    create_time: table.create_time.or(Some(timestamp(now))),
                    update_time: Some(timestamp(now)),
                    bytes,
                    ..table
                };
                let details = serde_json::json!({
                    "grant": table.grant_id, "table": table.name, "rows": loaded.rows,
                    "object": loaded.object,
                });
                let target = format!("grants/{}/workspace/{}", table.grant_id, table.name);
                let place = Place {
                    operator: &g.operator,
                    location: &location,
                };
                record(conn, scope, &caller, now, table.clone(), place, new)?;
                audit(
                    conn,
                    scope,
                    &caller,
                    now,
                    "workspace.rows_appended",
                    target,
                    details,
                )?;
                Ok(table)
            })
            .await;
        if recorded.is_err() {
            let _ = sandbox.delete(&object).await;
        }
        recorded
    }

    /// Removes a workspace table and its data.
    pub async fn delete_workspace_table(
        &self,
        who: &Identity,
        tenant: &str,
        grant_id: String,
        name: String,
    ) -> Result<api::WorkspaceTable> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Operator], "deleting a workspace table")?;
        let sandbox = self.sandbox()?.clone();
        let (caller, grant, table) = (who.clone(), grant_id.clone(), name.clone());
        // The data goes first: should the store fail, the table is still listed and the same
        // call removes it later, instead of data staying behind that nothing names.
        let found = self
            .in_scope(&scope, move |conn, scope, _| {
                // An ended grant's tables may still be removed by their operator.
                db::find_grant(conn, scope, &grant)?
                    .filter(|g| g.operator == caller.organization)
                    .ok_or_else(|| RequestError::not_found("grant", &grant))?;
                db::workspace::find(conn, scope, &grant, &table)?
                    .ok_or_else(|| RequestError::not_found("workspace table", &table))
            })
            .await?;
        sandbox
            .delete_all(&found.location)
            .await
            .map_err(engine_error)?;
        let caller = who.clone();
        let removed = self
            .in_scope(&scope, move |conn, scope, now| {
                let stored = db::workspace::find(conn, scope, &grant_id, &name)?
                    .ok_or_else(|| RequestError::not_found("workspace table", &name))?;
                db::workspace::delete(conn, scope, &grant_id, &name)?;
                RECORDER.change(scope, Some(&caller), now).emit(
                    conn,
                    api::WORKSPACE_TABLE_DELETED,
                    &format!("{grant_id}/{name}"),
                    &changed(&stored.table, &stored.operator),
                )?;
                Ok(stored)
            })
            .await?;
        if removed.location != found.location {
            // Replaced meanwhile by a new derivation: its data goes with its row.
            let _ = sandbox.delete_all(&removed.location).await;
        }
        Ok(removed.table)
    }
}

/// The table a chunk goes to: the existing upload (its declared columns), or a new one as the
/// chunk declares it; and where its parts lie.
fn upload_target(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    req: &api::AppendWorkspaceRowsRequest,
) -> Result<(api::WorkspaceTable, String)> {
    match db::workspace::find(conn, scope, &req.grant_id, &req.name)? {
        Some(s) if s.table.source != api::WorkspaceTableSource::Uploaded as i32 => {
            Err(RequestError::precondition(
                format!("workspace/{}", req.name),
                format!(
                    "workspace.{} is derived from the grant's data: upload under another name",
                    req.name
                ),
            ))
        }
        Some(s) => {
            if !req.columns.is_empty() && req.columns != s.table.columns {
                return Err(RequestError::invalid(
                    "upload",
                    vec![FieldViolation::new(
                        "columns",
                        "the table exists with other columns: send none to append, or upload \
                         under another name",
                    )],
                ));
            }
            Ok((s.table, s.location))
        }
        None => {
            RequestError::check("upload", column_violations(&req.columns))?;
            let table = api::WorkspaceTable {
                grant_id: req.grant_id.clone(),
                name: req.name.clone(),
                source: api::WorkspaceTableSource::Uploaded as i32,
                columns: req.columns.clone(),
                // Its columns say which hold personal information; nothing else is derived.
                personal_information: false,
                ..Default::default()
            };
            let location = format!(
                "{}/{}/{:032x}/",
                workspace_root(scope.tenant().as_str(), &req.grant_id),
                req.name,
                rand::random::<u128>()
            );
            Ok((table, location))
        }
    }
}
