//! Oversight's flows: what supervisors, the bureau and operators do, and what the watch makes of
//! other services' events.

use chrono::Duration;
use pdp_kit::clock::Clock;
use pdp_kit::config::OversightConfig;
use pdp_kit::error::DomainError;
use pdp_kit::events::Event;
use pdp_oversight::alert::Step;
use pdp_proto::pdp::agreements::v1 as agreements;
use pdp_proto::pdp::oversight::v1 as api;
use pdp_proto::pdp::products::v1 as products;
use pdp_proto::pdp::requests::v1 as requests;
use serde_json::json;

use crate::support::*;

fn doc(title: &str) -> api::DocumentRef {
    api::DocumentRef {
        title: title.into(),
        uri: format!("s3://evidence/{title}"),
        digest: format!("sha256:{}", "ab".repeat(32)),
    }
}

fn fields(e: &DomainError) -> Vec<String> {
    match e {
        DomainError::Invalid { violations, .. } => {
            violations.iter().map(|v| v.field.clone()).collect()
        }
        other => panic!("not a validation error: {other:?}"),
    }
}

pub async fn refused_queries_raise_one_alert_that_the_supervisors_of_its_duty_handle(
    backend: Backend,
) {
    let config = OversightConfig {
        supervisor_departments: [
            (
                "harbin-cyberspace".to_string(),
                vec!["CYBERSPACE".to_string()],
            ),
            ("harbin-finance".to_string(), vec!["FINANCE".to_string()]),
        ]
        .into(),
        ..Default::default()
    };
    let i = Instance::with(&backend, config);
    // Four refusals in an hour and answered queries besides: quiet.
    for _ in 0..4 {
        i.query("beta", true).await;
        i.query("beta", false).await;
        i.advance(Duration::minutes(5));
    }
    assert!(i.alerts().await.is_empty());
    // Refusals spread over more than the window: still quiet.
    i.advance(Duration::hours(2));
    i.query("beta", true).await;
    assert!(i.alerts().await.is_empty());
    // A burst: five within the hour.
    for _ in 0..4 {
        i.advance(Duration::minutes(1));
        i.query("beta", true).await;
    }
    let alerts = i.alerts().await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(
        (a.rule_id.as_str(), a.group_key.as_str()),
        ("sandbox-refusals", "beta")
    );
    assert_eq!(a.severity, api::Severity::High as i32);
    assert_eq!(a.evidence.len(), 1);
    assert!(a.evidence[0].event_id.len() > 10, "{a:?}");
    // More refusals add to the open alert; another operator's are its own.
    i.query("beta", true).await;
    for _ in 0..5 {
        i.query("gamma", true).await;
    }
    let alerts = i.alerts().await;
    assert_eq!(alerts.len(), 2);
    let beta = alerts.iter().find(|a| a.group_key == "beta").unwrap();
    assert_eq!((beta.hits, beta.evidence.len()), (2, 2));
    assert_eq!(i.events("pdp.oversight.alert.raised").await.len(), 2);
    // Hits no window reaches any more are forgotten, in each tenant's scope (on PostgreSQL a
    // tenant's rows are reachable in no other); the open alerts keep their evidence.
    assert_eq!(
        i.oversight.forget_hits(&[harbin()]).await.unwrap(),
        0,
        "every hit is still in a window"
    );
    i.advance(Duration::days(30));
    let forgotten = i.oversight.forget_hits(&[harbin()]).await.unwrap();
    assert!(forgotten >= 11, "{forgotten} hits forgotten");
    assert_eq!(i.oversight.forget_hits(&[harbin()]).await.unwrap(), 0);
    assert_eq!(i.alerts().await.len(), 2);
    // The cyberspace supervisor sees it; finance's does not, not even by id.
    let cyber = caller("supervisor", "harbin-cyberspace");
    let finance = caller("supervisor", "harbin-finance");
    let seen = i
        .oversight
        .list_alerts(&cyber, HARBIN, 0, 0, first_page())
        .await
        .unwrap()
        .0;
    assert_eq!(seen.len(), 2);
    let seen = i
        .oversight
        .list_alerts(&finance, HARBIN, 0, 0, first_page())
        .await
        .unwrap()
        .0;
    assert!(seen.is_empty(), "{seen:?}");
    let e = i
        .oversight
        .get_alert(&finance, HARBIN, beta.id.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, DomainError::NotFound { .. }), "{e:?}");
    // An operator cannot handle alerts; closing needs a note.
    let op = caller("operator", "beta");
    let e = i
        .oversight
        .handle_alert(
            &op,
            HARBIN,
            beta.id.clone(),
            Step::Acknowledge,
            String::new(),
        )
        .await;
    assert!(matches!(e, Err(DomainError::Forbidden { .. })), "{e:?}");
    let e = i
        .oversight
        .handle_alert(&cyber, HARBIN, beta.id.clone(), Step::Close, " ".into())
        .await
        .unwrap_err();
    assert_eq!(fields(&e), ["note"]);
    let a = i
        .oversight
        .handle_alert(
            &cyber,
            HARBIN,
            beta.id.clone(),
            Step::Assign,
            "inspector-1".into(),
        )
        .await
        .unwrap();
    assert_eq!(
        (a.state, a.assignee.as_str()),
        (api::AlertState::Acknowledged as i32, "inspector-1")
    );
    let a = i
        .oversight
        .handle_alert(
            &cyber,
            HARBIN,
            beta.id.clone(),
            Step::Close,
            "inspected; see the inspection".into(),
        )
        .await
        .unwrap();
    assert_eq!(a.state, api::AlertState::Closed as i32);
    let e = i
        .oversight
        .handle_alert(&cyber, HARBIN, beta.id.clone(), Step::Close, "again".into())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("closed"), "{e}");
    // Closed, the next burst raises a new alert.
    for _ in 0..5 {
        i.advance(Duration::minutes(1));
        i.query("beta", true).await;
    }
    let open: Vec<_> = i
        .alerts()
        .await
        .into_iter()
        .filter(|a| a.group_key == "beta" && a.state == api::AlertState::Open as i32)
        .collect();
    assert_eq!(open.len(), 1);
    // Seeing the same event twice counts it once.
    let before = open[0].hits;
    let event = Event::new(
        "requests",
        &harbin(),
        "action",
        "recorded",
        "x",
        i.clock.now(),
        json!({"action": "query.ran", "organization": "beta", "details": {"refused": "no"}}),
    );
    i.sees(event.clone()).await;
    i.sees(event).await;
    let after = i
        .alerts()
        .await
        .into_iter()
        .find(|a| a.id == open[0].id)
        .unwrap()
        .hits;
    assert_eq!(after, before + 1);
    pdp_kit::testing::assert_events_documented(&i.store, pdp_oversight::TOPIC).await;
}

