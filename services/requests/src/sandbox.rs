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
    v
}

fn location(tenant: &str, resource_id: &str, load_id: &str) -> String {
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
fn audit(
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

/// The caller's own open load of `resource_id`; another's is NOT_FOUND.
fn own_load(
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

fn engine_error(e: SandboxError) -> RequestError {
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
        SandboxError::Engine(m) => RequestError::Corrupt(format!("the sandbox failed: {m}")),
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
        let mut v = Vec::new();
        if lines.is_empty() || lines.len() > MAX_LINES {
            v.push(FieldViolation::new(
                "lines",
                format!("from 1 to {MAX_LINES} lines"),
            ));
        }
        // One line per item: a line break inside one would carry more lines than the bound.
        let broken = |text: &str| text.contains(['\n', '\r']);
        if broken(&header) {
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
        RequestError::check("load", v)?;
        let reader = who.clone();
        let (resource, id2) = (resource_id.clone(), id.clone());
        let (load, fields) = self
            .in_scope(&scope, move |conn, scope, _| {
                let load = own_load(conn, scope, &reader, &resource, &id2)?;
                let facts = db::resources(conn, scope, std::slice::from_ref(&resource))?
                    .remove(&resource)
                    .ok_or_else(|| RequestError::not_found("resource", &resource))?;
                let fields: Vec<Field> = facts
                    .fields
                    .iter()
                    .map(|(name, personal)| Field {
                        name: name.clone(),
                        kind: facts.kinds.get(name).cloned().unwrap_or_default(),
                        personal: *personal,
                    })
                    .collect();
                Ok((load, fields))
            })
            .await?;
        let mut csv = header;
        for line in &lines {
            csv.push('\n');
            csv.push_str(line);
        }
        csv.push('\n');
        // Named apart, so that two chunks appended at once never overwrite each other.
        let part = format!(
            "{}part-{}.parquet",
            location(scope.tenant().as_str(), &resource_id, &id),
            Uuid::now_v7()
        );
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

    /// Runs `sql` on the resources `grant_id` names, as they were last loaded.
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
        // Checked and charged before the engine runs, so that parallel queries cannot overspend.
        let (tables, secret, spent, settings) = self
            .in_scope(&scope, move |conn, scope, now| {
                let g = db::find_grant(conn, scope, &grant)?
                    .filter(|g| g.operator == caller.organization)
                    .ok_or_else(|| RequestError::not_found("grant", &grant))?;
                let today = civil_date(now).to_string();
                let active = db::agreement(conn, scope, &g.agreement_id)?.is_some_and(|a| a.active);
                let valid = g.state == api::GrantState::Valid as i32
                    && g.valid_from <= today
                    && today <= g.valid_to;
                if !valid || !active {
                    return Err(RequestError::precondition(
                        format!("grants/{grant}"),
                        format!(
                            "grant {grant} allows nothing on {today}: it runs {}..{}, is {}, and \
                             its agreement is {}",
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
                let settings = db::sandbox_settings(conn, scope)?;
                let (epsilon, budget) = (settings.epsilon_per_query, settings.grant_budget);
                let fresh = format!("{:032x}", rand::random::<u128>());
                let (secret, spent) = db::budget(conn, scope, &grant, &fresh)?;
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
                let ids: Vec<String> = g.resources.iter().map(|r| r.resource_id.clone()).collect();
                let facts = db::resources(conn, scope, &ids)?;
                let mut tables = Vec::new();
                for granted in &g.resources {
                    // A resource not loaded yet is no table yet: a query naming it is told so.
                    let Some(load) = db::current_load(conn, scope, &granted.resource_id)? else {
                        continue;
                    };
                    let personal = facts
                        .get(&granted.resource_id)
                        .map(|f| {
                            f.fields
                                .iter()
                                .filter(|(name, personal)| {
                                    **personal && granted.fields.contains(name)
                                })
                                .map(|(name, _)| name.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    tables.push(Table {
                        name: granted.resource_id.clone(),
                        location: location(scope.tenant().as_str(), &granted.resource_id, &load.id),
                        fields: granted.fields.clone(),
                        masked: granted.masked_fields.clone(),
                        personal,
                    });
                }
                Ok((tables, secret, spent + epsilon, settings))
            })
            .await?;
        let rules = Rules {
            k: u64::from(settings.min_group_size),
            epsilon: settings.epsilon_per_query,
        };
        let outcome = sandbox.query(&tables, &sql, rules, &secret).await;
        let who = who.clone();
        let refund = match &outcome {
            Ok(answer) => rules.epsilon - answer.epsilon_spent,
            Err(_) => rules.epsilon,
        };
        let details = match &outcome {
            Ok(a) => serde_json::json!({
                "grant": grant_id, "sql": sql, "plan_hash": a.plan_hash,
                "fields": a.fields_touched, "groups": a.groups, "suppressed": a.suppressed,
                "epsilon": a.epsilon_spent,
            }),
            Err(e) => serde_json::json!({"grant": grant_id, "sql": sql, "refused": e.to_string()}),
        };
        let grant = grant_id.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            if refund > 0.0 {
                db::refund(conn, scope, &grant, refund)?;
            }
            audit(
                conn,
                scope,
                &who,
                now,
                "query.ran",
                format!("grants/{grant}"),
                details,
            )
        })
        .await?;
        let answer = outcome.map_err(engine_error)?;
        let mut out = api::QueryAnswer {
            suppressed_groups: answer.suppressed,
            plan_hash: answer.plan_hash.clone(),
            epsilon_spent: answer.epsilon_spent,
            epsilon_left: settings.grant_budget - (spent - refund),
            ..Default::default()
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
        Ok(out)
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
