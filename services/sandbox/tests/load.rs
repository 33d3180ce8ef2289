//! Loading CSV into the platform: checked against the registered fields, refused whole.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

use std::sync::Arc;

mod common;

use common::{csv, fields};
use object_store::local::LocalFileSystem;
use pdp_sandbox::{Limits, Rules, Sandbox, SandboxError, Table};

#[tokio::test]
async fn a_load_that_fits_is_queried_and_one_that_does_not_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let sandbox = Sandbox::new(store, Limits::default()).unwrap();
    let location = "tenants/230100/resources/bus/v1/";
    // Large enough for several batches: memory holds one at a time.
    let loaded = sandbox
        .load_csv(location, &fields(), csv(20_000, None).as_bytes(), 2)
        .await
        .unwrap();
    assert_eq!(loaded.rows, 20_000);
    let table = Table {
        name: "bus".into(),
        location: location.into(),
        fields: vec!["stop_id".into(), "delay".into()],
        masked: Vec::new(),
        personal: Vec::new(),
    };
    let rules = Rules {
        k: 10,
        epsilon: 1.0,
    };
    let answer = sandbox
        .query(
            std::slice::from_ref(&table),
            "SELECT stop_id, count(*) FROM bus GROUP BY stop_id",
            rules,
            "s",
        )
        .await
        .unwrap();
    assert_eq!(answer.groups, 3);

    // A value that does not fit its field refuses the whole load, naming the value.
    let broken = "tenants/230100/resources/bus/v2/";
    let err = sandbox
        .load_csv(broken, &fields(), csv(20_000, Some(15_000)).as_bytes(), 2)
        .await
        .unwrap_err();
    let SandboxError::Rejected(why) = &err else {
        panic!("{err:?}");
    };
    // Data row 15 000 is line 15 002: the header is line 1.
    assert!(
        why.contains("line 15002") && why.contains("`delay`") && why.contains("`soon`"),
        "{why}"
    );
    assert!(
        why.contains("nothing was loaded") && !why.contains("C15000"),
        "{why}"
    );
    // Nothing of it is left in the store, staged or not.
    let left: Vec<_> = walk(&dir.path().join(broken));
    assert!(left.is_empty(), "{left:?}");

    // The header names the registered fields, no more, no fewer.
    let err = sandbox
        .load_csv(
            "v3/",
            &fields(),
            "delay,stop_id,colour\n1,S1,red\n".as_bytes(),
            2,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("card_no") && err.to_string().contains("colour"),
        "{err}"
    );
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// A Parquet file's dates may come as text: a text that is no date refuses the file, naming its
/// row (over the whole file, across batches) and field, never the value; a good file loads with
/// the registered types.
#[tokio::test]
async fn a_parquet_file_is_converted_to_the_registered_types_or_refused_by_row() {
    use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use datafusion::parquet::arrow::ArrowWriter;
    use pdp_sandbox::load::Field;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let sandbox = Sandbox::new(store, Limits::default()).unwrap();
    let fields = vec![
        Field {
            name: "day".into(),
            kind: "date".into(),
            personal: false,
        },
        Field {
            name: "visits".into(),
            kind: "integer".into(),
            personal: false,
        },
    ];
    let file = |bad: Option<usize>| {
        let days: Vec<String> = (0..30_000)
            .map(|k| {
                if Some(k) == bad {
                    "Zhang San".to_string()
                } else {
                    format!("2026-01-{:02}", k % 28 + 1)
                }
            })
            .collect();
        let batch = RecordBatch::try_from_iter([
            (
                "visits",
                Arc::new(Int64Array::from_iter_values(0..30_000)) as ArrayRef,
            ),
            ("day", Arc::new(StringArray::from(days)) as ArrayRef),
        ])
        .unwrap();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    };
    let load = |bytes: Vec<u8>, at: &'static str| {
        let sandbox = sandbox.clone();
        let fields = fields.clone();
        async move {
            let mut spool = sandbox.spool();
            spool.write(bytes).await.unwrap();
            let spooled = spool.finish().await.unwrap();
            let loaded = sandbox.load_parquet(&spooled, at, &fields).await;
            spooled.discard().await;
            loaded
        }
    };
    let err = load(file(Some(20_000)), "clinic/v1/part.parquet")
        .await
        .unwrap_err();
    let said = err.to_string();
    assert!(said.contains("row 20001, field `day`"), "{said}");
    assert!(
        !said.contains("Zhang San"),
        "the value never leaves: {said}"
    );
    assert!(!dir.path().join("clinic/v1/part.parquet").exists());
    let loaded = load(file(None), "clinic/v1/part.parquet").await.unwrap();
    assert_eq!(loaded.rows, 30_000);
    let table = Table {
        name: "clinic".into(),
        location: "clinic/v1/".into(),
        fields: vec!["day".into(), "visits".into()],
        masked: Vec::new(),
        personal: Vec::new(),
    };
    let rules = Rules {
        k: 10,
        epsilon: 1.0,
    };
    // Dates now: a date function works on them.
    let answer = sandbox
        .query(
            &[table],
            "SELECT date_part('day', day) AS d, count(*) AS n FROM clinic GROUP BY d",
            rules,
            "s",
        )
        .await
        .unwrap();
    assert_eq!(answer.groups, 28);
    // Nothing left in staging.
    let staged = std::fs::read_dir(dir.path().join("staging"))
        .map(Iterator::count)
        .unwrap_or(0);
    assert_eq!(staged, 0);
}
