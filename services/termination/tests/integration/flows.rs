//! The archive's rules, end to end through the service and a real store.

use chrono::Duration;
use diesel::prelude::*;
use pdp_kit::error::{ErrorCode, ServiceError};
use pdp_kit::paging::Cursor;
use pdp_kit::store::TenantScope;
use pdp_proto::pdp::agreements::v1 as agreements;
use pdp_proto::pdp::termination::v1 as api;
use pdp_termination::checkpoint::{Checkpoint, Kind};
use pdp_termination::store::{RecordFilter, audit_records};

use crate::support::*;

fn first_page() -> Cursor {
    Cursor::parse(0, "").unwrap()
}

async fn verify(i: &Instance) -> api::VerifyAuditChainResponse {
    i.archive
        .verify(&caller("auditor", "audit-office"), HARBIN, None, None)
        .await
        .unwrap()
}

/// Ten records: requests by beta and gamma, and one change by the bureau.
async fn ten_records(i: &Instance) {
    for n in 1..=9 {
        i.request(n, if n % 2 == 0 { "beta" } else { "gamma" })
            .await;
        i.advance(Duration::seconds(1));
    }
    i.change("agreement.terminated", "harbin-bureau").await;
}

pub async fn the_chain_verifies_and_names_the_first_record_altered_deleted_or_reordered(
    backend: Backend,
) {
    let i = Instance::new(&backend);
    ten_records(&i).await;
    let ok = verify(&i).await;
    assert!(ok.verified, "{ok:?}");
    assert_eq!((ok.first_seq, ok.last_seq, ok.records_checked), (1, 10, 10));

    // Auditors query by operator, subject and operation; the records say who did what.
    let auditor = caller("auditor", "audit-office");
    let by_beta = RecordFilter {
        organization: Some("beta".into()),
        ..Default::default()
    };
    let (records, _) = i
        .archive
        .list_records(&auditor, HARBIN, by_beta, first_page())
        .await
        .unwrap();
    assert_eq!(records.len(), 4);
    assert!(
        records
            .iter()
            .all(|r| r.source == "gateway" && r.outcome == "allow 200")
    );
    let change = RecordFilter {
        operation: Some("agreement.terminated".into()),
        ..Default::default()
    };
    let (records, _) = i
        .archive
        .list_records(&auditor, HARBIN, change, first_page())
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].source.as_str(), records[0].target.as_str()),
        ("agreements", "agreements/a1")
    );

    // Altered: the record is named.
    i.tamper(|c| {
        diesel::update(audit_records::table.filter(audit_records::seq.eq(3)))
            .set(audit_records::outcome.eq("deny 403"))
            .execute(c)
    })
    .await;
    let bad = verify(&i).await;
    assert!(!bad.verified);
    assert_eq!(bad.failed_seq, 3, "{bad:?}");
    assert!(bad.failure.contains("content does not match"), "{bad:?}");
    i.tamper(|c| {
        diesel::update(audit_records::table.filter(audit_records::seq.eq(3)))
            .set(audit_records::outcome.eq("allow 200"))
            .execute(c)
    })
    .await;
    assert!(verify(&i).await.verified, "restored");

    // Reordered: two records' positions swapped.
    i.tamper(|c| {
        let swap = |from: i64, to: i64| {
            diesel::update(audit_records::table.filter(audit_records::seq.eq(from)))
                .set(audit_records::seq.eq(to))
        };
        Ok(swap(5, -1).execute(c)? + swap(6, 5).execute(c)? + swap(-1, 6).execute(c)?)
    })
    .await;
    let bad = verify(&i).await;
    assert_eq!(bad.failed_seq, 5, "{bad:?}");

    // Deleted: the gap is named, and so is a deleted last record (the head remembers it).
    let i = Instance::named(&backend, "termination_gap");
    ten_records(&i).await;
    i.tamper(|c| diesel::delete(audit_records::table.filter(audit_records::seq.eq(7))).execute(c))
        .await;
    let bad = verify(&i).await;
    assert_eq!(bad.failed_seq, 7, "{bad:?}");
    assert!(bad.failure.contains("missing"), "{bad:?}");
    let i = Instance::named(&backend, "termination_tail");
    ten_records(&i).await;
    i.tamper(|c| diesel::delete(audit_records::table.filter(audit_records::seq.eq(10))).execute(c))
        .await;
    let bad = verify(&i).await;
    assert_eq!(
        bad.failed_seq, 10,
        "the chain's head names record 10: {bad:?}"
    );
    assert!(bad.failure.contains("missing"), "{bad:?}");
}