/// One event of `ty` with `data`, from `service`.
fn event(service: &str, ty: &str, subject: &str, data: serde_json::Value, i: &Instance) -> Event {
    let mut e = Event::new(service, &harbin(), "x", "y", subject, i.clock.now(), data);
    e.event_type = ty.into();
    e
}

pub async fn each_shipped_rule_fires_on_its_stream_and_stays_quiet_on_another(backend: Backend) {
    let rules = pdp_oversight::rules::shipped();
    let i = Instance::new(&backend);
    // (rule, the events that fire it, the events that do not), each built at the current time.
    type Stream = Vec<(String, String, serde_json::Value)>;
    let repeat = |n: usize, e: (&str, &str, serde_json::Value)| -> Stream {
        (0..n)
            .map(|_| (e.0.to_string(), e.1.to_string(), e.2.clone()))
            .collect()
    };
    let sandbox = "pdp.requests.action.recorded";
    let refused = json!({"action": "query.ran", "organization": "op", "details": {"refused": "x"}});
    let answered = json!({"action": "query.ran", "organization": "op", "details": {}});
    let probing =
        json!({"action": "query.ran", "organization": "op", "details": {"suppressed": 2}});
    let clean = json!({"action": "query.ran", "organization": "op", "details": {"suppressed": 0}});
    let denied = json!({"decision": "deny", "subject": "u1", "organization": "op", "status": 403});
    let allowed =
        json!({"decision": "allow", "subject": "u1", "organization": "op", "status": 200});
    let cases: Vec<(&str, Stream, Stream)> = vec![
        (
            "sandbox-refusals",
            repeat(5, ("requests", sandbox, refused.clone())),
            repeat(5, ("requests", sandbox, answered.clone())),
        ),
        (
            "disclosure-threshold-probing",
            repeat(10, ("requests", sandbox, probing)),
            repeat(10, ("requests", sandbox, clean)),
        ),
        (
            "gateway-denials",
            repeat(20, ("gateway", "pdp.gateway.request.audited", denied)),
            repeat(20, ("gateway", "pdp.gateway.request.audited", allowed)),
        ),
        (
            "request-review-overdue",
            repeat(
                1,
                (
                    "requests",
                    "pdp.requests.review.overdue",
                    json!({"requestId": "r1"}),
                ),
            ),
            repeat(
                1,
                (
                    "requests",
                    "pdp.requests.request.reviewed",
                    json!({"requestId": "r1"}),
                ),
            ),
        ),
        (
            "quality-ticket-overdue",
            repeat(
                1,
                (
                    "requests",
                    "pdp.requests.ticket.overdue",
                    json!({"ticket_id": "t1", "provider": "unit"}),
                ),
            ),
            repeat(
                1,
                (
                    "requests",
                    "pdp.requests.ticket.answered",
                    json!({"ticket_id": "t1", "provider": "unit"}),
                ),
            ),
        ),
        (
            "revenue-above-permitted",
            repeat(
                1,
                (
                    "products",
                    "pdp.products.revenue_cap.exceeded",
                    json!({"operator": "op"}),
                ),
            ),
            repeat(
                1,
                (
                    "products",
                    "pdp.products.revenue_cap.set",
                    json!({"operator": "op"}),
                ),
            ),
        ),
        (
            "termination-case-overdue",
            repeat(
                1,
                (
                    "termination",
                    "pdp.termination.case.overdue",
                    json!({"operator": "op"}),
                ),
            ),
            repeat(
                1,
                (
                    "termination",
                    "pdp.termination.case.opened",
                    json!({"operator": "op"}),
                ),
            ),
        ),
    ];
    let tested: Vec<&str> = cases
        .iter()
        .map(|c| c.0)
        .chain(["sandbox-queries-above-usual"])
        .collect();
    for r in &rules {
        assert!(
            tested.contains(&r.id.as_str()),
            "the shipped rule {} has no test here",
            r.id
        );
    }
    for (rule, fires, quiet) in cases {
        for (service, ty, data) in quiet {
            i.advance(Duration::seconds(1));
            i.sees(event(&service, &ty, "s1", data, &i)).await;
        }
        assert!(
            !i.alerts().await.iter().any(|a| a.rule_id == rule),
            "{rule} fired on its quiet stream"
        );
        for (service, ty, data) in fires {
            i.advance(Duration::seconds(1));
            i.sees(event(&service, &ty, "s1", data, &i)).await;
        }
        assert!(
            i.alerts().await.iter().any(|a| a.rule_id == rule),
            "{rule} did not fire"
        );
    }
    // Above usual: a steady 30 queries an hour for a day, then 60 (above the threshold of 50 but
    // only twice the usual): quiet; then 200 in an hour: it fires.
    let usual = "sandbox-queries-above-usual";
    let q = |org: &str| json!({"action": "query.ran", "organization": org, "details": {}});
    i.advance(Duration::days(2));
    for _ in 0..24 {
        for _ in 0..30 {
            i.advance(Duration::seconds(120));
            i.sees(event("requests", sandbox, "s", q("steady"), &i))
                .await;
        }
    }
    for _ in 0..60 {
        i.advance(Duration::seconds(55));
        i.sees(event("requests", sandbox, "s", q("steady"), &i))
            .await;
    }
    assert!(
        !i.alerts()
            .await
            .iter()
            .any(|a| a.rule_id == usual && a.group_key == "steady")
    );
    i.advance(Duration::hours(1));
    for _ in 0..200 {
        i.advance(Duration::seconds(15));
        i.sees(event("requests", sandbox, "s", q("steady"), &i))
            .await;
    }
    assert!(
        i.alerts()
            .await
            .iter()
            .any(|a| a.rule_id == usual && a.group_key == "steady")
    );
}

