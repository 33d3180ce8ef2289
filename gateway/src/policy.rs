//! The authorization policy in a cluster: kept in PostgreSQL, and reloaded by every gateway
//! replica when a Redis notice says it changed (within a second).

use std::sync::Arc;

use diesel::prelude::*;
use futures::StreamExt;
use pdp_kit::store::{Migrations, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::authz::CasbinAuthorizer;

/// The Redis channel on which a policy change is announced.
pub const CHANNEL: &str = "pdp:policy:changed";

diesel::table! {
    gateway_policy (line_no) {
        line_no -> BigInt,
        rule -> Text,
    }
}

/// The gateway's tables, which live in the platform store.
pub const MIGRATIONS: Migrations = pdp_kit::migrations!();

/// The stored policy, as CSV lines; empty when none was ever set.
pub async fn load(store: &Store) -> Result<String, StoreError> {
    store
        .run(|conn| {
            let lines: Vec<String> = gateway_policy::table
                .order(gateway_policy::line_no)
                .select(gateway_policy::rule)
                .load(conn)?;
            Ok(lines.join("\n"))
        })
        .await
}

/// Replaces the stored policy in one transaction.
pub async fn replace(store: &Store, policy: &str) -> Result<(), StoreError> {
    let lines: Vec<String> = policy
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    store
        .transaction(move |conn| {
            diesel::delete(gateway_policy::table).execute(conn)?;
            for (i, rule) in lines.iter().enumerate() {
                diesel::insert_into(gateway_policy::table)
                    .values((
                        gateway_policy::line_no.eq(i as i64),
                        gateway_policy::rule.eq(rule),
                    ))
                    .execute(conn)?;
            }
            Ok(())
        })
        .await
}

/// Tells every replica that the policy changed.
pub async fn announce(redis_url: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(redis_url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg("reload")
        .query_async::<i64>(&mut connection)
        .await?;
    Ok(())
}

/// Reloads `authorizer` from `store` on every notice until `shutdown`. Subscribed before it
/// returns, so a change announced after the call is never missed.
pub async fn follow(
    redis_url: &str,
    store: Store,
    authorizer: Arc<CasbinAuthorizer>,
    shutdown: CancellationToken,
) -> redis::RedisResult<tokio::task::JoinHandle<()>> {
    let client = redis::Client::open(redis_url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    Ok(tokio::spawn(async move {
        let mut messages = pubsub.on_message();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                message = messages.next() => {
                    if message.is_none() {
                        tracing::error!("policy notices lost their Redis connection");
                        break;
                    }
                    match load(&store).await {
                        Ok(policy) => match authorizer.reload(&policy).await {
                            Ok(()) => tracing::info!("authorization policy reloaded"),
                            Err(e) => tracing::error!(error = %e, "new policy refused; keeping the old one"),
                        },
                        Err(e) => tracing::error!(error = %e, "cannot read the policy; keeping the old one"),
                    }
                }
            }
        }
    }))
}
