//! The sandbox behind the grants (原始数据不出域, 第二十二条): a provider unit loads its
//! resource's data in chunks, visible once committed; an operator queries what one of its valid
//! grants names, each answer's ε charged to the grant's privacy budget, every query audited.
//! The engine and its disclosure control are `pdp-sandbox`'s.

use chrono::{DateTime, Utc};
use pdp_kit::audit;
use pdp_kit::calendar::civil_date;
use pdp_kit::change::{Change, timestamp};
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::{Identity, Role};
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, TenantScope};
use pdp_proto::pdp::requests::v1 as api;
use pdp_sandbox::engine::{Derived, Outcome};
use pdp_sandbox::load::Field;
use pdp_sandbox::{Rules, SandboxError, Table};
use uuid::Uuid;

use crate::RequestError;
use crate::SERVICE;
use crate::service::{RECORDER, Requests};
use crate::store as db;

type Result<T> = std::result::Result<T, RequestError>;

/// Lines one chunk may carry.
const MAX_LINES: usize = 1000;
/// Loads of one resource that may be open at once: a provider cannot pile up staged data.
const MAX_OPEN_LOADS: i64 = 5;

/// What is wrong with disclosure settings a bureau sets.
fn settings_violations(s: &api::SandboxSettings) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if !(pdp_sandbox::disclosure::MIN_K as u32..=1000).contains(&s.min_group_size) {
        v.push(FieldViolation::new(
            "settings.min_group_size",
            format!("from {} to 1000 records", pdp_sandbox::disclosure::MIN_K),
        ));
    }
    if !(0.1..=10.0).contains(&s.epsilon_per_query) {
        v.push(FieldViolation::new(
            "settings.epsilon_per_query",
            "from 0.1 to 10",
        ));
    }
    if !(s.grant_budget >= s.epsilon_per_query.max(0.1) && s.grant_budget <= 1000.0) {
        v.push(FieldViolation::new(
            "settings.grant_budget",
            "at least one answer's ε, at most 1000",
        ));
    }
    if !(1..=600).contains(&s.queries_per_minute) {
        v.push(FieldViolation::new(
            "settings.queries_per_minute",
            "from 1 to 600",
        ));
    }
    v
}

/// What is wrong with a chunk of CSV lines under its header.
pub(crate) fn chunk_violations(header: &str, lines: &[String]) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if lines.is_empty() || lines.len() > MAX_LINES {
        v.push(FieldViolation::new(
            "lines",
            format!("from 1 to {MAX_LINES} lines"),
        ));
    }
    // One line per item: a line break inside one would carry more lines than the bound.
    let broken = |text: &str| text.contains(['\n', '\r']);
    if broken(header) {
        v.push(FieldViolation::new(
            "header",
            "one line, without line breaks",
        ));
    }
    if let Some(at) = lines.iter().position(|l| broken(l)) {
        v.push(FieldViolation::new(
            format!("lines[{at}]"),
            "one line, without line breaks",
        ));
    }
    v
}

/// The chunk as one CSV text.
pub(crate) fn chunk(header: String, lines: &[String]) -> String {
    let mut csv = header;
    for line in lines {
        csv.push('\n');
        csv.push_str(line);
    }
    csv.push('\n');
    csv
}

/// A new part's object under the directory `root`: named apart, so that two chunks written at
/// once never overwrite each other.
pub(crate) fn part_in(root: &str) -> String {
    format!("{root}part-{}.parquet", Uuid::now_v7())
}

pub(crate) fn location(tenant: &str, resource_id: &str, load_id: &str) -> String {
    format!("tenants/{tenant}/resources/{resource_id}/loads/{load_id}/")
}

fn load_changed(l: &api::Load) -> api::LoadChanged {
    api::LoadChanged {
        load_id: l.id.clone(),
        resource_id: l.resource_id.clone(),
        provider: l.provider.clone(),
        state: l.state,
        rows: l.rows,
        version: l.version,
    }
}

/// Audits what the sandbox did that is no change of an aggregate (a chunk, a query).
pub(crate) fn audit(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    who: &Identity,
    now: DateTime<Utc>,
    action: &str,
    target: String,
    details: serde_json::Value,
) -> Result<()> {
    audit::record(
        conn,
        audit::Action {
            service: SERVICE,
            tenant: scope.tenant(),
            actor: Some(who),
            action,
            target,
            time: now,
            details,
        },
    )?;
    Ok(())
}