/// Agreement a1 of beta, active; an open inspection of it with one finding: (inspection, finding).
async fn inspected(i: &Instance) -> (api::Inspection, String) {
    i.active("a1", "beta", ("2026-01-01", "2028-12-31")).await;
    let supervisor = caller("supervisor", "harbin-cyberspace");
    let open = api::Inspection {
        target_kind: "operator".into(),
        target: "beta".into(),
        agreement_id: "a1".into(),
        purpose: "refused sandbox queries".into(),
        department: api::Department::Cyberspace as i32,
        ..Default::default()
    };
    let inspection = i
        .oversight
        .open_inspection(&supervisor, HARBIN, open)
        .await
        .unwrap();
    let finding = api::Finding {
        description: "queries tried to read rows outside the grant".into(),
        severity: api::Severity::High as i32,
        evidence: vec![doc("query-log")],
        ..Default::default()
    };
    let inspection = i
        .oversight
        .record_finding(&supervisor, HARBIN, inspection.id, finding)
        .await
        .unwrap();
    let finding = inspection.findings[0].id.clone();
    (inspection, finding)
}

fn order(inspection: &api::Inspection, finding: &str, days: u32) -> api::RectificationOrder {
    api::RectificationOrder {
        inspection_id: inspection.id.clone(),
        finding_id: finding.into(),
        requirement: "restrict the analysts' accounts to the granted tables".into(),
        working_days: days,
        ..Default::default()
    }
}

