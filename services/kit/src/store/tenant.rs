//! Tenant-scoped queries: every row carries its tenant, and a service reads and changes rows only
//! through a [`TenantScope`], so that forgetting the tenant filter is not something a query can do
//! by accident.
//!
//! A service declares which column holds the tenant ([`TenantTable`], usually with
//! [`tenant_table!`](crate::tenant_table)) and builds every query from `scope.rows(table)`. The
//! scope is made from the verified caller or, for scheduled work, named explicitly.
//!
//! In PostgreSQL the database enforces it too: a service's migration turns each tenant table into
//! a view with `SELECT pdp_isolate_tenant('<table>')`, and the view raises on any query made in a
//! transaction that did not [`enter`](TenantScope::enter) a scope — an unscoped query fails loudly
//! instead of returning another tenant's rows, and a row written for another tenant is refused.
//! The contract suites run every test on PostgreSQL as well, so a query that forgot its scope
//! fails there even though SQLite (dev) has no such guard.

use diesel::dsl;
use diesel::expression::Expression;
use diesel::prelude::*;
use diesel::query_dsl::methods::FilterDsl;
use diesel::sql_types::Text;

use crate::identity::{Identity, TenantCode};
use crate::store::AnyConnection;

/// The tenant a unit of work acts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    tenant: TenantCode,
}

impl TenantScope {
    /// The scope of a verified caller.
    pub fn of(identity: &Identity) -> Self {
        Self {
            tenant: identity.tenant.clone(),
        }
    }

    /// The scope of work that no caller started (schedulers, event handlers): the tenant comes
    /// from the event or the row being processed.
    pub fn system(tenant: TenantCode) -> Self {
        Self { tenant }
    }

    pub fn tenant(&self) -> &TenantCode {
        &self.tenant
    }

    /// Makes this the tenant of the current transaction (PostgreSQL's `pdp.tenant` setting, which
    /// the isolation views read). Call it inside a transaction: the setting ends with it.
    pub fn enter(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        if let AnyConnection::Postgresql(pg) = conn {
            diesel::sql_query("SELECT set_config('pdp.tenant', $1, true)")
                .bind::<Text, _>(self.tenant.as_str())
                .execute(pg)?;
        }
        Ok(())
    }

    /// The rows of `table` that belong to this tenant: the starting point of every query,
    /// update and delete of a tenant table.
    pub fn rows<T>(&self, table: T) -> dsl::Filter<T, dsl::Eq<T::Tenant, String>>
    where
        T: TenantTable + FilterDsl<dsl::Eq<T::Tenant, String>>,
    {
        table.filter(T::Tenant::default().eq(self.tenant.to_string()))
    }
}

/// A table whose rows belong to a tenant.
pub trait TenantTable: Table {
    type Tenant: Column<Table = Self> + Expression<SqlType = Text> + ExpressionMethods + Default;
}

/// Declares the tenant column of a diesel table: `tenant_table!(plans::table, plans::tenant);`
#[macro_export]
macro_rules! tenant_table {
    ($table:path, $column:path) => {
        impl $crate::store::TenantTable for $table {
            type Tenant = $column;
        }
    };
}
