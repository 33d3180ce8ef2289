//! The whole authorization through the gateway, as the bureau, three operators, two providers,
//! a supervisor, an auditor, an exchange, a buyer and the public do it, whichever way pdp is
//! started (`pdp dev`, or every service as its own process: the [`Platform`]).
//!
//! From an effective plan, filed with the province, to an ACTIVE agreement: the call, three
//! applications (one ineligible for a security incident two years ago) whose conditions the
//! bureau judges, evaluation, the public notice, an objection dismissed, the conclusion, the
//! agreement, both signatures, activation; a data request reviewed by the bureau and two
//! providers (one with conditions) and its grant; sandbox queries and a derived table; an
//! oversight alert on repeated row-level queries and a rectification order; a product built on
//! the table, reviewed, registered, priced within the bureau's ceiling and released to an
//! exchange (on the broker, the reference exchange accepts it and sells a call the buyer makes);
//! a data-quality ticket left unanswered; then time moves on: the order fails overdue, and the
//! agreement expires or the bureau terminates it ([`Ending`]): the operator's calls are denied,
//! the grant has ended, the product is withdrawn, the data is destroyed under a supervisor's
//! eye, the bureau takes the handover, the audit chain verifies and the year's report is
//! published.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic
#![allow(dead_code)] // each test binary uses its own part

use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePublicKey, LineEnding};
use pdp_kit::calendar::{WorkingCalendar, civil_date, end_of_day};
use pdp_kit::clock::ShiftedClock;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use serde_json::{Value, json};

use crate::support::*;

const H: &str = "/api/v1/tenants/230100";

/// A status and a JSON body.
pub type Answer = (u16, Value);

/// How pdp runs under the lifecycle: what differs between `pdp dev` and separate processes.
pub trait Platform {
    /// The gateway's HTTP port.
    fn port(&self) -> u16;
    /// A token the gateway accepts, of subject `<role>-<tenant>`.
    fn token(&self, tenant: &str, role: &str, org: &str) -> String;
    /// What Harbin's services export on `/metrics`.
    fn metrics(&self) -> String;
    /// `pdp events dead-letters` over Harbin's stores.
    fn dead_letters(&self) -> String;
    /// The objects left in Harbin's sandbox store under `prefix`.
    fn sandbox_objects(&self, prefix: &str) -> Vec<String>;
    /// The broker pdp runs on, where the reference exchange reads and answers.
    fn brokers(&self) -> String {
        crate::support::servers::Servers::from_env().brokers
    }
    /// A request through the gateway: the answer's status and JSON body.
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
        call(self.port(), method, path, token, body)
    }
    /// The walk reached the step `name`: where faults may strike.
    fn step(&self, _name: &str) {}
    /// Stops the Ballista cluster the sandbox's queries run on; false when there is none.
    fn stop_sandbox_cluster(&self) -> bool {
        false
    }
    /// Stops pdp, asserting it stopped cleanly.
    fn stop(self: Box<Self>);
}

/// What the lifecycle prepared before pdp starts.
pub struct Run<'a> {
    /// A directory of the run's own.
    pub dir: &'a Path,
    /// The clock shift file every process must follow (`dev.clock_shift_file`).
    pub shift: &'a Path,
    /// The configuration file every process must read (the exchange).
    pub config: &'a Path,
    /// The run's name on the broker (empty on the embedded log).
    pub name: &'a str,
}

/// How the agreement ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its last day passes.
    Expiry,
    /// The bureau terminates it early for a breach not rectified (第三十条).
    Termination,
}

pub struct Options {
    /// On the Kafka-compatible broker, where the reference exchange answers; names are the
    /// run's own, since the broker keeps earlier runs' events.
    pub on_kafka: bool,
    pub ending: Ending,
}

fn evidence(incident_on: Option<NaiveDate>) -> Value {
    let incidents: Vec<Value> = incident_on
        .map(|d| vec![json!({"occurred_on": d.to_string(), "description": "data leak"})])
        .unwrap_or_default();
    json!({
        "evidence": {
            "premises_and_equipment": "office and machine room", "qualifications": "CMMI 3",
            "staff": "40 engineers", "legal_knowledge": "Data Security Law training",
            "experience": "5 data products", "security_regime": "ISO 27001",
            "incidents": incidents, "credit_record": "no adverse record"
        }
    })
}