pub async fn an_unanswered_order_fails_at_its_deadline_and_asks_the_bureau_to_terminate(
    backend: Backend,
) {
    let i = Instance::new(&backend);
    let supervisor = caller("supervisor", "harbin-cyberspace");
    // What an inspection and an order lack is named, field by field.
    let e = i
        .oversight
        .open_inspection(&supervisor, HARBIN, api::Inspection::default())
        .await
        .unwrap_err();
    assert_eq!(
        fields(&e),
        [
            "inspection.target_kind",
            "inspection.target",
            "inspection.purpose"
        ]
    );
    let (inspection, finding) = inspected(&i).await;
    let e = i
        .oversight
        .issue_order(&supervisor, HARBIN, api::RectificationOrder::default())
        .await
        .unwrap_err();
    assert_eq!(
        fields(&e),
        [
            "order.inspection_id",
            "order.finding_id",
            "order.requirement",
            "order.working_days"
        ]
    );
    let e = i
        .oversight
        .issue_order(&supervisor, HARBIN, order(&inspection, "nope", 5))
        .await
        .unwrap_err();
    assert_eq!(fields(&e), ["order.finding_id"]);
    // Five working days from Tuesday 2026-12-01: Tuesday 2026-12-08.
    let o = i
        .oversight
        .issue_order(&supervisor, HARBIN, order(&inspection, &finding, 5))
        .await
        .unwrap();
    assert_eq!(
        (o.operator.as_str(), o.agreement_id.as_str()),
        ("beta", "a1")
    );
    assert_eq!(o.deadline, "2026-12-08");
    // The operator sees its own order; another operator does not.
    let beta = caller("operator", "beta");
    let gamma = caller("operator", "gamma");
    assert_eq!(
        i.oversight
            .get_order(&beta, HARBIN, o.id.clone())
            .await
            .unwrap()
            .id,
        o.id
    );
    let e = i
        .oversight
        .get_order(&gamma, HARBIN, o.id.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, DomainError::NotFound { .. }));
    let e = i
        .oversight
        .respond_to_order(&gamma, HARBIN, o.id.clone(), "done".into(), vec![])
        .await
        .unwrap_err();
    assert!(matches!(e, DomainError::NotFound { .. }));
    // On its last day nothing happens; the day after, it fails.
    i.set("2026-12-08 23:00");
    assert_eq!(i.oversight.run_due().await.unwrap(), 0);
    i.set("2026-12-09 00:30");
    assert_eq!(i.oversight.run_due().await.unwrap(), 1);
    assert_eq!(i.oversight.run_due().await.unwrap(), 0, "once");
    let o = i
        .oversight
        .get_order(&supervisor, HARBIN, o.id.clone())
        .await
        .unwrap();
    assert_eq!(o.state, api::RectificationState::Failed as i32);
    assert!(o.failure.contains("overdue"), "{o:?}");
    let failed = i.events("pdp.oversight.rectification.failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].data["agreement_id"], "a1");
    let alert = i
        .alerts()
        .await
        .into_iter()
        .find(|a| a.rule_id == "rectification-failed")
        .unwrap();
    assert_eq!(
        (alert.group_key.as_str(), alert.severity),
        ("a1", api::Severity::Critical as i32)
    );
    // A late answer is refused: the order is concluded.
    let e = i
        .oversight
        .respond_to_order(&beta, HARBIN, o.id.clone(), "done".into(), vec![])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("concluded"), "{e}");
}

pub async fn a_rectification_rejected_twice_fails_and_an_accepted_one_is_rectified(
    backend: Backend,
) {
    let i = Instance::new(&backend);
    let supervisor = caller("supervisor", "harbin-cyberspace");
    let beta = caller("operator", "beta");
    let (inspection, finding) = inspected(&i).await;
    let o = i
        .oversight
        .issue_order(&supervisor, HARBIN, order(&inspection, &finding, 10))
        .await
        .unwrap();
    // Judged before any answer: the missing step is named.
    let e = i
        .oversight
        .judge_order(&supervisor, HARBIN, o.id.clone(), true, String::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains(":respond"), "{e}");
    let e = i
        .oversight
        .respond_to_order(&beta, HARBIN, o.id.clone(), " ".into(), vec![])
        .await
        .unwrap_err();
    assert_eq!(fields(&e), ["text"]);
    i.oversight
        .respond_to_order(
            &beta,
            HARBIN,
            o.id.clone(),
            "accounts restricted".into(),
            vec![doc("acl")],
        )
        .await
        .unwrap();
    let e = i
        .oversight
        .judge_order(&supervisor, HARBIN, o.id.clone(), false, String::new())
        .await
        .unwrap_err();
    assert_eq!(fields(&e), ["note"]);
    let o1 = i
        .oversight
        .judge_order(
            &supervisor,
            HARBIN,
            o.id.clone(),
            false,
            "two accounts remain".into(),
        )
        .await
        .unwrap();
    assert_eq!(
        (o1.state, o1.rejections),
        (api::RectificationState::Issued as i32, 1)
    );
    i.oversight
        .respond_to_order(&beta, HARBIN, o.id.clone(), "all restricted".into(), vec![])
        .await
        .unwrap();
    let o2 = i
        .oversight
        .judge_order(&supervisor, HARBIN, o.id.clone(), false, "still one".into())
        .await
        .unwrap();
    assert_eq!(o2.state, api::RectificationState::Failed as i32);
    assert_eq!(o2.failure, "rejected twice");
    assert_eq!(o2.responses.len(), 2);
    assert!(
        o2.responses
            .iter()
            .all(|r| !r.accepted && !r.judged_by.is_empty())
    );
    // Its deadline no longer matters.
    i.set("2027-01-20 10:00");
    assert_eq!(i.oversight.run_due().await.unwrap(), 0);
    // Another order, answered and accepted.
    i.set("2026-12-02 10:00");
    let o = i
        .oversight
        .issue_order(&supervisor, HARBIN, order(&inspection, &finding, 10))
        .await
        .unwrap();
    i.oversight
        .respond_to_order(
            &beta,
            HARBIN,
            o.id.clone(),
            "done".into(),
            vec![doc("report")],
        )
        .await
        .unwrap();
    let ok = i
        .oversight
        .judge_order(&supervisor, HARBIN, o.id.clone(), true, String::new())
        .await
        .unwrap();
    assert_eq!(ok.state, api::RectificationState::Rectified as i32);
    assert_eq!(
        i.events("pdp.oversight.rectification.failed").await.len(),
        1
    );
    // A state no order has is refused, named.
    let e = i
        .oversight
        .list_orders(&supervisor, HARBIN, 99, first_page())
        .await
        .unwrap_err();
    assert_eq!(fields(&e), ["state"]);
    let failed_only = i
        .oversight
        .list_orders(
            &supervisor,
            HARBIN,
            api::RectificationState::Failed as i32,
            first_page(),
        )
        .await
        .unwrap()
        .0;
    assert_eq!(failed_only.len(), 1);
    // Operators list their own orders only.
    let gamma = caller("operator", "gamma");
    assert_eq!(
        i.oversight
            .list_orders(&beta, HARBIN, 0, first_page())
            .await
            .unwrap()
            .0
            .len(),
        2
    );
    assert!(
        i.oversight
            .list_orders(&gamma, HARBIN, 0, first_page())
            .await
            .unwrap()
            .0
            .is_empty()
    );
    // Closing the inspection needs a conclusion, then takes no more findings.
    let e = i
        .oversight
        .close_inspection(&supervisor, HARBIN, inspection.id.clone(), String::new())
        .await
        .unwrap_err();
    assert_eq!(fields(&e), ["conclusion"]);
    i.oversight
        .close_inspection(
            &supervisor,
            HARBIN,
            inspection.id.clone(),
            "rectified in part; referred".into(),
        )
        .await
        .unwrap();
    let finding = api::Finding {
        description: "late".into(),
        severity: 1,
        ..Default::default()
    };
    let e = i
        .oversight
        .record_finding(&supervisor, HARBIN, inspection.id.clone(), finding)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("closed"), "{e}");
}

