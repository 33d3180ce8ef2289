//! The audit archive end to end in `pdp dev`: every request through the gateway and every change
//! a service makes is archived in its tenant's chain; auditors query and verify it through the
//! gateway; anyone reads the signed checkpoints and checks them with the published key; and a
//! record altered in the database is named by `pdp audit verify`.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

use diesel::prelude::*;
use pdp_termination::checkpoint::verify_published;
use pdp_termination::store::audit_records;
use serde_json::{Value, json};

mod support;
use support::*;

const H: &str = "/api/v1/tenants/230100";

fn records(port: u16, auditor: &str, query: &str) -> Vec<Value> {
    let (mut out, mut token) = (Vec::new(), String::new());
    loop {
        let page = format!("{H}/audit/records?{query}&page.page_size=500&page.page_token={token}");
        let (status, body) = call(port, "GET", &page, Some(auditor), None);
        assert_eq!(status, 200, "{body}");
        out.extend(body["records"].as_array().cloned().unwrap_or_default());
        token = body["page"]["nextPageToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if token.is_empty() {
            return out;
        }
    }
}

#[test]
fn every_request_and_change_is_archived_in_a_chain_anyone_can_check() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let provider = token(dir, "230100", "provider", "harbin-transport");
    let operator = token(dir, "230100", "operator", "beta-data");
    let auditor = token(dir, "230100", "auditor", "harbin-audit-office");
    let port = free_port();
    let env = [
        ("PDP_AUDIT__CHECKPOINT_EVERY_SECS", "1"),
        ("PDP_INSTANCE__SCHEDULER_INTERVAL_SECS", "1"),
    ];
    let mut child = start_dev_with(data.path(), port, &env);
    wait_ready(&mut child, port);

    // Five resources created, two refused at the gateway (an operator writes no catalog), one
    // read without a token (refused).
    for n in 0..5 {
        let body = json!({ "name": format!("Bus line {n}"), "provider_unit": "Transport" });
        let (status, r) = call(
            port,
            "POST",
            &format!("{H}/resources"),
            Some(&provider),
            Some(&body),
        );
        assert_eq!(status, 200, "{r}");
    }
    for _ in 0..2 {
        let (status, _) = call(
            port,
            "POST",
            &format!("{H}/resources"),
            Some(&operator),
            Some(&json!({})),
        );
        assert_eq!(status, 403);
    }
    let (status, _) = call(port, "GET", &format!("{H}/resources"), None, None);
    assert_eq!(status, 401);

    // The archive holds the gateway's record of each, and the service's record of each change.
    let by_provider = eventually(30, "the provider's requests archived", || {
        let r = records(port, &auditor, "organization=harbin-transport");
        (r.len() >= 10).then_some(r)
    });
    let gateway: Vec<_> = by_provider
        .iter()
        .filter(|r| r["source"] == "gateway")
        .collect();
    let changes: Vec<_> = by_provider
        .iter()
        .filter(|r| r["source"] == "planning")
        .collect();
    assert_eq!(gateway.len(), 5, "{by_provider:?}");
    assert!(
        gateway.iter().all(|r| r["outcome"] == "allow 200"),
        "{gateway:?}"
    );
    assert_eq!(changes.len(), 5, "{by_provider:?}");
    assert!(
        changes.iter().all(|r| r["operation"] == "resource.created"),
        "{changes:?}"
    );
    // The refusals come through the gateway's own outbox, which the archive may reach after
    // planning's: wait for them too, then check there are exactly two.
    let refused = eventually(30, "the refused requests archived", || {
        let r = records(port, &auditor, "organization=beta-data");
        (r.len() >= 2).then_some(r)
    });
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused.iter().all(|r| r["outcome"] == "deny 403"),
        "{refused:?}"
    );

    // The chain verifies through the gateway, for auditors only.
    let (status, v) = call(
        port,
        "GET",
        &format!("{H}/audit:verify"),
        Some(&auditor),
        None,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["verified"], true, "{v}");
    let (status, _) = call(
        port,
        "GET",
        &format!("{H}/audit:verify"),
        Some(&operator),
        None,
    );
    assert_eq!(status, 403);

    // Checkpoints are public, and check out with the published key.
    let listed = eventually(30, "a checkpoint signed", || {
        let (status, body) = call(
            port,
            "GET",
            &format!("{H}/public/audit/checkpoints"),
            None,
            None,
        );
        assert_eq!(status, 200, "{body}");
        (!body["checkpoints"].as_array()?.is_empty()).then_some(body)
    });
    let key = listed["publicKey"].as_str().unwrap();
    let c = &listed["checkpoints"][0];
    let (input, signature) = (
        c["signingInput"].as_str().unwrap(),
        c["signature"].as_str().unwrap(),
    );
    assert!(verify_published(key, input, signature), "{c}");
    assert!(!verify_published(
        key,
        &input.replace("230100", "230200"),
        signature
    ));
    assert!(input.contains(c["hash"].as_str().unwrap()), "{c}");

    assert!(interrupt_and_wait(child, data.path()).success());
    let out = pdp(
        &["audit", "verify", "--data-dir", dir, "--tenant", "230100"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Someone with the database file changes who made request 3: verify names record 3.
    let store = pdp_kit::store::Store::open(
        &data.path().join("termination.db").to_string_lossy(),
        "termination",
        1,
    )
    .unwrap();
    let mut conn = store.connection().unwrap();
    diesel::update(audit_records::table.filter(audit_records::seq.eq(3)))
        .set(audit_records::subject.eq("someone-else"))
        .execute(&mut *conn)
        .unwrap();
    drop(conn);
    let out = pdp(&["audit", "verify", "--data-dir", dir], &[]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("230100\tfalse") && text.contains("\t3\trecord 3"),
        "{text}"
    );
}
