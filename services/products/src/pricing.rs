//! Prices of public data products (第二十三条; 发改价格〔2025〕65号): public-governance and
//! public-welfare products are free, or at cost where the bureau's rule says so; industry and
//! sector products are priced at most the government-guided ceiling the bureau sets per tenant,
//! form and unit.

use pdp_kit::error::FieldViolation;
use pdp_proto::pdp::planning::v1::ProductClass;
use pdp_proto::pdp::products::v1 as api;

/// Fen as yuan for messages: 1250 → "12.50 CNY".
pub fn yuan(fen: i64) -> String {
    format!("{}.{:02} CNY", fen / 100, (fen % 100).abs())
}

/// The units a form is sold by.
fn units_of(form: api::ProductForm) -> &'static [api::PriceUnit] {
    match form {
        api::ProductForm::Api => &[api::PriceUnit::PerCall, api::PriceUnit::PerMonth],
        api::ProductForm::Dataset => &[api::PriceUnit::PerDelivery, api::PriceUnit::PerMonth],
        api::ProductForm::Unspecified => &[],
    }
}

/// Every violation of `price` for a product of `class` and `form` under `rules`.
pub fn price_violations(
    class: ProductClass,
    form: api::ProductForm,
    price: &api::Price,
    rules: &api::PricingRules,
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    let unit = price.unit();
    if !units_of(form).contains(&unit) {
        let names: Vec<_> = units_of(form).iter().map(|u| u.as_str_name()).collect();
        v.push(FieldViolation::new(
            "unit",
            format!(
                "a {} product is sold {}",
                form.as_str_name(),
                names.join(" or ")
            ),
        ));
    }
    if price.amount_fen < 0 || price.unit_cost_fen < 0 {
        v.push(FieldViolation::new(
            "amount_fen",
            "a price and a unit cost are never negative",
        ));
        return v;
    }
    match class {
        ProductClass::PublicGovernanceAndWelfare if !rules.welfare_at_cost => {
            if price.amount_fen != 0 {
                v.push(FieldViolation::new(
                    "amount_fen",
                    format!(
                        "a public-governance or public-welfare product is free of charge in \
                         tenant {} (第二十三条; 发改价格〔2025〕65号)",
                        rules.tenant
                    ),
                ));
            }
        }
        ProductClass::PublicGovernanceAndWelfare => {
            if price.amount_fen > price.unit_cost_fen {
                v.push(FieldViolation::new(
                    "amount_fen",
                    format!(
                        "a public-governance or public-welfare product is priced at most its unit \
                         cost ({}) in tenant {} (第二十三条)",
                        yuan(price.unit_cost_fen),
                        rules.tenant
                    ),
                ));
            }
        }
        ProductClass::IndustryDevelopment => {
            let ceiling = rules
                .ceilings
                .iter()
                .find(|c| c.form() == form && c.unit() == unit);
            match ceiling {
                None => v.push(FieldViolation::new(
                    "unit",
                    format!(
                        "the bureau has set no price ceiling for {} products sold {} in tenant {}; \
                         an industry product is priced within one (第二十三条)",
                        form.as_str_name(),
                        unit.as_str_name(),
                        rules.tenant
                    ),
                )),
                Some(c) if price.amount_fen > c.amount_fen => v.push(FieldViolation::new(
                    "amount_fen",
                    format!(
                        "{} is above the ceiling of {} {} for {} products in tenant {} \
                         (第二十三条; 发改价格〔2025〕65号)",
                        yuan(price.amount_fen),
                        yuan(c.amount_fen),
                        unit.as_str_name(),
                        form.as_str_name(),
                        rules.tenant
                    ),
                )),
                Some(_) => {}
            }
        }
        ProductClass::Unspecified => v.push(FieldViolation::new(
            "class",
            "the product has no class to price it by",
        )),
    }
    v
}

