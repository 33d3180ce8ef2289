//! Stores, callers and complete inputs for the flows.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use pdp_kit::clock::ManualClock;
use pdp_kit::events::{EmbeddedLog, EventLog};
use pdp_kit::identity::Identity;
use pdp_kit::inbox::{EventHandler, apply_once};
use pdp_kit::outbox::OutboxRelay;
use pdp_kit::store::Store;
pub use pdp_kit::testing::Backend;
use pdp_planning::{FILINGS_CONSUMER, Filings, Planning};
use pdp_proto::pdp::planning::v1 as api;

/// One platform instance of planning with its own store, an embedded event log, and a clock
/// the test moves.
pub struct Instance {
    pub planning: Planning,
    pub store: Store,
    pub clock: ManualClock,
    pub log: Arc<dyn EventLog>,
    _log_dir: tempfile::TempDir,
}

impl Instance {
    pub fn new(backend: &Backend) -> Self {
        let store = backend.store("shared", &[pdp_planning::MIGRATIONS]);
        // 2026-11-26 10:00 in Asia/Shanghai.
        let clock = ManualClock::at(Utc.with_ymd_and_hms(2026, 11, 26, 2, 0, 0).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(
            EmbeddedLog::open(&dir.path().join("events.db").to_string_lossy(), 2).unwrap(),
        );
        Self {
            planning: Planning::new(store.clone(), Arc::new(clock.clone())),
            store,
            clock,
            log,
            _log_dir: dir,
        }
    }

    /// Publishes what the outbox holds and applies planning's events to the filings, as the
    /// relay and the consumer of a running instance do.
    pub async fn deliver(&self) {
        for topic in [pdp_planning::TOPIC, pdp_kit::audit::TOPIC] {
            self.log.create_topic(topic).await.unwrap();
        }
        while OutboxRelay::new(self.store.clone(), self.log.clone())
            .relay_once()
            .await
            .unwrap()
            > 0
        {}
        apply_filings(
            &self.store,
            &self.log,
            FILINGS_CONSUMER,
            Arc::new(self.clock.clone()),
        )
        .await;
    }
}

impl Instance {
    /// Checks that every event type planning wrote is documented in the AsyncAPI document.
    pub async fn assert_events_documented(&self) {
        pdp_kit::testing::assert_events_documented(&self.store, pdp_planning::TOPIC).await;
    }
}

/// Applies every event waiting on `pdp.planning` for `group` through the inbox.
pub async fn apply_filings(
    store: &Store,
    log: &Arc<dyn EventLog>,
    group: &str,
    clock: Arc<dyn pdp_kit::clock::Clock>,
) -> usize {
    let mut sub = log.subscribe(group, &[pdp_planning::TOPIC]).await.unwrap();
    let mut applied = 0;
    loop {
        let batch = sub
            .next_batch(200, Duration::from_millis(700))
            .await
            .unwrap();
        if batch.is_empty() {
            return applied;
        }
        let group_name = group.to_string();
        let deliveries = batch.clone();
        let filings = Filings {
            clock: clock.clone(),
        };
        store
            .run(move |conn| {
                for d in &deliveries {
                    apply_once(conn, &group_name, d, |c, e| filings.handle(c, e)).unwrap();
                }
                Ok::<_, pdp_kit::store::StoreError>(())
            })
            .await
            .unwrap();
        sub.commit(&batch).await.unwrap();
        applied += batch.len();
    }
}

pub fn caller(role: &str, tenant: &str) -> Identity {
    Identity {
        subject: format!("{role}-{tenant}"),
        organization: format!("org-{tenant}"),
        roles: vec![role.into()],
        tenant: tenant.parse().unwrap(),
        division: None,
    }
}

pub fn resource(name: &str) -> api::DataResource {
    api::DataResource {
        name: name.into(),
        provider_unit: "Harbin Transport Bureau".into(),
        sector: "transport".into(),
        schema: vec![
            api::SchemaField {
                name: "stop_id".into(),
                r#type: "string".into(),
                ..Default::default()
            },
            api::SchemaField {
                name: "passenger_phone".into(),
                r#type: "string".into(),
                personal_information: true,
                ..Default::default()
            },
        ],
        classification: api::DataClass::General as i32,
        sensitivity: api::Sensitivity::Low as i32,
        update_frequency: api::UpdateFrequency::Daily as i32,
        quality_statement: "complete since 2020, checked daily".into(),
        ..Default::default()
    }
}

/// A registered resource of `tenant`, made by its provider unit.
pub async fn registered(planning: &Planning, tenant: &str, name: &str) -> api::DataResource {
    let provider = caller("provider", tenant);
    let r = planning
        .create_resource(&provider, tenant, resource(name))
        .await
        .unwrap();
    planning
        .register_resource(&provider, tenant, r.id)
        .await
        .unwrap()
}

fn text(s: &str) -> String {
    s.to_string()
}

/// Every section of 第十一条, filled in, with `resources` in scope.
pub fn sections(resources: &[&api::DataResource]) -> api::PlanSections {
    api::PlanSections {
        necessity: Some(api::Necessity {
            lifecycle_management: text("whole-lifecycle management on the platform"),
            social_demand: text("commuters and logistics firms"),
            market_size: text("CNY 40 million a year"),
            expected_results: text("real-time transit products"),
            benefits: text("shorter commutes"),
            risk_control: text("sandboxed computation only"),
        }),
        operator_conditions: Some(api::OperatorConditions {
            funding: text("registered capital of CNY 10 million"),
            management: text("ISO 27001"),
            technology: text("privacy computing"),
            service: text("7x24 support"),
            security: text("no incident in three years"),
            additional: vec![],
        }),
        scope: Some(api::Scope {
            items: resources
                .iter()
                .map(|r| api::ScopeItem {
                    resource_id: r.id.clone(),
                    update_frequency: api::UpdateFrequency::Daily as i32,
                    data_quality: text("complete"),
                })
                .collect(),
        }),
        implementation: Some(api::Implementation {
            period_start: text("2027-01-01"),
            period_end: text("2029-12-31"),
            construction: text("transit data products"),
            technical_safeguards: text("the provincial platform"),
            schedule: text("three phases"),
            evaluation_standards: text("yearly evaluation"),
            exit_mechanism: text("handover and destruction"),
            asset_management: text("products owned by the operator"),
        }),
        scenarios: Some(api::Scenarios {
            items: vec![api::Scenario {
                name: text("bus arrival prediction"),
                description: text("for the public"),
            }],
        }),
        products: Some(api::Products {
            items: vec![
                api::ProductItem {
                    name: text("arrival times"),
                    class: api::ProductClass::PublicGovernanceAndWelfare as i32,
                    form: text("app"),
                },
                api::ProductItem {
                    name: text("logistics index"),
                    class: api::ProductClass::IndustryDevelopment as i32,
                    form: text("API"),
                },
            ],
        }),
        accounting: Some(api::Accounting {
            cost_accounting: text("separate ledger"),
            revenue_accounting: text("separate ledger"),
            revenue_distribution: text("who invests, who benefits"),
        }),
        security: Some(api::SecurityMeasures {
            data_security: text("classified protection level 3"),
            personal_information_protection: text("de-identified results only"),
            emergency_response: text("drills twice a year"),
        }),
        rights_and_duties: Some(api::RightsAndDuties {
            rights_and_duties: text("as in the agreement"),
            incentives: text("renewal priority"),
        }),
        supervision: Some(api::Supervision {
            supervision: text("quarterly inspection"),
            evaluation: text("yearly evaluation"),
        }),
        other_matters: text("none"),
    }
}

pub fn draft(name: &str, resources: &[&api::DataResource]) -> api::Plan {
    api::Plan {
        name: name.into(),
        mode: api::AuthorizationMode::ByScenario as i32,
        sections: Some(sections(resources)),
        ..Default::default()
    }
}

pub fn review() -> api::FeasibilityReview {
    api::FeasibilityReview {
        summary: text("feasible"),
        departments_consulted: vec![text("Transport Bureau"), text("Public Security Bureau")],
        reviewed_on: text("2026-11-20"),
        reviewed_by: String::new(),
    }
}

pub fn decision() -> api::CollectiveDecision {
    api::CollectiveDecision {
        decided_on: text("2026-11-22"),
        body: text("bureau party group meeting"),
        outcome: api::DecisionOutcome::Agreed as i32,
        minutes_reference: text("2026-17"),
        recorded_by: String::new(),
    }
}

pub fn approval(effective_on: &str) -> api::GovernmentApproval {
    api::GovernmentApproval {
        document_number: text("哈政函〔2026〕88号"),
        approved_on: text("2026-11-25"),
        effective_on: effective_on.into(),
        recorded_by: String::new(),
    }
}

/// Walks a draft through the whole chain; the approval takes effect today.
pub async fn make_effective(planning: &Planning, tenant: &str, id: &str) -> api::Plan {
    let bureau = caller(
        if tenant == "230000" {
            "provincial_bureau"
        } else {
            "city_bureau"
        },
        tenant,
    );
    planning
        .submit_plan(&bureau, tenant, id.into())
        .await
        .unwrap();
    planning
        .review_plan(&bureau, tenant, id.into(), Some(review()))
        .await
        .unwrap();
    planning
        .decide_plan(&bureau, tenant, id.into(), Some(decision()))
        .await
        .unwrap();
    planning
        .approve_plan(&bureau, tenant, id.into(), Some(approval("2026-11-26")))
        .await
        .unwrap()
}

pub fn state(plan: &api::Plan) -> api::PlanState {
    api::PlanState::try_from(plan.state).unwrap()
}
