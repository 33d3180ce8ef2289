//! Products and services (公共数据产品和服务): defined by an operator or its developers within
//! the operator's grants, reviewed before release (第二十条(三)), registered with a code unique in
//! the province (第二十条(四)), priced within the bureau's rules (第二十三条), and released to the
//! data exchanges through listing events on `pdp.exchange.listings` (第二十四条). Laid out as
//! `services/README.md` says.

pub mod exchange;
mod grpc;
pub mod pricing;
pub mod product;
pub mod revenue;
pub mod service;
pub mod store;
pub mod trades;

use std::sync::Arc;

use pdp_kit::clock::Clock;
use pdp_kit::events::Event;
use pdp_kit::inbox::EventHandler;
use pdp_kit::service::{Context, Running};
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_proto::pdp::agreements::v1 as agreements;
use pdp_proto::pdp::exchange::v1 as inbound;
use pdp_proto::pdp::products::v1 as api;
use pdp_proto::pdp::requests::v1 as requests;

/// What products refuses: kit's one shape of refusal, with products' rules in its texts.
pub type ProductError = pdp_kit::error::DomainError;
pub use service::Products;

pub const SERVICE: &str = "products";
pub const TOPIC: &str = "pdp.products";
/// The contract with the data exchanges: listings, changes and withdrawals.
pub const LISTINGS_TOPIC: &str = "pdp.exchange.listings";
/// The consumer group that follows grants, workspaces, developers and agreements.
pub const FOLLOW_CONSUMER: &str = "products-follow";
/// The consumer group that applies the exchanges' receipts and trades.
pub const EXCHANGE_CONSUMER: &str = "products-exchanges";
const FOLLOWED: [&str; 2] = ["pdp.requests", "pdp.agreements"];

pdp_kit::service_def!(SERVICE, start);

/// Keeps what products must know of other services: each grant (its operator, whether it is
/// valid, its last day), each workspace table, each developer an operator approved; and withdraws
/// an operator's products when its agreement ends or a grant they are built on ends.
#[derive(Debug, Clone)]
pub struct Follow;

impl EventHandler for Follow {
    type Error = ProductError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), ProductError> {
        let scope = TenantScope::system(event.tenant.clone());
        for ty in [
            requests::GRANT_ISSUED,
            requests::GRANT_PINNED,
            requests::GRANT_ENDED,
        ] {
            if let Some(g) = event.data_of(ty)? {
                scope.enter(conn)?;
                let valid = g.state == requests::GrantState::Valid as i32;
                store::put_grant(conn, &scope, &g.grant_id, &g.operator, valid, &g.valid_to)?;
                if !valid {
                    let reason = format!("grant {} it is built on ended", g.grant_id);
                    service::withdraw_of_operator(
                        conn,
                        &scope,
                        &g.operator,
                        Some(&g.grant_id),
                        &reason,
                        event.time,
                    )?;
                }
                return Ok(());
            }
        }
        for (ty, present) in [
            (requests::WORKSPACE_TABLE_CREATED, true),
            (requests::WORKSPACE_TABLE_DELETED, false),
        ] {
            if let Some(t) = event.data_of(ty)? {
                scope.enter(conn)?;
                return store::put_workspace_table(conn, &scope, &t.grant_id, &t.name, present);
            }
        }
        for ty in [
            requests::DEVELOPER_REGISTERED,
            requests::DEVELOPER_APPROVED,
            requests::DEVELOPER_REJECTED,
        ] {
            if let Some(d) = event.data_of(ty)? {
                scope.enter(conn)?;
                let approved = d.state == requests::ApprovalState::Approved as i32;
                return store::put_developer(conn, &scope, &d.organization, &d.operator, approved);
            }
        }
        for ty in [
            agreements::AGREEMENT_EXPIRED,
            agreements::AGREEMENT_TERMINATED,
        ] {
            if let Some(a) = event.data_of(ty)? {
                scope.enter(conn)?;
                // 第二十九条: when the authorization ends, so does the operator's trade in it.
                let reason = format!(
                    "agreement {} of {} {}",
                    a.agreement_id,
                    a.operator,
                    if ty.name() == agreements::AGREEMENT_EXPIRED.name() {
                        "expired".to_string()
                    } else {
                        format!("was terminated: {}", a.reason)
                    }
                );
                service::withdraw_of_operator(
                    conn,
                    &scope,
                    &a.operator,
                    None,
                    &reason,
                    event.time,
                )?;
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Applies what the exchanges send, once its signature verifies with the sending exchange's
/// configured key: receipts of listings and trades. Anything else fails, so the consumer parks
/// it as a dead letter (after its retries) instead of applying it.
#[derive(Debug, Clone)]
pub struct ExchangeAnswers {
    pub exchanges: Arc<exchange::Exchanges>,
    pub clock: Arc<dyn Clock>,
}

impl EventHandler for ExchangeAnswers {
    type Error = ProductError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), ProductError> {
        let refused = |why: String| ProductError::precondition(format!("events/{}", event.id), why);
        self.exchanges
            .verify(&event.data)
            .map_err(|e| refused(e.to_string()))?;
        let scope = TenantScope::system(event.tenant.clone());
        let now = self.clock.now();
        for (ty, accepted) in [
            (inbound::LISTING_ACCEPTED, true),
            (inbound::LISTING_REJECTED, false),
        ] {
            if let Some(r) = event.data_of(ty)? {
                scope.enter(conn)?;
                return trades::apply_receipt(conn, &scope, &r, accepted, now);
            }
        }
        if let Some(t) = event.data_of(inbound::TRADE_COMPLETED)? {
            scope.enter(conn)?;
            return trades::apply_trade(conn, &scope, &t, now).map(|_| ());
        }
        Err(refused(format!(
            "{} is no event a data exchange sends pdp",
            event.event_type
        )))
    }
}

/// Starts products: its gRPC services behind the identity check, the follower of requests and
/// agreements, and the consumer of the exchanges' answers.
pub async fn start(context: &Context) -> anyhow::Result<Running> {
    let exchanges = Arc::new(exchange::Exchanges::new(
        &context.config.products.exchanges,
    )?);
    let answered_on = exchanges.topics();
    let topics = [TOPIC, LISTINGS_TOPIC].into_iter().chain(FOLLOWED);
    for topic in topics.chain(answered_on.iter().map(String::as_str)) {
        context.log.create_topic(topic).await?;
    }
    let products = Products::new(
        context.store.clone(),
        context.clock.clone(),
        exchanges.clone(),
    );
    let routes = pdp_kit::guarded_routes!(
        context,
        products;
        api::product_service_server::ProductServiceServer,
        api::pricing_service_server::PricingServiceServer,
        api::revenue_service_server::RevenueServiceServer,
        api::public_product_service_server::PublicProductServiceServer,
    );
    let follower = context
        .consumer(FOLLOW_CONSUMER, &FOLLOWED)
        .spawn(Follow, context.shutdown.clone());
    let mut tasks = vec![follower];
    if !answered_on.is_empty() {
        let topics: Vec<&str> = answered_on.iter().map(String::as_str).collect();
        let answers = ExchangeAnswers {
            exchanges,
            clock: context.clock.clone(),
        };
        let consumer = context.consumer(EXCHANGE_CONSUMER, &topics);
        tasks.push(consumer.spawn(answers, context.shutdown.clone()));
    }
    Ok(Running { routes, tasks })
}
