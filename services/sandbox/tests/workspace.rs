//! The workspace: a derived table stays inside, row level, labelled by what it read, and is
//! read only under the same disclosure control; a failure over the data never quotes it.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use object_store::local::LocalFileSystem;
use pdp_sandbox::engine::{Derived, Outcome};
use pdp_sandbox::{Limits, Refusal, Rules, Sandbox, SandboxError, Table};

const ROOT: &str = "tenants/230100/grants/g1/workspace";
const RULES: Rules = Rules {
    k: 10,
    epsilon: 1.0,
};

/// 60 people, 30 in each of two districts, aged 20 to 49; income is personal.
fn people() -> RecordBatch {
    let (mut name, mut district, mut age, mut income) = (vec![], vec![], vec![], vec![]);
    for i in 0..60_i64 {
        name.push(format!("Resident{i:04}"));
        district.push(if i % 2 == 0 { "Daoli" } else { "Nangang" });
        age.push(20 + i / 2);
        income.push(1000 + 10 * i);
    }
    let schema = Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("district", DataType::Utf8, false),
        Field::new("age", DataType::Int64, false),
        Field::new("income", DataType::Int64, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(name)),
            Arc::new(StringArray::from(district)),
            Arc::new(Int64Array::from(age)),
            Arc::new(Int64Array::from(income)),
        ],
    )
    .unwrap()
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
    let location = "tenants/230100/resources/people/v1/";
    sandbox.write(location, vec![people()]).await.unwrap();
    let tables = vec![Table {
        name: "people".into(),
        location: location.into(),
        fields: vec![
            "name".into(),
            "district".into(),
            "age".into(),
            "income".into(),
        ],
        masked: Vec::new(),
        personal: vec!["income".into()],
    }];
    Fixture {
        sandbox,
        tables,
        dir,
    }
}

impl Fixture {
    async fn run(&self, sql: &str) -> Result<Outcome, SandboxError> {
        self.sandbox
            .run(&self.tables, sql, RULES, "grant-secret", Some(ROOT))
            .await
    }

    async fn derive(&self, sql: &str) -> Derived {
        match self.run(sql).await.unwrap() {
            Outcome::Derived(d) => d,
            Outcome::Answer(a) => panic!("expected a derived table, got an answer {a:?}"),
        }
    }

    /// The derived table as a later statement reads it.
    fn keep(&mut self, d: &Derived) {
        let fields: Vec<String> = d.columns.iter().map(|(n, _)| n.clone()).collect();
        self.tables.push(Table {
            name: format!("workspace.{}", d.name),
            location: d.location.clone(),
            personal: if d.personal {
                fields.clone()
            } else {
                Vec::new()
            },
            fields,
            masked: Vec::new(),
        });
    }

    fn files_under(&self, location: &str) -> usize {
        fn count(dir: &std::path::Path) -> usize {
            std::fs::read_dir(dir).map_or(0, |entries| {
                entries
                    .flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            count(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
        }
        count(&self.dir.path().join(location))
    }
}

#[tokio::test]
async fn a_derived_table_stays_inside_and_answers_only_as_aggregates() {
    let mut f = fixture().await;
    let adults = f
        .derive(
            "CREATE TABLE workspace.adults AS SELECT district, income FROM people WHERE age >= 30",
        )
        .await;
    assert_eq!(adults.name, "adults");
    assert_eq!(adults.inputs, vec!["people".to_string()]);
    assert!(adults.personal, "it read a table with personal information");
    assert_eq!(
        adults
            .columns
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["district", "income"]
    );
    assert_eq!(
        adults.rows, 40,
        "the audit record's count: 20 in each district"
    );
    assert!(adults.location.starts_with(ROOT), "{}", adults.location);
    assert!(f.files_under(&adults.location) > 0);
    f.keep(&adults);

    // Read under the same control: groups of at least k leave, rows never.
    let Outcome::Answer(answer) = f
        .run("SELECT district, count(*) AS n FROM workspace.adults GROUP BY district")
        .await
        .unwrap()
    else {
        panic!("expected an answer");
    };
    assert_eq!(answer.groups, 2);
    assert_eq!(
        answer.fields_touched,
        ["workspace.adults.district"],
        "the audit names the table and the columns read"
    );
    assert_eq!(
        adults.fields_touched,
        ["people.age", "people.district", "people.income"]
    );
    for sql in [
        "SELECT * FROM workspace.adults",
        "SELECT district, max(income) FROM workspace.adults GROUP BY district",
    ] {
        let result = f.run(sql).await;
        assert!(
            matches!(
                result,
                Err(SandboxError::Refused(
                    Refusal::RowLevel(_) | Refusal::OrderStatisticOfPersonal { .. }
                ))
            ),
            "{sql}: {result:?}"
        );
    }

    // A derivation of derivations; one that read no personal field carries no such label.
    let ages = f
        .derive("CREATE TABLE workspace.ages AS SELECT district, age FROM people")
        .await;
    assert!(!ages.personal);
    f.keep(&ages);
    let joined = f
        .derive(
            "CREATE TABLE workspace.joined AS SELECT a.district, a.age, b.income \
             FROM workspace.ages a JOIN workspace.adults b ON a.district = b.district",
        )
        .await;
    assert_eq!(
        joined.inputs,
        vec!["workspace.adults".to_string(), "workspace.ages".to_string()]
    );
    assert!(joined.personal);

    // Only into the workspace, and only where the host gives one.
    let result = f
        .run("CREATE TABLE elsewhere AS SELECT district FROM people")
        .await;
    assert!(
        matches!(&result, Err(SandboxError::Invalid(m)) if m.contains("workspace.<name>")),
        "{result:?}"
    );
    // A name is no path: nothing is written outside the workspace.
    let result = f
        .run(r#"CREATE TABLE workspace."../../resources/people/v1" AS SELECT district FROM people"#)
        .await;
    assert!(
        matches!(&result, Err(SandboxError::Invalid(m)) if m.contains("lower-case")),
        "{result:?}"
    );
    assert_eq!(
        f.files_under("tenants/230100/resources/people/v1"),
        1,
        "the resource's one file, nothing added"
    );
    let result = f
        .sandbox
        .query(
            &f.tables,
            "CREATE TABLE workspace.x AS SELECT district FROM people",
            RULES,
            "grant-secret",
        )
        .await;
    assert!(
        matches!(result, Err(SandboxError::Refused(Refusal::NotAQuery(_)))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_failure_over_the_data_does_not_quote_it_and_leaves_nothing() {
    let f = fixture().await;
    let result = f
        .run("SELECT CAST(name AS BIGINT) AS n, count(*) FROM people GROUP BY CAST(name AS BIGINT)")
        .await;
    let Err(e) = result else {
        panic!("a name is no number: {result:?}");
    };
    assert!(matches!(e, SandboxError::Failed), "{e:?}");
    assert!(!e.to_string().contains("Resident"), "{e}");

    let result = f
        .run("CREATE TABLE workspace.bad AS SELECT CAST(name AS BIGINT) AS n FROM people")
        .await;
    assert!(matches!(result, Err(SandboxError::Failed)), "{result:?}");
    assert_eq!(f.files_under(ROOT), 0, "nothing of the failed table stays");
}
