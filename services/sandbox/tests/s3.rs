//! The cluster's path: loads and queries against a real S3-API server (`.ci/run` starts moto's
//! server on 127.0.0.1:9000 with the bucket `pdp-test`; `TEST_S3_ENDPOINT` and `TEST_S3_BUCKET`
//! name another). A missing server fails the test, it never skips it.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

mod common;

use common::{bucket, csv, fields};
use futures::TryStreamExt;
use object_store::path::Path;
use pdp_sandbox::store;
use pdp_sandbox::{Limits, Rules, Sandbox, SandboxError, Table};

#[tokio::test]
async fn loads_and_queries_run_on_an_s3_bucket_and_a_refused_load_leaves_nothing_there() {
    let objects = store::s3(&bucket()).unwrap();
    let sandbox = Sandbox::new(objects.clone(), Limits::default()).unwrap();
    let location = "tenants/230100/resources/bus/loads/l1/part-1.parquet";
    let loaded = sandbox
        .load_csv(location, &fields(), csv(20_000, None).as_bytes(), 2)
        .await
        .expect("the load reaches the S3 server (is it running? see .ci/run)");
    assert_eq!(loaded.rows, 20_000);

    let table = Table {
        name: "bus".into(),
        location: "tenants/230100/resources/bus/loads/l1/".into(),
        fields: vec!["stop_id".into(), "delay".into(), "card_no".into()],
        masked: vec!["card_no".into()],
        personal: vec!["card_no".into()],
    };
    let rules = Rules {
        k: 10,
        epsilon: 1.0,
    };
    let answer = sandbox
        .query(
            std::slice::from_ref(&table),
            "SELECT stop_id, count(*) AS n FROM bus GROUP BY stop_id ORDER BY stop_id",
            rules,
            "grant-secret",
        )
        .await
        .unwrap();
    assert_eq!(answer.groups, 3, "three stops, each of thousands of rows");
    let err = sandbox
        .query(
            std::slice::from_ref(&table),
            "SELECT card_no, delay FROM bus",
            rules,
            "grant-secret",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Refused(_)), "{err:?}");

    // Refused whole: nothing of it in the bucket, staged or not.
    let broken = "tenants/230100/resources/bus/loads/l2/part-1.parquet";
    let err = sandbox
        .load_csv(broken, &fields(), csv(20_000, Some(12_345)).as_bytes(), 2)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("line 12347"), "{err}");
    let left: Vec<_> = objects
        .list(Some(&Path::from("tenants/230100/resources/bus/loads/l2")))
        .try_collect()
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");

    // A removed object is gone from the bucket.
    sandbox.delete(location).await.unwrap();
    let left: Vec<_> = objects
        .list(Some(&Path::from("tenants/230100/resources/bus/loads/l1")))
        .try_collect()
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}
