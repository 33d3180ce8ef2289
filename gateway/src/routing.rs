//! Tenant routing: which platform instance serves a tenant — the shared provincial one or a
//! city's own — and where each service of that instance answers gRPC (R-TEN-2).
//!
//! The routes are `TenantRoute` objects: custom resources watched with kube in a cluster, a YAML
//! list in dev. Both feed one [`TenantRoutes`] index through `apply`/`delete`, so the index is
//! tested without an API server and a change takes effect without a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use kube::CustomResource;
use pdp_kit::identity::TenantCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Upstreams;
use crate::upstream::Upstream;

/// Sends one tenant's calls to one platform instance.
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "pdp.hlj.gov.cn",
    version = "v1",
    kind = "TenantRoute",
    namespaced,
    shortname = "tr",
    printcolumn = r#"{"name":"Tenant","type":"string","jsonPath":".spec.tenant"}"#,
    printcolumn = r#"{"name":"Instance","type":"string","jsonPath":".spec.instance"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TenantRouteSpec {
    /// The tenant's six-digit GB/T 2260 code, e.g. 230100 for Harbin.
    #[schemars(regex(pattern = r"^[0-9]{6}$"))]
    pub tenant: String,
    /// The platform instance that serves it: `shared` (the provincial instance) or a city's own.
    pub instance: String,
    /// The gRPC endpoint of each service of that instance, by service name, as a plain
    /// `http://host:port` URL (`planning: http://planning.pdp-harbin:50051`).
    pub services: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("route `{name}`: tenant `{tenant}` is not a six-digit code")]
    Tenant { name: String, tenant: String },
    #[error(
        "route `{name}`: service `{service}` endpoint `{endpoint}` is not an http:// URL with a host"
    )]
    Endpoint {
        name: String,
        service: String,
        endpoint: String,
    },
    #[error("routes `{0}` and `{1}` both claim tenant {2}")]
    Conflict(String, String, String),
}

struct Entry {
    name: String,
    spec: TenantRouteSpec,
    upstreams: HashMap<String, Upstream>,
}

/// The live index: tenant → instance → service endpoints. Routes by name, as the API server names them.
#[derive(Default)]
pub struct TenantRoutes {
    by_tenant: RwLock<HashMap<TenantCode, Entry>>,
}

impl std::fmt::Debug for TenantRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes = self.by_tenant.read().expect("route lock");
        f.debug_map()
            .entries(
                routes
                    .iter()
                    .map(|(t, e)| (t.to_string(), e.spec.instance.clone())),
            )
            .finish()
    }
}

impl TenantRoutes {
    /// Adds or replaces the route `name`. A route that another route's tenant already claims is
    /// refused, so that a typo cannot silently move a city's traffic.
    pub fn apply(&self, name: &str, spec: TenantRouteSpec) -> Result<(), RouteError> {
        let tenant: TenantCode = spec.tenant.parse().map_err(|_| RouteError::Tenant {
            name: name.into(),
            tenant: spec.tenant.clone(),
        })?;
        let mut upstreams = HashMap::new();
        for (service, endpoint) in &spec.services {
            let upstream = Upstream::new(endpoint).map_err(|_| RouteError::Endpoint {
                name: name.into(),
                service: service.clone(),
                endpoint: endpoint.clone(),
            })?;
            upstreams.insert(service.clone(), upstream);
        }
        let mut routes = self.by_tenant.write().expect("route lock");
        // The same route may move to another tenant: forget where it was.
        routes.retain(|_, e| e.name != name);
        if let Some(existing) = routes.get(&tenant) {
            return Err(RouteError::Conflict(
                existing.name.clone(),
                name.into(),
                tenant.to_string(),
            ));
        }
        tracing::info!(route = name, %tenant, instance = %spec.instance, "tenant route applied");
        routes.insert(
            tenant,
            Entry {
                name: name.into(),
                spec,
                upstreams,
            },
        );
        Ok(())
    }

    pub fn delete(&self, name: &str) {
        let mut routes = self.by_tenant.write().expect("route lock");
        routes.retain(|_, e| e.name != name);
        tracing::info!(route = name, "tenant route deleted");
    }

    /// Replaces every route (a watcher's re-list after a restart or a lost watch).
    pub fn reset(&self, routes: Vec<(String, TenantRouteSpec)>) -> Vec<RouteError> {
        self.by_tenant.write().expect("route lock").clear();
        routes
            .into_iter()
            .filter_map(|(name, spec)| self.apply(&name, spec).err())
            .collect()
    }

    /// The instance that serves `tenant`, if routed.
    pub fn instance(&self, tenant: &TenantCode) -> Option<String> {
        let routes = self.by_tenant.read().expect("route lock");
        routes.get(tenant).map(|e| e.spec.instance.clone())
    }

    /// Loads a YAML list of routes (dev): `- {name: harbin, tenant: "230100", instance: …}`.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Named {
            name: String,
            #[serde(flatten)]
            spec: TenantRouteSpec,
        }
        let list: Vec<Named> = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let routes = Self::default();
        for route in list {
            routes
                .apply(&route.name, route.spec)
                .map_err(|e| e.to_string())?;
        }
        Ok(routes)
    }
}