/// The fields `resource_id` is registered with: what a load is checked against.
pub(crate) fn registered_fields(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    resource_id: &str,
) -> Result<Vec<Field>> {
    let facts = db::resources(conn, scope, &[resource_id.to_string()])?
        .remove(resource_id)
        .ok_or_else(|| RequestError::not_found("resource", resource_id))?;
    Ok(facts
        .fields
        .iter()
        .map(|(name, personal)| Field {
            name: name.clone(),
            kind: facts.kinds.get(name).cloned().unwrap_or_default(),
            personal: *personal,
        })
        .collect())
}

/// What `location` weighs in the store, or why it could not be weighed: then what was written
/// is not kept, since the quota could not be checked.
pub(crate) async fn weigh(
    sandbox: &pdp_sandbox::Sandbox,
    location: &str,
) -> std::result::Result<u64, String> {
    sandbox.size(location).await.map_err(|e| e.to_string())
}

/// A table that could not be weighed, refused: the workspace's quota could not be checked.
pub(crate) fn unweighed(why: &str) -> RequestError {
    RequestError::unavailable(
        "SANDBOX_STORE",
        format!("the store did not weigh the table ({why}); nothing was kept, try again"),
    )
}

/// The caller's own open load of `resource_id`; another's is NOT_FOUND.
pub(crate) fn own_load(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    who: &Identity,
    resource_id: &str,
    id: &str,
) -> Result<api::Load> {
    let load = db::find_load(conn, scope, id)?
        .filter(|l| l.resource_id == resource_id && l.provider == who.organization)
        .ok_or_else(|| RequestError::not_found("load", id))?;
    if load.state != api::LoadState::Open as i32 {
        return Err(RequestError::precondition(
            format!("loads/{id}"),
            "the load is committed: open a new one (CreateLoad)",
        ));
    }
    Ok(load)
}

pub(crate) fn engine_error(e: SandboxError) -> RequestError {
    match e {
        SandboxError::Refused(r) => {
            RequestError::invalid("query", vec![FieldViolation::new("sql", r.to_string())])
        }
        SandboxError::Invalid(m) => {
            RequestError::invalid("query", vec![FieldViolation::new("sql", m)])
        }
        SandboxError::Rejected(m) => {
            RequestError::invalid("load", vec![FieldViolation::new("lines", m)])
        }
        SandboxError::TimedOut(_) | SandboxError::TooLarge(_) => RequestError::precondition(
            "sandbox/queries",
            format!("{e}: narrow the query (fewer groups, fewer joins)"),
        ),
        SandboxError::Failed => RequestError::precondition("sandbox/queries", e.to_string()),
        SandboxError::Unreachable(_) => {
            RequestError::unavailable("SANDBOX_UNREACHABLE", e.to_string())
        }
        SandboxError::Engine(m) => RequestError::Corrupt(format!("the sandbox failed: {m}")),
    }
}

/// The caller's grant `grant_id`, if it allows work now (see [`check_usable`]). Another's grant
/// is NOT_FOUND.
pub(crate) fn usable_grant(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    who: &Identity,
    grant_id: &str,
    now: DateTime<Utc>,
) -> Result<api::Grant> {
    let g = db::find_grant(conn, scope, grant_id)?
        .filter(|g| g.operator == who.organization)
        .ok_or_else(|| RequestError::not_found("grant", grant_id))?;
    check_usable(conn, scope, &g, now)?;
    Ok(g)
}

/// Whether grant `g` allows work now: VALID, today within its days, its agreement ACTIVE.
pub(crate) fn check_usable(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    g: &api::Grant,
    now: DateTime<Utc>,
) -> Result<()> {
    let today = civil_date(now).to_string();
    let active = db::agreement(conn, scope, &g.agreement_id)?.is_some_and(|a| a.active);
    let valid =
        g.state == api::GrantState::Valid as i32 && g.valid_from <= today && today <= g.valid_to;
    if !valid || !active {
        return Err(RequestError::precondition(
            format!("grants/{}", g.id),
            format!(
                "grant {} allows nothing on {today}: it runs {}..{}, is {}, and its agreement is \
                 {}",
                g.id,
                g.valid_from,
                g.valid_to,
                if g.state == api::GrantState::Valid as i32 {
                    "valid"
                } else {
                    "ended"
                },
                if active { "ACTIVE" } else { "no longer ACTIVE" }
            ),
        ));
    }
    Ok(())
}

