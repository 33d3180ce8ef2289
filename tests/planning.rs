//! Planning end to end through the gateway of `pdp dev`, as front ends call it: resources are
//! registered, a Harbin plan walks the approval chain to EFFECTIVE, the province sees and
//! acknowledges the filing, a major amendment starts version 2, and a Qiqihar user sees none of it.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

use std::time::{Duration, Instant};

use serde_json::json;

mod support;
use support::*;

#[test]
fn a_harbin_plan_from_catalog_to_filing_and_amendment_through_the_gateway() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let provider = token(dir, "230100", "provider", "harbin-transport");
    let bureau = token(dir, "230100", "city_bureau", "harbin-data-bureau");
    let province = token(dir, "230000", "provincial_bureau", "hlj-data-bureau");
    let qiqihar = token(dir, "230200", "city_bureau", "qiqihar-data-bureau");
    let port = free_port();
    let mut child = start_dev(data.path(), port);
    wait_ready(&mut child, port);
    let h = "/api/v1/tenants/230100";

    // Catalog: a resource, refused registration while incomplete, then registered.
    let (status, sparse) = call(
        port,
        "POST",
        &format!("{h}/resources"),
        Some(&provider),
        Some(&json!({ "name": "Bus arrivals", "provider_unit": "Harbin Transport Bureau" })),
    );
    assert_eq!(status, 200, "{sparse}");
    let rid = sparse["id"].as_str().unwrap().to_string();
    let (status, refused) = call(
        port,
        "POST",
        &format!("{h}/resources/{rid}:register"),
        Some(&provider),
        Some(&json!({})),
    );
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused.to_string().contains("resource.classification"),
        "{refused}"
    );
    let (status, patched) = call(
        port,
        "PATCH",
        &format!("{h}/resources/{rid}"),
        Some(&provider),
        Some(&json!({
            "sector": "transport",
            "schema": [
                { "name": "stop_id", "type": "string" },
                { "name": "passenger_phone", "type": "string", "personal_information": true }
            ],
            "classification": "DATA_CLASS_GENERAL", "sensitivity": "SENSITIVITY_LOW",
            "update_frequency": "UPDATE_FREQUENCY_DAILY", "quality_statement": "checked daily"
        })),
    );
    assert_eq!(status, 200, "{patched}");
    let (status, registered) = call(
        port,
        "POST",
        &format!("{h}/resources/{rid}:register"),
        Some(&provider),
        Some(&json!({})),
    );
    assert_eq!(status, 200, "{registered}");
    assert!(
        registered["registrationNumber"]
            .as_str()
            .unwrap()
            .starts_with("HLJ-230100-"),
        "{registered}"
    );

    // Providers do not write plans; the bureau does.
    let (status, _) = call(
        port,
        "POST",
        &format!("{h}/plans"),
        Some(&provider),
        Some(&plan_body(&rid)),
    );
    assert_eq!(status, 403);
    let (status, plan) = call(
        port,
        "POST",
        &format!("{h}/plans"),
        Some(&bureau),
        Some(&plan_body(&rid)),
    );
    assert_eq!(status, 200, "{plan}");
    let pid = plan["id"].as_str().unwrap().to_string();
    let p = format!("{h}/plans/{pid}");

    // Out of order: the missing step is named.
    let (status, out_of_order) = call(
        port,
        "POST",
        &format!("{p}:decide"),
        Some(&bureau),
        Some(&json!({})),
    );
    assert_eq!(status, 400, "{out_of_order}");
    assert!(
        out_of_order["message"]
            .as_str()
            .unwrap()
            .contains(":submit"),
        "{out_of_order}"
    );
    assert_eq!(
        out_of_order["code"], 9,
        "FAILED_PRECONDITION: {out_of_order}"
    );

    let today = today_in_shanghai();
    for (verb, body) in approval_steps(&today) {
        let (status, answer) = call(
            port,
            "POST",
            &format!("{p}:{verb}"),
            Some(&bureau),
            Some(&body),
        );
        assert_eq!(status, 200, ":{verb} {answer}");
    }
    let (_, effective) = call(port, "GET", &p, Some(&bureau), None);
    assert_eq!(effective["state"], "PLAN_STATE_EFFECTIVE", "{effective}");

    // The filing reaches the province.
    let deadline = Instant::now() + Duration::from_secs(30);
    let filing = loop {
        let (status, list) = call(
            port,
            "GET",
            "/api/v1/tenants/230000/filings",
            Some(&province),
            None,
        );
        assert_eq!(status, 200, "{list}");
        if let Some(f) = list["filings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["planId"] == pid.as_str())
        {
            break f.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no filing at the province within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(filing["city"], "230100");
    let fid = filing["id"].as_str().unwrap();
    let (status, acked) = call(
        port,
        "POST",
        &format!("/api/v1/tenants/230000/filings/{fid}:acknowledge"),
        Some(&province),
        Some(&json!({ "note": "filed" })),
    );
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["state"], "FILING_STATE_ACKNOWLEDGED");

    // A major change: version 2 goes through the chain; version 1 stays in force.
    let (status, amendment) = call(
        port,
        "POST",
        &format!("{p}/amendments"),
        Some(&bureau),
        Some(&json!({
            "kind": "AMENDMENT_KIND_MAJOR", "reason": "a new scenario",
            "sections": { "scenarios": { "items": [{ "name": "bus arrival prediction" }, { "name": "school routes" }] } }
        })),
    );
    assert_eq!(status, 200, "{amendment}");
    assert_eq!(amendment["toVersion"], 2);
    let (_, versions) = call(port, "GET", &format!("{p}/versions"), Some(&bureau), None);
    let states: Vec<_> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["PLAN_STATE_EFFECTIVE", "PLAN_STATE_DRAFT"]);

    // The public reads the effective plan and the catalog without personal information.
    let (status, public) = call(port, "GET", &format!("{h}/public/plans"), None, None);
    assert_eq!(status, 200, "{public}");
    assert_eq!(public["plans"][0]["version"], 1, "{public}");
    let (_, catalog) = call(port, "GET", &format!("{h}/public/resources"), None, None);
    assert!(
        !catalog.to_string().contains("passenger_phone"),
        "{catalog}"
    );
    assert!(catalog.to_string().contains("stop_id"), "{catalog}");

    // Qiqihar sees none of it.
    for path in [
        p.clone(),
        format!("{h}/plans"),
        format!("{h}/resources"),
        "/api/v1/tenants/230000/filings".into(),
    ] {
        let (status, body) = call(port, "GET", &path, Some(&qiqihar), None);
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, _) = call(
        port,
        "GET",
        &format!("/api/v1/tenants/230200/plans/{pid}"),
        Some(&qiqihar),
        None,
    );
    assert_eq!(status, 404);
    let (_, own) = call(
        port,
        "GET",
        "/api/v1/tenants/230200/plans",
        Some(&qiqihar),
        None,
    );
    assert_eq!(own["plans"], json!([]), "{own}");

    assert_eq!(interrupt_and_wait(child, data.path()).code(), Some(0));
}
