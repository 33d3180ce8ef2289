//! Tenant-scoped queries: every row carries its tenant, and a service reads and changes rows only
//! through a [`TenantScope`], so that forgetting the tenant filter is not something a query can do
//! by accident.
//!
//! A service declares which column holds the tenant ([`TenantTable`], usually with
//! [`tenant_table!`](crate::tenant_table)) and builds every query from `scope.rows(table)`. The
//! scope is made from the verified caller or, for scheduled work, named explicitly.

use diesel::dsl;
use diesel::expression::Expression;
use diesel::prelude::*;
use diesel::query_dsl::methods::FilterDsl;
use diesel::sql_types::Text;

use crate::identity::{Identity, TenantCode};

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
