//! Stores, a test clock, callers, and the resources and agreements requests learn from events.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::local::LocalFileSystem;
use pdp_kit::calendar::WorkingCalendar;
use pdp_kit::clock::ManualClock;
use pdp_kit::events::Event;
use pdp_kit::identity::Identity;
use pdp_kit::inbox::EventHandler;
use pdp_kit::store::{Store, StoreError};
pub use pdp_kit::testing::Backend;
use pdp_proto::pdp::agreements::v1 as agreements;
use pdp_proto::pdp::planning::v1 as planning;
use pdp_proto::pdp::requests::v1 as api;
use pdp_requests::{Follow, Requests};
use pdp_sandbox::{Limits, Sandbox};

pub const HARBIN: &str = "230100";

pub fn at(local: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{}:00+08:00", local.replace(' ', "T")))
        .unwrap()
        .into()
}

pub struct Instance {
    pub requests: Requests,
    pub store: Store,
    pub clock: ManualClock,
    /// The sandbox's object store, removed with the instance.
    data: tempfile::TempDir,
}

impl Instance {
    /// Thursday 2026-11-26 in Harbin: bus arrivals (transport) and clinic visits (health) in the
    /// catalog, and beta's agreement `agr-1` over both ACTIVE until 2027-06-30.
    pub async fn new(backend: &Backend) -> Self {
        Self::with_workspace_quota(backend, pdp_sandbox::engine::WORKSPACE_QUOTA).await
    }

    /// As [`Instance::new`], a grant's workspace holding at most `quota` bytes.
    pub async fn with_workspace_quota(backend: &Backend, quota: u64) -> Self {
        let store = backend.store("requests", &[pdp_requests::MIGRATIONS]);
        let clock = ManualClock::at(at("2026-11-26 10:00"));
        let data = tempfile::tempdir().unwrap();
        let objects = LocalFileSystem::new_with_prefix(data.path()).unwrap();
        let sandbox = Sandbox::new(Arc::new(objects), Limits::default())
            .unwrap()
            .with_workspace_quota(quota);
        let requests = Requests::new(
            store.clone(),
            Arc::new(clock.clone()),
            Arc::new(WorkingCalendar::shipped()),
            Some(Arc::new(sandbox)),
        );
        let i = Self {
            requests,
            store,
            clock,
            data,
        };
        let bus = [
            ("stop_id", "string", false),
            ("arrival", "string", false),
            ("card_no", "string", true),
            ("delay", "integer", false),
        ];
        i.resource("bus", "transport-org", &bus).await;
        let clinic = [("clinic_id", "string", false), ("visits", "integer", false)];
        i.resource("clinic", "health-org", &clinic).await;
        i.resource("tax", "tax-org", &[("taxpayer", "string", false)])
            .await;
        i.agreement(
            "agr-1",
            "beta",
            agreements::AGREEMENT_ACTIVATED,
            &["bus", "clinic"],
        )
        .await;
        i
    }

    pub fn set(&self, local: &str) {
        self.clock.set(at(local));
    }

    pub async fn apply(&self, event: Event) {
        self.store
            .transaction(move |conn| {
                Follow
                    .handle(conn, &event)
                    .map_err(|e| StoreError::Task(e.to_string()))
            })
            .await
            .unwrap();
    }

    pub async fn resource(&self, id: &str, provider: &str, fields: &[(&str, &str, bool)]) {
        let schema = fields
            .iter()
            .map(|(name, kind, personal)| planning::SchemaField {
                name: name.to_string(),
                r#type: kind.to_string(),
                personal_information: *personal,
                description: String::new(),
            })
            .collect();
        self.apply(Event::typed(
            &HARBIN.parse().unwrap(),
            planning::RESOURCE_REGISTERED,
            id,
            Utc::now(),
            &planning::ResourceChanged {
                resource_id: id.into(),
                name: id.into(),
                registration_number: format!("REG-{id}"),
                provider_unit: format!("{provider} unit"),
                provider_organization: provider.into(),
                schema,
                // 重要数据, sensitivity medium: what tables derived from it are labelled.
                classification: planning::DataClass::Important as i32,
                sensitivity: planning::Sensitivity::Medium as i32,
            },
        ))
        .await;
    }

    pub async fn agreement(
        &self,
        id: &str,
        operator: &str,
        ty: pdp_proto::EventType<agreements::AgreementChanged>,
        resources: &[&str],
    ) {
        let state = match ty.name() {
            n if n == agreements::AGREEMENT_ACTIVATED.name() => agreements::AgreementState::Active,
            n if n == agreements::AGREEMENT_RESUMED.name() => agreements::AgreementState::Active,
            n if n == agreements::AGREEMENT_SUSPENDED.name() => {
                agreements::AgreementState::Suspended
            }
            n if n == agreements::AGREEMENT_TERMINATED.name() => {
                agreements::AgreementState::Terminated
            }
            _ => agreements::AgreementState::Expired,
        };
        self.apply(Event::typed(
            &HARBIN.parse().unwrap(),
            ty,
            id,
            self.clock_now(),
            &agreements::AgreementChanged {
                agreement_id: id.into(),
                operator: operator.into(),
                state: state as i32,
                resource_ids: resources.iter().map(|r| r.to_string()).collect(),
                first_day: "2026-03-02".into(),
                last_day: "2027-06-30".into(),
                ..Default::default()
            },
        ))
        .await;
    }

