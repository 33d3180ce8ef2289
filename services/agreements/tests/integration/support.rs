//! Stores, a test clock, callers and complete terms for the flows.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pdp_agreements::{Agreements, Follow};
use pdp_kit::clock::ManualClock;
use pdp_kit::events::Event;
use pdp_kit::identity::Identity;
use pdp_kit::inbox::EventHandler;
use pdp_kit::store::{Store, StoreError};
pub use pdp_kit::testing::Backend;
use pdp_proto::pdp::agreements::v1 as api;
use pdp_proto::pdp::planning::v1 as planning;
use pdp_proto::pdp::selection::v1 as selection;

pub fn at(local: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{}:00+08:00", local.replace(' ', "T")))
        .unwrap()
        .into()
}

pub struct Instance {
    pub agreements: Agreements,
    pub store: Store,
    pub clock: ManualClock,
}

impl Instance {
    pub fn new(backend: &Backend) -> Self {
        let store = backend.store("agreements", &[pdp_agreements::MIGRATIONS]);
        let clock = ManualClock::at(at("2026-11-26 10:00"));
        Self {
            agreements: Agreements::new(store.clone(), Arc::new(clock.clone())),
            store,
            clock,
        }
    }

    pub fn set(&self, local: &str) {
        self.clock.set(at(local));
    }

    async fn apply(&self, event: Event) {
        self.store
            .transaction(move |conn| {
                Follow
                    .handle(conn, &event)
                    .map_err(|e| StoreError::Task(e.to_string()))
            })
            .await
            .unwrap();
    }

    /// Oversight's failed rectification under agreement `id`, as its event tells.
    pub async fn rectification_failed(&self, id: &str) {
        use pdp_proto::pdp::oversight::v1 as oversight;
        let harbin = "230100".parse().unwrap();
        self.apply(Event::typed(
            &harbin,
            oversight::RECTIFICATION_FAILED,
            format!("order-{id}"),
            Utc::now(),
            &oversight::RectificationChanged {
                order_id: format!("order-{id}"),
                operator: "beta".into(),
                agreement_id: id.into(),
                state: oversight::RectificationState::Failed as i32,
                failure: "rejected twice".into(),
                ..Default::default()
            },
        ))
        .await;
    }

    /// Oversight's passed evaluation of agreement `id`, as its event tells.
    pub async fn evaluated(&self, id: &str) {
        use pdp_proto::pdp::oversight::v1 as oversight;
        let harbin = "230100".parse().unwrap();
        self.apply(Event::typed(
            &harbin,
            oversight::EVALUATION_RECORDED,
            format!("eval-{id}"),
            Utc::now(),
            &oversight::EvaluationRecorded {
                evaluation_id: format!("eval-{id}"),
                kind: oversight::EvaluationKind::Authorization as i32,
                agreement_id: id.into(),
                outcome: oversight::EvaluationOutcome::Continue as i32,
                passed: true,
                total: 80,
                ..Default::default()
            },
        ))
        .await;
    }

    /// Plan `plan-1` v1 of Harbin in force with resources r1 and r2, and selection `sel-1`
    /// concluded with `beta`, as planning's and selection's events tell.
    pub async fn concluded_selection(&self) {
        let harbin = "230100".parse().unwrap();
        self.apply(Event::typed(
            &harbin,
            planning::PLAN_BECAME_EFFECTIVE,
            "plan-1",
            Utc::now(),
            &planning::PlanTookEffect {
                plan_id: "plan-1".into(),
                version: 1,
                resource_ids: vec!["r1".into(), "r2".into()],
                ..Default::default()
            },
        ))
        .await;
        self.apply(Event::typed(
            &harbin,
            selection::SELECTION_CONCLUDED,
            "sel-1",
            Utc::now(),
            &selection::SelectionChanged {
                selection_id: "sel-1".into(),
                plan_id: "plan-1".into(),
                plan_version: 1,
                selected_organizations: vec!["beta".into()],
                ..Default::default()
            },
        ))
        .await;
    }
}

pub fn caller(role: &str, org: &str) -> Identity {
    Identity {
        subject: format!("{role}-{org}"),
        organization: org.into(),
        roles: vec![role.into()],
        tenant: "230100".parse().unwrap(),
        division: None,
    }
}

pub fn terms(first_day: &str, last_day: &str) -> api::AgreementTerms {
    let t = |s: &str| s.to_string();
    api::AgreementTerms {
        scope: Some(api::ResourceScope {
            resource_ids: vec![t("r1")],
            catalog: t("bus arrivals"),
        }),
        term: Some(api::Term {
            first_day: first_day.into(),
            last_day: last_day.into(),
        }),
        products: Some(api::ProductTerms {
            products: vec![t("arrival prediction API")],
            technical_standards: t("GB/T 35274"),
            security_review: t("before each release"),
            business_review: t("quarterly"),
        }),
        technical_platform: t("the provincial authorized-operation platform"),
        assets: Some(api::AssetOwnership {
            equipment: t("the operator's"),
            products: t("the operator's"),
        }),
        disclosure_duties: t("quarterly public report"),
        accounting: Some(api::AccountingTerms {
            cost_and_revenue_accounting: t("separate ledger"),
            revenue_sharing: t("who invests, who benefits"),
        }),
        security: Some(api::SecurityTerms {
            data_security: t("level 3"),
            personal_information_protection: t("de-identified results only"),
            risk_monitoring: t("continuous"),
            emergency_response: t("24h reporting"),
        }),
        evaluation: Some(api::EvaluationTerms {
            evaluation: t("yearly"),
            renewal: t("on good evaluation"),
            exit: t("handover and destruction"),
        }),
        liability: t("per the Civil Code"),
        dispute_resolution: t("Harbin arbitration commission"),
        change_and_termination: t("written amendment; termination on breach"),
        other_matters: t("none"),
    }
}

pub fn draft(first_day: &str, last_day: &str) -> api::Agreement {
    api::Agreement {
        selection_id: "sel-1".into(),
        operator: "beta".into(),
        terms: Some(terms(first_day, last_day)),
        ..Default::default()
    }
}

pub fn state(a: &api::Agreement) -> api::AgreementState {
    api::AgreementState::try_from(a.state).unwrap()
}
