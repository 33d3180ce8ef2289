//! A store, a test clock, callers and audit events for the flows.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use pdp_kit::clock::{Clock, ManualClock};
use pdp_kit::config::AuditConfig;
use pdp_kit::events::Event;
use pdp_kit::identity::Identity;
use pdp_kit::inbox::EventHandler;
use pdp_kit::store::{Store, StoreError, TenantScope};
pub use pdp_kit::testing::Backend;
use pdp_proto::pdp::agreements::v1 as agreements;
use pdp_termination::cases::Cases;
use pdp_termination::checkpoint::ArchiveKey;
use pdp_termination::store::audit_records;
use pdp_termination::{Archive, Follow, Ingest};
use serde_json::json;

pub const HARBIN: &str = "230100";

pub fn at(local: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{}:00+08:00", local.replace(' ', "T")))
        .unwrap()
        .into()
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

pub struct Instance {
    pub archive: Archive,
    pub cases: Cases,
    pub store: Store,
    pub clock: ManualClock,
    pub key: Arc<ArchiveKey>,
}

impl Instance {
    pub fn new(backend: &Backend) -> Self {
        Self::named(backend, "termination")
    }

    /// An instance of its own store `name`, beside others of the same test.
    pub fn named(backend: &Backend, name: &str) -> Self {
        let store = backend.store(name, &[pdp_termination::MIGRATIONS]);
        let clock = ManualClock::at(at("2026-12-01 10:00"));
        let key = Arc::new(ArchiveKey::generate());
        let config = AuditConfig {
            checkpoint_every_secs: 0,
            ..AuditConfig::default()
        };
        Self {
            archive: Archive::new(store.clone(), Arc::new(clock.clone()), key.clone(), config),
            cases: Cases::new(store.clone(), Arc::new(clock.clone()), key.clone()),
            store,
            clock,
            key,
        }
    }

    pub fn advance(&self, by: Duration) {
        self.clock.set(self.clock.now() + by);
    }

    async fn apply<H: EventHandler>(&self, handler: H, event: Event) {
        self.store
            .transaction(move |conn| {
                handler
                    .handle(conn, &event)
                    .map_err(|e| StoreError::Task(e.to_string()))
            })
            .await
            .unwrap();
    }

    /// The gateway's record of request `n` by `org`.
    pub async fn request(&self, n: u32, org: &str) {
        let now = self.clock.now();
        let event = Event::new(
            "gateway",
            &HARBIN.parse().unwrap(),
            "request",
            "audited",
            format!("req-{n}"),
            now,
            json!({
                "time": now, "request_id": format!("req-{n}"), "subject": format!("u-{org}"),
                "organization": org, "tenant": HARBIN,
                "operation": "/pdp.planning.v1.PlanService/GetPlan",
                "decision": "allow", "status": 200, "latency_ms": 1.5,
            }),
        );
        let clock = Arc::new(self.clock.clone());
        self.apply(Ingest { clock }, event).await;
    }

    /// A service's record of a change by `org`.
    pub async fn change(&self, action: &str, org: &str) {
        let now = self.clock.now();
        let event = Event::new(
            "agreements",
            &HARBIN.parse().unwrap(),
            "action",
            "recorded",
            "agreements/a1",
            now,
            json!({
                "action": action, "target": "agreements/a1", "subject": format!("u-{org}"),
                "organization": org, "roles": ["city_bureau"], "details": {},
            }),
        );
        let clock = Arc::new(self.clock.clone());
        self.apply(Ingest { clock }, event).await;
    }

    /// Agreement `a1` of beta activated or ended now, as agreements' events tell.
    pub async fn agreement(&self, ty: pdp_proto::EventType<agreements::AgreementChanged>) {
        let event = Event::typed(
            &HARBIN.parse().unwrap(),
            ty,
            "a1",
            self.clock.now(),
            &agreements::AgreementChanged {
                agreement_id: "a1".into(),
                operator: "beta".into(),
                ..Default::default()
            },
        );
        self.apply(self.follow(), event).await;
    }

    pub fn follow(&self) -> Follow {
        Follow {
            calendar: Arc::new(pdp_kit::calendar::WorkingCalendar::shipped()),
            config: AuditConfig::default(),
        }
    }

    /// Applies `event` as termination's follower does.
    pub async fn follows(&self, event: Event) {
        self.apply(self.follow(), event).await;
    }

    /// Runs `sql`-like tampering on the tenant's records, as someone holding the database would.
    pub async fn tamper<F>(&self, f: F)
    where
        F: FnOnce(&mut pdp_kit::store::AnyConnection) -> QueryResult<usize> + Send + 'static,
    {
        let scope = TenantScope::system(HARBIN.parse().unwrap());
        self.store
            .transaction(move |conn| {
                scope.enter(conn)?;
                f(conn).map_err(StoreError::from)
            })
            .await
            .unwrap();
    }

    pub async fn count(&self) -> i64 {
        let scope = TenantScope::system(HARBIN.parse().unwrap());
        self.store
            .transaction(move |conn| {
                scope.enter(conn)?;
                scope
                    .rows(audit_records::table)
                    .count()
                    .get_result::<i64>(conn)
                    .map_err(StoreError::from)
            })
            .await
            .unwrap()
    }
}
