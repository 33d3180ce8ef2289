//! Building the gateway from configuration: the only place that chooses the dev or the cluster
//! implementation of each part.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pdp_kit::clock::SystemClock;
use pdp_kit::config::Config;
use pdp_kit::identity::IdentityKey;
use pdp_kit::store::Store;
use tokio_util::sync::CancellationToken;

use crate::audit::OutboxAudit;
use crate::auth::{DevKey, JwtAuthenticator};
use crate::authz::{CasbinAuthorizer, DEV_POLICY};
use crate::limits::{Limit, LocalLimiter, RateLimiter, RedisLimiter};
use crate::routing::TenantRoutes;
use crate::tenants::Tenants;
use crate::transcode::routes::RouteTable;
use crate::{Authenticator, Gateway, SingleInstance};

/// A running gateway: mount [`Gateway::configure`] on the HTTP server; await `audit_writer` after
/// shutdown so that the last records are written.
#[derive(Debug)]
pub struct Handle {
    pub gateway: Arc<Gateway>,
    pub audit_writer: tokio::task::JoinHandle<()>,
}

pub async fn start(
    config: &Config,
    platform_store: Store,
    log: Arc<dyn pdp_kit::events::EventLog>,
    shutdown: CancellationToken,
) -> anyhow::Result<Handle> {
    let tenants = Tenants::shipped();
    let pool = prost_reflect::DescriptorPool::decode(pdp_proto::FILE_DESCRIPTOR_SET)
        .context("the descriptor set of pdp-proto")?;
    let routes = RouteTable::from_pool(&pool)?;
    let authenticator = authenticator(config, shutdown.clone()).await?;
    let from_store = config.gateway.policy_file.is_none() && !config.is_dev();
    let policy = match &config.gateway.policy_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("gateway.policy_file {}", path.display()))?,
        None if from_store => {
            let stored = crate::policy::load(&platform_store).await?;
            if stored.is_empty() {
                tracing::warn!("no policy stored yet; storing the policy shipped with pdp");
                crate::policy::replace(&platform_store, DEV_POLICY).await?;
            }
            crate::policy::load(&platform_store).await?
        }
        None => DEV_POLICY.to_string(),
    };
    let authorizer = Arc::new(
        CasbinAuthorizer::new(&policy, &tenants)
            .await
            .context("authorization policy")?,
    );
    if from_store && let Some(url) = &config.redis.url {
        crate::policy::follow(
            url.expose(),
            platform_store.clone(),
            authorizer.clone(),
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("policy notices from redis.url {}", url.masked()))?;
    }
    crate::grants::follow(
        platform_store.clone(),
        log,
        config.instance.group(crate::grants::CONSUMER),
        authorizer.clone(),
        shutdown.clone(),
    )
    .await
    .context("following the agreements' authorizations")?;
    let upstreams = upstreams(config, shutdown.clone()).await?;
    let identity_key = IdentityKey::new(
        &identity_secret(config)?,
        chrono::Duration::seconds(config.identity.max_age_secs as i64),
        Arc::new(SystemClock),
    );
    let (audit, audit_writer) = OutboxAudit::spawn(platform_store, shutdown);
    let limiter: Arc<dyn RateLimiter> = match &config.redis.url {
        Some(url) => Arc::new(
            RedisLimiter::connect(url.expose())
                .await
                .with_context(|| format!("redis.url {}", url.masked()))?,
        ),
        None => Arc::new(LocalLimiter::default()),
    };
    let idempotency: Arc<dyn crate::idempotency::IdempotencyStore> = match &config.redis.url {
        Some(url) => Arc::new(
            crate::idempotency::RedisIdempotency::connect(url.expose())
                .await
                .with_context(|| format!("redis.url {}", url.masked()))?,
        ),
        None => Arc::new(crate::idempotency::LocalIdempotency::default()),
    };
    let g = &config.gateway;
    tracing::info!(routes = routes.routes().len(), "gateway ready");
    Ok(Handle {
        gateway: Arc::new(Gateway {
            tenants,
            routes,
            authenticator,
            authorizer,
            upstreams,
            identity_key,
            upstream_timeout: Duration::from_millis(g.upstream_timeout_ms),
            audit: Arc::new(audit),
            limiter,
            tenant_limit: Limit {
                per_second: g.tenant_rate,
                burst: g.tenant_burst,
            },
            subject_limit: Limit {
                per_second: g.subject_rate,
                burst: g.subject_burst,
            },
            max_body_bytes: g.max_body_bytes,
            max_upload_bytes: g.max_upload_bytes,
            cors_origins: g.cors_origins.clone(),
            trusted_proxies: crate::client::parse_proxies(&g.trusted_proxies)
                .context("gateway.trusted_proxies")?,
            idempotency,
        }),
        audit_writer,
    })
}

