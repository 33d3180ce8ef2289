//! Stores, a test clock, callers, and the grants, workspace tables and developers products
//! learns from requests' events.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use pdp_kit::clock::ManualClock;
use pdp_kit::config::ExchangeConfig;
use pdp_kit::events::Event;
use pdp_kit::identity::Identity;
use pdp_kit::inbox::EventHandler;
use pdp_kit::store::{Store, StoreError};
pub use pdp_kit::testing::Backend;
use pdp_products::exchange::{Exchanges, signing_input};
use pdp_products::{ExchangeAnswers, Follow, Products};
use pdp_proto::pdp::agreements::v1 as agreements;
use pdp_proto::pdp::planning::v1::ProductClass;
use pdp_proto::pdp::products::v1 as api;
use pdp_proto::pdp::requests::v1 as requests;

pub const HARBIN: &str = "230100";

pub fn at(local: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{}:00+08:00", local.replace(' ', "T")))
        .unwrap()
        .into()
}

pub struct Instance {
    pub products: Products,
    pub store: Store,
    pub clock: ManualClock,
    /// The exchange `hlj-dex`'s signing key (its public half is configured).
    pub exchange_key: SigningKey,
    answers: ExchangeAnswers,
}

impl Instance {
    /// Monday 2026-11-30 in Harbin: beta holds grant `g1` until 2027-06-30 with workspace table
    /// `by_stop`, gamma holds `g2`, and `delta` is a developer beta approved.
    pub async fn new(backend: &Backend) -> Self {
        let store = backend.store("products", &[pdp_products::MIGRATIONS]);
        let clock = ManualClock::at(at("2026-11-30 10:00"));
        let exchange_key = SigningKey::random(&mut rand::rngs::OsRng);
        let exchange = ExchangeConfig {
            id: "hlj-dex".into(),
            name: "Heilongjiang data exchange".into(),
            receipts_topic: "hlj-dex.receipts".into(),
            trades_topic: "hlj-dex.trades".into(),
            public_key: exchange_key
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        };
        let exchanges = Arc::new(Exchanges::new(&[exchange]).unwrap());
        let clock_ = Arc::new(clock.clone());
        let i = Self {
            products: Products::new(store.clone(), clock_.clone(), exchanges.clone()),
            answers: ExchangeAnswers {
                exchanges,
                clock: clock_,
            },
            store,
            clock,
            exchange_key,
        };
        i.grant("g1", "beta", true).await;
        i.grant("g2", "gamma", true).await;
        i.apply(
            requests::WORKSPACE_TABLE_CREATED,
            "g1",
            &requests::WorkspaceTableChanged {
                grant_id: "g1".into(),
                operator: "beta".into(),
                name: "by_stop".into(),
                ..Default::default()
            },
        )
        .await;
        i.apply(
            requests::DEVELOPER_APPROVED,
            "dev-1",
            &requests::DeveloperChanged {
                developer_id: "dev-1".into(),
                organization: "delta".into(),
                operator: "beta".into(),
                state: requests::ApprovalState::Approved as i32,
            },
        )
        .await;
        i
    }

    pub fn set(&self, local: &str) {
        self.clock.set(at(local));
    }

    pub async fn apply<P: pdp_proto::EventPayload>(
        &self,
        ty: pdp_proto::EventType<P>,
        subject: &str,
        payload: &P,
    ) {
        let event = Event::typed(&HARBIN.parse().unwrap(), ty, subject, Utc::now(), payload);
        self.store
            .transaction(move |conn| {
                Follow
                    .handle(conn, &event)
                    .map_err(|e| StoreError::Task(e.to_string()))
            })
            .await
            .unwrap();
    }

    /// An exchange's event of type `ty` with `data`, signed by `key` (none: unsigned), as the
    /// exchange consumer applies it: `Err` is what the consumer parks.
    pub async fn exchange_sends<P: pdp_proto::EventPayload>(
        &self,
        ty: pdp_proto::EventType<P>,
        data: &P,
        key: Option<&SigningKey>,
        alter: impl FnOnce(&mut serde_json::Value),
    ) -> Result<(), String> {
        let mut json = pdp_kit::events::to_json(data);
        if let Some(key) = key {
            let signature: Signature = key.sign(signing_input(&json).as_bytes());
            json["signature"] = serde_json::Value::String(
                base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
            );
        }
        alter(&mut json);
        let mut event = Event::typed(&HARBIN.parse().unwrap(), ty, "subject", Utc::now(), data);
        event.data = json;
        let answers = self.answers.clone();
        self.store
            .transaction(move |conn| {
                answers
                    .handle(conn, &event)
                    .map_err(|e| StoreError::Task(e.to_string()))
            })
            .await
            .map_err(|e| e.to_string())
    }