/// Counts one call on grant `grant_id` (a statement, an uploaded chunk) against the tenant's
/// rate per grant, refusing it (RESOURCE_EXHAUSTED, `QUERY_RATE`) past the limit; the grant's
/// secret and what it has spent of its budget.
pub(crate) fn within_rate(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
    settings: &api::SandboxSettings,
    now: DateTime<Utc>,
) -> Result<(String, f64)> {
    let fresh = format!("{:032x}", rand::random::<u128>());
    let (secret, spent) = db::budget(conn, scope, grant_id, &fresh)?;
    let minute = now.format("%Y-%m-%dT%H:%M").to_string();
    let rate = settings.queries_per_minute;
    if !db::count_statement(conn, scope, grant_id, &minute, rate)? {
        return Err(RequestError::exhausted(
            "QUERY_RATE",
            format!(
                "grant {grant_id} ran {rate} statements and uploads this minute, the tenant's \
                 limit: try again next minute"
            ),
        ));
    }
    Ok((secret, spent))
}

/// 分类 and 分级 of each table a statement may read, by the name it reads it under.
type Labels = std::collections::HashMap<String, (i32, i32)>;

/// The tables a statement on grant `g` reads: its resources as last loaded (granted fields only,
/// masked ones as digests) and its workspace's tables; and their labels.
pub(crate) fn readable(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    g: &api::Grant,
) -> Result<(Vec<Table>, Labels)> {
    let ids: Vec<String> = g.resources.iter().map(|r| r.resource_id.clone()).collect();
    let facts = db::resources(conn, scope, &ids)?;
    let mut tables = Vec::new();
    let mut labels = Labels::new();
    for granted in &g.resources {
        // A resource not loaded yet is no table yet: a query naming it is told so.
        let load = match granted.pinned_version {
            0 => db::current_load(conn, scope, &granted.resource_id)?,
            v => db::committed_load(conn, scope, &granted.resource_id, v)?,
        };
        let Some(load) = load else {
            continue;
        };
        let fact = facts.get(&granted.resource_id);
        let personal = fact
            .map(|f| {
                f.fields
                    .iter()
                    .filter(|(name, personal)| **personal && granted.fields.contains(name))
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default();
        labels.insert(
            granted.resource_id.clone(),
            fact.map_or((0, 0), |f| (f.classification, f.sensitivity)),
        );
        tables.push(Table {
            name: granted.resource_id.clone(),
            location: location(scope.tenant().as_str(), &granted.resource_id, &load.id),
            fields: granted.fields.clone(),
            masked: granted.masked_fields.clone(),
            personal,
        });
    }
    for stored in db::workspace::list(conn, scope, &g.id)? {
        let t = &stored.table;
        let name = format!("{}.{}", pdp_sandbox::engine::WORKSPACE, t.name);
        labels.insert(name.clone(), (t.classification, t.sensitivity));
        tables.push(Table {
            name,
            location: stored.location.clone(),
            fields: t.columns.iter().map(|c| c.name.clone()).collect(),
            masked: Vec::new(),
            personal: t
                .columns
                .iter()
                .filter(|c| c.personal_information || t.personal_information)
                .map(|c| c.name.clone())
                .collect(),
        });
    }
    Ok((tables, labels))
}

/// What leaves of `answer`, on top of `base`: its columns, its rows as text, what was suppressed
/// and spent.
pub(crate) fn answer_of(
    answer: &pdp_sandbox::engine::Answer,
    base: &api::QueryAnswer,
) -> api::QueryAnswer {
    let mut out = api::QueryAnswer {
        suppressed_groups: answer.suppressed,
        plan_hash: answer.plan_hash.clone(),
        epsilon_spent: answer.epsilon_spent,
        ..base.clone()
    };
    for batch in &answer.batches {
        if out.columns.is_empty() {
            out.columns = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
        }
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|c| pdp_sandbox::engine::display(c, row))
                .collect();
            out.rows.push(api::AnswerRow { values });
        }
    }
    out
}

/// Where grant `grant_id`'s workspace tables lie.
pub(crate) fn workspace_root(tenant: &str, grant_id: &str) -> String {
    format!("tenants/{tenant}/grants/{grant_id}/workspace")
}

