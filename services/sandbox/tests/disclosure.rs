//! The disclosure rules, each with a query that breaks it, on real Parquet files in a local
//! object store.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::array_value_to_string;
use object_store::local::LocalFileSystem;
use pdp_sandbox::{Limits, Refusal, Rules, Sandbox, SandboxError, Table};

/// 83 residents: 40 in Daoli, 40 in Nangang, 3 in Hulan; income personal, id card masked.
fn residents() -> RecordBatch {
    let mut district = Vec::new();
    let mut age = Vec::new();
    let mut income = Vec::new();
    let mut id_card = Vec::new();
    for (name, n) in [("Daoli", 40), ("Nangang", 40), ("Hulan", 3)] {
        for i in 0..n {
            district.push(name.to_string());
            age.push(20 + (i % 40) as i64);
            income.push(1000 * (i as i64 + 1));
            id_card.push(format!("2301{name}{i:04}"));
        }
    }
    let schema = Schema::new(vec![
        Field::new("district", DataType::Utf8, false),
        Field::new("age", DataType::Int64, false),
        Field::new("income", DataType::Int64, false),
        Field::new("id_card", DataType::Utf8, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(district)),
            Arc::new(Int64Array::from(age)),
            Arc::new(Int64Array::from(income)),
            Arc::new(StringArray::from(id_card)),
        ],
    )
    .unwrap()
}

/// Songbei: 21 residents aged 30 earning 5 000, and one aged 31 earning 77 777, the target of
/// the differencing attack.
fn songbei() -> RecordBatch {
    let mut age = vec![30_i64; 21];
    let mut income = vec![5000_i64; 21];
    age.push(31);
    income.push(77_777);
    let schema = Schema::new(vec![
        Field::new("district", DataType::Utf8, false),
        Field::new("age", DataType::Int64, false),
        Field::new("income", DataType::Int64, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(vec!["Songbei"; 22])),
            Arc::new(Int64Array::from(age)),
            Arc::new(Int64Array::from(income)),
        ],
    )
    .unwrap()
}

fn number(batch: &RecordBatch, column: &str, row: usize) -> f64 {
    let a = batch.column(batch.schema().index_of(column).unwrap());
    array_value_to_string(a, row).unwrap().parse().unwrap()
}

struct Fixture {
    sandbox: Sandbox,
    tables: Vec<Table>,
    dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    let sandbox = Sandbox::new(Arc::new(store), Limits::default()).unwrap();
    let location = "tenants/230100/resources/residents/v1/";
    sandbox.write(location, vec![residents()]).await.unwrap();
    sandbox
        .write("tenants/230100/resources/songbei/v1/", vec![songbei()])
        .await
        .unwrap();
    let tables = vec![
        Table {
            name: "songbei".into(),
            location: "tenants/230100/resources/songbei/v1/".into(),
            fields: vec!["district".into(), "age".into(), "income".into()],
            masked: Vec::new(),
            personal: vec!["income".into()],
        },
        Table {
            name: "residents".into(),
            location: location.into(),
            fields: vec![
                "district".into(),
                "age".into(),
                "income".into(),
                "id_card".into(),
            ],
            masked: vec!["id_card".into()],
            personal: vec!["income".into(), "id_card".into()],
        },
    ];
    Fixture {
        sandbox,
        tables,
        dir,
    }
}

impl Fixture {
    async fn ask(&self, sql: &str) -> Result<pdp_sandbox::Answer, SandboxError> {
        let rules = Rules {
            k: 10,
            epsilon: 1.0,
        };
        self.sandbox
            .query(&self.tables, sql, rules, "grant-1-secret")
            .await
    }
}

