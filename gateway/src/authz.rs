//! Authorization with casbin: RBAC with domains (domain = tenant) over operations and actions.
//! Deny unless a policy allows.
//!
//! A token's roles hold in its own tenant. The provincial bureau also holds `supervision` in every
//! city, which the policy lets read (R-ROLE-1); a city's users hold nothing outside their city
//! (R-TEN-4). The public holds `public` everywhere. These groupings come from the tenant list, so
//! the policy file names only roles.

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};
use pdp_kit::identity::{Identity, TenantCode};
use std::sync::RwLock;

use crate::tenants::Tenants;
use crate::{Action, Authorizer};

pub const MODEL: &str = include_str!("../policy/model.conf");
pub const DEV_POLICY: &str = include_str!("../policy/policy.csv");

/// The roles pdp knows.
pub const ROLES: &[&str] = &[
    "provincial_bureau",
    "city_bureau",
    "provider",
    "operator",
    "developer",
    "supervisor",
    "auditor",
];

pub struct CasbinAuthorizer {
    enforcer: RwLock<Enforcer>,
}

impl std::fmt::Debug for CasbinAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CasbinAuthorizer")
    }
}

fn subject(role: &str, home: &TenantCode) -> String {
    format!("{role}@{home}")
}

impl CasbinAuthorizer {
    /// An enforcer over `policy` (CSV lines), with the groupings of `tenants`.
    pub async fn new(policy: &str, tenants: &Tenants) -> Result<Self, casbin::Error> {
        let model = DefaultModel::from_str(MODEL).await?;
        let mut lines = vec![policy.to_string()];
        for tenant in tenants.all() {
            for role in ROLES {
                lines.push(format!(
                    "g, {}, {role}, {}",
                    subject(role, &tenant.code),
                    tenant.code
                ));
            }
            lines.push(format!("g, public, public, {}", tenant.code));
        }
        for city in tenants.cities() {
            lines.push(format!(
                "g, {}, supervision, {}",
                subject("provincial_bureau", tenants.province()),
                city.code
            ));
        }
        let enforcer = Enforcer::new(model, StringAdapter::new(lines.join("\n"))).await?;
        Ok(Self {
            enforcer: RwLock::new(enforcer),
        })
    }
}

impl Authorizer for CasbinAuthorizer {
    fn allows(
        &self,
        caller: Option<&Identity>,
        tenant: &TenantCode,
        operation: &str,
        action: Action,
    ) -> bool {
        let enforcer = self.enforcer.read().expect("policy lock");
        let act = action.as_str();
        let subjects: Vec<String> = match caller {
            None => vec!["public".to_string()],
            Some(identity) => identity
                .roles
                .iter()
                .map(|role| subject(role, &identity.tenant))
                .collect(),
        };
        subjects.iter().any(|sub| {
            enforcer
                .enforce((sub.as_str(), tenant.as_str(), operation, act))
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "policy evaluation failed; denying");
                    false
                })
        })
    }
}
