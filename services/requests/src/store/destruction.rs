//! Destructions termination ordered: the case, the agreement whose data goes, and the inventory
//! taken before the first object was deleted.

use diesel::prelude::*;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::tenant_table;
use pdp_proto::pdp::requests::v1 as api;
use prost::Message;

use super::Result;
use crate::RequestError;

diesel::table! {
    destructions (case_id) {
        case_id -> Text,
        tenant -> Text,
        agreement_id -> Text,
        inventory -> Nullable<Binary>,
    }
}

tenant_table!(destructions::table, destructions::tenant);

/// Orders the destruction of case `case_id` (once, however often the order arrives).
pub fn order(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    case_id: &str,
    agreement_id: &str,
) -> Result<bool> {
    if find(conn, scope, case_id)?.is_some() {
        return Ok(false);
    }
    diesel::insert_into(destructions::table)
        .values((
            destructions::case_id.eq(case_id),
            destructions::tenant.eq(scope.tenant().as_str()),
            destructions::agreement_id.eq(agreement_id),
        ))
        .execute(conn)?;
    Ok(true)
}

/// The ordered destruction: its agreement and the inventory taken, if any.
pub fn find(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    case_id: &str,
) -> Result<Option<(String, Option<api::OperatorDataDestroyed>)>> {
    let row: Option<(String, Option<Vec<u8>>)> = scope
        .rows(destructions::table)
        .filter(destructions::case_id.eq(case_id))
        .select((destructions::agreement_id, destructions::inventory))
        .first(conn)
        .optional()?;
    row.map(|(agreement, inventory)| {
        let inventory = inventory
            .map(|b| api::OperatorDataDestroyed::decode(b.as_slice()))
            .transpose()
            .map_err(|e| RequestError::Corrupt(format!("destructions/{case_id}: {e}")))?;
        Ok((agreement, inventory))
    })
    .transpose()
}

/// Keeps the inventory, unless one was kept already (it listed the objects before any went).
pub fn keep_inventory(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    case_id: &str,
    inventory: &api::OperatorDataDestroyed,
) -> Result<api::OperatorDataDestroyed> {
    if let Some((_, Some(kept))) = find(conn, scope, case_id)? {
        return Ok(kept);
    }
    diesel::update(
        scope
            .rows(destructions::table)
            .filter(destructions::case_id.eq(case_id)),
    )
    .set(destructions::inventory.eq(Some(inventory.encode_to_vec())))
    .execute(conn)?;
    Ok(inventory.clone())
}