fn refusal(result: Result<pdp_sandbox::Answer, SandboxError>) -> Refusal {
    match result {
        Err(SandboxError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn strings(batch: &RecordBatch, column: usize) -> Vec<String> {
    let a = batch.column(column);
    (0..a.len())
        .map(|i| array_value_to_string(a, i).unwrap())
        .collect()
}

#[tokio::test]
async fn an_aggregate_leaves_and_small_groups_are_suppressed() {
    let f = fixture().await;
    let answer = f
        .ask(
            "SELECT district, count(*) AS residents, avg(income) AS mean_income \
             FROM residents GROUP BY district ORDER BY district",
        )
        .await
        .unwrap();
    assert_eq!(answer.groups, 2);
    assert_eq!(answer.suppressed, 1, "Hulan's 3 residents stay inside");
    let batch = &answer.batches[0];
    assert_eq!(strings(batch, 0), ["Daoli", "Nangang"]);
    assert_eq!(
        batch.num_columns(),
        3,
        "the hidden group size does not leave"
    );
    assert_eq!(answer.plan_hash.len(), 64);
    assert!(answer.fields_touched.iter().any(|f| f.ends_with(".income")));
}

#[tokio::test]
async fn rows_never_leave() {
    let f = fixture().await;
    for sql in [
        "SELECT * FROM residents",
        "SELECT district, income FROM residents",
        "SELECT DISTINCT id_card FROM residents",
    ] {
        let r = refusal(f.ask(sql).await);
        assert!(matches!(r, Refusal::RowLevel(_)), "{sql}: {r}");
        assert!(r.to_string().contains("第二十二条"), "{r}");
    }
    // A row-level function over an aggregate's output is no group key nor aggregate either.
    let r = refusal(
        f.ask("SELECT upper(district), count(*) FROM residents GROUP BY district")
            .await,
    );
    assert!(matches!(r, Refusal::NotAggregated(_)), "{r}");
}

#[tokio::test]
async fn one_record_values_of_personal_information_are_refused() {
    let f = fixture().await;
    let r = refusal(
        f.ask("SELECT district, max(income) FROM residents GROUP BY district")
            .await,
    );
    assert_eq!(
        r,
        Refusal::OrderStatisticOfPersonal {
            function: "max".into(),
            field: "income".into()
        }
    );
    // On a field that is no personal information, MAX is an ordinary statistic.
    let answer = f
        .ask("SELECT district, max(age) FROM residents GROUP BY district")
        .await
        .unwrap();
    assert_eq!(answer.groups, 2);
    let r = refusal(
        f.ask("SELECT district, array_agg(income) FROM residents GROUP BY district")
            .await,
    );
    assert!(matches!(r, Refusal::AggregateNotAllowed(_)), "{r}");
}

#[tokio::test]
async fn a_filter_that_singles_someone_out_is_refused() {
    let f = fixture().await;
    // The differencing pair: everyone in Daoli, and everyone in Daoli but one id card.
    let all = f
        .ask(
            "SELECT district, sum(income) FROM residents \
             WHERE district = 'Daoli' GROUP BY district",
        )
        .await
        .unwrap();
    assert_eq!(all.groups, 1);
    let r = refusal(
        f.ask(
            "SELECT district, sum(income) FROM residents \
             WHERE district = 'Daoli' AND id_card <> 'x' GROUP BY district",
        )
        .await,
    );
    assert_eq!(r, Refusal::FilterNotGrouped("id_card".into()));
    // Nor through a join's condition, nor inside a subquery.
    for sql in [
        "SELECT a.district, sum(a.income) FROM residents a JOIN residents b \
         ON a.district = b.district AND a.id_card <> 'x' GROUP BY a.district",
        "SELECT district, sum(income) FROM residents WHERE district IN \
         (SELECT district FROM residents WHERE id_card <> 'x') GROUP BY district",
    ] {
        let r = refusal(f.ask(sql).await);
        assert_eq!(r, Refusal::FilterNotGrouped("id_card".into()), "{sql}");
    }
    // Grouping by the identifying field instead makes every group one record: all suppressed.
    let answer = f
        .ask(
            "SELECT district, id_card, sum(income) FROM residents \
             WHERE district = 'Daoli' GROUP BY district, id_card",
        )
        .await
        .unwrap();
    assert_eq!((answer.groups, answer.suppressed), (0, 40));
}

#[tokio::test]
async fn masked_fields_group_but_never_show() {
    let f = fixture().await;
    // Counting distinct id cards works on their digests.
    let answer = f
        .ask("SELECT district, count(DISTINCT id_card) AS people FROM residents GROUP BY district")
        .await
        .unwrap();
    assert_eq!(answer.groups, 2);
    // Grouped by the digest, every group is one record: nothing leaves.
    let by_card = f
        .ask("SELECT id_card, count(*) FROM residents GROUP BY id_card")
        .await
        .unwrap();
    assert_eq!((by_card.groups, by_card.suppressed), (0, 83));
}

#[tokio::test]
async fn nothing_writes_or_reads_outside() {
    let f = fixture().await;
    for sql in [
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "COPY residents TO '/tmp/out.csv'",
        "CREATE TABLE copy AS SELECT * FROM residents",
        "EXPLAIN SELECT count(*) FROM residents",
    ] {
        let result = f.ask(sql).await;
        assert!(
            matches!(
                result,
                Err(SandboxError::Refused(Refusal::NotAQuery(_))) | Err(SandboxError::Invalid(_))
            ),
            "{sql}: {result:?}"
        );
    }
    // A table outside the grant does not exist.
    let result = f.ask("SELECT count(*) FROM other").await;
    assert!(
        matches!(result, Err(SandboxError::Invalid(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_differencing_attack_gets_noise_not_a_person() {
    let f = fixture().await;
    let total = f
        .ask("SELECT district, sum(income) AS total FROM songbei GROUP BY district")
        .await
        .unwrap();
    let by_age = f
        .ask(
            "SELECT district, age, sum(income) AS total FROM songbei \
             GROUP BY district, age ORDER BY age",
        )
        .await
        .unwrap();
    // Aged 31 is one person: suppressed. Without noise, the district's total minus the
    // released age group would be that person's income exactly.
    assert_eq!((by_age.groups, by_age.suppressed), (1, 1));
    let estimate = number(&total.batches[0], "total", 0) - number(&by_age.batches[0], "total", 0);
    assert!(
        (estimate - 77_777.0).abs() > 777.0,
        "the attack recovered {estimate} for 77 777"
    );
    assert!(total.epsilon_spent > 0.0);
    // Asking again gets the same answer: repetition averages nothing away.
    let again = f
        .ask("SELECT district, sum(income) AS total FROM songbei GROUP BY district")
        .await
        .unwrap();
    assert_eq!(
        number(&again.batches[0], "total", 0),
        number(&total.batches[0], "total", 0)
    );
}

#[tokio::test]
async fn counts_are_near_and_having_cannot_probe_values() {
    let f = fixture().await;
    let answer = f
        .ask("SELECT district, count(*) AS n FROM residents GROUP BY district ORDER BY district")
        .await
        .unwrap();
    for row in 0..2 {
        let n = number(&answer.batches[0], "n", row);
        assert!(
            (n - 40.0).abs() <= 20.0,
            "a count of 40 with noise of scale 1 reads {n}"
        );
    }
    let r = refusal(
        f.ask(
            "SELECT district, count(*) AS n FROM residents \
             GROUP BY district HAVING count(*) > 30",
        )
        .await,
    );
    assert!(matches!(r, Refusal::HavingOnAggregate(_)), "{r}");
    // HAVING on a group key leaves whole groups in or out.
    let daoli = f
        .ask(
            "SELECT district, count(*) AS n FROM residents \
             GROUP BY district HAVING district = 'Daoli'",
        )
        .await
        .unwrap();
    assert_eq!(daoli.groups, 1);
}

#[tokio::test]
async fn a_runaway_query_is_cancelled_with_a_clear_error() {
    let f = fixture().await;
    let rules = Rules {
        k: 10,
        epsilon: 1.0,
    };
    let sql = "SELECT a.district, count(*) FROM residents a JOIN residents b \
               ON a.district = b.district GROUP BY a.district";
    let store = LocalFileSystem::new_with_prefix(f.dir.path()).unwrap();
    let hurried = Sandbox::new(
        Arc::new(store),
        Limits {
            memory_bytes: 256 << 20,
            time: std::time::Duration::from_nanos(1),
        },
    )
    .unwrap();
    let result = hurried.query(&f.tables, sql, rules, "s").await;
    assert!(
        matches!(result, Err(SandboxError::TimedOut(_))),
        "{result:?}"
    );
    let store = LocalFileSystem::new_with_prefix(f.dir.path()).unwrap();
    let starved = Sandbox::new(
        Arc::new(store),
        Limits {
            memory_bytes: 1024,
            time: std::time::Duration::from_secs(30),
        },
    )
    .unwrap();
    let result = starved.query(&f.tables, sql, rules, "s").await;
    assert!(
        matches!(result, Err(SandboxError::TooLarge(_))),
        "{result:?}"
    );
    // ε is a positive number.
    let result = f
        .sandbox
        .query(
            &f.tables,
            sql,
            Rules {
                k: 10,
                epsilon: 0.0,
            },
            "s",
        )
        .await;
    assert!(
        matches!(result, Err(SandboxError::Invalid(_))),
        "{result:?}"
    );
}