/// Every violation of a tenant's pricing rules.
pub fn rules_violations(rules: &api::PricingRules) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, c) in rules.ceilings.iter().enumerate() {
        let field = format!("rules.ceilings[{i}]");
        if !units_of(c.form()).contains(&c.unit()) {
            v.push(FieldViolation::new(
                field.clone(),
                "a form (PRODUCT_FORM_API or _DATASET) and a unit it is sold by",
            ));
        } else if !seen.insert((c.form, c.unit)) {
            v.push(FieldViolation::new(
                field.clone(),
                "one ceiling per form and unit",
            ));
        }
        if c.amount_fen < 0 {
            v.push(FieldViolation::new(
                format!("{field}.amount_fen"),
                "never negative",
            ));
        }
    }
    let mut sharings: Vec<(String, &api::RevenueSharing)> = Vec::new();
    if let Some(s) = &rules.sharing {
        sharings.push(("rules.sharing".to_string(), s));
    }
    let mut operators: Vec<_> = rules.operator_sharing.iter().collect();
    operators.sort_by(|a, b| a.0.cmp(b.0));
    for (operator, s) in operators {
        sharings.push((format!("rules.operator_sharing.{operator}"), s));
    }
    for (field, s) in sharings {
        let total =
            u64::from(s.provider_units_bp) + u64::from(s.operator_bp) + u64::from(s.developer_bp);
        if total != 10_000 {
            v.push(FieldViolation::new(
                field,
                format!(
                    "the shares are basis points that add up to 10000, not {total} (第二十三条: \
                     each party's share of the whole)"
                ),
            ));
        }
    }
    v
}

/// The split of `operator`'s trades: its agreement's where the bureau entered it, else the
/// tenant's.
pub fn sharing_of<'a>(
    rules: &'a api::PricingRules,
    operator: &str,
) -> Option<&'a api::RevenueSharing> {
    rules
        .operator_sharing
        .get(operator)
        .or(rules.sharing.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> api::PricingRules {
        api::PricingRules {
            tenant: "230100".into(),
            welfare_at_cost: false,
            ceilings: vec![api::PriceCeiling {
                form: api::ProductForm::Api as i32,
                unit: api::PriceUnit::PerCall as i32,
                amount_fen: 50,
            }],
            ..Default::default()
        }
    }

    fn price(amount_fen: i64, unit: api::PriceUnit) -> api::Price {
        api::Price {
            amount_fen,
            unit: unit as i32,
            ..Default::default()
        }
    }

    #[test]
    fn an_industry_price_above_its_ceiling_is_refused_naming_the_ceiling() {
        let industry = ProductClass::IndustryDevelopment;
        let api_form = api::ProductForm::Api;
        let ok = price_violations(
            industry,
            api_form,
            &price(50, api::PriceUnit::PerCall),
            &rules(),
        );
        assert!(ok.is_empty(), "{ok:?}");
        let v = price_violations(
            industry,
            api_form,
            &price(51, api::PriceUnit::PerCall),
            &rules(),
        );
        assert!(v[0].description.contains("ceiling of 0.50 CNY"), "{v:?}");
        let v = price_violations(
            industry,
            api_form,
            &price(1, api::PriceUnit::PerMonth),
            &rules(),
        );
        assert!(v[0].description.contains("no price ceiling"), "{v:?}");
    }

    #[test]
    fn welfare_products_are_free_unless_the_tenant_allows_cost() {
        let welfare = ProductClass::PublicGovernanceAndWelfare;
        let form = api::ProductForm::Dataset;
        let mut p = price(100, api::PriceUnit::PerDelivery);
        p.unit_cost_fen = 100;
        assert_eq!(price_violations(welfare, form, &p, &rules()).len(), 1);
        let at_cost = api::PricingRules {
            welfare_at_cost: true,
            ..rules()
        };
        assert!(price_violations(welfare, form, &p, &at_cost).is_empty());
        p.amount_fen = 101;
        assert_eq!(price_violations(welfare, form, &p, &at_cost).len(), 1);
    }
}
