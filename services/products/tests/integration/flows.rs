//! Products' rules, end to end through the service and a real store.

use pdp_kit::error::{ErrorCode, ServiceError};
use pdp_kit::paging::Cursor;
use pdp_proto::pdp::exchange::v1 as exchange;
use pdp_proto::pdp::planning::v1::ProductClass;
use pdp_proto::pdp::products::v1 as api;

use crate::support::*;

fn first_page() -> Cursor {
    Cursor::parse(0, "").unwrap()
}

const INDUSTRY: ProductClass = ProductClass::IndustryDevelopment;
const WELFARE: ProductClass = ProductClass::PublicGovernanceAndWelfare;

pub async fn a_product_is_built_within_its_operators_grants(backend: Backend) {
    let i = Instance::new(&backend).await;
    let beta = caller("operator", "beta");
    // Gamma's grant, a grant nobody holds, a table beta's workspace lacks: each refused, named.
    let with_input = |grant: &str, tables: &[&str]| {
        let mut p = api_product(INDUSTRY);
        p.inputs = vec![api::ProductInput {
            grant_id: grant.into(),
            tables: tables.iter().map(|t| t.to_string()).collect(),
            product_id: String::new(),
        }];
        p
    };
    for (product, field) in [
        (with_input("g2", &[]), "product.inputs[0].grant_id"),
        (with_input("g9", &[]), "product.inputs[0].grant_id"),
        (
            with_input("g1", &["by_route"]),
            "product.inputs[0].tables[0]",
        ),
    ] {
        let err = i
            .products
            .create(&beta, HARBIN, String::new(), product)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
        assert_eq!(fields(&err), [field], "{err}");
    }
    // Two grants: the sandbox computes a product on one.
    let mut two = with_input("g1", &[]);
    two.inputs.push(api::ProductInput {
        grant_id: "g2".into(),
        ..Default::default()
    });
    let err = i
        .products
        .create(&beta, HARBIN, String::new(), two)
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["product.inputs"], "{err}");
    let err = i
        .products
        .create(&beta, HARBIN, String::new(), with_input("g2", &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no valid grant of beta"), "{err}");

    // A developer builds under the operator that approved it, not another.
    let delta = caller("developer", "delta");
    let err = i
        .products
        .create(&delta, HARBIN, "gamma".into(), api_product(INDUSTRY))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["operator"], "{err}");
    let by_delta = i
        .products
        .create(&delta, HARBIN, "beta".into(), api_product(INDUSTRY))
        .await
        .unwrap();
    assert_eq!(
        (by_delta.operator.as_str(), by_delta.developer.as_str()),
        ("beta", "delta")
    );
    assert_eq!(state(&by_delta), api::ProductState::Draft);

    // Beta sees its developer's product, gamma does not, delta sees its own.
    let gamma = caller("operator", "gamma");
    let err = i
        .products
        .get(&gamma, HARBIN, by_delta.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    let (seen, _) = i
        .products
        .list(&beta, HARBIN, None, first_page())
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    // Only the maker revises it; beta may not.
    let err = i
        .products
        .update(&beta, HARBIN, by_delta.id.clone(), api_product(INDUSTRY))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err}");

    // A grant that ended since the definition stops the submission.
    i.grant("g1", "beta", false).await;
    let err = i
        .products
        .submit(&delta, HARBIN, by_delta.id.clone())
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["product.inputs[0].grant_id"], "{err}");
    let unchanged = i.products.get(&delta, HARBIN, by_delta.id).await.unwrap();
    assert_eq!(state(&unchanged), api::ProductState::Draft);

    // A provider or a supervisor defines nothing.
    let err = i
        .products
        .create(
            &caller("supervisor", "cac"),
            HARBIN,
            String::new(),
            api_product(INDUSTRY),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err}");
    pdp_kit::testing::assert_events_documented(&i.store, pdp_products::TOPIC).await;
}