pub async fn checkpoints_are_signed_published_and_catch_a_rewritten_chain(backend: Backend) {
    let i = Instance::new(&backend);
    ten_records(&i).await;
    assert_eq!(i.archive.checkpoint_due().await.unwrap(), 1);
    assert_eq!(
        i.archive.checkpoint_due().await.unwrap(),
        0,
        "nothing new to sign"
    );
    i.request(11, "beta").await;
    i.advance(Duration::seconds(1));
    assert_eq!(i.archive.checkpoint_due().await.unwrap(), 1);

    // Published without a token: anyone can hold them and check them with the public key.
    let public = caller("public", "anyone");
    let list = i
        .archive
        .list_checkpoints(&public, HARBIN, first_page())
        .await
        .unwrap();
    assert_eq!(list.public_key, i.key.public_key());
    let seqs: Vec<i64> = list.checkpoints.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [11, 10], "newest first");
    let c = &list.checkpoints[1];
    let held = Checkpoint {
        tenant: HARBIN.into(),
        seq: c.seq,
        hash: c.hash.clone(),
        signed_at: pdp_kit::change::instant(c.signed_at.as_ref()).unwrap(),
        kind: Kind::Regular,
        signature: c.signature.clone(),
    };
    assert!(i.key.verifies(&held));
    assert_eq!(held.signing_input(), c.signing_input);

    // Someone holding the database rewrites record 4 and every hash after it: each link holds,
    // the signed checkpoint does not.
    let scope = TenantScope::system(HARBIN.parse().unwrap());
    i.store
        .transaction(move |conn| {
            scope.enter(conn)?;
            let mut prev = pdp_termination::store::records_between(conn, &scope, 2, 3, 1).unwrap()
                [0]
            .hash
            .clone();
            for mut r in pdp_termination::store::records_between(conn, &scope, 3, 11, 100).unwrap()
            {
                if r.seq == 4 {
                    r.subject = "someone-else".into();
                }
                let r = r.link(&prev);
                prev = r.hash.clone();
                diesel::update(audit_records::table.filter(audit_records::seq.eq(r.seq)))
                    .set((
                        audit_records::subject.eq(&r.subject),
                        audit_records::prev_hash.eq(&r.prev_hash),
                        audit_records::hash.eq(&r.hash),
                    ))
                    .execute(conn)?;
            }
            Ok::<_, pdp_kit::store::StoreError>(())
        })
        .await
        .unwrap();
    let bad = verify(&i).await;
    assert!(!bad.verified);
    assert_eq!(bad.failed_seq, 10, "{bad:?}");
    assert!(bad.failure.contains("checkpoint"), "{bad:?}");
}

