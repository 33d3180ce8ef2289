//! The data-resource catalog (数据资源目录) and registration (登记): what a resource must state
//! before it is registered, and which resources may enter a plan's scope (第六条, 第八条).

use std::collections::HashSet;

use pdp_kit::error::FieldViolation;
use pdp_kit::identity::TenantCode;
use pdp_proto::pdp::planning::v1 as api;

const ART_6: &str = "第六条";
const ART_8: &str = "第八条";

/// What a provider must give when it first lists a resource.
pub fn creation_violations(resource: &api::DataResource) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if resource.name.trim().is_empty() {
        v.push(FieldViolation::new("resource.name", "required"));
    }
    if resource.provider_unit.trim().is_empty() {
        v.push(FieldViolation::new(
            "resource.provider_unit",
            "required: the provider unit that holds the resource",
        ));
    }
    v.extend(origin_violations(resource));
    v
}

fn origin_violations(resource: &api::DataResource) -> Vec<FieldViolation> {
    match &resource.shared_origin {
        Some(origin) if origin.source.trim().is_empty() => vec![FieldViolation::new(
            "resource.shared_origin.source",
            format!(
                "required for a resource obtained through government data sharing: the providing region or department ({ART_8})"
            ),
        )],
        _ => Vec::new(),
    }
}

/// Every piece of metadata registration needs and the resource lacks (R-DATA-1, R-DATA-4).
pub fn registration_violations(resource: &api::DataResource) -> Vec<FieldViolation> {
    let rule = format!("required before registration ({ART_6}, catalog metadata)");
    let mut v = Vec::new();
    for (field, value) in [
        ("name", &resource.name),
        ("provider_unit", &resource.provider_unit),
        ("sector", &resource.sector),
        ("quality_statement", &resource.quality_statement),
    ] {
        if value.trim().is_empty() {
            v.push(FieldViolation::new(
                format!("resource.{field}"),
                rule.clone(),
            ));
        }
    }
    if resource.schema.is_empty() {
        v.push(FieldViolation::new(
            "resource.schema",
            format!("at least one field: {rule}"),
        ));
    }
    for (i, field) in resource.schema.iter().enumerate() {
        if field.name.trim().is_empty() {
            v.push(FieldViolation::new(
                format!("resource.schema[{i}].name"),
                rule.clone(),
            ));
        }
        if field.r#type.trim().is_empty() {
            v.push(FieldViolation::new(
                format!("resource.schema[{i}].type"),
                rule.clone(),
            ));
        }
    }
    if api::DataClass::try_from(resource.classification).unwrap_or_default()
        == api::DataClass::Unspecified
    {
        v.push(FieldViolation::new(
            "resource.classification",
            format!("general, important or core (分类分级): {rule}"),
        ));
    }
    if api::Sensitivity::try_from(resource.sensitivity).unwrap_or_default()
        == api::Sensitivity::Unspecified
    {
        v.push(FieldViolation::new(
            "resource.sensitivity",
            format!("low, medium or high (分类分级): {rule}"),
        ));
    }
    if api::UpdateFrequency::try_from(resource.update_frequency).unwrap_or_default()
        == api::UpdateFrequency::Unspecified
    {
        v.push(FieldViolation::new(
            "resource.update_frequency",
            rule.clone(),
        ));
    }
    v.extend(origin_violations(resource));
    v
}

/// The registration number: province, tenant, year and a sequence within them, e.g.
/// `HLJ-230100-2026-000042`. Given once, never changed.
pub fn registration_number(tenant: &TenantCode, year: i32, sequence: i64) -> String {
    format!("HLJ-{tenant}-{year}-{sequence:06}")
}

/// The resources a scope names, as the catalog of the plan's tenant holds them.
pub trait ScopeCheck {
    fn resource(&self, id: &str) -> Option<api::DataResource>;
}

/// Why the resources of `scope` may not all enter a plan: unknown, unregistered, core data
/// (R-DATA-2) or shared without consent (R-DATA-3). Each refusal names the resource and the rule.
pub fn scope_violations(scope: &api::Scope, check: &dyn ScopeCheck) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    let mut seen = HashSet::new();
    for (i, item) in scope.items.iter().enumerate() {
        let field = format!("plan.sections.scope.items[{i}].resource_id");
        if !seen.insert(item.resource_id.as_str()) {
            v.push(FieldViolation::new(
                field,
                format!("resource {} is listed twice", item.resource_id),
            ));
            continue;
        }
        let Some(resource) = check.resource(&item.resource_id) else {
            v.push(FieldViolation::new(
                field,
                format!(
                    "resource {} is not in this tenant's catalog",
                    item.resource_id
                ),
            ));
            continue;
        };
        let named = format!("resource {} ({})", resource.id, resource.name);
        if resource.registration_number.is_empty() {
            v.push(FieldViolation::new(
                field.clone(),
                format!(
                    "{named} is not registered; register it first (:register, {ART_6}, R-DATA-4)"
                ),
            ));
        }
        if resource.classification == api::DataClass::Core as i32 {
            v.push(FieldViolation::new(
                field.clone(),
                format!("{named} is core data and cannot enter an authorization scope ({ART_8}, R-DATA-2)"),
            ));
        }
        if let Some(origin) = &resource.shared_origin
            && !origin.consented
        {
            v.push(FieldViolation::new(
                field,
                format!(
                    "{named} was obtained through government data sharing from {} without that provider's consent ({ART_8}, R-DATA-3)",
                    origin.source
                ),
            ));
        }
    }
    v
}

