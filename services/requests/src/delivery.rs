//! Delivering products to their buyers (第二十四条): an API product's saved query, called by an
//! organization a trade entitles, answered under the sandbox's disclosure control on the grant the
//! product is built on — the data never leaves, only what passes the control. The products
//! service owns the products and the trades; this service keeps what it needs of them (the
//! query, the grant, the buyers' entitlements) because the data is here.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use pdp_kit::change::{instant, timestamp};
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::TenantCode;
use pdp_kit::identity::{Identity, Role};
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, TenantScope};
use pdp_proto::pdp::products::v1 as products;
use pdp_proto::pdp::requests::v1 as api;
use pdp_sandbox::{Rules, SandboxError, Table};
use prost::Message;

use crate::RequestError;
use crate::sandbox::{answer_of, audit, check_usable, engine_error, readable, within_rate};
use crate::service::Requests;
use crate::store as db;

type Result<T> = std::result::Result<T, RequestError>;

/// Who may call a product: whoever a trade entitles, which the entitlement decides.
const CALLERS: &[Role] = &[Role::Buyer, Role::Developer, Role::Operator];

const VALUE_MAX: usize = 200;

/// `query` with each `:name` replaced by the SQL literal of `values[name]`, checked against its
/// declared type; every missing, unknown or ill-typed value named at once.
pub fn bind(
    query: &str,
    parameters: &[products::ApiParameter],
    values: &BTreeMap<String, String>,
) -> std::result::Result<String, Vec<FieldViolation>> {
    let mut v = Vec::new();
    for name in values.keys() {
        if !parameters.iter().any(|p| &p.name == name) {
            v.push(FieldViolation::new(
                format!("parameters.{name}"),
                "the product has no such parameter",
            ));
        }
    }
    let mut literals = Vec::new();
    for p in parameters {
        let field = format!("parameters.{}", p.name);
        let Some(value) = values.get(&p.name) else {
            v.push(FieldViolation::new(field, "required"));
            continue;
        };
        match literal(p.r#type(), value) {
            Ok(l) => literals.push((p.name.clone(), l)),
            Err(rule) => v.push(FieldViolation::new(field, rule)),
        }
    }
    if !v.is_empty() {
        return Err(v);
    }
    // Longest names first, so that `:day` never replaces the start of `:day_to`.
    literals.sort_by_key(|l| std::cmp::Reverse(l.0.len()));
    let mut sql = query.to_string();
    for (name, lit) in literals {
        sql = replace_parameter(&sql, &name, &lit);
    }
    Ok(sql)
}

/// The SQL literal of `value` as a `ty`, or the rule it breaks.
fn literal(ty: products::ParameterType, value: &str) -> std::result::Result<String, String> {
    use products::ParameterType as T;
    match ty {
        T::Integer => value
            .trim()
            .parse::<i64>()
            .map(|n| n.to_string())
            .map_err(|_| "an integer".to_string()),
        T::Number => match value.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(format!("{x:?}")),
            _ => Err("a finite number".to_string()),
        },
        T::Date => NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
            .map(|d| format!("DATE '{d}'"))
            .map_err(|_| "a date, YYYY-MM-DD".to_string()),
        T::String | T::Unspecified => {
            if value.chars().count() > VALUE_MAX || value.chars().any(char::is_control) {
                Err(format!(
                    "at most {VALUE_MAX} characters, none a control character"
                ))
            } else {
                Ok(format!("'{}'", value.replace('\'', "''")))
            }
        }
    }
}

