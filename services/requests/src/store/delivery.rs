//! What this service keeps of products to deliver them (the products service owns them): each
//! registered product's query and grant, and each buyer's entitlement.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::tenant_table;
use pdp_proto::pdp::products::v1 as products;

use super::Result;
use crate::RequestError;

diesel::table! {
    delivered_products (tenant, product_id) {
        tenant -> Text,
        product_id -> Text,
        operator -> Text,
        grant_id -> Text,
        form -> Integer,
        query -> Text,
        parameters -> Text,
        refresh_hours -> Integer,
        deliverable -> Bool,
    }
}

diesel::table! {
    dataset_versions (tenant, product_id, version) {
        tenant -> Text,
        product_id -> Text,
        version -> Integer,
        computed_at -> Timestamp,
        body -> Binary,
    }
}

diesel::table! {
    dataset_refreshes (product_id) {
        product_id -> Text,
        tenant -> Text,
        due_at -> Timestamp,
    }
}

diesel::table! {
    entitlements (tenant, product_id, buyer) {
        tenant -> Text,
        product_id -> Text,
        buyer -> Text,
        calls_left -> BigInt,
        valid_until -> Nullable<Timestamp>,
    }
}

tenant_table!(delivered_products::table, delivered_products::tenant);
tenant_table!(entitlements::table, entitlements::tenant);
tenant_table!(dataset_versions::table, dataset_versions::tenant);

/// A product as this service delivers it.
#[derive(Debug, Clone)]
pub struct Deliverable {
    pub grant_id: String,
    pub form: i32,
    pub query: String,
    pub parameters: Vec<products::ApiParameter>,
    pub refresh_hours: u32,
    pub deliverable: bool,
}

