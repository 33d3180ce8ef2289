//! Stores, a test clock, callers and complete inputs for the flows.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pdp_kit::calendar::WorkingCalendar;
use pdp_kit::clock::ManualClock;
use pdp_kit::events::Event;
use pdp_kit::identity::Identity;
use pdp_kit::inbox::EventHandler;
use pdp_kit::store::{Store, StoreError};
pub use pdp_kit::testing::Backend;

pub const HARBIN: &str = "230100";
use pdp_proto::pdp::planning::v1 as planning;
use pdp_proto::pdp::selection::v1 as api;
use pdp_selection::{Judgment, PlansInForce, RecordedByStaff, Selections};

/// A Shanghai wall-clock time as an instant: `at("2026-11-23 10:00")`.
pub fn at(local: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{}:00+08:00", local.replace(' ', "T")))
        .unwrap()
        .into()
}

pub fn ts(local: &str) -> prost_types::Timestamp {
    let t = at(local);
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

pub struct Instance {
    pub selections: Selections,
    pub store: Store,
    pub clock: ManualClock,
}

impl Instance {
    pub fn new(backend: &Backend) -> Self {
        let store = backend.store("selection", &[pdp_selection::MIGRATIONS]);
        let clock = ManualClock::at(at("2026-11-23 10:00"));
        Self {
            selections: Selections::new(
                store.clone(),
                Arc::new(clock.clone()),
                Arc::new(WorkingCalendar::shipped()),
                Arc::new(RecordedByStaff),
            ),
            store,
            clock,
        }
    }

    /// Applies a planning event (`became_effective` or `superseded`) as the plan follower does.
    pub async fn plan_event(&self, tenant: &str, verb: &str, plan_id: &str, version: u32) {
        let tenant = tenant.parse().unwrap();
        let event = match verb {
            "became_effective" => Event::typed(
                &tenant,
                planning::PLAN_BECAME_EFFECTIVE,
                plan_id,
                Utc::now(),
                &planning::PlanTookEffect {
                    plan_id: plan_id.into(),
                    version,
                    name: "Harbin transit".into(),
                    ..Default::default()
                },
            ),
            "superseded" => Event::typed(
                &tenant,
                planning::PLAN_SUPERSEDED,
                plan_id,
                Utc::now(),
                &planning::PlanChanged {
                    plan_id: plan_id.into(),
                    version,
                    ..Default::default()
                },
            ),
            other => panic!("no plan event `{other}` here"),
        };
        self.store
            .transaction(move |conn| {
                PlansInForce
                    .handle(conn, &event)
                    .map_err(|e| StoreError::Task(e.to_string()))
            })
            .await
            .unwrap();
    }

    /// Oversight's record of a security incident `organization` reported, occurred on `day`.
    pub async fn incident_recorded(&self, organization: &str, day: &str) {
        use pdp_proto::pdp::oversight::v1 as oversight;
        let event = Event::typed(
            &HARBIN.parse().unwrap(),
            oversight::INCIDENT_REPORTED,
            format!("incident-{organization}"),
            Utc::now(),
            &oversight::IncidentReported {
                incident_id: format!("incident-{organization}"),
                operator: organization.into(),
                occurred_on: day.into(),
                major: false,
                kind: "data_leak".into(),
            },
        );
        self.store
            .transaction(move |conn| {
                pdp_selection::RecordedIncidents
                    .handle(conn, &event)
                    .map_err(|e| StoreError::Task(e.to_string()))
            })
            .await
            .unwrap();
    }

    /// A published call for plan-1 (in force), taking applications until 2026-11-24 18:00: its id.
    pub async fn published(&self, bureau: &Identity) -> String {
        self.plan_event(HARBIN, "became_effective", "plan-1", 1)
            .await;
        let id = self
            .selections
            .create(bureau, HARBIN, call("plan-1"))
            .await
            .unwrap()
            .id;
        self.selections
            .publish(bureau, HARBIN, id.clone())
            .await
            .unwrap();
        id
    }

    /// A selection of plan-1 in public notice until 2026-12-02, with acme shortlisted: the
    /// selection's id and its notice.
    pub async fn in_notice(&self, bureau: &Identity) -> (String, api::Notice) {
        let id = self.published(bureau).await;
        let a = self
            .selections
            .apply(
                &caller("operator", HARBIN, "acme"),
                HARBIN,
                id.clone(),
                application(evidence()),
            )
            .await
            .unwrap();
        self.judge_all(bureau, &id, &a).await;
        self.set("2026-11-25 10:00");
        self.selections
            .evaluate(bureau, HARBIN, id.clone(), a.id, scores(70, 70))
            .await
            .unwrap();
        self.selections
            .shortlist(bureau, HARBIN, id.clone())
            .await
            .unwrap();
        let notice = api::Notice {
            starts_on: "2026-11-25".into(),
            ends_on: "2026-12-02".into(),
            ..Default::default()
        };
        self.selections
            .publish_notice(bureau, HARBIN, id.clone(), notice.clone())
            .await
            .unwrap();
        (id, notice)
    }

    /// Judges every pending condition of `application` passed, credit on a clean lookup.
    pub async fn judge_all(
        &self,
        bureau: &Identity,
        selection: &str,
        application: &api::Application,
    ) -> api::Application {
        let mut judged = application.clone();
        for c in &application.eligibility {
            if c.state != api::ConditionState::Pending as i32 {
                continue;
            }
            let judgment = Judgment {
                condition: c.condition.clone(),
                passed: true,
                reason: "the evidence shows it".into(),
                credit_lookup: (c.condition == "credit").then(|| clean_lookup("2026-11-20")),
            };
            judged = self
                .selections
                .judge(
                    bureau,
                    HARBIN,
                    selection.into(),
                    application.id.clone(),
                    judgment,
                )
                .await
                .unwrap();
        }
        judged
    }

    pub fn set(&self, local: &str) {
        self.clock.set(at(local));
    }
}

pub fn caller(role: &str, tenant: &str, org: &str) -> Identity {
    Identity {
        subject: format!("{role}-{org}"),
        organization: org.into(),
        roles: vec![role.into()],
        tenant: tenant.parse().unwrap(),
        division: None,
    }
}

pub fn call(plan_id: &str) -> api::Selection {
    api::Selection {
        plan_id: plan_id.into(),
        name: "Operator for Harbin transit data".into(),
        method: api::SelectionMethod::OpenTender as i32,
        additional_conditions: vec!["office in Harbin".into()],
        criteria: vec![
            api::Criterion {
                name: "plan".into(),
                weight: 60,
                description: "business plan".into(),
            },
            api::Criterion {
                name: "security".into(),
                weight: 40,
                description: "security regime".into(),
            },
        ],
        opens_at: Some(ts("2026-11-23 09:00")),
        closes_at: Some(ts("2026-11-24 18:00")),
        procedure: "open tender per the published rules".into(),
        operators_wanted: 1,
        // The flows' bureau user (`caller("city_bureau", HARBIN, "harbin-bureau")`) evaluates.
        evaluators: vec![api::Evaluator {
            subject: "city_bureau-harbin-bureau".into(),
            name: "Harbin bureau staff".into(),
            organization: "harbin-bureau".into(),
            kind: api::EvaluatorKind::Staff as i32,
        }],
        ..Default::default()
    }
}

pub fn evidence() -> api::Evidence {
    api::Evidence {
        premises_and_equipment: "office and machine room".into(),
        qualifications: "CMMI 3".into(),
        staff: "40 engineers".into(),
        legal_knowledge: "Data Security Law training, 2026".into(),
        experience: "5 data products".into(),
        security_regime: "ISO 27001".into(),
        credit_record: "no adverse record".into(),
        additional: [(
            "office in Harbin".to_string(),
            "Nangang district".to_string(),
        )]
        .into(),
        ..Default::default()
    }
}

/// The departments a Harbin selection is organized with (第十三条(二)).
pub fn departments() -> Vec<String> {
    vec!["哈尔滨市财政局".into(), "哈尔滨市市场监督管理局".into()]
}

/// A lookup of 信用中国 on `day` that found nothing adverse.
pub fn clean_lookup(day: &str) -> api::CreditLookup {
    api::CreditLookup {
        source: "信用中国".into(),
        checked_on: day.into(),
        clean: true,
        reference: "XY-2026-0001".into(),
    }
}

pub fn application(evidence: api::Evidence) -> api::Application {
    api::Application {
        evidence: Some(evidence),
        ..Default::default()
    }
}

pub fn scores(plan: u32, security: u32) -> api::Evaluation {
    api::Evaluation {
        scores: vec![
            api::Score {
                criterion: "plan".into(),
                score: plan,
            },
            api::Score {
                criterion: "security".into(),
                score: security,
            },
        ],
        comment: "scored".into(),
        ..Default::default()
    }
}

pub fn agreed() -> api::DecisionRecord {
    api::DecisionRecord {
        decided_on: "2026-12-03".into(),
        body: "bureau party group meeting".into(),
        outcome: "AGREED".into(),
        recorded_by: String::new(),
    }
}