fn evaluation(
    agreement: &str,
    scores: [u32; 3],
    outcome: api::EvaluationOutcome,
) -> api::Evaluation {
    let names = ["security", "conformity", "results"];
    api::Evaluation {
        kind: api::EvaluationKind::Authorization as i32,
        agreement_id: agreement.into(),
        period_first_day: "2026-01-01".into(),
        period_last_day: "2026-12-31".into(),
        evaluator: "Harbin data bureau".into(),
        scores: names
            .iter()
            .zip(scores)
            .map(|(c, s)| api::Score {
                criterion: (*c).into(),
                score: s,
                note: String::new(),
            })
            .collect(),
        outcome: outcome as i32,
        ..Default::default()
    }
}

pub async fn evaluations_score_on_the_criteria_and_an_unevaluated_agreement_near_its_end_alerts(
    backend: Backend,
) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", "harbin-bureau");
    i.active("a1", "beta", ("2025-03-01", "2027-02-28")).await;
    i.active("a2", "gamma", ("2025-03-01", "2027-02-28")).await;
    // Only the bureau records; every field is checked.
    let supervisor = caller("supervisor", "harbin-cyberspace");
    let e = i
        .oversight
        .record_evaluation(
            &supervisor,
            HARBIN,
            evaluation("a1", [80, 80, 80], api::EvaluationOutcome::Continue),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, DomainError::Forbidden { .. }));
    let e = i
        .oversight
        .record_evaluation(&bureau, HARBIN, api::Evaluation::default())
        .await
        .unwrap_err();
    let f = fields(&e);
    for needle in [
        "evaluation.kind",
        "evaluation.period_first_day",
        "evaluation.evaluator",
        "evaluation.outcome",
    ] {
        assert!(f.iter().any(|x| x == needle), "{needle} in {f:?}");
    }
    // Below the pass mark, CONTINUE is refused.
    let e = i
        .oversight
        .record_evaluation(
            &bureau,
            HARBIN,
            evaluation("a1", [50, 50, 50], api::EvaluationOutcome::Continue),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("pass mark"), "{e}");
    let low = i
        .oversight
        .record_evaluation(
            &bureau,
            HARBIN,
            evaluation("a1", [50, 50, 50], api::EvaluationOutcome::Rectify),
        )
        .await
        .unwrap();
    assert_eq!(
        (low.total, low.passed, low.subject.as_str()),
        (50, false, "beta")
    );
    let e = i
        .oversight
        .record_evaluation(
            &bureau,
            HARBIN,
            evaluation("nope", [80, 80, 80], api::EvaluationOutcome::Continue),
        )
        .await
        .unwrap_err();
    assert_eq!(fields(&e), ["evaluation.agreement_id"]);
    let good = i
        .oversight
        .record_evaluation(
            &bureau,
            HARBIN,
            evaluation("a1", [90, 70, 60], api::EvaluationOutcome::Continue),
        )
        .await
        .unwrap();
    assert_eq!((good.total, good.passed), (75, true));
    let recorded = i.events("pdp.oversight.evaluation.recorded").await;
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[1].data["passed"], true);
    assert_eq!(recorded[1].data["agreement_id"], "a1");
    // A provider unit's evaluation counts what it contributed.
    for (ty, id) in [
        (requests::TICKET_ANSWERED, "t1"),
        (requests::TICKET_ANSWERED, "t2"),
        (requests::TICKET_OVERDUE, "t3"),
    ] {
        let e = Event::typed(
            &harbin(),
            ty,
            id,
            i.clock.now(),
            &requests::TicketChanged {
                ticket_id: id.into(),
                provider: "water-co".into(),
                ..Default::default()
            },
        );
        i.sees(e).await;
    }
    let provider = api::Evaluation {
        kind: api::EvaluationKind::Provider as i32,
        subject: "water-co".into(),
        scores: ["supply", "quality", "use"]
            .iter()
            .map(|c| api::Score {
                criterion: (*c).into(),
                score: 70,
                note: String::new(),
            })
            .collect(),
        agreement_id: String::new(),
        ..evaluation("", [0, 0, 0], api::EvaluationOutcome::Continue)
    };
    let p = i
        .oversight
        .record_evaluation(&bureau, HARBIN, provider)
        .await
        .unwrap();
    let c = p.contribution.unwrap();
    assert_eq!(
        (
            c.tickets_answered,
            c.tickets_overdue,
            c.resources_registered
        ),
        (2, 1, 0)
    );
    // 60 days before the end (2026-12-30), gamma's agreement has no passed evaluation: an alert;
    // beta's has one: none.
    i.set("2026-12-29 10:00");
    assert_eq!(i.oversight.run_due().await.unwrap(), 0);
    i.set("2026-12-30 10:00");
    assert_eq!(i.oversight.run_due().await.unwrap(), 1);
    let watch: Vec<_> = i
        .alerts()
        .await
        .into_iter()
        .filter(|a| a.rule_id == "agreement-expiring-unevaluated")
        .collect();
    assert_eq!(watch.len(), 1);
    assert_eq!(watch[0].group_key, "a2");
}