/// Tenant routes watched in the cluster, from a file in dev, or one instance for every tenant.
async fn upstreams(
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<dyn crate::Upstreams>> {
    let g = &config.gateway;
    if g.watch_routes {
        let client = kube::Client::try_default()
            .await
            .context("gateway.watch_routes needs a Kubernetes API (in-cluster or kubeconfig)")?;
        let routes = Arc::new(TenantRoutes::default());
        tokio::spawn(crate::routing::watch(
            client,
            g.routes_namespace.clone(),
            routes.clone(),
            shutdown,
        ));
        return Ok(routes);
    }
    if let Some(path) = &g.routes_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("gateway.routes_file {}", path.display()))?;
        let routes = TenantRoutes::from_yaml(&text)
            .map_err(|e| anyhow::anyhow!("gateway.routes_file {}: {e}", path.display()))?;
        return Ok(Arc::new(routes));
    }
    let mut upstreams = std::collections::HashMap::new();
    for (service, endpoint) in &g.upstreams {
        let upstream = crate::upstream::Upstream::new(endpoint)
            .with_context(|| format!("gateway.upstreams.{service}"))?;
        upstreams.insert(service.clone(), upstream);
    }
    Ok(Arc::new(SingleInstance(upstreams)))
}

async fn authenticator(
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<dyn Authenticator>> {
    let g = &config.gateway;
    if config.is_dev() && g.jwks_file.is_none() && g.jwks_url.is_none() {
        let key = DevKey::load_or_create(&config.data_dir)
            .with_context(|| format!("dev token key in {}", config.data_dir.display()))?;
        return Ok(Arc::new(
            JwtAuthenticator::dev(&key).with_max_lifetime(g.max_token_lifetime_secs),
        ));
    }
    let issuer = g
        .issuer
        .as_ref()
        .context("gateway.issuer is required with a JWKS (PDP_GATEWAY__ISSUER)")?;
    match (&g.jwks_url, &g.jwks_file) {
        (Some(_), Some(_)) => {
            anyhow::bail!("gateway.jwks_url and gateway.jwks_file are both set; keep one")
        }
        (Some(url), None) => {
            anyhow::ensure!(
                g.jwks_refresh_secs > 0,
                "gateway.jwks_refresh_secs must be at least 1"
            );
            let auth = JwtAuthenticator::from_jwks_url(
                url,
                issuer,
                &g.audience,
                Duration::from_secs(g.jwks_refresh_secs),
                shutdown,
            )
            .await
            .map_err(|e| anyhow::anyhow!("gateway.jwks_url: {e}"))?;
            auth.set_max_lifetime(g.max_token_lifetime_secs);
            Ok(auth)
        }
        (None, Some(file)) => {
            let jwks = std::fs::read_to_string(file)
                .with_context(|| format!("gateway.jwks_file {}", file.display()))?;
            let auth = JwtAuthenticator::from_jwks(&jwks, issuer, &g.audience)
                .map_err(|e| anyhow::anyhow!("gateway.jwks_file {}: {e}", file.display()))?
                .with_max_lifetime(g.max_token_lifetime_secs);
            Ok(Arc::new(auth))
        }
        (None, None) => anyhow::bail!(
            "cluster mode needs the identity provider's keys: gateway.jwks_url \
             (PDP_GATEWAY__JWKS_URL) or gateway.jwks_file (PDP_GATEWAY__JWKS_FILE)"
        ),
    }
}

/// The HMAC key shared with the services: configured, or in dev kept in the data directory.
pub fn identity_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(key) = &config.identity.hmac_key {
        anyhow::ensure!(
            key.expose().len() >= 32,
            "identity.hmac_key must be at least 32 characters"
        );
        return Ok(key.expose().as_bytes().to_vec());
    }
    anyhow::ensure!(
        config.is_dev(),
        "identity.hmac_key is required in cluster mode (PDP_IDENTITY__HMAC_KEY, from a Secret)"
    );
    Ok(crate::auth::dev_secret(
        &config.data_dir,
        "dev-identity.key",
    )?)
}