/// The workspace table a derivation made, labelled with the strictest of its inputs, and where
/// its data lies.
fn derived_table(
    d: &Derived,
    grant_id: &str,
    who: &Identity,
    labels: &Labels,
) -> (api::WorkspaceTable, String) {
    let strictest = d
        .inputs
        .iter()
        .filter_map(|i| labels.get(i))
        .fold((0, 0), |(c, s), (ic, is)| (c.max(*ic), s.max(*is)));
    let table = api::WorkspaceTable {
        grant_id: grant_id.to_string(),
        name: d.name.clone(),
        source: api::WorkspaceTableSource::Derived as i32,
        columns: d
            .columns
            .iter()
            .map(|(name, ty)| api::WorkspaceColumn {
                name: name.clone(),
                r#type: ty.clone(),
                personal_information: d.personal,
            })
            .collect(),
        classification: strictest.0,
        sensitivity: strictest.1,
        personal_information: d.personal,
        inputs: d.inputs.clone(),
        created_by: who.subject.clone(),
        ..Default::default()
    };
    (table, d.location.clone())
}

/// Whether the workspace takes the derived `table`: a new name while there is room, or the name
/// of an earlier derived table it replaces (where that one's data lies, to remove once this is
/// committed); never the name of uploaded data.
fn room_for_derived(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    table: &api::WorkspaceTable,
) -> Result<Option<String>> {
    match db::workspace::find(conn, scope, &table.grant_id, &table.name)? {
        Some(old) if old.table.source == api::WorkspaceTableSource::Uploaded as i32 => {
            Err(RequestError::precondition(
                format!("workspace/{}", table.name),
                format!(
                    "workspace.{} holds uploaded data: delete it first, or derive under another \
                     name",
                    table.name
                ),
            ))
        }
        Some(old) => Ok(Some(old.location)),
        None => {
            crate::workspace::check_room(conn, scope, &table.grant_id)?;
            Ok(None)
        }
    }
}

