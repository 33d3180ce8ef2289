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
        deliverable -> Bool,
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

/// A product as this service delivers it.
#[derive(Debug, Clone)]
pub struct Deliverable {
    pub grant_id: String,
    pub form: i32,
    pub query: String,
    pub parameters: Vec<products::ApiParameter>,
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
            delivered_products::deliverable,
        ))
        .first::<(String, i32, String, String, bool)>(conn)
        .optional()?;
    row.map(|(grant_id, form, query, parameters, deliverable)| {
        Ok(Deliverable {
            grant_id,
            form,
            query,
            parameters: parameters_of(&parameters, product_id)?,
            deliverable,
        })
    })
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