fn replace_parameter(sql: &str, name: &str, literal: &str) -> String {
    let needle = format!(":{name}");
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(&needle) {
        let after = &rest[at + needle.len()..];
        let whole = after
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        out.push_str(&rest[..at]);
        out.push_str(if whole { literal } else { &needle });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Keeps what a registered product needs to be delivered here (a dataset is computed at once,
/// then on its schedule), or forgets it when withdrawn.
pub fn follow_product(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    p: &products::ProductChanged,
    deliverable: bool,
    at: DateTime<Utc>,
) -> Result<()> {
    let grant = p.grant_ids.first().cloned().unwrap_or_default();
    db::delivery::put_product(conn, scope, p, &grant, deliverable)?;
    if deliverable && p.form == products::ProductForm::Dataset as i32 {
        db::delivery::schedule_refresh(conn, scope, &p.product_id, at)?;
    }
    Ok(())
}

/// Adds a recorded trade's entitlement to its buyer's.
pub fn follow_trade(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    t: &products::Trade,
) -> Result<()> {
    let e = t.entitlement.unwrap_or_default();
    let until = instant(e.valid_until.as_ref());
    db::delivery::add_entitlement(
        conn,
        scope,
        &t.product_id,
        &t.buyer_organization,
        e.calls.saturating_add(e.deliveries) as i64,
        until,
    )
}

/// What a reading of a grant's data for a product needs, once it is allowed and charged.
struct Reading {
    tables: Vec<Table>,
    secret: String,
    rules: Rules,
}

/// Allows and charges one reading of grant `grant_id` for a product: the grant usable now, within
/// the tenant's rate, its privacy budget charged one answer's ε (the caller refunds what the
/// answer did not spend).
fn reading(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
    now: DateTime<Utc>,
) -> Result<Reading> {
    let g = db::find_grant(conn, scope, grant_id)?
        .ok_or_else(|| RequestError::not_found("grant", grant_id))?;
    check_usable(conn, scope, &g, now)?;
    let settings = db::sandbox_settings(conn, scope)?;
    let (epsilon, budget) = (settings.epsilon_per_query, settings.grant_budget);
    let (secret, _) = within_rate(conn, scope, &g.id, &settings, now)?;
    if !db::charge(conn, scope, &g.id, epsilon, budget)? {
        return Err(RequestError::forbidden(
            "PRIVACY_BUDGET_SPENT",
            format!(
                "grant {grant_id}, which the product is built on, has spent its privacy budget: \
                 it answers nothing more"
            ),
        ));
    }
    let (tables, _) = readable(conn, scope, &g)?;
    Ok(Reading {
        tables,
        secret,
        rules: Rules {
            k: u64::from(settings.min_group_size),
            epsilon,
        },
    })
}

/// What of a reading's ε goes back to the grant: what the answer did not spend, or all of it when
/// nothing was read.
fn refund_of(
    outcome: &std::result::Result<pdp_sandbox::engine::Answer, SandboxError>,
    rules: Rules,
) -> f64 {
    match outcome {
        Ok(answer) => rules.epsilon - answer.epsilon_spent,
        Err(SandboxError::Refused(_) | SandboxError::Invalid(_) | SandboxError::Unreachable(_)) => {
            rules.epsilon
        }
        Err(_) => 0.0,
    }
}

impl Requests {
    /// Answers a call of API product `product_id` by an organization a trade entitles: its query
    /// with `values` bound, on the product's grant, under disclosure control, charged to the
    /// grant's privacy budget and to the buyer's calls; audited as a delivery.
    pub async fn call_product(
        &self,
        who: &Identity,
        tenant: &str,
        product_id: String,
        values: BTreeMap<String, String>,
    ) -> Result<api::QueryAnswer> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, CALLERS, "calling a product")?;
        let sandbox = self.sandbox()?.clone();
        let caller = who.clone();
        let product = product_id.clone();
        let (sql, grant_id, reading) = self
            .in_scope(&scope, move |conn, scope, now| {
                let Some(p) = db::delivery::product(conn, scope, &product)? else {
                    return Err(RequestError::not_found("product", &product));
                };
                if !p.deliverable || p.form != products::ProductForm::Api as i32 {
                    return Err(RequestError::precondition(
                        format!("products/{product}"),
                        "the product is no registered API product any more: nothing of it is \
                         delivered",
                    ));
                }
                let sql = bind(&p.query, &p.parameters, &values)
                    .map_err(|v| RequestError::invalid("call", v))?;
                if !db::delivery::use_entitlement(conn, scope, &product, &caller.organization, now)?
                {
                    return Err(RequestError::forbidden(
                        "NO_ENTITLEMENT",
                        format!(
                            "{} holds no entitlement to product {product} (calls left or a term \
                             running): buy it on a data exchange (第二十四条)",
                            caller.organization
                        ),
                    ));
                }
                let reading = reading(conn, scope, &p.grant_id, now)?;
                Ok((sql, p.grant_id, reading))
            })
            .await?;
        let outcome = sandbox
            .query(&reading.tables, &sql, reading.rules, &reading.secret)
            .await;
        let refund = refund_of(&outcome, reading.rules);
        let details = match &outcome {
            Ok(a) => serde_json::json!({
                "product": product_id, "grant": grant_id, "buyer": who.organization,
                "plan_hash": a.plan_hash, "groups": a.groups, "suppressed": a.suppressed,
                "epsilon": a.epsilon_spent,
            }),
            Err(e) => serde_json::json!({
                "product": product_id, "grant": grant_id, "buyer": who.organization,
                "refused": e.to_string(),
            }),
        };
        let caller = who.clone();
        let grant = grant_id.clone();
        let target = format!("products/{product_id}");
        self.in_scope(&scope, move |conn, scope, now| {
            if refund > 0.0 {
                db::refund(conn, scope, &grant, refund)?;
            }
            audit(
                conn,
                scope,
                &caller,
                now,
                "product.delivered",
                target,
                details,
            )
        })
        .await?;
        let answer = outcome.map_err(engine_error)?;
        Ok(answer_of(&answer, &api::QueryAnswer::default()))
    }
}

impl Requests {
    /// Computes the datasets that are due, each once whatever the replicas: its query on its
    /// grant under disclosure control, charged to the grant's budget, kept as the next version,
    /// audited. One that cannot be computed now (its grant unusable, its budget spent) waits for
    /// its next turn.
    pub async fn refresh_datasets(&self) -> Result<usize> {
        let Ok(sandbox) = self.sandbox().cloned() else {
            return Ok(0);
        };
        let now = self.clock().now();
        let due = self
            .store()
            .run(move |conn| db::delivery::due_refreshes(conn, now))
            .await?;
        let mut done = 0;
        for (tenant, product_id, was) in due {
            let Ok(tenant) = tenant.parse::<TenantCode>() else {
                continue;
            };
            let scope = TenantScope::system(tenant);
            let product = product_id.clone();
            let claimed = self
                .in_scope(&scope, move |conn, scope, now| {
                    let Some(p) = db::delivery::product(conn, scope, &product)? else {
                        return Ok(None);
                    };
                    let hours = i64::from(p.refresh_hours.clamp(1, 8760));
                    let next = now + Duration::hours(hours);
                    if !db::delivery::take_refresh(conn, &product, was, next)? {
                        return Ok(None);
                    }
                    // Claimed; a refusal here is the turn's outcome, kept with the claim.
                    Ok(Some(reading(conn, scope, &p.grant_id, now).map(|r| (p, r))))
                })
                .await?;
            let Some(prepared) = claimed else { continue };
            let (p, reading) = match prepared {
                Ok(ready) => ready,
                Err(refused) => {
                    tracing::info!(product = %product_id, %refused, "dataset not refreshed");
                    continue;
                }
            };
            let outcome = sandbox
                .query(&reading.tables, &p.query, reading.rules, &reading.secret)
                .await;
            let refund = refund_of(&outcome, reading.rules);
            let answer = outcome
                .as_ref()
                .ok()
                .map(|a| answer_of(a, &api::QueryAnswer::default()));
            let details = match &outcome {
                Ok(a) => serde_json::json!({
                    "product": product_id, "grant": p.grant_id, "plan_hash": a.plan_hash,
                    "groups": a.groups, "suppressed": a.suppressed, "epsilon": a.epsilon_spent,
                }),
                Err(e) => serde_json::json!({
                    "product": product_id, "grant": p.grant_id, "refused": e.to_string(),
                }),
            };
            let product = product_id.clone();
            self.in_scope(&scope, move |conn, scope, now| {
                if refund > 0.0 {
                    db::refund(conn, scope, &p.grant_id, refund)?;
                }
                if let Some(answer) = &answer {
                    db::delivery::add_dataset_version(
                        conn,
                        scope,
                        &product,
                        now,
                        &answer.encode_to_vec(),
                    )?;
                }
                pdp_kit::audit::record(
                    conn,
                    pdp_kit::audit::Action {
                        service: crate::SERVICE,
                        tenant: scope.tenant(),
                        actor: None,
                        action: "dataset.refreshed",
                        target: format!("products/{product}"),
                        time: now,
                        details,
                    },
                )?;
                Ok(())
            })
            .await?;
            done += 1;
        }
        Ok(done)
    }

    /// The latest computation of dataset `product_id` for an organization a trade entitles: one
    /// delivery of what it bought, audited.
    pub async fn fetch_dataset(
        &self,
        who: &Identity,
        tenant: &str,
        product_id: String,
    ) -> Result<api::DatasetDelivery> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, CALLERS, "fetching a dataset")?;
        let caller = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let deliverable = db::delivery::product(conn, scope, &product_id)?
                .filter(|p| p.deliverable && p.form == products::ProductForm::Dataset as i32);
            if deliverable.is_none() {
                return Err(RequestError::not_found("dataset product", &product_id));
            }
            let Some((version, at, body)) = db::delivery::latest_dataset(conn, scope, &product_id)?
            else {
                return Err(RequestError::unavailable(
                    "DATASET_NOT_COMPUTED",
                    format!("dataset {product_id} is being computed: try again shortly"),
                ));
            };
            let owner = &caller.organization;
            if !db::delivery::use_entitlement(conn, scope, &product_id, owner, now)? {
                return Err(RequestError::forbidden(
                    "NO_ENTITLEMENT",
                    format!(
                        "{owner} holds no entitlement to dataset {product_id} (deliveries left \
                         or a term running): buy it on a data exchange (第二十四条)"
                    ),
                ));
            }
            let answer = api::QueryAnswer::decode(body.as_slice())
                .map_err(|e| RequestError::Corrupt(format!("dataset {product_id}: {e}")))?;
            let details = serde_json::json!({
                "product": product_id, "buyer": owner, "version": version,
            });
            let target = format!("products/{product_id}");
            audit(
                conn,
                scope,
                &caller,
                now,
                "product.delivered",
                target,
                details,
            )?;
            Ok(api::DatasetDelivery {
                product_id,
                version: version as u32,
                compute_time: Some(timestamp(at.and_utc())),
                answer: Some(answer),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<products::ApiParameter> {
        let p = |name: &str, ty: products::ParameterType| products::ApiParameter {
            name: name.into(),
            r#type: ty as i32,
            description: String::new(),
        };
        vec![
            p("stop", products::ParameterType::String),
            p("day", products::ParameterType::Date),
            p("day_to", products::ParameterType::Date),
        ]
    }

    #[test]
    fn values_become_literals_of_their_type_and_quotes_cannot_escape() {
        let values: BTreeMap<String, String> = [
            ("stop", "S1' OR '1'='1"),
            ("day", "2026-11-30"),
            ("day_to", "2026-12-01"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sql = bind(
            "SELECT n FROM t WHERE stop = :stop AND d BETWEEN :day AND :day_to",
            &params(),
            &values,
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT n FROM t WHERE stop = 'S1'' OR ''1''=''1' AND d BETWEEN DATE '2026-11-30' \
             AND DATE '2026-12-01'"
        );
    }

    #[test]
    fn every_missing_unknown_or_ill_typed_value_is_named() {
        let values: BTreeMap<String, String> = [("day", "30/11/2026"), ("limit", "5")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let fields: Vec<String> = bind("x", &params(), &values)
            .unwrap_err()
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            [
                "parameters.limit",
                "parameters.stop",
                "parameters.day",
                "parameters.day_to"
            ]
        );
    }
}
