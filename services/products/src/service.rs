//! Products' operations: each checks the caller's tenant, loads what it needs, applies the rules,
//! and writes the change with its domain event and audit record in one transaction.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use pdp_kit::calendar::civil_date;
use pdp_kit::change::{Change, Recorder, instant, timestamp};
use pdp_kit::clock::Clock;
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::{Identity, Role};
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, Store, TenantScope};
use pdp_proto::EventType;
use pdp_proto::pdp::products::v1 as api;
use uuid::Uuid;

use crate::ProductError;
use crate::exchange::Exchanges;
use crate::pricing;
use crate::product::{self as rules, ProductState, Step};
use crate::store::{self as db, Visible};
use crate::{LISTINGS_TOPIC, SERVICE, TOPIC};

type Result<T> = std::result::Result<T, ProductError>;

const STAFF: &[Role] = &Role::STAFF;
const BUREAU: &[Role] = &Role::BUREAU;
const MAKERS: &[Role] = &[Role::Operator, Role::Developer];

/// Records products' own changes on `pdp.products`.
const RECORDER: Recorder = Recorder {
    service: SERVICE,
    topic: TOPIC,
};

/// Records listings on the exchanges' topic (第二十四条).
const LISTINGS: Recorder = Recorder {
    service: SERVICE,
    topic: LISTINGS_TOPIC,
};

#[derive(Debug, Clone)]
pub struct Products {
    store: Store,
    clock: Arc<dyn Clock>,
    exchanges: Arc<Exchanges>,
}

impl Operations for Products {
    type Error = ProductError;