impl Upstreams for TenantRoutes {
    fn upstream(&self, tenant: &TenantCode, service: &str) -> Option<Upstream> {
        let routes = self.by_tenant.read().expect("route lock");
        routes.get(tenant)?.upstreams.get(service).cloned()
    }
}

/// The CRD of `TenantRoute`, as YAML: what `pdp crd` prints and `k8s/crds/` holds.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&TenantRoute::crd()).expect("the CRD serializes")
}

/// Keeps `routes` in step with the `TenantRoute`s of the cluster until `shutdown`.
pub async fn watch(
    client: kube::Client,
    namespace: Option<String>,
    routes: std::sync::Arc<TenantRoutes>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};

    let api: kube::Api<TenantRoute> = match &namespace {
        Some(ns) => kube::Api::namespaced(client, ns),
        None => kube::Api::all(client),
    };
    let stream = watcher::watcher(api, watcher::Config::default());
    futures::pin_mut!(stream);
    let mut relist: Vec<(String, TenantRouteSpec)> = Vec::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            event = stream.next() => event,
        };
        let Some(event) = event else { break };
        let name = |r: &TenantRoute| {
            format!(
                "{}/{}",
                r.metadata.namespace.as_deref().unwrap_or_default(),
                r.metadata.name.as_deref().unwrap_or_default()
            )
        };
        match event {
            Ok(Event::Apply(route)) => {
                if let Err(e) = routes.apply(&name(&route), route.spec.clone()) {
                    tracing::error!(error = %e, "tenant route refused");
                }
            }
            Ok(Event::Delete(route)) => routes.delete(&name(&route)),
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(route)) => relist.push((name(&route), route.spec.clone())),
            Ok(Event::InitDone) => {
                for e in routes.reset(std::mem::take(&mut relist)) {
                    tracing::error!(error = %e, "tenant route refused");
                }
            }
            Err(e) => tracing::warn!(error = %e, "tenant route watch interrupted; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tenant: &str, instance: &str) -> TenantRouteSpec {
        TenantRouteSpec {
            tenant: tenant.into(),
            instance: instance.into(),
            services: BTreeMap::from([(
                "planning".into(),
                format!("http://planning.{instance}:50051"),
            )]),
        }
    }

    #[tokio::test]
    async fn apply_replace_move_and_delete() {
        let routes = TenantRoutes::default();
        let harbin: TenantCode = "230100".parse().unwrap();
        routes
            .apply("pdp/harbin", spec("230100", "shared"))
            .unwrap();
        assert_eq!(routes.instance(&harbin).as_deref(), Some("shared"));
        assert!(routes.upstream(&harbin, "planning").is_some());
        assert!(routes.upstream(&harbin, "products").is_none());

        // Harbin gets its own instance: the same route, changed.
        routes
            .apply("pdp/harbin", spec("230100", "harbin"))
            .unwrap();
        assert_eq!(routes.instance(&harbin).as_deref(), Some("harbin"));

        assert_eq!(
            routes.apply("pdp/typo", spec("230100", "shared")),
            Err(RouteError::Conflict(
                "pdp/harbin".into(),
                "pdp/typo".into(),
                "230100".into()
            ))
        );
        assert!(matches!(
            routes.apply("pdp/bad", spec("2301", "shared")),
            Err(RouteError::Tenant { .. })
        ));

        routes.delete("pdp/harbin");
        assert_eq!(routes.instance(&harbin), None);
        assert!(routes.upstream(&harbin, "planning").is_none());
    }

    #[tokio::test]
    async fn a_relist_replaces_everything() {
        let routes = TenantRoutes::default();
        routes.apply("pdp/old", spec("230200", "shared")).unwrap();
        let errors = routes.reset(vec![("pdp/harbin".into(), spec("230100", "harbin"))]);
        assert!(errors.is_empty());
        assert_eq!(routes.instance(&"230200".parse().unwrap()), None);
        assert_eq!(
            routes.instance(&"230100".parse().unwrap()).as_deref(),
            Some("harbin")
        );
    }

    #[tokio::test]
    async fn yaml_routes_for_dev() {
        let routes = TenantRoutes::from_yaml(
            "- name: harbin\n  tenant: \"230100\"\n  instance: harbin\n  services:\n    planning: http://127.0.0.1:50051\n",
        )
        .unwrap();
        assert_eq!(
            routes.instance(&"230100".parse().unwrap()).as_deref(),
            Some("harbin")
        );
        assert!(TenantRoutes::from_yaml("- name: x\n  tenant: 1\n").is_err());
    }

    #[test]
    fn the_committed_crd_is_the_generated_one() {
        let committed = include_str!("../../k8s/crds/tenantroute.yaml");
        assert_eq!(
            committed,
            crd_yaml(),
            "k8s/crds/tenantroute.yaml is stale: regenerate it with `pdp crd > k8s/crds/tenantroute.yaml`"
        );
    }
}