pub async fn the_years_report_lists_its_authorizations_and_products_and_goes_out_as_reviewed(
    backend: Backend,
) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", "harbin-bureau");
    // An authorization that ended in 2025, one in force through 2026, one from 2027.
    i.set("2025-02-01 10:00");
    i.active("old", "alpha", ("2024-01-01", "2025-06-30")).await;
    i.set("2025-07-01 10:00");
    i.agreement(
        agreements::AGREEMENT_EXPIRED,
        "old",
        "alpha",
        ("2024-01-01", "2025-06-30"),
        agreements::AgreementState::Expired,
    )
    .await;
    i.active("a1", "beta", ("2025-07-01", "2028-06-30")).await;
    i.active("future", "gamma", ("2027-01-01", "2029-12-31"))
        .await;
    // Products: one registered in 2026, priced, listed (named); one withdrawn in 2025; one only
    // listed, never registered.
    let product = |id: &str, code: &str, price: i64| products::ProductChanged {
        product_id: id.into(),
        operator: "beta".into(),
        registration_code: code.into(),
        price: (price > 0).then(|| products::Price {
            amount_fen: price,
            unit: 1,
            ..Default::default()
        }),
        state: products::ProductState::Registered as i32,
        ..Default::default()
    };
    for (day, ty, id, code, price) in [
        (
            "2025-08-01 10:00",
            products::PRODUCT_REGISTERED,
            "gone",
            "HLJ-2025-1",
            0,
        ),
        (
            "2025-09-01 10:00",
            products::PRODUCT_WITHDRAWN,
            "gone",
            "",
            0,
        ),
        (
            "2026-03-01 10:00",
            products::PRODUCT_REGISTERED,
            "p1",
            "HLJ-2026-7",
            0,
        ),
        (
            "2026-03-01 10:00",
            products::PRODUCT_PRICED,
            "p1",
            "",
            15_000,
        ),
    ] {
        i.set(day);
        let changed = product(id, code, price);
        i.sees(Event::typed(&harbin(), ty, id, i.clock.now(), &changed))
            .await;
    }
    let listing = |id: &str, name: &str| products::ProductListing {
        product_id: id.into(),
        operator: "beta".into(),
        name: name.into(),
        ..Default::default()
    };
    i.sees(Event::typed(
        &harbin(),
        products::PRODUCT_LISTED,
        "p1",
        i.clock.now(),
        &listing("p1", "Traffic <flows>"),
    ))
    .await;
    i.sees(Event::typed(
        &harbin(),
        products::PRODUCT_LISTED,
        "p9",
        i.clock.now(),
        &listing("p9", "never registered"),
    ))
    .await;
    // Trades: two in 2026, one in 2025.
    for (id, day, amount) in [
        ("t1", "2026-04-01 10:00", 30_000),
        ("t2", "2026-05-01 10:00", 15_000),
        ("t0", "2025-12-01 10:00", 99_900),
    ] {
        i.set(day);
        let trade = products::Trade {
            trade_id: id.into(),
            operator: "beta".into(),
            amount_fen: amount,
            trade_time: Some(pdp_kit::change::timestamp(i.clock.now())),
            shares: vec![products::RevenueShare {
                party: 1,
                organization: "beta".into(),
                amount_fen: amount / 2,
            }],
            ..Default::default()
        };
        i.sees(Event::typed(
            &harbin(),
            products::TRADE_RECORDED,
            id,
            i.clock.now(),
            &products::TradeRecorded {
                trade_id: id.into(),
                trade: Some(trade),
            },
        ))
        .await;
    }
    i.set("2027-01-10 10:00");
    // Not before it is generated; only the bureau generates it; not a year to come.
    let e = i
        .oversight
        .get_report(&bureau, HARBIN, 2026)
        .await
        .unwrap_err();
    assert!(matches!(e, DomainError::NotFound { .. }));
    let e = i
        .oversight
        .generate_report(&caller("operator", "beta"), HARBIN, 2026)
        .await
        .unwrap_err();
    assert!(matches!(e, DomainError::Forbidden { .. }));
    let e = i
        .oversight
        .generate_report(&bureau, HARBIN, 2028)
        .await
        .unwrap_err();
    assert_eq!(fields(&e), ["year"]);
    let r = i
        .oversight
        .generate_report(&bureau, HARBIN, 2026)
        .await
        .unwrap();
    let agreements: Vec<_> = r
        .authorizations
        .iter()
        .map(|a| a.agreement_id.as_str())
        .collect();
    assert_eq!(agreements, ["a1"]);
    assert_eq!(r.authorizations[0].resource_ids, ["r1"]);
    let products: Vec<_> = r
        .products
        .iter()
        .map(|p| (p.product_id.as_str(), p.name.as_str(), p.price_fen))
        .collect();
    assert_eq!(products, [("p1", "Traffic <flows>", 15_000)]);
    let revenue = r.revenue.clone().unwrap();
    assert_eq!((revenue.trades, revenue.total_fen), (2, 45_000));
    assert_eq!(
        revenue.shares.iter().map(|s| s.amount_fen).sum::<i64>(),
        22_500
    );
    // 2025's report holds what was in force then.
    let r2025 = i
        .oversight
        .generate_report(&bureau, HARBIN, 2025)
        .await
        .unwrap();
    let mut a2025: Vec<_> = r2025
        .authorizations
        .iter()
        .map(|a| a.agreement_id.as_str())
        .collect();
    a2025.sort();
    assert_eq!(a2025, ["a1", "old"]);
    assert_eq!(
        r2025
            .products
            .iter()
            .map(|p| p.product_id.as_str())
            .collect::<Vec<_>>(),
        ["gone"]
    );
    // Not public before it is published; published only as reviewed.
    let e = i
        .oversight
        .published_report(HARBIN, 2026)
        .await
        .unwrap_err();
    assert!(matches!(e, DomainError::NotFound { .. }));
    let e = i
        .oversight
        .publish_report(&bureau, HARBIN, 2026, "0".repeat(64))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not the one reviewed"), "{e}");
    let published = i
        .oversight
        .publish_report(&bureau, HARBIN, 2026, r.digest.clone())
        .await
        .unwrap();
    assert_eq!(published.state, api::ReportState::Published as i32);
    let public = i.oversight.published_report(HARBIN, 2026).await.unwrap();
    assert_eq!(public.digest, r.digest);
    assert_eq!(
        pdp_oversight::disclosure::digest(&public),
        r.digest,
        "what is public is what was reviewed"
    );
    let page = pdp_oversight::disclosure::page(&public);
    assert!(
        page.contains("Traffic &lt;flows&gt;")
            && page.contains("HLJ-2026-7")
            && !page.contains("<script")
    );
    let e = i
        .oversight
        .generate_report(&bureau, HARBIN, 2026)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("published"), "{e}");
    // 2025's report was never published: reminded in February (it is past), flagged in April.
    i.set("2027-02-01 09:00");
    let before = i.alerts().await.len();
    i.oversight.run_due().await.unwrap();
    let reminded: Vec<_> = i
        .alerts()
        .await
        .into_iter()
        .filter(|a| a.rule_id == "annual-report-due")
        .map(|a| a.group_key)
        .collect();
    assert!(
        reminded.contains(&"2025".to_string()) && !reminded.contains(&"2026".to_string()),
        "{reminded:?} after {before}"
    );
    i.set("2027-04-01 09:00");
    i.oversight.run_due().await.unwrap();
    let overdue: Vec<_> = i
        .alerts()
        .await
        .into_iter()
        .filter(|a| a.rule_id == "annual-report-overdue")
        .map(|a| a.group_key)
        .collect();
    assert!(
        overdue.contains(&"2025".to_string()) && !overdue.contains(&"2026".to_string()),
        "{overdue:?}"
    );
    assert!(
        !i.events("pdp.oversight.annual_report.overdue")
            .await
            .is_empty()
    );
}

