//! Tenant-scoped queries: every row carries its tenant, and a service reads and changes rows only
//! through a [`TenantScope`], so that forgetting the tenant filter is not something a query can do
//! by accident.
//!
//! A service declares which column holds the tenant ([`TenantTable`], usually with
//! [`tenant_table!`](crate::tenant_table)) and builds every query from `scope.rows(table)`. The
//! scope is made from the verified caller and the tenant its call names ([`TenantScope::for_call`])
//! or, for scheduled work, named explicitly ([`TenantScope::system`]).
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

/// The tenant a unit of work acts in, and whether it only reads (which the store may serve from
/// a read-only connection, outside a transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    tenant: TenantCode,
    access: Access,
}

/// What a call does in a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Why a caller may not act in the tenant a call names.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("tenant: {0}")]
    Invalid(#[from] crate::identity::InvalidTenantCode),
    #[error(
        "a caller of tenant {home} may not act in tenant {requested}: only the province's callers \
         read other tenants, and nobody writes in another tenant"
    )]
    OtherTenant {
        home: TenantCode,
        requested: TenantCode,
    },
}

impl crate::error::ServiceError for ScopeError {
    fn code(&self) -> crate::error::ErrorCode {
        match self {
            Self::Invalid(_) => crate::error::ErrorCode::InvalidArgument,
            Self::OtherTenant { .. } => crate::error::ErrorCode::PermissionDenied,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "INVALID_TENANT",
            Self::OtherTenant { .. } => "OTHER_TENANT",
        }
    }
}

impl TenantScope {
    /// The scope of a call that names `requested` (the tenant of its path). The gateway has
    /// authorized it already; the service checks the tenancy rule again rather than trust that
    /// every route is covered: a caller acts in its own tenant, and the province's callers may
    /// also read a city's (supervision, R-TEN-4).
    pub fn for_call(
        identity: &Identity,
        requested: &str,
        access: Access,
    ) -> Result<Self, ScopeError> {
        let requested: TenantCode = requested.parse()?;
        let allowed = identity.tenant == requested
            || (identity.tenant.is_province() && access == Access::Read);
        if allowed {
            Ok(Self {
                tenant: requested,
                access,
            })
        } else {
            Err(ScopeError::OtherTenant {
                home: identity.tenant.clone(),
                requested,
            })
        }
    }

    /// The scope of work that no caller started (schedulers, event handlers): the tenant comes
    /// from the event or the row being processed.
    pub fn system(tenant: TenantCode) -> Self {
        Self {
            tenant,
            access: Access::Write,
        }
    }

    /// The scope of work no caller started that only reads (counting for the gauges).
    pub fn system_read(tenant: TenantCode) -> Self {
        Self {
            tenant,
            access: Access::Read,
        }
    }

    pub fn tenant(&self) -> &TenantCode {
        &self.tenant
    }

    pub fn access(&self) -> Access {
        self.access
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

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(tenant: &str) -> Identity {
        Identity {
            subject: "u".into(),
            organization: "o".into(),
            roles: vec!["city_bureau".into()],
            tenant: tenant.parse().unwrap(),
            division: None,
        }
    }

    #[test]
    fn a_caller_acts_in_its_own_tenant() {
        let scope = TenantScope::for_call(&caller("230100"), "230100", Access::Write).unwrap();
        assert_eq!(scope.tenant().as_str(), "230100");
    }

    #[test]
    fn the_province_reads_a_city_but_does_not_write_there() {
        let province = caller("230000");
        let scope = TenantScope::for_call(&province, "230200", Access::Read).unwrap();
        assert_eq!(scope.tenant().as_str(), "230200");
        assert!(matches!(
            TenantScope::for_call(&province, "230200", Access::Write),
            Err(ScopeError::OtherTenant { .. })
        ));
    }

    #[test]
    fn a_city_reads_nothing_of_another_city_or_the_province() {
        let harbin = caller("230100");
        for other in ["230200", "230000"] {
            assert!(matches!(
                TenantScope::for_call(&harbin, other, Access::Read),
                Err(ScopeError::OtherTenant { .. })
            ));
        }
        assert!(matches!(
            TenantScope::for_call(&harbin, "23x", Access::Read),
            Err(ScopeError::Invalid(_))
        ));
    }
}