fn parameters_json(parameters: &[products::ApiParameter]) -> String {
    let items: Vec<serde_json::Value> = parameters
        .iter()
        .map(|p| serde_json::json!({"name": p.name, "type": p.r#type}))
        .collect();
    serde_json::Value::Array(items).to_string()
}

fn parameters_of(text: &str, product_id: &str) -> Result<Vec<products::ApiParameter>> {
    let corrupt = || RequestError::Corrupt(format!("delivered_products/{product_id}: parameters"));
    let items: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|_| corrupt())?;
    items
        .iter()
        .map(|i| {
            Ok(products::ApiParameter {
                name: i["name"].as_str().ok_or_else(corrupt)?.to_string(),
                r#type: i["type"].as_i64().ok_or_else(corrupt)? as i32,
                description: String::new(),
            })
        })
        .collect()
}

pub fn put_product(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    p: &products::ProductChanged,
    grant_id: &str,
    deliverable: bool,
) -> Result<()> {
    let rows = scope
        .rows(delivered_products::table)
        .filter(delivered_products::product_id.eq(&p.product_id));
    if !deliverable {
        diesel::update(rows)
            .set(delivered_products::deliverable.eq(false))
            .execute(conn)?;
        diesel::delete(
            dataset_refreshes::table.filter(dataset_refreshes::product_id.eq(&p.product_id)),
        )
        .execute(conn)?;
        return Ok(());
    }
    diesel::delete(rows).execute(conn)?;
    diesel::insert_into(delivered_products::table)
        .values((
            delivered_products::tenant.eq(scope.tenant().as_str()),
            delivered_products::product_id.eq(&p.product_id),
            delivered_products::operator.eq(&p.operator),
            delivered_products::grant_id.eq(grant_id),
            delivered_products::form.eq(p.form),
            delivered_products::query.eq(&p.query),
            delivered_products::parameters.eq(parameters_json(&p.parameters)),
            delivered_products::refresh_hours.eq(p.refresh_hours as i32),
            delivered_products::deliverable.eq(true),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn product(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    product_id: &str,
) -> Result<Option<Deliverable>> {
    let row = scope
        .rows(delivered_products::table)
        .filter(delivered_products::product_id.eq(product_id))
        .select((
            delivered_products::grant_id,
            delivered_products::form,
            delivered_products::query,
            delivered_products::parameters,
            delivered_products::refresh_hours,
            delivered_products::deliverable,
        ))
        .first::<(String, i32, String, String, i32, bool)>(conn)
        .optional()?;
    row.map(
        |(grant_id, form, query, parameters, refresh_hours, deliverable)| {
            Ok(Deliverable {
                grant_id,
                form,
                query,
                parameters: parameters_of(&parameters, product_id)?,
                refresh_hours: refresh_hours.max(0) as u32,
                deliverable,
            })
        },
    )
    .transpose()
}

/// Adds `calls` and a term until `until` to `buyer`'s entitlement to `product_id`.
pub fn add_entitlement(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    product_id: &str,
    buyer: &str,
    calls: i64,
    until: Option<DateTime<Utc>>,
) -> Result<()> {
    let rows = || {
        scope
            .rows(entitlements::table)
            .filter(entitlements::product_id.eq(product_id))
            .filter(entitlements::buyer.eq(buyer))
    };
    let held = rows()
        .select((entitlements::calls_left, entitlements::valid_until))
        .first::<(i64, Option<chrono::NaiveDateTime>)>(conn)
        .optional()?;
    let until = until.map(|u| u.naive_utc());
    match held {
        Some((left, held_until)) => {
            let later = held_until.max(until);
            diesel::update(rows())
                .set((
                    entitlements::calls_left.eq(left + calls),
                    entitlements::valid_until.eq(later),
                ))
                .execute(conn)?;
        }
        None => {
            diesel::insert_into(entitlements::table)
                .values((
                    entitlements::tenant.eq(scope.tenant().as_str()),
                    entitlements::product_id.eq(product_id),
                    entitlements::buyer.eq(buyer),
                    entitlements::calls_left.eq(calls),
                    entitlements::valid_until.eq(until),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Uses `buyer`'s entitlement to one call of `product_id` at `now`: a running term allows it, or
/// one call left is taken, in one statement so that parallel calls never take the same one.
pub fn use_entitlement(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    product_id: &str,
    buyer: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let rows = || {
        scope
            .rows(entitlements::table)
            .filter(entitlements::product_id.eq(product_id))
            .filter(entitlements::buyer.eq(buyer))
    };
    let term = rows()
        .filter(entitlements::valid_until.gt(now.naive_utc()))
        .count()
        .get_result::<i64>(conn)?;
    if term > 0 {
        return Ok(true);
    }
    let taken = diesel::update(rows().filter(entitlements::calls_left.gt(0)))
        .set(entitlements::calls_left.eq(entitlements::calls_left - 1))
        .execute(conn)?;
    Ok(taken == 1)
}

// --- datasets ----------------------------------------------------------------------------------

/// Computes dataset `product_id` at `due` (and on its schedule after).
pub fn schedule_refresh(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    product_id: &str,
    due: DateTime<Utc>,
) -> Result<()> {
    diesel::delete(dataset_refreshes::table.filter(dataset_refreshes::product_id.eq(product_id)))
        .execute(conn)?;
    diesel::insert_into(dataset_refreshes::table)
        .values((
            dataset_refreshes::product_id.eq(product_id),
            dataset_refreshes::tenant.eq(scope.tenant().as_str()),
            dataset_refreshes::due_at.eq(due.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Datasets due by `now`, across tenants: (tenant, product id, when it was due).
pub fn due_refreshes(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String, chrono::NaiveDateTime)>> {
    Ok(dataset_refreshes::table
        .filter(dataset_refreshes::due_at.le(now.naive_utc()))
        .order(dataset_refreshes::due_at)
        .select((
            dataset_refreshes::tenant,
            dataset_refreshes::product_id,
            dataset_refreshes::due_at,
        ))
        .load(conn)?)
}

/// Takes the refresh of `product_id` that was due at `was`, moving it to `next`; `false` when
/// another replica took it first.
pub fn take_refresh(
    conn: &mut AnyConnection,
    product_id: &str,
    was: chrono::NaiveDateTime,
    next: DateTime<Utc>,
) -> Result<bool> {
    let n = diesel::update(
        dataset_refreshes::table
            .filter(dataset_refreshes::product_id.eq(product_id))
            .filter(dataset_refreshes::due_at.eq(was)),
    )
    .set(dataset_refreshes::due_at.eq(next.naive_utc()))
    .execute(conn)?;
    Ok(n == 1)
}

/// Keeps a new computation of dataset `product_id`; answers its version.
pub fn add_dataset_version(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    product_id: &str,
    at: DateTime<Utc>,
    body: &[u8],
) -> Result<u32> {
    let last = scope
        .rows(dataset_versions::table)
        .filter(dataset_versions::product_id.eq(product_id))
        .select(diesel::dsl::max(dataset_versions::version))
        .first::<Option<i32>>(conn)?
        .unwrap_or(0);
    diesel::insert_into(dataset_versions::table)
        .values((
            dataset_versions::tenant.eq(scope.tenant().as_str()),
            dataset_versions::product_id.eq(product_id),
            dataset_versions::version.eq(last + 1),
            dataset_versions::computed_at.eq(at.naive_utc()),
            dataset_versions::body.eq(body),
        ))
        .execute(conn)?;
    Ok((last + 1) as u32)
}

/// Every computed dataset of the products built on `grant_ids`: (product, version, the encoded
/// answer).
pub fn datasets_of_grants(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_ids: &[String],
) -> Result<Vec<(String, i32, Vec<u8>)>> {
    let products: Vec<String> = scope
        .rows(delivered_products::table)
        .filter(delivered_products::grant_id.eq_any(grant_ids))
        .select(delivered_products::product_id)
        .load(conn)?;
    Ok(scope
        .rows(dataset_versions::table)
        .filter(dataset_versions::product_id.eq_any(products))
        .order((dataset_versions::product_id, dataset_versions::version))
        .select((
            dataset_versions::product_id,
            dataset_versions::version,
            dataset_versions::body,
        ))
        .load(conn)?)
}

/// Removes every computed dataset of `product_ids`.
pub fn delete_datasets(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    product_ids: &[String],
) -> Result<usize> {
    Ok(diesel::delete(
        scope
            .rows(dataset_versions::table)
            .filter(dataset_versions::product_id.eq_any(product_ids)),
    )
    .execute(conn)?)
}

/// The latest computation of dataset `product_id`: (version, when, the encoded answer).
pub fn latest_dataset(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    product_id: &str,
) -> Result<Option<(i32, chrono::NaiveDateTime, Vec<u8>)>> {
    Ok(scope
        .rows(dataset_versions::table)
        .filter(dataset_versions::product_id.eq(product_id))
        .order(dataset_versions::version.desc())
        .select((
            dataset_versions::version,
            dataset_versions::computed_at,
            dataset_versions::body,
        ))
        .first(conn)
        .optional()?)
}