pub async fn records_stay_two_years_after_their_period_and_under_holds_and_the_chain_verifies_after(
    backend: Backend,
) {
    let i = Instance::new(&backend);
    i.agreement(agreements::AGREEMENT_ACTIVATED).await;
    ten_records(&i).await;
    i.advance(Duration::days(30));
    i.agreement(agreements::AGREEMENT_TERMINATED).await;
    i.change("termination.case_closed", "harbin-bureau").await;
    i.archive.checkpoint_due().await.unwrap();

    // Two years less a day after the period ended: nothing goes.
    i.advance(Duration::days(729));
    assert_eq!(i.archive.purge_due().await.unwrap(), 0);
    assert_eq!(i.count().await, 11);

    // A hold over the period keeps it past its retention, until released.
    let bureau = caller("city_bureau", "harbin-bureau");
    let hold = i
        .archive
        .place_hold(
            &bureau,
            HARBIN,
            api::LegalHold {
                from: Some(pdp_kit::change::timestamp(at("2026-11-01 00:00"))),
                to: Some(pdp_kit::change::timestamp(at("2027-02-01 00:00"))),
                reason: "public security case 2028-17".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    i.advance(Duration::days(2));
    assert_eq!(i.archive.purge_due().await.unwrap(), 0);
    assert_eq!(i.count().await, 11);
    i.archive
        .release_hold(&bureau, HARBIN, hold.id.clone())
        .await
        .unwrap();
    let err = i
        .archive
        .release_hold(&bureau, HARBIN, hold.id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition);

    // Two years and a day after: the period's eleven records go.
    assert_eq!(i.archive.purge_due().await.unwrap(), 11);
    assert_eq!(i.count().await, 0);
    assert_eq!(i.archive.purge_due().await.unwrap(), 0, "once");
    i.request(99, "beta").await;
    let ok = verify(&i).await;
    assert!(ok.verified, "{ok:?}");
    assert_eq!((ok.first_seq, ok.records_checked), (12, 1));
    let public = caller("public", "anyone");
    let list = i
        .archive
        .list_checkpoints(&public, HARBIN, first_page())
        .await
        .unwrap();
    assert!(
        list.checkpoints
            .iter()
            .any(|c| c.kind == "ANCHOR" && c.seq == 11),
        "{list:?}"
    );
}

pub async fn only_bureaus_supervisors_and_auditors_read_and_a_hold_names_what_it_lacks(
    backend: Backend,
) {
    let i = Instance::new(&backend);
    ten_records(&i).await;
    for who in [caller("operator", "beta"), caller("developer", "delta")] {
        let err = i
            .archive
            .list_records(&who, HARBIN, RecordFilter::default(), first_page())
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err}");
        let err = i
            .archive
            .verify(&who, HARBIN, None, None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err}");
    }
    let err = i
        .archive
        .place_hold(
            &caller("auditor", "audit-office"),
            HARBIN,
            Default::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    let err = i
        .archive
        .place_hold(&caller("supervisor", "police"), HARBIN, Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    let text = err.to_string();
    for field in ["hold.from", "hold.to", "hold.reason"] {
        assert!(text.contains(field), "{text}");
    }
    let (holds, _) = i
        .archive
        .list_holds(&caller("supervisor", "police"), HARBIN, first_page())
        .await
        .unwrap();
    assert!(holds.is_empty(), "nothing was placed");
}

fn ended(agreement: &str) -> agreements::AgreementChanged {
    agreements::AgreementChanged {
        agreement_id: agreement.into(),
        operator: "beta".into(),
        first_day: "2026-12-01".into(),
        last_day: "2029-11-30".into(),
        reason: "rectification order 7 failed".into(),
        ground: agreements::TerminationGround::BreachNotRectified as i32,
        decision: Some(agreements::Decision {
            title: "Decision to terminate beta's authorization".into(),
            reference: "哈数据〔2026〕12号".into(),
            digest: String::new(),
        }),
        ..Default::default()
    }
}

fn harbin() -> pdp_kit::identity::TenantCode {
    HARBIN.parse().unwrap()
}

async fn terminated(i: &Instance, agreement: &str) -> api::TerminationCase {
    use pdp_kit::clock::Clock;
    let event = pdp_kit::events::Event::typed(
        &harbin(),
        agreements::AGREEMENT_TERMINATED,
        agreement,
        i.clock.now(),
        &ended(agreement),
    );
    i.follows(event).await;
    let (cases, _) = i
        .cases
        .list(
            &caller("city_bureau", "harbin-bureau"),
            HARBIN,
            None,
            first_page(),
        )
        .await
        .unwrap();
    cases
        .into_iter()
        .find(|c| c.agreement_id == agreement)
        .unwrap()
}

pub async fn an_early_termination_cuts_access_destroys_under_witness_hands_over_and_closes(
    backend: Backend,
) {
    use pdp_kit::clock::Clock;
    use pdp_proto::pdp::products::v1 as products;
    use pdp_proto::pdp::requests::v1 as requests;
    let i = Instance::new(&backend);
    let (bureau, supervisor) = (
        caller("city_bureau", "harbin-bureau"),
        caller("supervisor", "harbin-cyberspace"),
    );
    // A grant of the agreement that ended on its own weeks before: it counts too.
    i.clock.set(at("2026-11-10 10:00"));
    let earlier = pdp_kit::events::Event::typed(
        &harbin(),
        requests::GRANT_ENDED,
        "g0",
        i.clock.now(),
        &requests::GrantChanged {
            grant_id: "g0".into(),
            operator: "beta".into(),
            agreement_id: "a1".into(),
            ..Default::default()
        },
    );
    i.follows(earlier).await;
    i.clock.set(at("2026-12-01 10:00"));
    // Beta's records of the period, in the archive.
    i.request(1, "beta").await;
    i.request(2, "beta").await;
    i.request(3, "gamma").await;
    // Products withdraws beta's product on the same agreement event, before the case exists.
    let now = i.clock.now();
    let withdrawn = pdp_kit::events::Event::typed(
        &harbin(),
        products::PRODUCT_WITHDRAWN,
        "p1",
        now,
        &products::ProductChanged {
            product_id: "p1".into(),
            operator: "beta".into(),
            ..Default::default()
        },
    );
    i.follows(withdrawn).await;
    let c = terminated(&i, "a1").await;
    assert_eq!(c.cause, "TERMINATED");
    assert!(c.reason.contains("BREACH_NOT_RECTIFIED"), "{c:?}");
    assert_eq!(c.decision.as_ref().unwrap().reference, "哈数据〔2026〕12号");
    assert_eq!(c.deadline, "2026-12-29", "20 working days after 2026-12-01");
    let kinds: Vec<_> = c.access_cuts.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, ["grant", "authorization", "product"], "{c:?}");
    // The grant ends when requests applies the same event.
    i.advance(Duration::milliseconds(40));
    let grant_ended = pdp_kit::events::Event::typed(
        &harbin(),
        requests::GRANT_ENDED,
        "g1",
        i.clock.now(),
        &requests::GrantChanged {
            grant_id: "g1".into(),
            operator: "beta".into(),
            agreement_id: "a1".into(),
            ..Default::default()
        },
    );
    i.follows(grant_ended).await;

    // Nothing is witnessed before requests reports the destruction.
    let err = i
        .cases
        .witness(
            &supervisor,
            HARBIN,
            c.id.clone(),
            String::new(),
            String::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition);
    assert!(err.to_string().contains("requests"), "{err}");
    let destroyed = pdp_kit::events::Event::typed(
        &harbin(),
        requests::OPERATOR_DATA_DESTROYED,
        &c.id,
        i.clock.now(),
        &requests::OperatorDataDestroyed {
            case_id: c.id.clone(),
            agreement_id: "a1".into(),
            operator: "beta".into(),
            grant_ids: vec!["g0".into(), "g1".into()],
            objects: vec![api::DestroyedObject {
                location: "tenants/230100/grants/g1/workspace/by_stop/part-0.parquet".into(),
                size_bytes: 2048,
                sha256: "ab".repeat(32),
            }],
            remaining: 0,
            destroyed_at: Some(pdp_kit::change::timestamp(i.clock.now())),
        },
    );
    i.follows(destroyed.clone()).await;
    i.follows(destroyed).await;

    // Another operator does not see the case; beta sees its own.
    let err = i
        .cases
        .get(&caller("operator", "gamma"), HARBIN, c.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let c = i
        .cases
        .get(&caller("operator", "beta"), HARBIN, c.id.clone())
        .await
        .unwrap();
    let d = c.destruction.clone().unwrap();
    assert_eq!(d.objects.len(), 1);
    assert_eq!(c.access_cuts.len(), 4, "{c:?}");

    // The witness is a supervisor's, over the record's digest.
    let err = i
        .cases
        .witness(
            &bureau,
            HARBIN,
            c.id.clone(),
            d.digest.clone(),
            String::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    let err = i
        .cases
        .witness(
            &supervisor,
            HARBIN,
            c.id.clone(),
            "00".repeat(32),
            String::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    assert!(err.to_string().contains("digest"), "{err}");
    let err = i
        .cases
        .close(&bureau, HARBIN, c.id.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(":witness-destruction"), "{err}");
    let statement = "watched the deletion on site".to_string();
    let c = i
        .cases
        .witness(
            &supervisor,
            HARBIN,
            c.id.clone(),
            d.digest.clone(),
            statement,
        )
        .await
        .unwrap();
    assert_eq!(
        c.destruction.as_ref().unwrap().witness_organization,
        "harbin-cyberspace"
    );

    // The handover: beta's records of the period, signed; acknowledged by its digest.
    let bundle = i
        .cases
        .handover_bundle(&bureau, HARBIN, c.id.clone())
        .await
        .unwrap();
    assert!(pdp_termination::checkpoint::verify_published(
        &bundle.public_key,
        &bundle.manifest,
        &bundle.signature
    ));
    let records = bundle
        .items
        .iter()
        .find(|i| i.name == "audit-records.json")
        .unwrap();
    let records: serde_json::Value = serde_json::from_str(&records.content).unwrap();
    assert_eq!(records.as_array().unwrap().len(), 2, "beta's, not gamma's");
    for item in &bundle.items {
        assert!(bundle.manifest.contains(&item.sha256), "{}", item.name);
    }
    let err = i
        .cases
        .close(&bureau, HARBIN, c.id.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(":acknowledge-handover"), "{err}");
    let err = i
        .cases
        .acknowledge(&bureau, HARBIN, c.id.clone(), "00".repeat(32))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    i.cases
        .acknowledge(
            &bureau,
            HARBIN,
            c.id.clone(),
            bundle.manifest_digest.clone(),
        )
        .await
        .unwrap();
    let closed = i.cases.close(&bureau, HARBIN, c.id.clone()).await.unwrap();
    assert_eq!(closed.state, api::TerminationCaseState::Closed as i32);
    i.clock.set(at("2027-06-01 10:00"));
    assert_eq!(i.cases.flag_overdue().await.unwrap(), 0, "closed in time");
    pdp_kit::testing::assert_events_documented(&i.store, pdp_termination::TOPIC).await;
}

pub async fn a_case_open_past_its_deadline_is_flagged_once(backend: Backend) {
    let i = Instance::new(&backend);
    i.clock.set(at("2026-12-01 10:00"));
    let c = terminated(&i, "a2").await;
    i.clock.set(at("2026-12-29 23:00"));
    assert_eq!(
        i.cases.flag_overdue().await.unwrap(),
        0,
        "the last day itself"
    );
    i.clock.set(at("2026-12-30 09:00"));
    assert_eq!(i.cases.flag_overdue().await.unwrap(), 1);
    assert_eq!(i.cases.flag_overdue().await.unwrap(), 0, "once");
    let c = i
        .cases
        .get(&caller("auditor", "audit-office"), HARBIN, c.id)
        .await
        .unwrap();
    assert!(c.overdue, "{c:?}");
}

pub async fn a_batch_appends_each_tenants_records_to_its_own_chain(backend: Backend) {
    use pdp_kit::inbox::EventHandler;
    let i = Instance::new(&backend);
    i.request(1, "beta").await;
    // A batch as the consumer receives it: Harbin's and Qiqihar's records interleaved.
    let events: Vec<pdp_kit::events::Event> = (0..6)
        .map(|n| {
            let tenant = if n % 2 == 0 { HARBIN } else { "230200" };
            pdp_kit::events::Event::new(
                "gateway",
                &tenant.parse().unwrap(),
                "request",
                "audited",
                format!("batch-{n}"),
                chrono::Utc::now(),
                serde_json::json!({"request_id": format!("batch-{n}"), "organization": "beta",
                    "decision": "allow", "status": 200}),
            )
        })
        .collect();
    let ingest = pdp_termination::Ingest {
        clock: std::sync::Arc::new(i.clock.clone()),
    };
    i.store
        .transaction(move |conn| {
            let refs: Vec<&pdp_kit::events::Event> = events.iter().collect();
            ingest
                .handle_all(conn, &refs)
                .map_err(|e| pdp_kit::store::StoreError::Task(e.to_string()))
        })
        .await
        .unwrap();
    let harbin = verify(&i).await;
    assert!(harbin.verified, "{harbin:?}");
    assert_eq!(
        (harbin.first_seq, harbin.last_seq),
        (1, 4),
        "one before, three in the batch"
    );
    let qiqihar = i
        .archive
        .verify_in(TenantScope::system("230200".parse().unwrap()), None, None)
        .await
        .unwrap();
    assert!(qiqihar.verified, "{qiqihar:?}");
    assert_eq!((qiqihar.first_seq, qiqihar.last_seq), (1, 3));
}
