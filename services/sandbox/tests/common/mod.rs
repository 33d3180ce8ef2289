//! The bus arrivals the load tests load: registered fields and generated CSV; and the S3-API
//! server's bucket the cluster's tests run against.
#![allow(dead_code)] // each test binary uses its own part

use pdp_sandbox::load::Field;
use pdp_sandbox::store::S3;

/// The bucket `.ci/run` serves on moto's S3 server (127.0.0.1:9000, `pdp-test`;
/// `TEST_S3_ENDPOINT` and `TEST_S3_BUCKET` name another), under a prefix of this run's own, so
/// that runs never see each other's objects.
pub fn bucket() -> S3 {
    let endpoint =
        std::env::var("TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    let bucket = std::env::var("TEST_S3_BUCKET").unwrap_or_else(|_| "pdp-test".into());
    let run = format!("{:032x}", rand::random::<u128>());
    S3 {
        url: format!("s3://{bucket}/runs/{run}"),
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        access_key_id: Some("pdp-test".into()),
        secret_access_key: Some("pdp-test-secret".into()),
    }
}

pub fn fields() -> Vec<Field> {
    let field = |name: &str, kind: &str, personal| Field {
        name: name.into(),
        kind: kind.into(),
        personal,
    };
    vec![
        field("stop_id", "string", false),
        field("delay", "integer", false),
        field("card_no", "string", true),
    ]
}

pub fn csv(rows: usize, bad_line: Option<usize>) -> String {
    let mut out = String::from("delay,stop_id,card_no\n");
    for i in 0..rows {
        let delay = if Some(i) == bad_line {
            "soon".to_string()
        } else {
            (i % 7).to_string()
        };
        out.push_str(&format!("{delay},S{},C{i:05}\n", i % 3));
    }
    out
}