    fn store(&self) -> &Store {
        &self.store
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

fn product_changed(p: &api::Product) -> api::ProductChanged {
    let mut grant_ids: Vec<String> = p
        .inputs
        .iter()
        .filter(|i| !i.grant_id.is_empty())
        .map(|i| i.grant_id.clone())
        .collect();
    grant_ids.sort();
    grant_ids.dedup();
    api::ProductChanged {
        product_id: p.id.clone(),
        operator: p.operator.clone(),
        developer: p.developer.clone(),
        state: p.state,
        class: p.class,
        form: p.form,
        grant_ids,
        registration_code: code(p),
        price: p.price.clone(),
        review_stage: 0,
        review_outcome: 0,
        reason: p.withdrawal_reason.clone(),
        query: p.query.clone(),
        parameters: p.parameters.clone(),
        refresh_hours: p.refresh_hours,
    }
}

fn code(p: &api::Product) -> String {
    p.registration
        .as_ref()
        .map(|r| r.code.clone())
        .unwrap_or_default()
}

fn emit(
    conn: &mut AnyConnection,
    change: &Change<'_>,
    ty: EventType<api::ProductChanged>,
    p: &api::Product,
) -> Result<()> {
    change.emit(conn, ty, &p.id, &product_changed(p))?;
    Ok(())
}

/// The listing of `p` on `exchange_id` as the exchange reads it.
fn listing(p: &api::Product, exchange_id: &str, reason: &str) -> api::ProductListing {
    let form = p.form();
    let (method, path) = match form {
        api::ProductForm::Api => (
            "POST",
            format!("/api/v1/tenants/{}/products/{}:call", p.tenant, p.id),
        ),
        _ => (
            "POST",
            format!(
                "/api/v1/tenants/{}/products/{}/dataset:fetch",
                p.tenant, p.id
            ),
        ),
    };
    api::ProductListing {
        product_id: p.id.clone(),
        exchange_id: exchange_id.to_string(),
        registration_code: code(p),
        name: p.name.clone(),
        class: p.class,
        description: p.description.clone(),
        operator: p.operator.clone(),
        form: p.form,
        price: p.price.clone(),
        terms_of_use: p.terms_of_use.clone(),
        delivery: Some(api::Delivery {
            method: method.into(),
            path,
            parameters: p.parameters.clone(),
        }),
        reason: reason.to_string(),
    }
}

/// The listings an exchange still shows: published and not rejected or delisted.
fn shown(l: &api::Listing) -> bool {
    matches!(
        l.state(),
        api::ListingState::Pending | api::ListingState::Accepted
    )
}

fn advance(p: &mut api::Product, step: Step) -> Result<()> {
    let next = ProductState::of(p).after(step, &format!("products/{}", p.id))?;
    p.state = next.to_api() as i32;
    Ok(())
}

/// Whether `who` made `p` (the operator for its own, the developer for a developer's).
fn is_maker(who: &Identity, p: &api::Product) -> bool {
    if p.developer.is_empty() {
        who.has(Role::Operator) && who.organization == p.operator
    } else {
        who.has(Role::Developer) && who.organization == p.developer
    }
}

/// Whose products and trades `who` lists: staff all; an operator its own and its developers'; a
/// developer its own; anyone else none.
pub(crate) fn visible_to(who: &Identity) -> Option<Visible> {
    if who.has_any(STAFF) {
        Some(Visible::All)
    } else if who.has(Role::Operator) {
        Some(Visible::Operator(who.organization.clone()))
    } else if who.has(Role::Developer) {
        Some(Visible::Developer(who.organization.clone()))
    } else {
        None
    }
}

/// Can `who` see `p` at all? Staff see every product; an operator its own and its developers';
/// a developer its own.
fn sees(who: &Identity, p: &api::Product) -> bool {
    who.has_any(STAFF)
        || (who.has(Role::Operator) && who.organization == p.operator)
        || (who.has(Role::Developer) && who.organization == p.developer)
}

/// Every input of `p` that lies outside its operator's valid grants, or that its operator may
/// not build on, named by field.
fn input_violations(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    p: &api::Product,
    today: NaiveDate,
) -> Result<Vec<FieldViolation>> {
    let mut v = Vec::new();
    for (i, input) in p.inputs.iter().enumerate() {
        let field = format!("product.inputs[{i}]");
        if !input.grant_id.is_empty() {
            let valid = match db::grant(conn, scope, &input.grant_id)? {
                Some((operator, valid, valid_to)) => {
                    let last = NaiveDate::parse_from_str(&valid_to, "%Y-%m-%d").ok();
                    operator == p.operator && valid && last.is_none_or(|d| d >= today)
                }
                None => false,
            };
            if !valid {
                v.push(FieldViolation::new(
                    format!("{field}.grant_id"),
                    format!(
                        "grant {} is no valid grant of {}: a product is built within its \
                         operator's grants (第二十条(一))",
                        input.grant_id, p.operator
                    ),
                ));
                continue;
            }
            for (j, table) in input.tables.iter().enumerate() {
                if !db::has_workspace_table(conn, scope, &input.grant_id, table)? {
                    v.push(FieldViolation::new(
                        format!("{field}.tables[{j}]"),
                        format!(
                            "grant {}'s workspace holds no table `{table}`",
                            input.grant_id
                        ),
                    ));
                }
            }
        } else if !input.product_id.is_empty() {
            match db::find(conn, scope, &input.product_id)? {
                Some(source)
                    if matches!(
                        ProductState::of(&source),
                        ProductState::Registered | ProductState::Listed
                    ) =>
                {
                    // 第二十条(一): an operator takes no part, directly or indirectly, in developing
                    // further a product it has delivered.
                    let delivered = source.first_release_time.is_some();
                    if delivered && p.developer.is_empty() && source.operator == p.operator {
                        v.push(FieldViolation::new(
                            format!("{field}.product_id"),
                            format!(
                                "{} delivered product {} already; an operator takes no part in \
                                 developing a delivered product further (第二十条(一)): its \
                                 developers may",
                                p.operator, source.id
                            ),
                        ));
                    }
                }
                _ => v.push(FieldViolation::new(
                    format!("{field}.product_id"),
                    format!(
                        "product {} is no registered or released product of the tenant",
                        input.product_id
                    ),
                )),
            }
        }
    }
    Ok(v)
}

impl Products {
    pub fn new(store: Store, clock: Arc<dyn Clock>, exchanges: Arc<Exchanges>) -> Self {
        Self {
            store,
            clock,
            exchanges,
        }
    }

    fn load(conn: &mut AnyConnection, scope: &TenantScope, id: &str) -> Result<api::Product> {
        db::find(conn, scope, id)?.ok_or_else(|| ProductError::not_found("product", id))
    }

    /// A product `who` may see, or NOT_FOUND.
    fn load_visible(
        conn: &mut AnyConnection,
        scope: &TenantScope,
        who: &Identity,
        id: &str,
    ) -> Result<api::Product> {
        let p = Self::load(conn, scope, id)?;
        if !sees(who, &p) {
            return Err(ProductError::not_found("product", id));
        }
        Ok(p)
    }

    pub async fn create(
        &self,
        who: &Identity,
        tenant: &str,
        operator: String,
        input: api::Product,
    ) -> Result<api::Product> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        ProductError::unless_role(who, MAKERS, "defining a product")?;
        ProductError::check("product", rules::definition_violations(&input))?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let (operator, developer) = if who.has(Role::Operator) {
                (who.organization.clone(), String::new())
            } else {
                if !db::is_developer_of(conn, scope, &who.organization, &operator)? {
                    return Err(ProductError::invalid(
                        "product",
                        vec![FieldViolation::new(
                            "operator",
                            format!(
                                "{} is no developer `{operator}` approved: a developer builds \
                                 under the operator it is registered with (第二十一条)",
                                who.organization
                            ),
                        )],
                    ));
                }
                (operator, who.organization.clone())
            };
            let product = api::Product {
                id: Uuid::now_v7().to_string(),
                tenant: scope.tenant().to_string(),
                name: input.name.trim().to_string(),
                operator,
                developer,
                state: ProductState::Draft.to_api() as i32,
                reviews: Vec::new(),
                registration: None,
                price: None,
                listings: Vec::new(),
                withdrawal_reason: String::new(),
                created_by: who.subject.clone(),
                create_time: Some(timestamp(now)),
                update_time: Some(timestamp(now)),
                first_release_time: None,
                ..input
            };
            ProductError::check(
                "product",
                input_violations(conn, scope, &product, civil_date(now))?,
            )?;
            db::insert(conn, scope, &product, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            emit(conn, &act, api::PRODUCT_CREATED, &product)?;
            Ok(product)
        })
        .await
    }

