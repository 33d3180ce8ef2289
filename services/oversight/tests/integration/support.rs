//! A store, a test clock, callers and other services' events for the flows.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use pdp_kit::calendar::WorkingCalendar;
use pdp_kit::clock::{Clock, ManualClock};
use pdp_kit::config::OversightConfig;
use pdp_kit::events::Event;
use pdp_kit::identity::{Identity, TenantCode};
use pdp_kit::inbox::EventHandler;
use pdp_kit::outbox::pdp_outbox;
use pdp_kit::paging::Cursor;
use pdp_kit::store::{Store, StoreError};
pub use pdp_kit::testing::Backend;
use pdp_oversight::{Oversight, Watch};
use pdp_proto::pdp::agreements::v1 as agreements;
use pdp_proto::pdp::oversight::v1 as api;
use serde_json::json;

pub const HARBIN: &str = "230100";

pub fn harbin() -> TenantCode {
    HARBIN.parse().unwrap()
}

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
        tenant: harbin(),
        division: None,
    }
}

pub fn first_page() -> Cursor {
    Cursor::parse(0, "").unwrap()
}

pub struct Instance {
    pub oversight: Oversight,
    pub store: Store,
    pub clock: ManualClock,
    n: std::sync::atomic::AtomicU32,
}

impl Instance {
    pub fn new(backend: &Backend) -> Self {
        Self::with(backend, OversightConfig::default())
    }

    pub fn with(backend: &Backend, config: OversightConfig) -> Self {
        let store = backend.store("oversight", &[pdp_oversight::MIGRATIONS]);
        let clock = ManualClock::at(at("2026-12-01 10:00"));
        let oversight = Oversight::new(
            store.clone(),
            Arc::new(clock.clone()),
            Arc::new(WorkingCalendar::shipped()),
            config,
        )
        .unwrap();
        Self {
            oversight,
            store,
            clock,
            n: Default::default(),
        }
    }

    pub fn set(&self, local: &str) {
        self.clock.set(at(local));
    }

    pub fn advance(&self, by: Duration) {
        self.clock.set(self.clock.now() + by);
    }

    /// Applies `event` as oversight's watch does.
    pub async fn sees(&self, event: Event) {
        let watch = Watch {
            oversight: self.oversight.clone(),
        };
        self.store
            .transaction(move |conn| {
                watch
                    .handle(conn, &event)
                    .map_err(|e| StoreError::Task(e.to_string()))
            })
            .await
            .unwrap();
    }

    /// Requests' audit record of a sandbox query by `org`, refused when `refused`.
    pub async fn query(&self, org: &str, refused: bool) {
        let n = self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let details = if refused {
            json!({"grant": "g1", "sql": "SELECT * FROM t", "refused": "rows are held back"})
        } else {
            json!({"grant": "g1", "sql": "SELECT count(*) FROM t", "rows": 1})
        };
        let event = Event::new(
            "requests",
            &harbin(),
            "action",
            "recorded",
            format!("grants/g1/queries/{n}"),
            self.clock.now(),
            json!({"action": "query.ran", "target": format!("grants/g1/queries/{n}"),
                   "subject": format!("dev-{org}"), "organization": org,
                   "roles": ["operator"], "details": details}),
        );
        self.sees(event).await;
    }

    /// Agreements' event of `ty` about agreement `id` of `operator`, for the term.
    pub async fn agreement(
        &self,
        ty: pdp_proto::EventType<agreements::AgreementChanged>,
        id: &str,
        operator: &str,
        (first_day, last_day): (&str, &str),
        state: agreements::AgreementState,
    ) {
        let event = Event::typed(
            &harbin(),
            ty,
            id,
            self.clock.now(),
            &agreements::AgreementChanged {
                agreement_id: id.into(),
                operator: operator.into(),
                state: state as i32,
                resource_ids: vec!["r1".into()],
                first_day: first_day.into(),
                last_day: last_day.into(),
                ..Default::default()
            },
        );
        self.sees(event).await;
    }

    pub async fn active(&self, id: &str, operator: &str, term: (&str, &str)) {
        self.agreement(
            agreements::AGREEMENT_ACTIVATED,
            id,
            operator,
            term,
            agreements::AgreementState::Active,
        )
        .await;
    }

    /// Every alert of the tenant, as the bureau sees them.
    pub async fn alerts(&self) -> Vec<api::Alert> {
        let bureau = caller("city_bureau", "harbin-bureau");
        self.oversight
            .list_alerts(&bureau, HARBIN, 0, 0, first_page())
            .await
            .unwrap()
            .0
    }

    /// The events of `ty` oversight wrote, oldest first.
    pub async fn events(&self, ty: &str) -> Vec<Event> {
        let envelopes: Vec<String> = self
            .store
            .run(|conn| {
                pdp_outbox::table
                    .order(pdp_outbox::id)
                    .select(pdp_outbox::envelope)
                    .load::<String>(conn)
                    .map_err(StoreError::from)
            })
            .await
            .unwrap();
        envelopes
            .iter()
            .map(|e| serde_json::from_str::<Event>(e).unwrap())
            .filter(|e| e.event_type == ty)
            .collect()
    }
}