/// The resource as the public catalog shows it: no personal-information fields, no staff names.
pub fn public_view(mut resource: api::DataResource) -> api::DataResource {
    resource.schema.retain(|f| !f.personal_information);
    resource.registered_by.clear();
    resource.owner_organization.clear();
    if let Some(origin) = &mut resource.shared_origin {
        origin.consent_reference.clear();
    }
    resource
}

/// Replaces the fields `change` sets; registration and ownership fields are the service's, never
/// the caller's.
pub fn merge(base: &mut api::DataResource, change: api::DataResource) {
    macro_rules! text {
        ($($field:ident),*) => {$(
            if !change.$field.is_empty() {
                base.$field = change.$field;
            }
        )*};
    }
    text!(name, provider_unit, sector, quality_statement, description);
    if !change.schema.is_empty() {
        base.schema = change.schema;
    }
    if change.classification != 0 {
        base.classification = change.classification;
    }
    if change.sensitivity != 0 {
        base.sensitivity = change.sensitivity;
    }
    if change.update_frequency != 0 {
        base.update_frequency = change.update_frequency;
    }
    if change.shared_origin.is_some() {
        base.shared_origin = change.shared_origin;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn complete(id: &str) -> api::DataResource {
        api::DataResource {
            id: id.into(),
            tenant: "230100".into(),
            name: "Bus arrivals".into(),
            provider_unit: "Harbin Transport Bureau".into(),
            sector: "transport".into(),
            schema: vec![
                api::SchemaField {
                    name: "stop_id".into(),
                    r#type: "string".into(),
                    ..Default::default()
                },
                api::SchemaField {
                    name: "driver_name".into(),
                    r#type: "string".into(),
                    personal_information: true,
                    ..Default::default()
                },
            ],
            classification: api::DataClass::General as i32,
            sensitivity: api::Sensitivity::Low as i32,
            update_frequency: api::UpdateFrequency::Daily as i32,
            quality_statement: "checked daily".into(),
            ..Default::default()
        }
    }

    struct Catalog(HashMap<String, api::DataResource>);

    impl ScopeCheck for Catalog {
        fn resource(&self, id: &str) -> Option<api::DataResource> {
            self.0.get(id).cloned()
        }
    }

    fn scope(ids: &[&str]) -> api::Scope {
        api::Scope {
            items: ids
                .iter()
                .map(|id| api::ScopeItem {
                    resource_id: (*id).into(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn registration_names_every_missing_field() {
        let empty = api::DataResource::default();
        let fields: Vec<_> = registration_violations(&empty)
            .into_iter()
            .map(|v| v.field)
            .collect();
        for field in [
            "resource.name",
            "resource.provider_unit",
            "resource.sector",
            "resource.quality_statement",
            "resource.schema",
            "resource.classification",
            "resource.sensitivity",
            "resource.update_frequency",
        ] {
            assert!(fields.contains(&field.to_string()), "{field} in {fields:?}");
        }
        assert!(registration_violations(&complete("r")).is_empty());
    }

    #[test]
    fn core_data_unregistered_and_unconsented_resources_stay_out_of_scope() {
        let mut registered = complete("ok");
        registered.registration_number = "HLJ-230100-2026-000001".into();
        let mut core = registered.clone();
        core.id = "core".into();
        core.classification = api::DataClass::Core as i32;
        let unregistered = complete("new");
        let mut shared = registered.clone();
        shared.id = "shared".into();
        shared.shared_origin = Some(api::SharedOrigin {
            source: "Qiqihar Health Commission".into(),
            consented: false,
            ..Default::default()
        });
        let mut consented = shared.clone();
        consented.id = "consented".into();
        consented.shared_origin.as_mut().unwrap().consented = true;
        let catalog = Catalog(
            [registered, core, unregistered, shared, consented]
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect(),
        );

        assert!(scope_violations(&scope(&["ok", "consented"]), &catalog).is_empty());
        let v = scope_violations(
            &scope(&["core", "new", "shared", "gone", "ok", "ok"]),
            &catalog,
        );
        let text: Vec<_> = v.iter().map(|v| v.description.as_str()).collect();
        assert!(
            text[0].contains("core data") && text[0].contains("R-DATA-2"),
            "{text:?}"
        );
        assert!(text[1].contains("not registered"), "{text:?}");
        assert!(
            text[2].contains("without that provider's consent") && text[2].contains("R-DATA-3"),
            "{text:?}"
        );
        assert!(text[3].contains("not in this tenant's catalog"), "{text:?}");
        assert!(text[4].contains("listed twice"), "{text:?}");
        assert_eq!(v.len(), 5);
        assert_eq!(v[2].field, "plan.sections.scope.items[2].resource_id");
    }

    #[test]
    fn the_public_sees_no_personal_information() {
        let public = public_view(complete("r"));
        assert_eq!(public.schema.len(), 1);
        assert_eq!(public.schema[0].name, "stop_id");
    }

    #[test]
    fn registration_numbers_are_padded_per_tenant_and_year() {
        assert_eq!(
            registration_number(&"230100".parse().unwrap(), 2026, 42),
            "HLJ-230100-2026-000042"
        );
    }
}