pub fn lifecycle(options: Options, start: impl FnOnce(&Run) -> Box<dyn Platform>) {
    let on_kafka = options.on_kafka;
    let data = tempfile::tempdir().unwrap();
    let shift = data.path().join("clock-shift");
    let run = if on_kafka {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("-{:x}", nanos % (1 << 40))
    } else {
        String::new()
    };
    let [acme_org, beta_org, gamma_org] = ["acme", "beta", "gamma"].map(|o| format!("{o}{run}"));
    let dex = format!("hlj-dex{run}");
    // The services' clock starts on a fixed Monday morning of a year the shipped calendar holds,
    // so that the notice's working days never depend on the day the test runs.
    let start_at: DateTime<Utc> = "2026-03-02T01:00:00Z".parse().unwrap();
    ShiftedClock::shift_to(&shift, start_at).unwrap();
    // One data exchange products are released to (第二十四条), with the key its answers are
    // signed with.
    let exchange_key = SigningKey::random(&mut rand::rngs::OsRng);
    let public_key = exchange_key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let config = data.path().join("pdp.toml");
    std::fs::write(
        &config,
        format!(
            "[[products.exchanges]]\nid = \"{dex}\"\nname = \"Heilongjiang Data Exchange\"\n\
             receipts_topic = \"{dex}.receipts\"\ntrades_topic = \"{dex}.trades\"\n\
             public_key = '''\n{public_key}'''\n"
        ),
    )
    .unwrap();
    let platform = start(&Run {
        dir: data.path(),
        shift: &shift,
        config: &config,
        name: run.trim_start_matches('-'),
    });
    let port = platform.port();
    let brokers = platform.brokers();
    let token = |tenant: &str, role: &str, org: &str| platform.token(tenant, role, org);
    let provider = token("230100", "provider", "harbin-transport");
    let bureau = token("230100", "city_bureau", "harbin-data-bureau");
    let ops: Vec<(String, String)> = [&acme_org, &beta_org, &gamma_org]
        .iter()
        .map(|o| (o.to_string(), token("230100", "operator", o)))
        .collect();
    let post = |path: &str, token: Option<&str>, body: Value| {
        platform.call("POST", path, token, Some(&body))
    };
    let get = |path: &str, token: Option<&str>| platform.call("GET", path, token, None);
    let shifted_now = || {
        Utc::now()
            + Duration::seconds(
                std::fs::read_to_string(&shift)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            )
    };

    // An effective plan with one registered resource.
    let (_, r) = post(
        &format!("{H}/resources"),
        Some(&provider),
        json!({
            "name": "Bus arrivals", "provider_unit": "Harbin Transport Bureau", "sector": "transport",
            "schema": [{"name": "stop_id", "type": "string"}, {"name": "delay", "type": "integer"}],
            "classification": "DATA_CLASS_GENERAL",
            "sensitivity": "SENSITIVITY_LOW", "update_frequency": "UPDATE_FREQUENCY_DAILY", "quality_statement": "daily"
        }),
    );
    let rid = r["id"].as_str().unwrap().to_string();
    assert_eq!(
        post(
            &format!("{H}/resources/{rid}:register"),
            Some(&provider),
            json!({})
        )
        .0,
        200
    );
    // A second provider's resource, with a field of personal information.
    let health = token("230100", "provider", "harbin-health");
    let (status, r2) = post(
        &format!("{H}/resources"),
        Some(&health),
        json!({
            "name": "Clinic visits", "provider_unit": "Harbin Health Commission",
            "sector": "health",
            "schema": [{"name": "clinic_id", "type": "string"},
                {"name": "visits", "type": "integer"},
                {"name": "patient_id", "type": "string", "personal_information": true}],
            "classification": "DATA_CLASS_GENERAL", "sensitivity": "SENSITIVITY_LOW",
            "update_frequency": "UPDATE_FREQUENCY_DAILY", "quality_statement": "daily"
        }),
    );
    assert_eq!(status, 200, "{r2}");
    let rid2 = r2["id"].as_str().unwrap().to_string();
    let register = format!("{H}/resources/{rid2}:register");
    assert_eq!(post(&register, Some(&health), json!({})).0, 200);
    let mut body = plan_body(&rid);
    body["sections"]["scope"]["items"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "resource_id": rid2, "update_frequency": "UPDATE_FREQUENCY_DAILY",
            "data_quality": "complete"
        }));
    let (_, plan) = post(&format!("{H}/plans"), Some(&bureau), body);
    let pid = plan["id"].as_str().unwrap().to_string();
    let today = civil_date(shifted_now()).to_string();
    for (verb, body) in [
        ("submit", json!({})),
        (
            "review",
            json!({"review": {"summary": "feasible", "departments_consulted": ["Transport"], "reviewed_on": today}}),
        ),
        (
            "decide",
            json!({"decision": {"decided_on": today, "body": "party group", "outcome": "DECISION_OUTCOME_AGREED"}}),
        ),
        (
            "approve",
            json!({"approval": {"document_number": "哈政函〔2026〕1号", "approved_on": today, "effective_on": today}}),
        ),
    ] {
        let (status, answer) = post(&format!("{H}/plans/{pid}:{verb}"), Some(&bureau), body);
        assert_eq!(status, 200, ":{verb} {answer}");
    }

    platform.step("plan effective");

    // The plan is filed with the province (第十一条), whichever instance serves it.
    let province = token("230000", "provincial_bureau", "hlj-data-bureau");
    let filing = eventually(30, "the province receives the filing", || {
        let (status, list) = get("/api/v1/tenants/230000/filings", Some(&province));
        assert_eq!(status, 200, "{list}");
        list["filings"]
            .as_array()?
            .iter()
            .find(|f| f["planId"] == pid.as_str())
            .cloned()
    });
    assert_eq!(filing["city"], "230100", "{filing}");

    // The call, once selection has heard that the plan is in force.
    let now = shifted_now();
    let call_body = json!({
        "plan_id": pid, "name": "Operator for Harbin transit data", "method": "SELECTION_METHOD_OPEN_TENDER",
        "criteria": [{"name": "plan", "weight": 60}, {"name": "security", "weight": 40}],
        "opens_at": (now - Duration::hours(1)).to_rfc3339(), "closes_at": (now + Duration::hours(1)).to_rfc3339(),
        "procedure": "open tender", "operators_wanted": 1,
        "evaluators": [{"subject": "city_bureau-230100", "name": "Harbin bureau staff",
            "organization": "harbin-data-bureau", "kind": "EVALUATOR_KIND_STAFF"}]
    });
    let selection = eventually(30, "selection sees the effective plan", || {
        let (status, s) = post(&format!("{H}/selections"), Some(&bureau), call_body.clone());
        (status == 200).then_some(s)
    });
    let sid = selection["id"].as_str().unwrap().to_string();
    let s = format!("{H}/selections/{sid}");
    assert_eq!(
        post(&format!("{s}:publish"), Some(&bureau), json!({})).0,
        200
    );
    let (status, listed) = get(&format!("{H}/public/selections"), None);
    assert_eq!(
        (status, listed["selections"].as_array().unwrap().len()),
        (200, 1),
        "{listed}"
    );

    let two_years_ago = civil_date(now) - Duration::days(730);
    let mut apps = Vec::new();
    for (i, (org, tok)) in ops.iter().enumerate() {
        let incident = (*org == gamma_org).then_some(two_years_ago);
        let (status, app) = post(&format!("{s}/applications"), Some(tok), evidence(incident));
        assert_eq!(status, 200, "{org}: {app}");
        assert_eq!(
            app["eligible"],
            json!(false),
            "nothing passes before the bureau judges"
        );
        let aid = app["id"].as_str().unwrap().to_string();
        // The bureau judges each condition the application did not fail by itself, credit on
        // the lookup it made (第十二条).
        for condition in app["eligibility"].as_array().unwrap() {
            if condition["state"] != "CONDITION_STATE_PENDING" {
                continue;
            }
            let name = condition["condition"].as_str().unwrap();
            let mut judgment = json!({"passed": true, "reason": "the evidence shows it"});
            if name == "credit" {
                judgment["credit_lookup"] = json!({"source": "信用中国",
                    "checked_on": civil_date(now).to_string(), "clean": true, "reference": "XY-1"});
            }
            let url = format!("{s}/applications/{aid}/conditions/{name}:judge");
            let (status, answer) = post(&url, Some(&bureau), judgment);
            assert_eq!(status, 200, "{org} {name}: {answer}");
        }
        let (_, judged) = get(&format!("{s}/applications/{aid}"), Some(&bureau));
        assert_eq!(
            judged["eligible"],
            json!(*org != gamma_org),
            "{org}: {judged}"
        );
        apps.push((i, org.clone(), aid));
    }

    platform.step("applications judged");

    // The window closes; the bureau evaluates and shortlists.
    ShiftedClock::shift_to(&shift, now + Duration::hours(2)).unwrap();
    for (_, org, aid) in &apps {
        let score = if *org == beta_org { 90 } else { 70 };
        let (status, answer) = post(
            &format!("{s}/applications/{aid}/evaluations"),
            Some(&bureau),
            json!({"scores": [{"criterion": "plan", "score": score}, {"criterion": "security", "score": score}]}),
        );
        assert_eq!(
            status,
            if *org == gamma_org { 400 } else { 200 },
            "{org}: {answer}"
        );
    }
    let (status, shortlisted) = post(&format!("{s}:shortlist"), Some(&bureau), json!({}));
    assert_eq!(status, 200, "{shortlisted}");
    assert_eq!(shortlisted["shortlist"][0]["organization"], json!(beta_org));

    // The notice: at least five working days; a public objection, dismissed.
    let starts = civil_date(shifted_now());
    let calendar = WorkingCalendar::shipped();
    let earliest = calendar.working_days_after(starts, 5).unwrap();
    let (status, short) = post(
        &format!("{s}/notices"),
        Some(&bureau),
        json!({"starts_on": starts.to_string(), "ends_on": (earliest - Duration::days(1)).to_string()}),
    );
    assert_eq!(status, 400, "{short}");
    assert!(short.to_string().contains(&earliest.to_string()), "{short}");
    assert_eq!(
        post(
            &format!("{s}/notices"),
            Some(&bureau),
            json!({"starts_on": starts.to_string(), "ends_on": earliest.to_string()})
        )
        .0,
        200
    );
    let (status, objection) = post(
        &format!("{H}/public/selections/{sid}/objections"),
        None,
        json!({"objector": "a citizen", "reason": "beta's experience is overstated"}),
    );
    assert_eq!(status, 200, "{objection}");
    let oid = objection["id"].as_str().unwrap();
    let decision = json!({
        "decision": {
            "decided_on": earliest.to_string(), "body": "party group", "outcome": "AGREED"
        },
        "departments": ["哈尔滨市财政局"]
    });
    assert_eq!(
        post(&format!("{s}:conclude"), Some(&bureau), decision.clone()).0,
        400,
        "the notice still runs"
    );
    assert_eq!(
        post(
            &format!("{s}/objections/{oid}:resolve"),
            Some(&bureau),
            json!({"outcome": "OBJECTION_STATE_DISMISSED", "reasons": ["experience verified"]})
        )
        .0,
        200
    );
    ShiftedClock::shift_to(&shift, end_of_day(earliest) + Duration::minutes(1)).unwrap();
    let (status, concluded) = post(&format!("{s}:conclude"), Some(&bureau), decision);
    assert_eq!(status, 200, "{concluded}");

    platform.step("selection concluded");

    // The agreement with beta, from today for thirty days.
    let first = civil_date(shifted_now());
    let last = first + Duration::days(30);
    let agreement_body = json!({
        "selection_id": sid, "operator": beta_org,
        "terms": {
            "scope": {"resource_ids": [rid, rid2], "catalog": "bus arrivals, clinic visits"},
            "term": {"first_day": first.to_string(), "last_day": last.to_string()},
            "products": {"products": ["arrival API"], "technical_standards": "GB/T 35274", "security_review": "each release", "business_review": "quarterly"},
            "technical_platform": "provincial platform", "assets": {"equipment": "operator", "products": "operator"},
            "disclosure_duties": "quarterly", "accounting": {"cost_and_revenue_accounting": "ledger", "revenue_sharing": "by contribution"},
            "security": {"data_security": "level 3", "personal_information_protection": "de-identified", "risk_monitoring": "continuous", "emergency_response": "24h"},
            "evaluation": {"evaluation": "yearly", "renewal": "on evaluation", "exit": "handover"},
            "liability": "Civil Code", "dispute_resolution": "arbitration", "change_and_termination": "in writing", "other_matters": "none"
        }
    });
    let agreement = eventually(30, "agreements sees the concluded selection", || {
        let (status, a) = post(
            &format!("{H}/agreements"),
            Some(&bureau),
            agreement_body.clone(),
        );
        (status == 200).then_some(a)
    });
    let aid = agreement["id"].as_str().unwrap().to_string();
    let beta = &ops[1].1;
    let resources = format!("{H}/authorized-resources");
    assert_eq!(
        get(&resources, Some(beta)).0,
        403,
        "not authorized before the agreement is active"
    );
    assert_eq!(
        post(
            &format!("{H}/agreements/{aid}:sign"),
            Some(&bureau),
            json!({"party": "PARTY_BUREAU"})
        )
        .0,
        200
    );
    let (status, signed) = post(
        &format!("{H}/agreements/{aid}:sign"),
        Some(beta),
        json!({"party": "PARTY_OPERATOR"}),
    );
    assert_eq!(status, 200, "{signed}");
    assert_eq!(signed["state"], "AGREEMENT_STATE_ACTIVE", "{signed}");
    let authorized = eventually(30, "the gateway authorizes beta", || {
        let (status, body) = get(&resources, Some(beta));
        (status == 200).then_some(body)
    });
    let mut both = vec![rid.clone(), rid2.clone()];
    both.sort();
    assert_eq!(authorized["resourceIds"], json!(both));
    assert_eq!(
        get(&resources, Some(&ops[0].1)).0,
        403,
        "acme has no agreement"
    );
    let (_, disclosed) = get(&format!("{H}/public/authorizations"), None);
    assert_eq!(
        disclosed["authorizations"][0]["operator"],
        json!(beta_org),
        "{disclosed}"
    );

    platform.step("agreement active");

    // Beta asks for data within its agreement; the bureau and both providers review, one of
    // them with conditions; the grant is what all of them approved (第十七条, 第十八条).
    let request_body = json!({
        "scenario": {"name": "arrivals near clinics", "description": "bus arrivals by clinic",
            "serves": "arrival API"},
        "resources": [{"resource_id": rid, "fields": ["stop_id", "delay"]},
            {"resource_id": rid2, "fields": ["clinic_id", "visits"]}],
        "purposes": ["transit information"], "scope_of_use": "Harbin, aggregates only",
        "period": {"first_day": first.to_string(), "last_day": last.to_string()},
        "feasibility": "tested", "expected_value": {"economic": "fees", "social": "less waiting"},
        "compliance": {"legal_basis": "the agreement", "security_measures": "sandbox only"}
    });
    let draft = eventually(30, "requests sees the active agreement", || {
        let (status, d) = post(&format!("{H}/requests"), Some(beta), request_body.clone());
        (status == 200).then_some(d)
    });
    let qid = draft["id"].as_str().unwrap().to_string();
    let q = format!("{H}/requests/{qid}");
    let (status, submitted) = post(&format!("{q}:submit"), Some(beta), json!({}));
    assert_eq!(status, 200, "{submitted}");
    assert_eq!(submitted["state"], "REQUEST_STATE_IN_REVIEW", "{submitted}");
    let approve = json!({"outcome": "REVIEW_OUTCOME_APPROVED", "reasons": ["lawful"]});
    assert_eq!(
        post(&format!("{q}/reviews"), Some(&bureau), approve.clone()).0,
        200
    );
    let masked = json!({"outcome": "REVIEW_OUTCOME_APPROVED_WITH_CONDITIONS",
        "reasons": ["stops are masked"],
        "conditions": {"resources": [{"resource_id": rid, "masked_fields": ["stop_id"]}]}});
    assert_eq!(
        post(&format!("{q}/reviews"), Some(&provider), masked).0,
        200
    );
    let (status, approved) = post(&format!("{q}/reviews"), Some(&health), approve);
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["state"], "REQUEST_STATE_APPROVED", "{approved}");
    let grant_id = approved["grantId"].as_str().unwrap().to_string();
    let (status, grant) = get(&format!("{H}/grants/{grant_id}"), Some(beta));
    assert_eq!(status, 200, "{grant}");
    assert_eq!(
        grant["resources"][0]["maskedFields"],
        json!(["stop_id"]),
        "{grant}"
    );
    assert_eq!(grant["validTo"], last.to_string());
    let check =
        format!("{H}/grants:check?organization={beta_org}&resource_id={rid}&fields=stop_id");
    let (status, allowed) = get(&check, Some(beta));
    assert_eq!(
        (status, &allowed["granted"]),
        (200, &json!(true)),
        "{allowed}"
    );

    platform.step("request approved");

    // The transport provider loads its data into the sandbox; beta's grant computes on it.
    let loads = format!("{H}/resources/{rid}/loads");
    let (status, load) = post(&loads, Some(&provider), json!({}));
    assert_eq!(status, 200, "{load}");
    let lid = load["id"].as_str().unwrap().to_string();
    // Two stops of 15 records, one of 3: the small group stays inside. Delays 1 to 7 minutes.
    let lines: Vec<String> = (0..33)
        .map(|k| {
            let stop = if k < 15 {
                1
            } else if k < 30 {
                2
            } else {
                3
            };
            format!("S{stop},{}", k % 7 + 1)
        })
        .collect();
    // The three records of stop 3 are delayed 3, 4 and 5 minutes: 12 in all.
    let small_stop_total = 12.0;
    let chunk = json!({"header": "stop_id,delay", "lines": lines});
    let (status, appended) = post(&format!("{loads}/{lid}/rows"), Some(&provider), chunk);
    assert_eq!(status, 200, "{appended}");
    let (status, committed) = post(&format!("{loads}/{lid}:commit"), Some(&provider), json!({}));
    assert_eq!(
        (status, &committed["version"]),
        (200, &json!(1)),
        "{committed}"
    );
    let queries = format!("{H}/sandbox/queries");
    let aggregate = json!({"grant_id": grant_id,
        "sql": format!("SELECT stop_id, count(*) AS n FROM \"{rid}\" GROUP BY stop_id")});
    let (status, answer) = post(&queries, Some(beta), aggregate.clone());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"].as_array().unwrap().len(), 2, "{answer}");
    assert_eq!(answer["suppressedGroups"], "1", "{answer}");
    // stop_id is masked by the grant: the stops leave as digests, never as themselves.
    assert!(!answer.to_string().contains("\"S1\""), "{answer}");
    // The differencing attack: the district's total delay minus the released stops' would be the
    // suppressed stop's exactly. Every released sum carries noise, so it is not; asking again
    // gets the same answer, so repetition averages nothing away.
    let sum = |sql: String| {
        let (status, answer) = post(
            &queries,
            Some(beta),
            json!({"grant_id": grant_id, "sql": sql}),
        );
        assert_eq!(status, 200, "{answer}");
        let rows = answer["rows"].as_array().unwrap().clone();
        rows.iter()
            .map(|r| {
                let values = r["values"].as_array().unwrap();
                values
                    .last()
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .parse::<f64>()
                    .unwrap()
            })
            .collect::<Vec<f64>>()
    };
    let total = sum(format!("SELECT sum(delay) AS total FROM \"{rid}\""));
    let by_stop = sum(format!(
        "SELECT stop_id, sum(delay) AS total FROM \"{rid}\" GROUP BY stop_id"
    ));
    assert_eq!(by_stop.len(), 2, "stop 3 is suppressed: {by_stop:?}");
    let estimate = total[0] - by_stop.iter().sum::<f64>();
    assert!(
        (estimate - small_stop_total).abs() > 1e-6,
        "the attack recovered stop 3's total: {estimate}"
    );
    assert_eq!(
        sum(format!("SELECT sum(delay) AS total FROM \"{rid}\"")),
        total,
        "the same question, the same answer"
    );
    let rows = json!({"grant_id": grant_id, "sql": format!("SELECT * FROM \"{rid}\"")});
    let (status, refused) = post(&queries, Some(beta), rows);
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("第二十二条"), "{refused}");
    platform.step("sandbox queried");

    // Four more such refusals within the hour: oversight's rule raises one alert for the
    // supervisors of its duty (第二十六条, 第二十七条); a supervisor inspects beta, records the
    // finding and orders rectification within one working day.
    for _ in 0..4 {
        let rows = json!({"grant_id": grant_id, "sql": format!("SELECT * FROM \"{rid}\"")});
        assert_eq!(post(&queries, Some(beta), rows).0, 400);
    }
    let supervisor = token("230100", "supervisor", "harbin-cyberspace");
    let alert = eventually(60, "the refusals raise an alert", || {
        let (status, listed) = get(&format!("{H}/alerts"), Some(&supervisor));
        assert_eq!(status, 200, "{listed}");
        listed["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["ruleId"] == "sandbox-refusals" && a["groupKey"] == beta_org.as_str())
            .cloned()
    });
    assert_eq!(alert["severity"], "SEVERITY_HIGH", "{alert}");
    assert_eq!(
        alert["evidence"][0]["summary"],
        format!("organization {beta_org}: query.ran")
    );
    let inspection = eventually(60, "oversight knows beta's agreement", || {
        let (status, opened) = post(
            &format!("{H}/inspections"),
            Some(&supervisor),
            json!({"target_kind": "operator", "target": beta_org, "agreement_id": aid,
                "purpose": "repeated row-level queries", "department": "DEPARTMENT_CYBERSPACE"}),
        );
        (status == 200).then_some(opened)
    });
    let iid = inspection["id"].as_str().unwrap().to_string();
    let (status, found) = post(
        &format!("{H}/inspections/{iid}/findings"),
        Some(&supervisor),
        json!({"description": "analysts ran row-level queries on the grant",
            "severity": "SEVERITY_HIGH", "alert_id": alert["id"]}),
    );
    assert_eq!(status, 200, "{found}");
    let (status, order) = post(
        &format!("{H}/rectification-orders"),
        Some(&supervisor),
        json!({"inspection_id": iid, "finding_id": found["findings"][0]["id"],
            "requirement": "train the analysts; restrict row-level tools", "working_days": 1}),
    );
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["state"], "RECTIFICATION_STATE_ISSUED", "{order}");
    let order_path = format!("{H}/rectification-orders/{}", order["id"].as_str().unwrap());
    // Row-level work stays inside: a table derived into the grant's workspace is named back,
    // never shown, and is read only as aggregates under the same control.
    let derive = json!({"grant_id": grant_id, "sql": format!(
        "CREATE TABLE workspace.stops AS SELECT stop_id FROM \"{rid}\" \
         WHERE stop_id IS NOT NULL")});
    let (status, derived) = post(&queries, Some(beta), derive);
    assert_eq!(status, 200, "{derived}");
    assert_eq!(derived["derived"]["name"], "stops", "{derived}");
    assert!(
        derived["rows"].as_array().is_none_or(Vec::is_empty),
        "{derived}"
    );
    let workspace = format!("{H}/grants/{grant_id}/workspace/tables");
    let (status, listed) = get(&workspace, Some(beta));
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["tables"][0]["name"], "stops", "{listed}");
    let (status, answer) = post(
        &queries,
        Some(beta),
        json!({"grant_id": grant_id,
        "sql": "SELECT stop_id, count(*) AS n FROM workspace.stops GROUP BY stop_id"}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"].as_array().unwrap().len(), 2, "{answer}");
    let (status, refused) = post(
        &queries,
        Some(beta),
        json!({"grant_id": grant_id,
        "sql": "SELECT * FROM workspace.stops"}),
    );
    assert_eq!(status, 400, "{refused}");

    platform.step("rectification ordered");

    // A product of what the sandbox lets out (第二十条): an API over the workspace table, defined
    // once products has learnt of the grant and the table, reviewed and registered by the bureau,
    // priced within the bureau's ceiling, released to the exchange, public without a token.
    let (status, rules) = platform.call(
        "PUT",
        &format!("{H}/pricing-rules"),
        Some(&bureau),
        Some(
            &json!({"ceilings": [{"form": "PRODUCT_FORM_API", "unit": "PRICE_UNIT_PER_CALL",
            "amount_fen": 50}]}),
        ),
    );
    assert_eq!(status, 200, "{rules}");
    let product = json!({
        "name": "Arrivals per stop",
        "class": "PRODUCT_CLASS_INDUSTRY_DEVELOPMENT",
        "description": "How many arrivals each stop saw, other than the excluded one",
        "terms_of_use": "For the buyer's own route planning; never passed on",
        "inputs": [{"grant_id": grant_id, "tables": ["stops"]}],
        "form": "PRODUCT_FORM_API",
        "query": "SELECT stop_id, count(*) AS n FROM workspace.stops \
                  WHERE stop_id <> :excluded GROUP BY stop_id",
        "parameters": [{"name": "excluded", "type": "PARAMETER_TYPE_STRING"}],
    });
    let products = format!("{H}/products");
    let created = eventually(30, "products learns of the grant and its table", || {
        let (status, p) = post(&products, Some(beta), product.clone());
        (status == 200).then_some(p)
    });
    let pid = created["id"].as_str().unwrap().to_string();
    let (status, submitted) = post(&format!("{products}/{pid}:submit"), Some(beta), json!({}));
    assert_eq!(
        (status, &submitted["state"]),
        (200, &json!("PRODUCT_STATE_BUREAU_REVIEW")),
        "{submitted}"
    );
    let findings: Vec<Value> = [
        "REVIEW_ASPECT_COMPLIANCE",
        "REVIEW_ASPECT_SECURITY",
        "REVIEW_ASPECT_PLAN_CONFORMITY",
    ]
    .iter()
    .map(|a| json!({"aspect": a, "passed": true}))
    .collect();
    let (status, registered) = post(
        &format!("{products}/{pid}:review"),
        Some(&bureau),
        json!({"outcome": "REVIEW_OUTCOME_APPROVED", "findings": findings}),
    );
    assert_eq!(status, 200, "{registered}");
    let code = registered["registration"]["code"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(code.starts_with("230100-20"), "{registered}");
    let (status, refused) = post(
        &format!("{products}/{pid}:price"),
        Some(beta),
        json!({"amount_fen": 80, "unit": "PRICE_UNIT_PER_CALL"}),
    );
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused.to_string().contains("ceiling of 0.50 CNY"),
        "{refused}"
    );
    let (status, priced) = post(
        &format!("{products}/{pid}:price"),
        Some(beta),
        json!({"amount_fen": 30, "unit": "PRICE_UNIT_PER_CALL"}),
    );
    assert_eq!(status, 200, "{priced}");
    let (status, released) = post(
        &format!("{products}/{pid}:release"),
        Some(beta),
        json!({"exchange_id": dex}),
    );
    assert_eq!(
        (status, &released["state"]),
        (200, &json!("PRODUCT_STATE_LISTED")),
        "{released}"
    );
    let (status, public) = get(&format!("{H}/public/products/{code}"), None);
    assert_eq!(status, 200, "{public}");
    assert_eq!(
        (&public["operator"], &public["exchangeIds"]),
        (&json!(beta_org), &json!([dex])),
        "{public}"
    );

    platform.step("product listed");

    // On the broker, the reference exchange reads the listing, accepts it under its own id and
    // sells one call; pdp verifies both answers, records the trade with its shares, and the buyer
    // calls the product through the gateway, once.
    if on_kafka {
        let buyer_org = format!("91230100MA1BUYER{run}");
        let exchange = pdp_exchange_client::Exchange {
            id: dex.clone(),
            key: exchange_key.clone(),
            receipts_topic: format!("{dex}.receipts"),
            trades_topic: format!("{dex}.trades"),
        };
        let exchange_for_trades = exchange.clone();
        let policy = pdp_exchange_client::Policy {
            demo_buyer: Some(buyer_org.clone()),
        };
        let consumer_brokers = brokers.clone();
        let answered = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let consumer: StreamConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &consumer_brokers)
                    .set("group.id", &exchange.id)
                    .set("enable.auto.commit", "false")
                    .set("auto.offset.reset", "earliest")
                    .create()
                    .unwrap();
                consumer
                    .subscribe(&[pdp_exchange_client::LISTINGS_TOPIC])
                    .unwrap();
                let producer: FutureProducer = ClientConfig::new()
                    .set("bootstrap.servers", &consumer_brokers)
                    .create()
                    .unwrap();
                let serving =
                    pdp_exchange_client::serve(&consumer, &producer, &exchange, &policy, Some(1));
                tokio::time::timeout(std::time::Duration::from_secs(60), serving).await
            })
        })
        .join()
        .unwrap()
        .expect("the listing reaches the exchange")
        .unwrap();
        assert_eq!(answered, 1);
        let accepted = eventually(30, "the exchange's receipt is applied", || {
            let (_, p) = get(&format!("{products}/{pid}"), Some(beta));
            (p["listings"][0]["state"] == "LISTING_STATE_ACCEPTED").then_some(p)
        });
        let listing_id = accepted["listings"][0]["exchangeListingId"].as_str();
        assert!(listing_id.unwrap().starts_with(&dex), "{accepted}");
        let trades = eventually(30, "the trade is recorded", || {
            let (_, t) = get(&format!("{H}/trades"), Some(&bureau));
            t["trades"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
                .then_some(t)
        });
        let trade = &trades["trades"][0];
        assert_eq!(
            (&trade["buyerOrganization"], &trade["amountFen"]),
            (&json!(buyer_org), &json!("30")),
            "{trade}"
        );
        assert_eq!(trade["entitlement"]["calls"], "1", "{trade}");
        // No sharing rule set: the revenue is the operator's.
        assert_eq!(
            (
                &trade["shares"][1]["organization"],
                &trade["shares"][1]["amountFen"]
            ),
            (&json!(beta_org), &json!("30")),
            "{trade}"
        );
        let buyer = token("230100", "buyer", &buyer_org);
        let call_path = format!("{products}/{pid}:call");
        let body = json!({"parameters": {"excluded": "S9"}});
        let answer = eventually(30, "requests learns of the trade", || {
            let (status, a) = post(&call_path, Some(&buyer), body.clone());
            (status == 200).then_some(a)
        });
        assert_eq!(answer["rows"].as_array().unwrap().len(), 2, "{answer}");
        let (status, refused) = post(&call_path, Some(&buyer), body);
        assert_eq!(status, 403, "one call bought, one made: {refused}");
        assert!(refused.to_string().contains("NO_ENTITLEMENT"), "{refused}");

        // A trade that comes unsigned is parked as a dead letter, never applied.
        let listing = pdp_exchange_client::ListingEvent {
            event_type: pdp_exchange_client::LISTED.into(),
            tenant: "230100".into(),
            data: json!({"product_id": pid}),
        };
        let mut unsigned = exchange_for_trades.trade(
            &listing,
            &format!("{dex}-unsigned"),
            &buyer_org,
            1_000,
            0,
            Utc::now(),
        );
        unsigned.data.as_object_mut().unwrap().remove("signature");
        let producer_brokers = brokers.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let producer: FutureProducer = ClientConfig::new()
                    .set("bootstrap.servers", &producer_brokers)
                    .create()
                    .unwrap();
                pdp_exchange_client::send(&producer, &unsigned).await
            })
        })
        .join()
        .unwrap()
        .unwrap();
        let parked = eventually(30, "the unsigned trade is parked", || {
            platform
                .dead_letters()
                .lines()
                .find(|l| l.contains("pdp.exchange.trade.completed"))
                .map(str::to_string)
        });
        assert!(parked.starts_with("products\t"), "{parked}");
        assert!(parked.contains("unsigned"), "{parked}");
        let (_, trades) = get(&format!("{H}/trades"), Some(&bureau));
        assert_eq!(trades["trades"].as_array().unwrap().len(), 1, "{trades}");
    }

    platform.step("exchange answered");

    // A whole file streamed through the gateway (`PUT …/data`, text/csv, chunked): 250 000
    // records, written in parts of 100 000 as they arrive. A file with one line that does not
    // fit (in its last part, after two parts were written) is refused whole, naming the line,
    // and leaves nothing: the same load then takes the good file, and its version shows only its
    // own stops.
    let (status, load) = post(&loads, Some(&provider), json!({}));
    assert_eq!(status, 200, "{load}");
    let lid = load["id"].as_str().unwrap().to_string();
    let file = |stops: &[&str], bad: Option<usize>| -> Vec<u8> {
        let mut csv = String::from("stop_id,delay\n");
        for k in 0..250_000 {
            if Some(k) == bad {
                csv.push_str("S9,late\n");
            } else {
                csv.push_str(&format!("{},{}\n", stops[k % stops.len()], k % 7 + 1));
            }
        }
        csv.into_bytes()
    };
    let file_path = format!("{loads}/{lid}/data");
    let (status, refused) = upload(
        port,
        &file_path,
        &provider,
        "text/csv",
        &file(&["S9"], Some(240_000)),
        64 * 1024,
    );
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("line 240002"), "{refused}");
    let (status, refused) = upload(port, &file_path, &provider, "text/plain", b"", 8);
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("content-type"), "{refused}");
    let (status, uploaded) = upload(
        port,
        &file_path,
        &provider,
        "text/csv; charset=utf-8",
        &file(&["S1", "S2", "S3", "S4"], None),
        64 * 1024,
    );
    assert_eq!(status, 200, "{uploaded}");
    assert_eq!(
        (&uploaded["rows"], &uploaded["chunks"]),
        (&json!("250000"), &json!(3)),
        "{uploaded}"
    );
    // Uploaded again (a client's retry): refused, the rows are not loaded twice.
    let (status, again) = upload(
        port,
        &file_path,
        &provider,
        "text/csv",
        b"stop_id,delay\nS1,1\n",
        8,
    );
    assert_eq!(status, 400, "{again}");
    assert!(
        again.to_string().contains("already holds 250000 rows"),
        "{again}"
    );
    let (status, committed) = post(&format!("{loads}/{lid}:commit"), Some(&provider), json!({}));
    assert_eq!(
        (status, &committed["version"]),
        (200, &json!(2)),
        "{committed}"
    );
    let (status, answer) = post(&queries, Some(beta), aggregate.clone());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"].as_array().unwrap().len(), 4, "{answer}");
    assert_eq!(answer["suppressedGroups"], "0", "{answer}");

    // The answers above came from the cluster: without it, a query is unavailable (and costs
    // nothing), never answered in the service's own process.
    if platform.stop_sandbox_cluster() {
        let (status, down) = post(&queries, Some(beta), aggregate.clone());
        assert_eq!(status, 503, "{down}");
        assert!(down.to_string().contains("SANDBOX_UNREACHABLE"), "{down}");
    }

    platform.step("file uploaded");

    // A data-quality ticket on the bus arrivals, which the transport provider leaves unanswered
    // (第十九条).
    let (status, ticket) = post(
        &format!("{H}/quality-tickets"),
        Some(beta),
        json!({"resource_id": rid, "fields": ["stop_id"], "kind": "TICKET_KIND_STALE",
            "description": "stops renamed last month", "evidence": "stop 1042"}),
    );
    assert_eq!(status, 200, "{ticket}");
    let tid = ticket["id"].as_str().unwrap().to_string();

    // Ten days before the end, the operations desk's gauge counts the agreement as expiring.
    let gauge = |series: &str| {
        platform
            .metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    ShiftedClock::shift_to(&shift, end_of_day(last) - Duration::days(10)).unwrap();
    eventually(30, "the agreement is counted as expiring", || {
        gauge("pdp_agreements_expiring{tenant=\"230100\"}").filter(|n| *n >= 1)
    });

    platform.step("agreement expiring");

    // Beta never answered the order: past its deadline it failed, and the bureau is asked to
    // terminate (第三十条).
    let failed = eventually(30, "the unanswered order fails", || {
        let (_, o) = get(&order_path, Some(&bureau));
        (o["state"] == "RECTIFICATION_STATE_FAILED").then_some(o)
    });
    assert!(
        failed["failure"].as_str().unwrap().contains("overdue"),
        "{failed}"
    );
    let (_, alerts) = get(&format!("{H}/alerts"), Some(&bureau));
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["ruleId"] == "rectification-failed" && a["groupKey"] == aid.as_str()),
        "{alerts}"
    );

    match options.ending {
        Ending::Expiry => {
            // The term ends: the scheduler expires the agreement and every gateway replica
            // stops authorizing beta.
            ShiftedClock::shift_to(&shift, end_of_day(last) + Duration::minutes(1)).unwrap();
            eventually(30, "beta's calls are denied after expiry", || {
                (get(&resources, Some(beta)).0 == 403).then_some(())
            });
            let (_, expired) = get(&format!("{H}/agreements/{aid}"), Some(&bureau));
            assert_eq!(expired["state"], "AGREEMENT_STATE_EXPIRED", "{expired}");
        }
        Ending::Termination => {
            // The bureau ends it early for the breach left unrectified, on its decision
            // (第三十条); every gateway replica stops authorizing beta.
            let terminate = json!({"ground": "TERMINATION_GROUND_BREACH_NOT_RECTIFIED",
                "reason": "the rectification order failed",
                "decision": {"title": "关于终止授权运营协议的决定",
                    "reference": "哈数局〔2026〕7号"}});
            let terminated = eventually(30, "agreements hears of the failed order", || {
                let (status, answer) = post(
                    &format!("{H}/agreements/{aid}:terminate"),
                    Some(&bureau),
                    terminate.clone(),
                );
                // Until then the ground is refused, naming the step it rests on.
                if status == 400 {
                    assert!(answer.to_string().contains("recorded none"), "{answer}");
                    return None;
                }
                assert_eq!(status, 200, "{answer}");
                Some(answer)
            });
            assert_eq!(
                terminated["state"], "AGREEMENT_STATE_TERMINATED",
                "{terminated}"
            );
            eventually(30, "beta's calls are denied after the termination", || {
                (get(&resources, Some(beta)).0 == 403).then_some(())
            });
        }
    }
    platform.step("agreement ended");

    // Its grant ended with it, and a cached answer is no answer: the check says no.
    let ended = eventually(30, "the grant ends with the agreement", || {
        let (_, g) = get(&format!("{H}/grants/{grant_id}"), Some(&bureau));
        (g["state"] == "GRANT_STATE_ENDED").then_some(g)
    });
    // On expiry the grant's last day is the agreement's: whichever the services applied first
    // ended it. A termination ends it before its last day.
    let end = ended["end"].as_str().unwrap();
    let ends: &[&str] = match options.ending {
        Ending::Expiry => &["GRANT_END_AGREEMENT_ENDED", "GRANT_END_EXPIRED"],
        Ending::Termination => &["GRANT_END_AGREEMENT_ENDED"],
    };
    assert!(ends.contains(&end), "{ended}");
    let (status, denied) = get(&check, Some(&bureau));
    assert_eq!(
        (status, &denied["granted"]),
        (200, &json!(false)),
        "{denied}"
    );
    // The authorization ended, so did beta's trade in its product (第二十九条).
    let withdrawn = eventually(30, "the product is withdrawn with the agreement", || {
        let (_, p) = get(&format!("{products}/{pid}"), Some(&bureau));
        (p["state"] == "PRODUCT_STATE_WITHDRAWN").then_some(p)
    });
    assert_eq!(
        withdrawn["listings"][0]["state"], "LISTING_STATE_DELISTED",
        "{withdrawn}"
    );
    // The grant ended: the same query is refused.
    let (status, _) = post(&queries, Some(beta), aggregate);
    assert_eq!(status, 403, "beta is no longer an authorized operator");
    // The ticket's period passed meanwhile: it is listed overdue, and a late answer says so.
    let overdue = eventually(30, "the ticket is overdue", || {
        let (_, listed) = get(
            &format!("{H}/quality-tickets?overdue_only=true"),
            Some(&bureau),
        );
        (listed["tickets"][0]["id"] == json!(tid)).then_some(listed)
    });
    assert_eq!(overdue["tickets"][0]["overdue"], json!(true), "{overdue}");
    let tickets = "pdp_overdue{tenant=\"230100\",what=\"quality_ticket\"}";
    eventually(30, "the desk counts the overdue ticket", || {
        gauge(tickets).filter(|n| *n == 1)
    });
    // Each service measures its own gauges on its own beat: in a cluster, the agreements
    // service's pass after the expiry may come later than the requests service's.
    eventually(
        30,
        "an expired agreement is no longer counted as expiring",
        || gauge("pdp_agreements_expiring{tenant=\"230100\"}").filter(|n| *n == 0),
    );
    let (status, answered) = post(
        &format!("{H}/quality-tickets/{tid}:answer"),
        Some(&provider),
        json!({"text": "renamed stops mapped", "fixed": true}),
    );
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["answers"][0]["late"], json!(true), "{answered}");
    eventually(30, "an answered ticket is no longer counted", || {
        gauge(tickets).filter(|n| *n == 0)
    });

    platform.step("ticket answered");

    // The expiry opened the termination case (第二十九条): access was cut (the authorization,
    // the grant, the product), beta's data destroyed and listed with digests; a supervisor
    // witnesses it, the bureau receives the records of the period and acknowledges, then closes.
    let case = eventually(60, "the case records the destruction", || {
        let (_, listed) = get(&format!("{H}/termination-cases"), Some(&bureau));
        let c = listed["cases"]
            .as_array()?
            .iter()
            .find(|c| c["agreementId"] == json!(aid))?
            .clone();
        // The grant's end and the destruction come on different partitions: either may be first.
        let kinds: Vec<&str> = c["accessCuts"]
            .as_array()?
            .iter()
            .filter_map(|c| c["kind"].as_str())
            .collect();
        let cut = ["authorization", "grant", "product"]
            .iter()
            .all(|k| kinds.contains(k));
        (cut && c["destruction"].is_object()).then_some(c)
    });
    let cuts: Vec<&str> = case["accessCuts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["kind"].as_str())
        .collect();
    for kind in ["authorization", "grant", "product"] {
        assert!(cuts.contains(&kind), "{kind}: {case}");
    }
    let destruction = &case["destruction"];
    let objects = destruction["objects"].as_array().unwrap();
    let workspace_dir = format!("tenants/230100/grants/{grant_id}/workspace");
    assert!(
        objects
            .iter()
            .any(|o| o["location"].as_str().unwrap().starts_with(&workspace_dir)),
        "the derived table's files: {case}"
    );
    assert!(
        objects
            .iter()
            .all(|o| o["sha256"].as_str().unwrap().len() == 64),
        "{case}"
    );
    assert_eq!(
        destruction["remaining"].as_str().unwrap_or("0"),
        "0",
        "{case}"
    );
    // Nothing of it is left to read: no file under the workspace, no table listed.
    let left = platform.sandbox_objects(&workspace_dir);
    assert!(left.is_empty(), "{left:?}");
    let (status, tables) = get(&workspace, Some(&bureau));
    assert_eq!(status, 200, "{tables}");
    assert!(
        tables["tables"].as_array().is_none_or(|t| t.is_empty()),
        "{tables}"
    );
    let case_path = format!("{H}/termination-cases/{}", case["id"].as_str().unwrap());
    let supervisor = token("230100", "supervisor", "harbin-cyberspace");
    let (status, witnessed) = post(
        &format!("{case_path}:witness-destruction"),
        Some(&supervisor),
        json!({"digest": destruction["digest"], "statement": "deletion observed"}),
    );
    assert_eq!(status, 200, "{witnessed}");
    let (status, bundle) = get(&format!("{case_path}/handover"), Some(&bureau));
    assert_eq!(status, 200, "{bundle}");
    assert!(
        pdp_termination::checkpoint::verify_published(
            bundle["publicKey"].as_str().unwrap(),
            bundle["manifest"].as_str().unwrap(),
            bundle["signature"].as_str().unwrap(),
        ),
        "{bundle}"
    );
    let (status, acknowledged) = post(
        &format!("{case_path}:acknowledge-handover"),
        Some(&bureau),
        json!({"manifest_digest": bundle["manifestDigest"]}),
    );
    assert_eq!(status, 200, "{acknowledged}");
    let (status, closed) = post(&format!("{case_path}:close"), Some(&bureau), json!({}));
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["state"], "TERMINATION_CASE_STATE_CLOSED", "{closed}");

    platform.step("case closed");

    // All of it is in Harbin's audit archive (第十六条): the bureau's agreement as the agreements
    // service recorded it, and a chain that verifies.
    let auditor = token("230100", "auditor", "harbin-audit-office");
    let archived = eventually(60, "the agreement's creation archived", || {
        let (status, found) = get(
            &format!("{H}/audit/records?operation=agreement.created"),
            Some(&auditor),
        );
        assert_eq!(status, 200, "{found}");
        let records = found["records"].as_array()?.clone();
        (!records.is_empty()).then_some(records)
    });
    assert_eq!(archived[0]["source"], "agreements", "{archived:?}");
    assert_eq!(
        archived[0]["organization"], "harbin-data-bureau",
        "{archived:?}"
    );
    let (status, verified) = get(&format!("{H}/audit:verify"), Some(&auditor));
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["verified"], json!(true), "{verified}");

    // The year's disclosure (第二十条(四)): the bureau generates the report from the records,
    // reviews it and publishes it by its digest; anyone reads it, as JSON and as a page.
    let reports = format!("{H}/annual-reports");
    let (status, draft) = post(&reports, Some(&bureau), json!({"year": 2026}));
    assert_eq!(status, 200, "{draft}");
    assert!(
        draft["authorizations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["agreementId"] == aid.as_str()),
        "{draft}"
    );
    assert!(
        draft["products"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["productId"] == pid.as_str()),
        "{draft}"
    );
    let (status, public) = get(&format!("{H}/public/reports/2026"), None);
    assert_eq!(status, 404, "not public before it is published: {public}");
    let (status, published) = post(
        &format!("{reports}/2026:publish"),
        Some(&bureau),
        json!({"digest": draft["digest"]}),
    );
    assert_eq!(status, 200, "{published}");
    let (status, public) = get(&format!("{H}/public/reports/2026"), None);
    assert_eq!(
        (status, &public["digest"]),
        (200, &draft["digest"]),
        "{public}"
    );
    let (status, response) =
        crate::support::get(port, &format!("{H}/public/reports/2026/page")).unwrap();
    assert_eq!(status, 200, "{response}");
    let (head, page) = response.split_once("\r\n\r\n").unwrap();
    // A page others' text reaches: no script runs, nothing loads, no type is guessed.
    for header in [
        "content-type: text/html",
        "content-security-policy: default-src 'none'",
        "x-content-type-options: nosniff",
    ] {
        assert!(head.to_ascii_lowercase().contains(header), "{head}");
    }
    assert!(
        page.starts_with("<!DOCTYPE html>") && page.contains(aid.as_str()),
        "{page}"
    );
    assert!(!page.contains("<script"), "{page}");

    // Two years and a day after the authorization ended, its records go (第二十九条), behind an
    // anchor checkpoint the chain goes on from. On the broker, earlier runs' agreements may hold
    // periods still open in Harbin, which rightly keep everything: that run shows the rest.
    if !on_kafka {
        let later = end_of_day(last) + Duration::days(731) + Duration::minutes(5);
        ShiftedClock::shift_to(&shift, later).unwrap();
        let anchor = eventually(60, "the period's records purged behind an anchor", || {
            let (_, listed) = get(&format!("{H}/public/audit/checkpoints"), None);
            let checkpoints = listed["checkpoints"].as_array()?.clone();
            let anchor = checkpoints.iter().find(|c| c["kind"] == "ANCHOR")?.clone();
            Some((anchor, listed["publicKey"].as_str()?.to_string()))
        });
        assert!(
            pdp_termination::checkpoint::verify_published(
                &anchor.1,
                anchor.0["signingInput"].as_str().unwrap(),
                anchor.0["signature"].as_str().unwrap(),
            ),
            "{anchor:?}"
        );
        let (status, gone) = get(
            &format!("{H}/audit/records?operation=agreement.created"),
            Some(&auditor),
        );
        assert_eq!(status, 200, "{gone}");
        assert!(
            gone["records"].as_array().is_none_or(|r| r.is_empty()),
            "{gone}"
        );
        let (status, verified) = get(&format!("{H}/audit:verify"), Some(&auditor));
        assert_eq!(status, 200, "{verified}");
        assert_eq!(verified["verified"], json!(true), "{verified}");
    }

    platform.stop();
}