pub async fn reviews_before_release_then_a_registration_code_unique_and_public(backend: Backend) {
    let i = Instance::new(&backend).await;
    let beta = caller("operator", "beta");
    let delta = caller("developer", "delta");
    let bureau = caller("city_bureau", "bureau");
    let p = i
        .products
        .create(&delta, HARBIN, "beta".into(), api_product(INDUSTRY))
        .await
        .unwrap();
    // Reviewed before submission: the missing step is named.
    let err = i
        .products
        .review(&beta, HARBIN, approval(&p.id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition, "{err}");
    assert!(err.to_string().contains(":submit"), "{err}");
    let p = i.products.submit(&delta, HARBIN, p.id).await.unwrap();
    assert_eq!(state(&p), api::ProductState::OperatorReview);
    // The operator reviews its developer's product first (第二十条(三)), not the bureau.
    let err = i
        .products
        .review(&bureau, HARBIN, approval(&p.id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err}");
    // An approval with a failed aspect, a return without a note, a missing aspect: refused.
    let mut failed = approval(&p.id);
    failed.findings[1].passed = false;
    let err = i.products.review(&beta, HARBIN, failed).await.unwrap_err();
    assert_eq!(fields(&err), ["outcome"], "{err}");
    let returned = api::ReviewProductRequest {
        outcome: api::ReviewOutcome::Returned as i32,
        findings: findings(false)[..2].to_vec(),
        ..approval(&p.id)
    };
    let err = i
        .products
        .review(&beta, HARBIN, returned.clone())
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["findings", "note"], "{err}");
    // Returned with a note, revised, submitted again.
    let p = i
        .products
        .review(
            &beta,
            HARBIN,
            api::ReviewProductRequest {
                findings: findings(false),
                note: "name the buyers' purpose in the terms".into(),
                ..returned
            },
        )
        .await
        .unwrap();
    assert_eq!(state(&p), api::ProductState::Returned);
    let mut revised = api_product(INDUSTRY);
    revised.terms_of_use = "Route planning by the buyer only; never passed on".into();
    i.products
        .update(&delta, HARBIN, p.id.clone(), revised)
        .await
        .unwrap();
    i.products
        .submit(&delta, HARBIN, p.id.clone())
        .await
        .unwrap();
    let p = i
        .products
        .review(&beta, HARBIN, approval(&p.id))
        .await
        .unwrap();
    assert_eq!(state(&p), api::ProductState::BureauReview);
    assert!(p.registration.is_none());
    // The operator cannot approve at the bureau's stage.
    let err = i
        .products
        .review(&beta, HARBIN, approval(&p.id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err}");
    let p = i
        .products
        .review(&bureau, HARBIN, approval(&p.id))
        .await
        .unwrap();
    assert_eq!(state(&p), api::ProductState::Registered);
    assert_eq!(
        p.reviews.len(),
        3,
        "returned, operator's approval, bureau's approval"
    );
    let code = p.registration.clone().unwrap().code;
    assert_eq!(code, "230100-2026-000001");

    // The next registration takes the next number; a new year starts again at 1.
    let second = i.registered(api_product(WELFARE)).await;
    assert_eq!(second.registration.unwrap().code, "230100-2026-000002");
    i.set("2027-01-04 09:00");
    let mut third = api_product(WELFARE);
    third.name = "Stops without shelter".into();
    let third = i.registered(third).await;
    assert_eq!(third.registration.unwrap().code, "230100-2027-000001");

    // The registration is public, without a draft or a review in sight.
    let public = caller("public", "anyone");
    let (list, _) = i
        .products
        .public_list(&public, HARBIN, first_page())
        .await
        .unwrap();
    assert_eq!(list.len(), 3);
    let one = i
        .products
        .public_get(&public, HARBIN, code.clone())
        .await
        .unwrap();
    assert_eq!(
        (one.name.as_str(), one.operator.as_str()),
        ("Delay by stop", "beta")
    );
    let draft = i
        .products
        .create(&beta, HARBIN, String::new(), api_product(INDUSTRY))
        .await
        .unwrap();
    let (list, _) = i
        .products
        .public_list(&public, HARBIN, first_page())
        .await
        .unwrap();
    assert!(list.iter().all(|p| !p.registration_code.is_empty()));
    assert_eq!(list.len(), 3, "the draft {} is not public", draft.id);
    let events: Vec<String> = i
        .events(pdp_products::TOPIC)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(events.contains(&"pdp.products.product.registered".to_string()));
    assert!(events.contains(&"pdp.products.product.returned".to_string()));
    pdp_kit::testing::assert_events_documented(&i.store, pdp_products::TOPIC).await;
}

pub async fn prices_stay_within_the_bureaus_rules_and_every_change_is_kept(backend: Backend) {
    let i = Instance::new(&backend).await;
    let beta = caller("operator", "beta");
    let bureau = caller("city_bureau", "bureau");
    let industry = i.registered(api_product(INDUSTRY)).await;
    let price = |amount_fen: i64, unit: api::PriceUnit| api::SetProductPriceRequest {
        tenant: HARBIN.into(),
        id: industry.id.clone(),
        amount_fen,
        unit: unit as i32,
        ..Default::default()
    };
    // No ceiling yet: an industry product cannot be priced.
    let err = i
        .products
        .set_price(&beta, HARBIN, price(30, api::PriceUnit::PerCall))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no price ceiling"), "{err}");
    // Only the bureau sets the rules.
    let rules = api::PricingRules {
        welfare_at_cost: false,
        ceilings: vec![api::PriceCeiling {
            form: api::ProductForm::Api as i32,
            unit: api::PriceUnit::PerCall as i32,
            amount_fen: 50,
        }],
        ..Default::default()
    };
    let err = i
        .products
        .update_pricing_rules(&beta, HARBIN, rules.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err}");
    i.products
        .update_pricing_rules(&bureau, HARBIN, rules)
        .await
        .unwrap();
    // Above the ceiling: refused, naming it; nothing recorded.
    let err = i
        .products
        .set_price(&beta, HARBIN, price(51, api::PriceUnit::PerCall))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["amount_fen"], "{err}");
    assert!(err.to_string().contains("ceiling of 0.50 CNY"), "{err}");
    assert!(
        i.products
            .prices(&beta, HARBIN, industry.id.clone())
            .await
            .unwrap()
            .is_empty()
    );
    // At the ceiling now, lower from a later time: both kept, in order.
    i.products
        .set_price(&beta, HARBIN, price(50, api::PriceUnit::PerCall))
        .await
        .unwrap();
    let mut later = price(40, api::PriceUnit::PerCall);
    later.effective_time = Some(pdp_kit::change::timestamp(at("2026-12-01 00:00")));
    let p = i.products.set_price(&beta, HARBIN, later).await.unwrap();
    assert_eq!(p.price.unwrap().amount_fen, 40);
    let history = i
        .products
        .prices(&beta, HARBIN, industry.id.clone())
        .await
        .unwrap();
    let amounts: Vec<i64> = history.iter().map(|p| p.amount_fen).collect();
    assert_eq!(amounts, [50, 40]);
    // Never effective in the past; never by another operator.
    let mut past = price(40, api::PriceUnit::PerCall);
    past.effective_time = Some(pdp_kit::change::timestamp(at("2026-11-01 00:00")));
    let err = i.products.set_price(&beta, HARBIN, past).await.unwrap_err();
    assert_eq!(fields(&err), ["effective_time"], "{err}");
    let err = i
        .products
        .set_price(
            &caller("operator", "gamma"),
            HARBIN,
            price(10, api::PriceUnit::PerCall),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");

    // A public-welfare product is free of charge.
    let welfare = i.registered(api_product(WELFARE)).await;
    let free = |amount_fen: i64| api::SetProductPriceRequest {
        tenant: HARBIN.into(),
        id: welfare.id.clone(),
        amount_fen,
        unit: api::PriceUnit::PerCall as i32,
        unit_cost_fen: 5,
        ..Default::default()
    };
    let err = i
        .products
        .set_price(&beta, HARBIN, free(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("free of charge"), "{err}");
    i.products.set_price(&beta, HARBIN, free(0)).await.unwrap();
    pdp_kit::testing::assert_events_documented(&i.store, pdp_products::TOPIC).await;
}

pub async fn release_lists_on_the_exchange_and_termination_delists_everything(backend: Backend) {
    let i = Instance::new(&backend).await;
    let beta = caller("operator", "beta");
    let p = i.registered(api_product(WELFARE)).await;
    let release = |exchange: &str| {
        i.products
            .release(&beta, HARBIN, p.id.clone(), exchange.to_string())
    };
    let err = release("sh-dex").await.unwrap_err();
    assert_eq!(fields(&err), ["exchange_id"], "{err}");
    assert!(err.to_string().contains("configured: hlj-dex"), "{err}");
    // No price, no release.
    let err = release("hlj-dex").await.unwrap_err();
    assert!(err.to_string().contains(":price"), "{err}");
    i.products
        .set_price(
            &beta,
            HARBIN,
            api::SetProductPriceRequest {
                tenant: HARBIN.into(),
                id: p.id.clone(),
                unit: api::PriceUnit::PerCall as i32,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let listed = release("hlj-dex").await.unwrap();
    assert_eq!(state(&listed), api::ProductState::Listed);
    assert!(listed.first_release_time.is_some());
    let err = release("hlj-dex").await.unwrap_err();
    assert!(
        err.to_string().contains("listed on hlj-dex already"),
        "{err}"
    );

    // The exchange reads what it lists and how a buyer calls it.
    let events = i.events(pdp_products::LISTINGS_TOPIC).await;
    assert_eq!(events.len(), 1);
    let listing: api::ProductListing = events[0]
        .data_of(api::PRODUCT_LISTED)
        .unwrap()
        .expect("a listing");
    assert_eq!(listing.exchange_id, "hlj-dex");
    assert_eq!(listing.registration_code, "230100-2026-000001");
    assert_eq!(
        listing.delivery.unwrap().path,
        format!("/api/v1/tenants/230100/products/{}:call", p.id)
    );
    assert_eq!(events[0].subject, p.id);

    // Beta delivered it: beta may not build on it, its developer may (第二十条(一)).
    let mut derived = api_product(INDUSTRY);
    derived.inputs.push(api::ProductInput {
        product_id: p.id.clone(),
        ..Default::default()
    });
    let err = i
        .products
        .create(&beta, HARBIN, String::new(), derived.clone())
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["product.inputs[1].product_id"], "{err}");
    assert!(err.to_string().contains("第二十条(一)"), "{err}");
    i.products
        .create(
            &caller("developer", "delta"),
            HARBIN,
            "beta".into(),
            derived,
        )
        .await
        .unwrap();

    // A second product on the exchange, then the agreement is terminated: both are delisted.
    let other = i.registered(api_product(WELFARE)).await;
    i.products
        .set_price(
            &beta,
            HARBIN,
            api::SetProductPriceRequest {
                tenant: HARBIN.into(),
                id: other.id.clone(),
                unit: api::PriceUnit::PerCall as i32,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    i.products
        .release(&beta, HARBIN, other.id.clone(), "hlj-dex".into())
        .await
        .unwrap();
    i.terminate("beta").await;
    for id in [&p.id, &other.id] {
        let now = i.products.get(&beta, HARBIN, id.clone()).await.unwrap();
        assert_eq!(state(&now), api::ProductState::Withdrawn);
        assert!(
            now.withdrawal_reason.contains("terminated"),
            "{}",
            now.withdrawal_reason
        );
        assert_eq!(now.listings[0].state(), api::ListingState::Delisted);
    }
    let delisted: Vec<String> = i
        .events(pdp_products::LISTINGS_TOPIC)
        .await
        .into_iter()
        .filter(|e| e.event_type == api::PRODUCT_DELISTED.name())
        .map(|e| e.subject)
        .collect();
    assert_eq!(delisted.len(), 2, "{delisted:?}");
    // The same termination again changes nothing more.
    i.terminate("beta").await;
    assert_eq!(i.events(pdp_products::LISTINGS_TOPIC).await.len(), 4);
    // Withdrawn stays public as a registration, listed nowhere.
    let (public, _) = i
        .products
        .public_list(&caller("public", "anyone"), HARBIN, first_page())
        .await
        .unwrap();
    assert!(public.iter().all(|p| p.exchange_ids.is_empty()));
    pdp_kit::testing::assert_events_documented(&i.store, pdp_products::LISTINGS_TOPIC).await;
}

pub async fn an_exchanges_signed_receipt_and_trades_apply_once_and_nothing_unsigned_does(
    backend: Backend,
) {
    let i = Instance::new(&backend).await;
    let beta = caller("operator", "beta");
    let bureau = caller("city_bureau", "bureau");
    let rules = api::PricingRules {
        ceilings: vec![api::PriceCeiling {
            form: api::ProductForm::Api as i32,
            unit: api::PriceUnit::PerCall as i32,
            amount_fen: 50,
        }],
        sharing: Some(api::RevenueSharing {
            provider_units_bp: 1_000,
            operator_bp: 7_000,
            developer_bp: 2_000,
        }),
        ..Default::default()
    };
    // Shares that do not make a whole are refused.
    let mut broken = rules.clone();
    broken.sharing.as_mut().unwrap().developer_bp = 1_000;
    let err = i
        .products
        .update_pricing_rules(&bureau, HARBIN, broken)
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["rules.sharing"], "{err}");
    i.products
        .update_pricing_rules(&bureau, HARBIN, rules)
        .await
        .unwrap();
    let p = i.registered(api_product(INDUSTRY)).await;
    i.products
        .set_price(
            &beta,
            HARBIN,
            api::SetProductPriceRequest {
                tenant: HARBIN.into(),
                id: p.id.clone(),
                amount_fen: 30,
                unit: api::PriceUnit::PerCall as i32,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    i.products
        .release(&beta, HARBIN, p.id.clone(), "hlj-dex".into())
        .await
        .unwrap();
    let key = i.exchange_key.clone();

    // The receipt, signed: the listing is accepted under the exchange's own id.
    let receipt = exchange::ListingReceipt {
        product_id: p.id.clone(),
        exchange_id: "hlj-dex".into(),
        exchange_listing_id: "DEX-2026-0042".into(),
        ..Default::default()
    };
    i.exchange_sends(exchange::LISTING_ACCEPTED, &receipt, Some(&key), |_| {})
        .await
        .unwrap();
    let now = i.products.get(&beta, HARBIN, p.id.clone()).await.unwrap();
    assert_eq!(now.listings[0].state(), api::ListingState::Accepted);
    assert_eq!(now.listings[0].exchange_listing_id, "DEX-2026-0042");

    let trade = exchange::TradeCompleted {
        trade_id: "T-1".into(),
        exchange_id: "hlj-dex".into(),
        product_id: p.id.clone(),
        buyer_organization: "91230100MA1BUYER01".into(),
        quantity: 1_000,
        amount_fen: 30_000,
        trade_time: "2026-11-30T02:00:00Z".into(),
        ..Default::default()
    };
    // Unsigned, signed by another key, or altered after signing: never applied.
    let other = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let unsigned = i
        .exchange_sends(exchange::TRADE_COMPLETED, &trade, None, |_| {})
        .await
        .unwrap_err();
    assert!(unsigned.contains("unsigned"), "{unsigned}");
    let forged = i
        .exchange_sends(exchange::TRADE_COMPLETED, &trade, Some(&other), |_| {})
        .await
        .unwrap_err();
    assert!(forged.contains("does not verify"), "{forged}");
    let altered = i
        .exchange_sends(exchange::TRADE_COMPLETED, &trade, Some(&key), |data| {
            data["amount_fen"] = serde_json::json!("3");
        })
        .await
        .unwrap_err();
    assert!(altered.contains("does not verify"), "{altered}");
    let (none, _) = i
        .products
        .trades(&bureau, HARBIN, None, first_page())
        .await
        .unwrap();
    assert!(none.is_empty());

    // Signed: recorded with the buyer's entitlement and the shares; a redelivery changes nothing.
    for _ in 0..2 {
        i.exchange_sends(exchange::TRADE_COMPLETED, &trade, Some(&key), |_| {})
            .await
            .unwrap();
    }
    let (trades, _) = i
        .products
        .trades(&bureau, HARBIN, None, first_page())
        .await
        .unwrap();
    assert_eq!(trades.len(), 1);
    let t = &trades[0];
    assert_eq!(t.entitlement.as_ref().unwrap().calls, 1_000);
    let shares: Vec<i64> = t.shares.iter().map(|s| s.amount_fen).collect();
    assert_eq!(
        shares,
        [3_000, 27_000],
        "no developer: its share is the operator's"
    );
    assert_eq!(t.registration_code, "230100-2026-000001");
    let recorded = i
        .events(pdp_products::TOPIC)
        .await
        .into_iter()
        .filter(|e| e.event_type == api::TRADE_RECORDED.name())
        .count();
    assert_eq!(recorded, 1);
    // Gamma sees none of beta's trades.
    let (theirs, _) = i
        .products
        .trades(&caller("operator", "gamma"), HARBIN, None, first_page())
        .await
        .unwrap();
    assert!(theirs.is_empty());

    // The bureau enters beta's agreement's own split: it wins over the tenant's for beta's trades.
    let mut own = api::PricingRules {
        ceilings: vec![api::PriceCeiling {
            form: api::ProductForm::Api as i32,
            unit: api::PriceUnit::PerCall as i32,
            amount_fen: 50,
        }],
        ..Default::default()
    };
    own.operator_sharing.insert(
        "beta".into(),
        api::RevenueSharing {
            provider_units_bp: 5_000,
            operator_bp: 4_000,
            developer_bp: 0,
        },
    );
    let err = i
        .products
        .update_pricing_rules(&bureau, HARBIN, own.clone())
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["rules.operator_sharing.beta"], "{err}");
    own.operator_sharing.get_mut("beta").unwrap().operator_bp = 5_000;
    i.products
        .update_pricing_rules(&bureau, HARBIN, own)
        .await
        .unwrap();
    let second = exchange::TradeCompleted {
        trade_id: "T-1b".into(),
        amount_fen: 1_000,
        ..trade.clone()
    };
    i.exchange_sends(exchange::TRADE_COMPLETED, &second, Some(&key), |_| {})
        .await
        .unwrap();
    let (trades, _) = i
        .products
        .trades(&bureau, HARBIN, None, first_page())
        .await
        .unwrap();
    let shares: Vec<i64> = trades[0].shares.iter().map(|s| s.amount_fen).collect();
    assert_eq!(
        (trades[0].trade_id.as_str(), shares),
        ("T-1b", vec![500, 500])
    );

    // A trade of a product not listed there, or an event no exchange sends: refused.
    let elsewhere = exchange::TradeCompleted {
        trade_id: "T-2".into(),
        product_id: "p-unknown".into(),
        ..trade.clone()
    };
    let err = i
        .exchange_sends(exchange::TRADE_COMPLETED, &elsewhere, Some(&key), |_| {})
        .await
        .unwrap_err();
    assert!(err.contains("no product p-unknown"), "{err}");
    pdp_kit::testing::assert_events_documented(&i.store, pdp_products::TOPIC).await;
}

pub async fn operators_report_quarters_and_revenue_past_the_permitted_is_flagged_once(
    backend: Backend,
) {
    let i = Instance::new(&backend).await;
    let beta = caller("operator", "beta");
    let bureau = caller("city_bureau", "bureau");
    let rules = api::PricingRules {
        ceilings: vec![api::PriceCeiling {
            form: api::ProductForm::Api as i32,
            unit: api::PriceUnit::PerCall as i32,
            amount_fen: 50,
        }],
        sharing: Some(api::RevenueSharing {
            provider_units_bp: 2_000,
            operator_bp: 8_000,
            developer_bp: 0,
        }),
        ..Default::default()
    };
    i.products
        .update_pricing_rules(&bureau, HARBIN, rules)
        .await
        .unwrap();
    let p = i.registered(api_product(INDUSTRY)).await;
    let price = api::SetProductPriceRequest {
        tenant: HARBIN.into(),
        id: p.id.clone(),
        amount_fen: 30,
        unit: api::PriceUnit::PerCall as i32,
        ..Default::default()
    };
    i.products.set_price(&beta, HARBIN, price).await.unwrap();
    i.products
        .release(&beta, HARBIN, p.id.clone(), "hlj-dex".into())
        .await
        .unwrap();

    // The bureau permits beta 500 CNY in 2026; only the bureau may.
    let permit = api::SetPermittedRevenueRequest {
        tenant: HARBIN.into(),
        operator: "beta".into(),
        year: 2026,
        permitted_revenue_fen: 50_000,
    };
    let err = i
        .products
        .set_permitted_revenue(&beta, HARBIN, permit.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err}");
    let summary = i
        .products
        .set_permitted_revenue(&bureau, HARBIN, permit)
        .await
        .unwrap();
    assert!(
        summary.permitted_set && summary.excess_fen == 0,
        "{summary:?}"
    );

    // Quarterly reports: a correction supersedes, a quarter to come is refused.
    let report = |period: &str, revenue_fen: i64| api::PeriodReport {
        period: period.into(),
        costs_fen: 10_000,
        revenue_fen,
        expenditure_fen: 5_000,
        ..Default::default()
    };
    let first = i
        .products
        .report_period(&beta, HARBIN, report("2026-Q4", 20_000))
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    let corrected = i
        .products
        .report_period(&beta, HARBIN, report("2026-Q4", 25_000))
        .await
        .unwrap();
    assert_eq!(corrected.version, 2);
    let err = i
        .products
        .report_period(&beta, HARBIN, report("2027-Q1", 1))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["report.period"], "{err}");
    let listed = i
        .products
        .period_reports(&bureau, HARBIN, String::new(), 2026)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].version, listed[0].revenue_fen), (2, 25_000));

    // Three trades: the second passes the permitted revenue, and the bureau is told once.
    let key = i.exchange_key.clone();
    for (n, amount_fen) in [(1, 30_000), (2, 30_000), (3, 1_000)] {
        let trade = exchange::TradeCompleted {
            trade_id: format!("T-{n}"),
            exchange_id: "hlj-dex".into(),
            product_id: p.id.clone(),
            buyer_organization: "91230100MA1BUYER01".into(),
            quantity: 1,
            amount_fen,
            trade_time: "2026-11-30T02:00:00Z".into(),
            ..Default::default()
        };
        i.exchange_sends(exchange::TRADE_COMPLETED, &trade, Some(&key), |_| {})
            .await
            .unwrap();
    }
    let exceeded: Vec<api::RevenueCapChanged> = i
        .events(pdp_products::TOPIC)
        .await
        .iter()
        .filter_map(|e| e.data_of(api::REVENUE_CAP_EXCEEDED).unwrap())
        .collect();
    assert_eq!(exceeded.len(), 1, "{exceeded:?}");
    assert_eq!(
        (exceeded[0].traded_revenue_fen, exceeded[0].excess_fen),
        (60_000, 10_000)
    );
    let summary = i
        .products
        .revenue_summary(&beta, HARBIN, "beta".into(), 2026)
        .await
        .unwrap();
    assert_eq!(summary.traded_revenue_fen, 61_000);
    assert_eq!(summary.excess_fen, 11_000);
    assert_eq!(summary.trades, 3);
    assert_eq!(
        summary.reported_revenue_fen, 25_000,
        "the corrected report counts"
    );
    let shares: Vec<i64> = summary.shares.iter().map(|s| s.amount_fen).collect();
    assert_eq!(shares, [12_200, 48_800]);
    // Another operator sees none of it.
    let err = i
        .products
        .revenue_summary(&caller("operator", "gamma"), HARBIN, "beta".into(), 2026)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    pdp_kit::testing::assert_events_documented(&i.store, pdp_products::TOPIC).await;
}
