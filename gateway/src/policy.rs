//! The authorization policy in a cluster: kept in PostgreSQL, and reloaded by every gateway
//! replica when a Redis notice says it changed (within a second).

use std::sync::Arc;
use std::time::Duration;

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

/// Follows the policy's change notices on Redis: every notice reloads the stored policy. When the
/// connection drops, it connects again (backing off up to 10 s) and reloads at once, since a
/// notice may have been sent meanwhile. The first subscription is made before this returns, so
/// that a wrong URL stops the start.
pub async fn follow(
    redis_url: &str,
    store: Store,
    authorizer: Arc<CasbinAuthorizer>,
    shutdown: CancellationToken,
) -> redis::RedisResult<tokio::task::JoinHandle<()>> {
    let client = redis::Client::open(redis_url)?;
    let first = subscribe(&client).await?;
    Ok(tokio::spawn(async move {
        let mut subscribed = Some(first);
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut pubsub = match subscribed.take() {
                Some(pubsub) => pubsub,
                None => match subscribe(&client).await {
                    Ok(pubsub) => {
                        tracing::info!(
                            "policy notices reconnected; reloading what may have been missed"
                        );
                        backoff = Duration::from_millis(200);
                        reload(&store, &authorizer).await;
                        pubsub
                    }
                    Err(err) => {
                        let retry_in = backoff;
                        tracing::warn!(error = %err, ?retry_in, "{UNREACHABLE}");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue;
                    }
                },
            };
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    message = messages.next() => {
                        if message.is_none() {
                            tracing::warn!("{LOST}");
                            break;
                        }
                        reload(&store, &authorizer).await;
                    }
                }
            }
        }
    }))
}

const UNREACHABLE: &str = "policy notices: Redis unreachable";
const LOST: &str = "policy notices lost their Redis connection; reconnecting";

async fn subscribe(client: &redis::Client) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    Ok(pubsub)
}

async fn reload(store: &Store, authorizer: &CasbinAuthorizer) {
    match load(store).await {
        Ok(policy) => match authorizer.reload(&policy).await {
            Ok(()) => tracing::info!("authorization policy reloaded"),
            Err(e) => tracing::error!(error = %e, "new policy refused; keeping the old one"),
        },
        Err(e) => tracing::error!(error = %e, "cannot read the policy; keeping the old one"),
    }
}
