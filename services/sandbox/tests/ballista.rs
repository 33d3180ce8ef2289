//! The sandbox on Apache Ballista: a standalone cluster — one scheduler and one executor, each on
//! its own port as `pdp sandbox scheduler` and `pdp sandbox executor` serve them, talking gRPC —
//! reads the data from the S3-API server (`.ci/run` starts it; see `s3.rs`), and the controlled
//! answer is the one the in-process engine gives.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{bucket, csv, fields};
use datafusion::arrow::util::pretty::pretty_format_batches;
use pdp_sandbox::ballista::{self, Ballista, Executor};
use pdp_sandbox::store;
use pdp_sandbox::{Answer, Limits, Rules, Sandbox, SandboxError, Table};

/// A port nobody listens on now, with the next one free too (an executor takes two).
fn free_port() -> u16 {
    loop {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

fn table() -> Table {
    Table {
        name: "bus".into(),
        location: "tenants/230100/resources/bus/v1/".into(),
        fields: vec!["stop_id".into(), "delay".into(), "card_no".into()],
        masked: vec!["card_no".into()],
        personal: vec!["card_no".into()],
    }
}

const RULES: Rules = Rules {
    k: 10,
    epsilon: 1.0,
};

async fn ask(sandbox: &Sandbox, sql: &str) -> Result<Answer, SandboxError> {
    sandbox
        .query(std::slice::from_ref(&table()), sql, RULES, "grant-secret")
        .await
}

fn shown(answer: &Answer) -> String {
    pretty_format_batches(&answer.batches).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standalone_ballista_cluster_gives_the_same_controlled_answers() {
    let bucket = bucket();
    let objects = store::s3(&bucket).unwrap();
    let here = Sandbox::new(objects.clone(), Limits::default()).unwrap();
    here.load_csv(
        "tenants/230100/resources/bus/v1/part-1.parquet",
        &fields(),
        csv(20_000, None).as_bytes(),
        2,
    )
    .await
    .expect("the load reaches the S3 server (is it running? see .ci/run)");

    let scheduler: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    tokio::spawn(ballista::serve_scheduler(
        objects.clone(),
        scheduler,
        "127.0.0.1",
    ));
    let executor: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    tokio::spawn(ballista::serve_executor(
        objects.clone(),
        Executor {
            listen: executor,
            external_host: "127.0.0.1".into(),
            scheduler: ("127.0.0.1".into(), scheduler.port()),
            vcores: 2,
            memory_bytes: 256 << 20,
        },
    ));
    let engine = Ballista::new(&format!("df://127.0.0.1:{}", scheduler.port())).unwrap();
    let there = Sandbox::new(objects, Limits::default())
        .unwrap()
        .with_engine(Arc::new(engine));

    // An aggregate by stop: the same groups, the same noised figures (the noise is seeded by the
    // grant, the plan and the group), the same fields read.
    let sql = "SELECT stop_id, count(*) AS n, avg(delay) AS mean_delay FROM bus \
               GROUP BY stop_id ORDER BY stop_id";
    let local = ask(&here, sql).await.unwrap();
    let remote = ask(&there, sql)
        .await
        .expect("the scheduler and executor answer");
    assert_eq!(local.groups, 3);
    assert_eq!(shown(&remote), shown(&local));
    assert_eq!(remote.plan_hash, local.plan_hash);
    assert_eq!(remote.fields_touched, local.fields_touched);
    assert_eq!(remote.epsilon_spent, local.epsilon_spent);

    // Groups of one person each: all suppressed, counted alike.
    let sql = "SELECT card_no, count(*) AS n FROM bus GROUP BY card_no";
    let local = ask(&here, sql).await.unwrap();
    let remote = ask(&there, sql).await.unwrap();
    assert_eq!((remote.groups, remote.suppressed), (0, 20_000));
    assert_eq!((local.groups, local.suppressed), (0, 20_000));

    // The groups come back to this process: they are held within the query's memory limit
    // (here 64 KiB against 20 000 one-person groups), however much the cluster could compute.
    let engine = Ballista::new(&format!("df://127.0.0.1:{}", scheduler.port())).unwrap();
    let small = Limits {
        memory_bytes: 64 << 10,
        ..Limits::default()
    };
    let narrow = Sandbox::new(store::s3(&bucket).unwrap(), small)
        .unwrap()
        .with_engine(Arc::new(engine));
    let err = ask(&narrow, sql).await.unwrap_err();
    assert!(matches!(err, SandboxError::TooLarge(_)), "{err:?}");

    // A row-level select is refused before anything reaches the cluster.
    let err = ask(&there, "SELECT card_no, delay FROM bus")
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Refused(_)), "{err:?}");
}

#[tokio::test]
async fn a_query_on_a_ballista_cluster_that_is_not_there_fails_rather_than_running_here() {
    let dir = tempfile::tempdir().unwrap();
    let objects = store::directory(dir.path()).unwrap();
    let engine = Ballista::new(&format!("df://127.0.0.1:{}", free_port())).unwrap();
    let sandbox = Sandbox::new(objects, Limits::default())
        .unwrap()
        .with_engine(Arc::new(engine));
    sandbox
        .load_csv(
            "tenants/230100/resources/bus/v1/part-1.parquet",
            &fields(),
            csv(100, None).as_bytes(),
            2,
        )
        .await
        .unwrap();
    let err = ask(
        &sandbox,
        "SELECT stop_id, count(*) AS n FROM bus GROUP BY stop_id",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SandboxError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains("nothing was read"), "{err}");
}

#[test]
fn a_scheduler_is_named_by_a_df_url() {
    for url in [
        "http://scheduler:50050",
        "df://",
        "df://scheduler",
        "scheduler:50050",
    ] {
        assert!(Ballista::new(url).is_err(), "{url}");
    }
    assert!(Ballista::new("df://pdp-sandbox-scheduler:50050").is_ok());
}