    pub async fn update(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        input: api::Product,
    ) -> Result<api::Product> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        ProductError::unless_role(who, MAKERS, "revising a product")?;
        ProductError::check("product", rules::definition_violations(&input))?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut p = Self::load_visible(conn, scope, &who, &id)?;
            if !is_maker(&who, &p) {
                return Err(ProductError::forbidden(
                    "NOT_MAKER",
                    format!("only the maker of product {id} revises it"),
                ));
            }
            advance(&mut p, Step::Revise)?;
            p.name = input.name.trim().to_string();
            p.class = input.class;
            p.description = input.description;
            p.inputs = input.inputs;
            p.form = input.form;
            p.query = input.query;
            p.parameters = input.parameters;
            p.refresh_hours = input.refresh_hours;
            p.terms_of_use = input.terms_of_use;
            ProductError::check(
                "product",
                input_violations(conn, scope, &p, civil_date(now))?,
            )?;
            p.update_time = Some(timestamp(now));
            db::save(conn, scope, &p, now)?;
            emit(
                conn,
                &RECORDER.change(scope, Some(&who), now),
                api::PRODUCT_REVISED,
                &p,
            )?;
            Ok(p)
        })
        .await
    }

    pub async fn get(&self, who: &Identity, tenant: &str, id: String) -> Result<api::Product> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            Self::load_visible(conn, scope, &who, &id)
        })
        .await
    }

    pub async fn list(
        &self,
        who: &Identity,
        tenant: &str,
        state: Option<ProductState>,
        cursor: Cursor,
    ) -> Result<(Vec<api::Product>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let Some(visible) = visible_to(who) else {
            return Ok((Vec::new(), String::new()));
        };
        self.in_scope(&scope, move |conn, scope, _| {
            let states = state.map(|s| vec![s]);
            let items = db::list(conn, scope, &visible, states.as_deref(), &cursor)?;
            let next = cursor.next_token(&items, |p| &p.id);
            Ok((items, next))
        })
        .await
    }

    /// Sends a product to review: a developer's to its operator, an operator's to the bureau.
    pub async fn submit(&self, who: &Identity, tenant: &str, id: String) -> Result<api::Product> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        ProductError::unless_role(who, MAKERS, ":submit")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut p = Self::load_visible(conn, scope, &who, &id)?;
            if !is_maker(&who, &p) {
                return Err(ProductError::forbidden(
                    "NOT_MAKER",
                    format!("only the maker of product {id} submits it"),
                ));
            }
            let by_developer = !p.developer.is_empty();
            advance(&mut p, Step::Submit { by_developer })?;
            // A grant may have ended since the definition.
            ProductError::check(
                "product",
                input_violations(conn, scope, &p, civil_date(now))?,
            )?;
            p.update_time = Some(timestamp(now));
            db::save(conn, scope, &p, now)?;
            emit(
                conn,
                &RECORDER.change(scope, Some(&who), now),
                api::PRODUCT_SUBMITTED,
                &p,
            )?;
            Ok(p)
        })
        .await
    }

    /// The review of the stage `id` is in: its operator's for a developer's product, then the
    /// bureau's, whose approval registers it.
    pub async fn review(
        &self,
        who: &Identity,
        tenant: &str,
        request: api::ReviewProductRequest,
    ) -> Result<api::Product> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        ProductError::unless_role(
            who,
            &[Role::Operator, Role::ProvincialBureau, Role::CityBureau],
            ":review",
        )?;
        let outcome = request.outcome();
        ProductError::check(
            "review",
            rules::review_violations(outcome, &request.findings, &request.note),
        )?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut p = Self::load_visible(conn, scope, &who, &request.id)?;
            let stage = match ProductState::of(&p) {
                ProductState::OperatorReview => {
                    if !(who.has(Role::Operator) && who.organization == p.operator) {
                        return Err(ProductError::forbidden(
                            "NOT_THE_OPERATOR",
                            format!(
                                "product {} awaits its operator {}'s review (第二十条(三))",
                                p.id, p.operator
                            ),
                        ));
                    }
                    api::ReviewStage::Operator
                }
                ProductState::BureauReview => {
                    if !who.has_any(BUREAU) {
                        return Err(ProductError::forbidden(
                            "NOT_THE_BUREAU",
                            format!("product {} awaits the bureau's review", p.id),
                        ));
                    }
                    api::ReviewStage::Bureau
                }
                state => {
                    return Err(ProductError::precondition(
                        format!("products/{}", p.id),
                        format!(
                            "the product is {}; it is reviewed once submitted (:submit)",
                            state.name()
                        ),
                    ));
                }
            };
            let step = match (outcome, stage) {
                (api::ReviewOutcome::Returned, _) => Step::Return,
                (_, api::ReviewStage::Operator) => Step::OperatorApprove,
                _ => Step::Register,
            };
            if step == Step::Register {
                ProductError::check(
                    "product",
                    input_violations(conn, scope, &p, civil_date(now))?,
                )?;
            }
            advance(&mut p, step)?;
            p.reviews.push(api::ProductReview {
                stage: stage as i32,
                reviewer: who.subject.clone(),
                organization: who.organization.clone(),
                outcome: outcome as i32,
                findings: request.findings.clone(),
                note: request.note.trim().to_string(),
                time: Some(timestamp(now)),
            });
            if step == Step::Register {
                let year = civil_date(now).year();
                let n = db::next_registration(conn, scope, year)?;
                p.registration = Some(api::Registration {
                    code: rules::registration_code(scope.tenant().as_str(), year, n),
                    registered_by: who.subject.clone(),
                    time: Some(timestamp(now)),
                });
            }
            p.update_time = Some(timestamp(now));
            db::save(conn, scope, &p, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            let reviewed = api::ProductChanged {
                review_stage: stage as i32,
                review_outcome: outcome as i32,
                ..product_changed(&p)
            };
            act.emit(conn, api::PRODUCT_REVIEWED, &p.id, &reviewed)?;
            match step {
                Step::Return => emit(conn, &act, api::PRODUCT_RETURNED, &p)?,
                Step::Register => emit(conn, &act, api::PRODUCT_REGISTERED, &p)?,
                _ => {}
            }
            Ok(p)
        })
        .await
    }

    /// Prices product `id` from an effective time within the tenant's rules; an exchange that
    /// lists it is told.
    pub async fn set_price(
        &self,
        who: &Identity,
        tenant: &str,
        request: api::SetProductPriceRequest,
    ) -> Result<api::Product> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        ProductError::unless_role(who, &[Role::Operator], ":price")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut p = Self::load_visible(conn, scope, &who, &request.id)?;
            if p.operator != who.organization {
                return Err(ProductError::forbidden(
                    "NOT_THE_OPERATOR",
                    format!("product {} is priced by its operator {}", p.id, p.operator),
                ));
            }
            if ProductState::of(&p) == ProductState::Withdrawn {
                return Err(ProductError::precondition(
                    format!("products/{}", p.id),
                    "the product is withdrawn; it has no price any more",
                ));
            }
            let effective = match instant(request.effective_time.as_ref()) {
                None => now,
                Some(at) if at < now => {
                    return Err(ProductError::invalid(
                        "price",
                        vec![FieldViolation::new(
                            "effective_time",
                            "never in the past: a price change is recorded before it applies",
                        )],
                    ));
                }
                Some(at) => at,
            };
            let price = api::Price {
                amount_fen: request.amount_fen,
                unit: request.unit,
                unit_cost_fen: request.unit_cost_fen,
                effective_time: Some(timestamp(effective)),
                set_by: who.subject.clone(),
                set_time: Some(timestamp(now)),
            };
            let rules = db::pricing_rules(conn, scope)?;
            ProductError::check(
                "price",
                pricing::price_violations(p.class(), p.form(), &price, &rules),
            )?;
            db::add_price(conn, scope, &p.id, &price)?;
            p.price = Some(price);
            p.update_time = Some(timestamp(now));
            db::save(conn, scope, &p, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            emit(conn, &act, api::PRODUCT_PRICED, &p)?;
            let listed = LISTINGS.change(scope, Some(&who), now);
            for l in p.listings.iter().filter(|l| shown(l)) {
                listed.emit(
                    conn,
                    api::PRODUCT_UPDATED,
                    &p.id,
                    &listing(&p, &l.exchange_id, ""),
                )?;
            }
            Ok(p)
        })
        .await
    }

    pub async fn prices(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<Vec<api::Price>> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            Self::load_visible(conn, scope, &who, &id)?;
            db::prices(conn, scope, &id)
        })
        .await
    }

    /// Releases product `id` to exchange `exchange_id` (第二十四条).
    pub async fn release(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        exchange_id: String,
    ) -> Result<api::Product> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        ProductError::unless_role(who, &[Role::Operator], ":release")?;
        if self.exchanges.get(&exchange_id).is_none() {
            let known: Vec<&str> = self.exchanges.all().map(|e| e.id.as_str()).collect();
            return Err(ProductError::invalid(
                "release",
                vec![FieldViolation::new(
                    "exchange_id",
                    format!(
                        "`{exchange_id}` is no data exchange of this deployment (configured: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                )],
            ));
        }
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut p = Self::load_visible(conn, scope, &who, &id)?;
            if p.operator != who.organization {
                return Err(ProductError::forbidden(
                    "NOT_THE_OPERATOR",
                    format!("product {id} is released by its operator {}", p.operator),
                ));
            }
            advance(&mut p, Step::Release)?;
            let subject = format!("products/{id}");
            if p.price.is_none() {
                return Err(ProductError::precondition(
                    subject,
                    "the product has no price: set it first (:price); a public-welfare product's \
                     is 0",
                ));
            }
            if p.listings
                .iter()
                .any(|l| l.exchange_id == exchange_id && shown(l))
            {
                return Err(ProductError::precondition(
                    subject,
                    format!("the product is listed on {exchange_id} already"),
                ));
            }
            ProductError::check(
                "product",
                input_violations(conn, scope, &p, civil_date(now))?,
            )?;
            p.listings.retain(|l| l.exchange_id != exchange_id);
            p.listings.push(api::Listing {
                exchange_id: exchange_id.clone(),
                state: api::ListingState::Pending as i32,
                exchange_listing_id: String::new(),
                reason: String::new(),
                list_time: Some(timestamp(now)),
                update_time: Some(timestamp(now)),
            });
            if p.first_release_time.is_none() {
                p.first_release_time = Some(timestamp(now));
            }
            p.update_time = Some(timestamp(now));
            db::save(conn, scope, &p, now)?;
            let listed = LISTINGS.change(scope, Some(&who), now);
            listed.emit(
                conn,
                api::PRODUCT_LISTED,
                &p.id,
                &listing(&p, &exchange_id, ""),
            )?;
            Ok(p)
        })
        .await
    }

    /// Withdraws product `id` from every exchange, by its operator or the bureau.
    pub async fn withdraw(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        reason: String,
    ) -> Result<api::Product> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        ProductError::unless_role(
            who,
            &[Role::Operator, Role::ProvincialBureau, Role::CityBureau],
            ":withdraw",
        )?;
        let reason = reason.trim().to_string();
        if reason.is_empty() {
            return Err(ProductError::invalid(
                "withdrawal",
                vec![FieldViolation::new(
                    "reason",
                    "required: buyers and exchanges are told why a product is withdrawn",
                )],
            ));
        }
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut p = Self::load_visible(conn, scope, &who, &id)?;
            if !who.has_any(BUREAU) && p.operator != who.organization {
                return Err(ProductError::forbidden(
                    "NOT_THE_OPERATOR",
                    format!("product {id} is withdrawn by its operator or the bureau"),
                ));
            }
            withdraw(
                conn,
                &RECORDER.change(scope, Some(&who), now),
                &mut p,
                &reason,
            )?;
            Ok(p)
        })
        .await
    }

    pub fn exchanges(&self, who: &Identity, tenant: &str) -> Result<Vec<api::Exchange>> {
        TenantScope::for_call(who, tenant, Access::Read)?;
        Ok(self
            .exchanges
            .all()
            .map(|e| api::Exchange {
                id: e.id.clone(),
                name: e.name.clone(),
                receipts_topic: e.receipts_topic.clone(),
                trades_topic: e.trades_topic.clone(),
            })
            .collect())
    }

    pub async fn pricing_rules(&self, who: &Identity, tenant: &str) -> Result<api::PricingRules> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| db::pricing_rules(conn, scope))
            .await
    }

    pub async fn update_pricing_rules(
        &self,
        who: &Identity,
        tenant: &str,
        rules: api::PricingRules,
    ) -> Result<api::PricingRules> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        ProductError::unless_role(who, BUREAU, "setting the pricing rules")?;
        ProductError::check("pricing rules", pricing::rules_violations(&rules))?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let rules = api::PricingRules {
                tenant: scope.tenant().to_string(),
                updated_by: who.subject.clone(),
                update_time: Some(timestamp(now)),
                ..rules
            };
            db::put_pricing_rules(conn, scope, &rules)?;
            let act = RECORDER.change(scope, Some(&who), now);
            let changed = api::PricingRulesChanged {
                tenant: scope.tenant().to_string(),
                rules: Some(rules.clone()),
            };
            act.emit(
                conn,
                api::PRICING_RULES_UPDATED,
                scope.tenant().as_str(),
                &changed,
            )?;
            Ok(rules)
        })
        .await
    }

    /// The public list: registered, released and withdrawn products (第二十条(四)).
    pub async fn public_list(
        &self,
        who: &Identity,
        tenant: &str,
        cursor: Cursor,
    ) -> Result<(Vec<api::PublicProduct>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| {
            let items = db::list(
                conn,
                scope,
                &Visible::All,
                Some(&ProductState::PUBLIC),
                &cursor,
            )?;
            let next = cursor.next_token(&items, |p| &p.id);
            Ok((items.iter().map(public).collect(), next))
        })
        .await
    }

    pub async fn public_get(
        &self,
        who: &Identity,
        tenant: &str,
        code: String,
    ) -> Result<api::PublicProduct> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| {
            match db::find_registered(conn, scope, &code)? {
                Some(p) if ProductState::PUBLIC.contains(&ProductState::of(&p)) => Ok(public(&p)),
                _ => Err(ProductError::not_found("registered product", code)),
            }
        })
        .await
    }
}