    /// Grant `id` of `operator` issued (valid) or ended, as requests tells.
    pub async fn grant(&self, id: &str, operator: &str, valid: bool) {
        let (ty, state) = if valid {
            (requests::GRANT_ISSUED, requests::GrantState::Valid)
        } else {
            (requests::GRANT_ENDED, requests::GrantState::Ended)
        };
        self.apply(
            ty,
            id,
            &requests::GrantChanged {
                grant_id: id.into(),
                operator: operator.into(),
                state: state as i32,
                valid_from: "2026-11-01".into(),
                valid_to: "2027-06-30".into(),
                ..Default::default()
            },
        )
        .await;
    }

    pub async fn terminate(&self, operator: &str) {
        self.apply(
            agreements::AGREEMENT_TERMINATED,
            "agr-1",
            &agreements::AgreementChanged {
                agreement_id: "agr-1".into(),
                operator: operator.into(),
                state: agreements::AgreementState::Terminated as i32,
                reason: "rectification failed".into(),
                ..Default::default()
            },
        )
        .await;
    }

    /// Every event the outbox holds for `topic`, oldest first.
    pub async fn events(&self, topic: &str) -> Vec<Event> {
        use pdp_kit::outbox::pdp_outbox;
        let topic = topic.to_string();
        let rows: Vec<String> = self
            .store
            .run(move |conn| {
                pdp_outbox::table
                    .filter(pdp_outbox::topic.eq(topic))
                    .order(pdp_outbox::id)
                    .select(pdp_outbox::envelope)
                    .load::<String>(conn)
                    .map_err(StoreError::from)
            })
            .await
            .unwrap();
        rows.iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect()
    }

    /// Defines, submits and registers `product` as beta; answers it registered.
    pub async fn registered(&self, product: api::Product) -> api::Product {
        let p = self
            .products
            .create(&caller("operator", "beta"), HARBIN, String::new(), product)
            .await
            .unwrap();
        self.products
            .submit(&caller("operator", "beta"), HARBIN, p.id.clone())
            .await
            .unwrap();
        self.products
            .review(&caller("city_bureau", "bureau"), HARBIN, approval(&p.id))
            .await
            .unwrap()
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

/// An API product of beta over grant g1's workspace table `by_stop`.
pub fn api_product(class: ProductClass) -> api::Product {
    api::Product {
        name: "Delay by stop".into(),
        class: class as i32,
        description: "Mean arrival delay per stop and day".into(),
        terms_of_use: "For the buyer's own planning; never passed on".into(),
        inputs: vec![api::ProductInput {
            grant_id: "g1".into(),
            tables: vec!["by_stop".into()],
            product_id: String::new(),
        }],
        form: api::ProductForm::Api as i32,
        query: "SELECT stop, avg(delay) FROM workspace.by_stop WHERE day = :day GROUP BY stop"
            .into(),
        parameters: vec![api::ApiParameter {
            name: "day".into(),
            r#type: api::ParameterType::Date as i32,
            description: "the day, YYYY-MM-DD".into(),
        }],
        ..Default::default()
    }
}

pub fn findings(passed: bool) -> Vec<api::ReviewFinding> {
    [
        api::ReviewAspect::Compliance,
        api::ReviewAspect::Security,
        api::ReviewAspect::PlanConformity,
    ]
    .into_iter()
    .map(|aspect| api::ReviewFinding {
        aspect: aspect as i32,
        passed,
        note: String::new(),
    })
    .collect()
}

pub fn approval(id: &str) -> api::ReviewProductRequest {
    api::ReviewProductRequest {
        tenant: HARBIN.into(),
        id: id.into(),
        outcome: api::ReviewOutcome::Approved as i32,
        findings: findings(true),
        note: String::new(),
    }
}

pub fn state(p: &api::Product) -> api::ProductState {
    api::ProductState::try_from(p.state).unwrap()
}

/// The fields a refusal names.
pub fn fields(err: &pdp_products::ProductError) -> Vec<String> {
    use pdp_kit::error::ServiceError;
    err.field_violations()
        .into_iter()
        .map(|v| v.field)
        .collect()
}
