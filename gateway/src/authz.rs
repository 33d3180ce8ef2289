//! Authorization with casbin: RBAC with domains (domain = tenant) over operations and actions.
//! Deny unless a policy allows.
//!
//! A token's roles hold in its own tenant. The provincial bureau also holds `supervision` in every
//! city, which the policy lets read (R-ROLE-1); a city's users hold nothing outside their city
//! (R-TEN-4). The public holds `public` everywhere. These groupings come from the tenant list, so
//! the policy file names only roles.

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};
use pdp_kit::identity::{Identity, Role, TenantCode};
use std::collections::HashMap;
use std::sync::RwLock;

use crate::tenants::Tenants;
use crate::{Action, Authorizer};

pub const MODEL: &str = include_str!("../policy/model.conf");
pub const DEV_POLICY: &str = include_str!("../policy/policy.csv");

/// The roles pdp knows.

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error(transparent)]
    Casbin(#[from] casbin::Error),
}

/// Each rule is `p, role, tenant, operation, action`; groupings are derived, never written.
fn check(policy: &str) -> Result<(), PolicyError> {
    for (i, line) in policy.lines().enumerate() {
        let line_no = i + 1;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        let reason = if fields[0] != "p" {
            Some(
                "only `p` rules belong in a policy; role groupings come from the tenant list"
                    .to_string(),
            )
        } else if fields.len() != 5 {
            Some("a rule has five fields: p, role, tenant, operation, action".to_string())
        } else if !["read", "write", "*"].contains(&fields[4]) {
            Some("the action is read, write or *".to_string())
        } else if Role::parse(fields[1]).is_none() {
            Some(format!(
                "`{}` is not a role; the roles are {}",
                fields[1],
                Role::ALL.map(Role::as_str).join(", ")
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(PolicyError::Line {
                line: line_no,
                reason,
            });
        }
    }
    Ok(())
}

/// The role an operator's organization holds in a tenant while it has an active agreement there
/// (granted by [`crate::grants`], never by a token).
pub const AUTHORIZED_OPERATOR: &str = Role::AuthorizedOperator.as_str();

pub struct CasbinAuthorizer {
    enforcer: RwLock<Enforcer>,
    tenants: Tenants,
    /// (tenant, organization) pairs with an active agreement.
    grants: RwLock<crate::grants::Grants>,
    /// Decisions already made, by (subject, tenant, operation, action): the policy is small and
    /// changes rarely, while every request asks. Emptied on reload.
    decisions: RwLock<HashMap<DecisionKey, bool>>,
}

/// (subject, tenant, operation, action)
type DecisionKey = (String, String, String, &'static str);

/// Enough for every role × tenant × operation pdp will have; past it the cache starts over.
const MAX_CACHED_DECISIONS: usize = 100_000;

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
    pub async fn new(policy: &str, tenants: &Tenants) -> Result<Self, PolicyError> {
        let enforcer = Self::enforcer(policy, tenants).await?;
        pdp_kit::telemetry::metrics::loaded("policy");
        Ok(Self {
            enforcer: RwLock::new(enforcer),
            tenants: tenants.clone(),
            grants: RwLock::new(Default::default()),
            decisions: RwLock::new(HashMap::new()),
        })
    }

    /// Replaces the organizations authorized by active agreements.
    pub fn set_grants(&self, grants: crate::grants::Grants) {
        pdp_kit::telemetry::metrics::loaded("grants");
        let mut current = self.grants.write().expect("grants lock");
        if *current != grants {
            tracing::info!(grants = grants.len(), "authorizations by agreement changed");
            *current = grants;
        }
    }

    /// Whether `identity`'s organization holds an active agreement in `tenant`.
    fn granted(&self, identity: &Identity, tenant: &TenantCode) -> bool {
        identity.tenant == *tenant
            && identity.has(Role::Operator)
            && self
                .grants
                .read()
                .expect("grants lock")
                .contains(&(tenant.to_string(), identity.organization.clone()))
    }

    /// Swaps in a new policy; a policy that does not load leaves the old one in force.
    pub async fn reload(&self, policy: &str) -> Result<(), PolicyError> {
        let fresh = Self::enforcer(policy, &self.tenants).await?;
        *self.enforcer.write().expect("policy lock") = fresh;
        pdp_kit::telemetry::metrics::loaded("policy");
        self.decisions.write().expect("decision lock").clear();
        Ok(())
    }

    async fn enforcer(policy: &str, tenants: &Tenants) -> Result<Enforcer, PolicyError> {
        check(policy)?;
        let model = DefaultModel::from_str(MODEL).await?;
        let mut lines = vec![policy.to_string()];
        for tenant in tenants.all() {
            for role in Role::ISSUED
                .iter()
                .chain([&Role::AuthorizedOperator])
                .map(|r| r.as_str())
            {
                lines.push(format!(
                    "g, {}, {role}, {}",
                    subject(role, &tenant.code),
                    tenant.code
                ));
            }
            let public = Role::Public;
            lines.push(format!("g, {public}, {public}, {}", tenant.code));
        }
        for city in tenants.cities() {
            lines.push(format!(
                "g, {}, {}, {}",
                subject(Role::ProvincialBureau.as_str(), tenants.province()),
                Role::Supervision,
                city.code
            ));
        }
        Ok(Enforcer::new(model, StringAdapter::new(lines.join("\n"))).await?)
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
            None => vec![Role::Public.to_string()],
            Some(identity) => identity
                .roles
                .iter()
                // Only an agreement grants it: a token that claims it gets nothing by it.
                .filter(|role| *role != AUTHORIZED_OPERATOR)
                .map(|role| subject(role, &identity.tenant))
                .chain(
                    self.granted(identity, tenant)
                        .then(|| subject(AUTHORIZED_OPERATOR, &identity.tenant)),
                )
                // What anyone may do, a caller with a token may do too.
                .chain(std::iter::once(Role::Public.to_string()))
                .collect(),
        };
        subjects.iter().any(|sub| {
            let key = (sub.clone(), tenant.to_string(), operation.to_string(), act);
            if let Some(decided) = self.decisions.read().expect("decision lock").get(&key) {
                return *decided;
            }
            let decided = enforcer
                .enforce((sub.as_str(), tenant.as_str(), operation, act))
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "policy evaluation failed; denying");
                    false
                });
            let mut decisions = self.decisions.write().expect("decision lock");
            if decisions.len() >= MAX_CACHED_DECISIONS {
                decisions.clear();
            }
            decisions.insert(key, decided);
            decided
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_the_shipped_policy_names_is_a_role() {
        check(DEV_POLICY).unwrap();
        for line in DEV_POLICY.lines().filter(|l| l.starts_with("p,")) {
            let role = line.split(',').nth(1).unwrap_or_default().trim();
            assert!(Role::parse(role).is_some(), "{line}");
        }
    }

    #[test]
    fn a_policy_naming_an_unknown_role_is_refused_with_the_line() {
        let err = check("p, auditor, *, pdp.*/*, read\np, supervisr, *, pdp.*/*, read")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("`supervisr`"),
            "{err}"
        );
        assert!(err.contains("supervisor"), "names the roles: {err}");
    }
}