pub async fn incidents_documents_and_assessments_are_kept_and_a_major_incident_alerts_at_once(
    backend: Backend,
) {
    let i = Instance::new(&backend);
    let beta = caller("operator", "beta");
    let supervisor = caller("supervisor", "harbin-cyberspace");
    let e = i
        .oversight
        .report_incident(&beta, HARBIN, api::Incident::default())
        .await
        .unwrap_err();
    assert_eq!(
        fields(&e),
        [
            "incident.occurred_at",
            "incident.kind",
            "incident.impact",
            "incident.response_taken"
        ]
    );
    let future = api::Incident {
        occurred_at: Some(pdp_kit::change::timestamp(
            i.clock.now() + Duration::days(1),
        )),
        kind: "intrusion".into(),
        impact: "none".into(),
        response_taken: "blocked".into(),
        ..Default::default()
    };
    let e = i
        .oversight
        .report_incident(&beta, HARBIN, future.clone())
        .await
        .unwrap_err();
    assert_eq!(fields(&e), ["incident.occurred_at"]);
    let minor = api::Incident {
        occurred_at: Some(pdp_kit::change::timestamp(
            i.clock.now() - Duration::hours(3),
        )),
        ..future
    };
    let kept = i
        .oversight
        .report_incident(&beta, HARBIN, minor.clone())
        .await
        .unwrap();
    assert_eq!(
        kept.operator, "beta",
        "the reporter's organization, whatever the body says"
    );
    assert!(
        i.alerts().await.is_empty(),
        "a minor incident raises no alert"
    );
    let major = api::Incident {
        major: true,
        operator: "someone-else".into(),
        kind: "data_leak".into(),
        ..minor
    };
    let kept = i
        .oversight
        .report_incident(&beta, HARBIN, major)
        .await
        .unwrap();
    assert_eq!(kept.operator, "beta");
    let alerts = i.alerts().await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (alerts[0].rule_id.as_str(), alerts[0].severity),
        ("major-incident", api::Severity::Critical as i32)
    );
    let reported = i.events("pdp.oversight.incident.reported").await;
    assert_eq!(reported.len(), 2);
    assert_eq!(reported[1].data["occurred_on"], "2026-12-01");
    // Staff list every incident; an operator its own.
    let gamma = caller("operator", "gamma");
    assert_eq!(
        i.oversight
            .list_incidents(&supervisor, HARBIN, String::new(), first_page())
            .await
            .unwrap()
            .0
            .len(),
        2
    );
    assert!(
        i.oversight
            .list_incidents(&gamma, HARBIN, "beta".into(), first_page())
            .await
            .unwrap()
            .0
            .is_empty()
    );
    // Security regime on file (R-SEC-2): kind and document required.
    let e = i
        .oversight
        .file_document(&beta, HARBIN, api::SecurityDocument::default())
        .await
        .unwrap_err();
    assert_eq!(fields(&e), ["document.kind", "document.document"]);
    let regime = api::SecurityDocument {
        kind: api::SecurityDocumentKind::Regime as i32,
        document: Some(doc("regime-v1")),
        ..Default::default()
    };
    i.oversight
        .file_document(&beta, HARBIN, regime)
        .await
        .unwrap();
    assert_eq!(
        i.oversight
            .list_documents(&beta, HARBIN, String::new(), first_page())
            .await
            .unwrap()
            .0
            .len(),
        1
    );
    // Risk assessments: by supervisors or the bureau, read by staff.
    let assessment = api::RiskAssessment {
        subject_kind: "platform".into(),
        subject: "pdp-harbin".into(),
        assessed_on: "2026-11-20".into(),
        assessor: "third-party lab".into(),
        risk_level: api::Severity::Medium as i32,
        summary: "two medium findings in the object store's access policy".into(),
        ..Default::default()
    };
    let e = i
        .oversight
        .record_assessment(&beta, HARBIN, assessment.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, DomainError::Forbidden { .. }));
    i.oversight
        .record_assessment(&supervisor, HARBIN, assessment)
        .await
        .unwrap();
    assert_eq!(
        i.oversight
            .list_assessments(&supervisor, HARBIN, first_page())
            .await
            .unwrap()
            .0
            .len(),
        1
    );
    assert!(
        i.oversight
            .list_assessments(&beta, HARBIN, first_page())
            .await
            .is_err()
    );
    pdp_kit::testing::assert_events_documented(&i.store, pdp_oversight::TOPIC).await;
}