fn public(p: &api::Product) -> api::PublicProduct {
    api::PublicProduct {
        registration_code: code(p),
        name: p.name.clone(),
        class: p.class,
        description: p.description.clone(),
        operator: p.operator.clone(),
        form: p.form,
        // Who set it is staff's business, not the public's.
        price: p.price.clone().map(|price| api::Price {
            set_by: String::new(),
            ..price
        }),
        terms_of_use: p.terms_of_use.clone(),
        state: p.state,
        exchange_ids: p
            .listings
            .iter()
            .filter(|l| shown(l))
            .map(|l| l.exchange_id.clone())
            .collect(),
        registration_time: p.registration.as_ref().and_then(|r| r.time),
    }
}

/// Withdraws `p`: every exchange that shows it is told (`delisted`), then the product's own event.
fn withdraw(
    conn: &mut AnyConnection,
    act: &Change<'_>,
    p: &mut api::Product,
    reason: &str,
) -> Result<()> {
    advance(p, Step::Withdraw)?;
    let mut delisted = Vec::new();
    for l in p.listings.iter_mut().filter(|l| shown(l)) {
        l.state = api::ListingState::Delisted as i32;
        l.reason = reason.to_string();
        l.update_time = Some(timestamp(act.now));
        delisted.push(l.exchange_id.clone());
    }
    p.withdrawal_reason = reason.to_string();
    p.update_time = Some(timestamp(act.now));
    db::save(conn, act.scope, p, act.now)?;
    let listed = LISTINGS.change(act.scope, act.actor, act.now);
    for exchange in &delisted {
        listed.emit(
            conn,
            api::PRODUCT_DELISTED,
            &p.id,
            &listing(p, exchange, reason),
        )?;
    }
    emit(conn, act, api::PRODUCT_WITHDRAWN, p)
}

/// Withdraws every registered or released product of `operator` (its agreement ended, 第二十九条)
/// or, with `grant`, those built on that grant (it ended).
pub fn withdraw_of_operator(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: &str,
    grant: Option<&str>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<usize> {
    let live = [ProductState::Registered, ProductState::Listed];
    let act = RECORDER.change(scope, None, now);
    let mut n = 0;
    for mut p in db::of_operator(conn, scope, operator, &live)? {
        if grant.is_some_and(|g| !p.inputs.iter().any(|i| i.grant_id == g)) {
            continue;
        }
        withdraw(conn, &act, &mut p, reason)?;
        n += 1;
    }
    Ok(n)
}
