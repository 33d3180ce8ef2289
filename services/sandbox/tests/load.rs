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