    /// The bureau and both providers approve request `id` as it stands.
    pub async fn approve_by_every_reviewer(&self, id: &str) {
        for who in [
            bureau(),
            caller("provider", "transport-org"),
            caller("provider", "health-org"),
        ] {
            let approval = decision(api::ReviewOutcome::Approved, "ok", None);
            self.requests
                .review(&who, HARBIN, id.into(), approval)
                .await
                .unwrap();
        }
    }

    /// Beta's grant on the stops and delays of `bus`, approved by the bureau and the transport
    /// provider: its id.
    pub async fn bus_grant(&self) -> String {
        let beta = caller("operator", "beta");
        let mut wanted = request();
        wanted.resources = vec![api::RequestedResource {
            resource_id: "bus".into(),
            fields: vec!["stop_id".into(), "delay".into()],
        }];
        let d = self.requests.create(&beta, HARBIN, wanted).await.unwrap();
        self.requests
            .submit(&beta, HARBIN, d.id.clone())
            .await
            .unwrap();
        for who in [bureau(), caller("provider", "transport-org")] {
            let approval = decision(api::ReviewOutcome::Approved, "ok", None);
            self.requests
                .review(&who, HARBIN, d.id.clone(), approval)
                .await
                .unwrap();
        }
        self.requests
            .get(&beta, HARBIN, d.id)
            .await
            .unwrap()
            .grant_id
    }

    /// The transport provider loads `n` rows of `bus` (stops S0–S2 in turn, delays 0–6) and
    /// commits them.
    pub async fn load_bus(&self, n: usize) {
        let transport = caller("provider", "transport-org");
        let load = self
            .requests
            .create_load(&transport, HARBIN, "bus".into())
            .await
            .unwrap();
        let lines = (0..n)
            .map(|k| format!("S{},08:00,C{k:05},{}", k % 3, k % 7))
            .collect();
        let header = "stop_id,arrival,card_no,delay".to_string();
        self.requests
            .append_rows(
                &transport,
                HARBIN,
                "bus".into(),
                load.id.clone(),
                header,
                lines,
            )
            .await
            .unwrap();
        self.requests
            .commit_load(&transport, HARBIN, "bus".into(), load.id)
            .await
            .unwrap();
    }

    /// The directory the sandbox's objects lie in.
    pub fn sandbox_dir(&self) -> std::path::PathBuf {
        self.data.path().to_path_buf()
    }

    fn clock_now(&self) -> DateTime<Utc> {
        use pdp_kit::clock::Clock;
        self.clock.now()
    }
}

pub fn caller(role: &str, org: &str) -> Identity {
    Identity {
        subject: format!("{role}-{org}"),
        organization: org.into(),
        roles: vec![role.into()],
        tenant: HARBIN.parse().unwrap(),
        division: None,
    }
}

pub fn bureau() -> Identity {
    caller("city_bureau", "harbin-data-bureau")
}

/// A complete request of beta's for bus stops and arrivals and clinic visits.
pub fn request() -> api::DataRequest {
    let t = |s: &str| s.to_string();
    api::DataRequest {
        scenario: Some(api::Scenario {
            name: t("arrival prediction"),
            description: t("predicts bus arrivals near clinics"),
            serves: t("arrival API"),
        }),
        resources: vec![
            api::RequestedResource {
                resource_id: t("bus"),
                fields: vec![t("stop_id"), t("arrival")],
            },
            api::RequestedResource {
                resource_id: t("clinic"),
                fields: vec![t("clinic_id"), t("visits")],
            },
        ],
        purposes: vec![t("public transit information")],
        scope_of_use: t("Harbin, aggregated results only"),
        period: Some(api::Period {
            first_day: t("2026-12-01"),
            last_day: t("2027-05-31"),
        }),
        feasibility: t("tested on samples"),
        expected_value: Some(api::ExpectedValue {
            economic: t("API fees"),
            social: t("less waiting"),
        }),
        compliance: Some(api::Compliance {
            legal_basis: t("agreement agr-1"),
            security_measures: t("sandbox only"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn decision(
    outcome: api::ReviewOutcome,
    reason: &str,
    conditions: Option<api::ReviewConditions>,
) -> api::ReviewDecision {
    api::ReviewDecision {
        outcome: outcome as i32,
        reasons: vec![reason.into()],
        conditions,
    }
}