impl Requests {
    pub async fn create_load(
        &self,
        who: &Identity,
        tenant: &str,
        resource_id: String,
    ) -> Result<api::Load> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Provider], "loading data")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            db::resources(conn, scope, std::slice::from_ref(&resource_id))?
                .remove(&resource_id)
                .filter(|r| r.provider == who.organization)
                .ok_or_else(|| RequestError::not_found("resource", &resource_id))?;
            if db::open_loads(conn, scope, &resource_id)? >= MAX_OPEN_LOADS {
                return Err(RequestError::precondition(
                    format!("resources/{resource_id}"),
                    format!(
                        "{MAX_OPEN_LOADS} loads of this resource are open: commit them before \
                         opening another"
                    ),
                ));
            }
            let load = api::Load {
                id: Uuid::now_v7().to_string(),
                tenant: scope.tenant().to_string(),
                resource_id,
                provider: who.organization.clone(),
                state: api::LoadState::Open as i32,
                created_by: who.subject.clone(),
                create_time: Some(timestamp(now)),
                ..Default::default()
            };
            db::put_load(conn, scope, &load, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            act.emit(conn, api::LOAD_CREATED, &load.id, &load_changed(&load))?;
            Ok(load)
        })
        .await
    }

    /// Appends a chunk: checked against the registered fields and written as one Parquet file
    /// of the load, or refused whole.
    pub async fn append_rows(
        &self,
        who: &Identity,
        tenant: &str,
        resource_id: String,
        id: String,
        header: String,
        lines: Vec<String>,
    ) -> Result<api::Load> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Provider], "loading data")?;
        let sandbox = self.sandbox()?.clone();
        let v = chunk_violations(&header, &lines);
        RequestError::check("load", v)?;
        let reader = who.clone();
        let (resource, id2) = (resource_id.clone(), id.clone());
        let (load, fields) = self
            .in_scope(&scope, move |conn, scope, _| {
                let load = own_load(conn, scope, &reader, &resource, &id2)?;
                Ok((load, registered_fields(conn, scope, &resource)?))
            })
            .await?;
        let csv = chunk(header, &lines);
        let part = part_in(&location(scope.tenant().as_str(), &resource_id, &id));
        let loaded = sandbox
            .load_csv(&part, &fields, csv.as_bytes(), load.rows + 2)
            .await
            .map_err(engine_error)?;
        let who = who.clone();
        let object = loaded.object.clone();
        let recorded = self
            .in_scope(&scope, move |conn, scope, now| {
                let mut load = own_load(conn, scope, &who, &resource_id, &id)?;
                load.rows += loaded.rows;
                load.chunks += 1;
                db::put_load(conn, scope, &load, now)?;
                let details = serde_json::json!({"rows": loaded.rows, "object": loaded.object});
                audit(
                    conn,
                    scope,
                    &who,
                    now,
                    "load.appended",
                    format!("loads/{id}"),
                    details,
                )?;
                Ok(load)
            })
            .await;
        if recorded.is_err() {
            // Committed (or gone) while the chunk was written: it must not join the version.
            let _ = sandbox.delete(&object).await;
        }
        recorded
    }

    /// Makes the load the resource's current version.
    pub async fn commit_load(
        &self,
        who: &Identity,
        tenant: &str,
        resource_id: String,
        id: String,
    ) -> Result<api::Load> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Provider], ":commit")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut load = own_load(conn, scope, &who, &resource_id, &id)?;
            if load.rows == 0 {
                return Err(RequestError::precondition(
                    format!("loads/{id}"),
                    "the load holds no rows: append them first",
                ));
            }
            let current = db::current_load(conn, scope, &resource_id)?;
            load.version = current.map_or(1, |c| c.version + 1);
            load.state = api::LoadState::Committed as i32;
            load.commit_time = Some(timestamp(now));
            db::put_load(conn, scope, &load, now)?;
            let act: Change<'_> = RECORDER.change(scope, Some(&who), now);
            act.emit(conn, api::LOAD_COMMITTED, &load.id, &load_changed(&load))?;
            Ok(load)
        })
        .await
    }

    /// Runs the statement `sql` on the resources `grant_id` names, as they were last loaded, and
    /// the grant's workspace tables: a query answers, a `CREATE TABLE workspace.…` keeps a table.
    pub async fn run_query(
        &self,
        who: &Identity,
        tenant: &str,
        grant_id: String,
        sql: String,
    ) -> Result<api::QueryAnswer> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Operator], "querying the sandbox")?;
        let sandbox = self.sandbox()?.clone();
        if sql.trim().is_empty() {
            return Err(RequestError::invalid(
                "query",
                vec![FieldViolation::new("sql", "required")],
            ));
        }
        let caller = who.clone();
        let grant = grant_id.clone();
        // Checked, counted and charged before the engine runs, so that parallel queries can
        // neither overspend nor outrun the rate.
        let (tables, labels, secret, spent, settings) = self
            .in_scope(&scope, move |conn, scope, now| {
                let g = usable_grant(conn, scope, &caller, &grant, now)?;
                let settings = db::sandbox_settings(conn, scope)?;
                let (epsilon, budget) = (settings.epsilon_per_query, settings.grant_budget);
                let (secret, spent) = within_rate(conn, scope, &grant, &settings, now)?;
                // Charged only while it fits, in one statement: parallel queries cannot overspend.
                if !db::charge(conn, scope, &grant, epsilon, budget)? {
                    return Err(RequestError::forbidden(
                        "PRIVACY_BUDGET_SPENT",
                        format!(
                            "grant {grant} has spent its privacy budget (ε {spent} of {budget}): \
                             every further answer would add to what can be learned of one person"
                        ),
                    ));
                }
                let (tables, labels) = readable(conn, scope, &g)?;
                Ok((tables, labels, secret, spent + epsilon, settings))
            })
            .await?;
        let rules = Rules {
            k: u64::from(settings.min_group_size),
            epsilon: settings.epsilon_per_query,
        };
        let root = workspace_root(scope.tenant().as_str(), &grant_id);
        let outcome = sandbox
            .run(&tables, &sql, rules, &secret, Some(&root))
            .await;
        let refund = match &outcome {
            Ok(Outcome::Answer(answer)) => rules.epsilon - answer.epsilon_spent,
            // Nothing of a derived table leaves.
            Ok(Outcome::Derived(_)) => rules.epsilon,
            // Refused before it read a record, or nothing could read it.
            Err(
                SandboxError::Refused(_) | SandboxError::Invalid(_) | SandboxError::Unreachable(_),
            ) => rules.epsilon,
            // It ran over the data, and whether it failed depends on the data: it costs as an
            // answer does, or failures would probe for free.
            Err(_) => 0.0,
        };
        let details = match &outcome {
            Ok(Outcome::Answer(a)) => serde_json::json!({
                "grant": grant_id, "sql": sql, "plan_hash": a.plan_hash,
                "fields": a.fields_touched, "groups": a.groups, "suppressed": a.suppressed,
                "epsilon": a.epsilon_spent,
            }),
            Ok(Outcome::Derived(d)) => serde_json::json!({
                "grant": grant_id, "sql": sql, "plan_hash": d.plan_hash,
                "fields": d.fields_touched, "derived": d.name, "rows": d.rows,
                "inputs": d.inputs,
            }),
            Err(e) => serde_json::json!({"grant": grant_id, "sql": sql, "refused": e.to_string()}),
        };
        let derived = match &outcome {
            Ok(Outcome::Derived(d)) => Some(derived_table(d, &grant_id, who, &labels)),
            _ => None,
        };
        // What the derived table weighs, counted against the workspace's quota.
        let weighed = match &derived {
            Some((_, location)) => weigh(&sandbox, location).await,
            None => Ok(0),
        };
        let derived_bytes = weighed.clone().unwrap_or_default();
        let quota = sandbox.workspace_quota();
        let (caller, grant) = (who.clone(), grant_id.clone());
        let stored = derived.clone();
        let recorded = self
            .in_scope(&scope, move |conn, scope, now| {
                if refund > 0.0 {
                    db::refund(conn, scope, &grant, refund)?;
                }
                // A derived table the workspace cannot take is refused, and its refusal
                // recorded with the rest: the outer result is the store's, the inner the rule's.
                let kept = match stored {
                    Some((table, location)) => {
                        let table = api::WorkspaceTable {
                            create_time: Some(timestamp(now)),
                            update_time: Some(timestamp(now)),
                            bytes: derived_bytes,
                            ..table
                        };
                        let room = weighed.map_err(|why| unweighed(&why)).and_then(|bytes| {
                            let replaced = room_for_derived(conn, scope, &table)?;
                            let (g, name) = (&table.grant_id, &table.name);
                            crate::workspace::within_quota(conn, scope, g, name, bytes, quota)?;
                            Ok(replaced)
                        });
                        match room {
                            Ok(replaced) => {
                                let new = replaced.is_none();
                                let place = crate::workspace::Place {
                                    operator: &caller.organization,
                                    location: &location,
                                };
                                let record = crate::workspace::record;
                                record(conn, scope, &caller, now, table, place, new)?;
                                Ok(replaced)
                            }
                            Err(refusal) => Err(refusal),
                        }
                    }
                    None => Ok(None),
                };
                let mut details = details;
                if let Err(refusal) = &kept {
                    details["refused"] = serde_json::Value::String(refusal.to_string());
                }
                let target = format!("grants/{grant}");
                audit(conn, scope, &caller, now, "query.ran", target, details)?;
                Ok(kept)
            })
            .await;
        match (&recorded, &derived) {
            // What the table replaced is removed once the replacement is recorded.
            (Ok(Ok(Some(old))), _) => {
                let _ = sandbox.delete_all(old).await;
            }
            // A table that was not recorded must not stay behind unnamed.
            (Ok(Err(_)) | Err(_), Some((_, location))) => {
                let _ = sandbox.delete_all(location).await;
            }
            _ => {}
        }
        recorded??;
        let mut out = api::QueryAnswer {
            epsilon_left: settings.grant_budget - (spent - refund),
            ..Default::default()
        };
        let answer = match outcome.map_err(engine_error)? {
            Outcome::Answer(answer) => answer,
            Outcome::Derived(_) => {
                out.derived = derived.map(|(table, _)| api::WorkspaceTable {
                    bytes: derived_bytes,
                    ..table
                });
                return Ok(out);
            }
        };
        Ok(answer_of(&answer, &out))
    }

    pub async fn sandbox_settings(
        &self,
        who: &Identity,
        tenant: &str,
    ) -> Result<api::SandboxSettings> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, |conn, scope, _| db::sandbox_settings(conn, scope))
            .await
    }

    pub async fn update_sandbox_settings(
        &self,
        who: &Identity,
        tenant: &str,
        settings: api::SandboxSettings,
    ) -> Result<api::SandboxSettings> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &Role::BUREAU, "setting disclosure control")?;
        let mut settings = settings;
        if settings.queries_per_minute == 0 {
            settings.queries_per_minute = db::DEFAULT_SANDBOX.queries_per_minute;
        }
        RequestError::check("settings", settings_violations(&settings))?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            db::put_sandbox_settings(conn, scope, &settings)?;
            let tenant = scope.tenant().to_string();
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::SANDBOX_SETTINGS_UPDATED,
                &tenant,
                &api::SandboxSettingsChanged {
                    tenant: tenant.clone(),
                    settings: Some(settings),
                },
            )?;
            Ok(settings)
        })
        .await
    }
}
