//! What a table's history looks like to sinks: unchanged TOAST values, ALTER TABLE mid-stream,
//! TRUNCATE.

use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use ebb_cdc::sink::{DynSink, NdjsonSink, ParquetLakeSink, read_manifest};
use ebb_testkit::PgCluster;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use serde_json::{Value, json};

use crate::lake::lake_rows;
use crate::support::{spec, start, wait_for, wait_lines};

fn sinks(dir: &std::path::Path, out: &std::path::Path) -> Vec<Box<dyn DynSink>> {
    let mut lake = ParquetLakeSink::open_url("lake", dir).unwrap();
    lake.set_roll_interval(Duration::from_millis(50));
    vec![
        Box::new(NdjsonSink::file(out.to_path_buf())),
        Box::new(lake),
    ]
}

async fn wait_lake_rows(lake: &std::path::Path, n: usize) -> Vec<RecordBatch> {
    wait_for(
        &format!("{n} rows in the lake"),
        Duration::from_secs(30),
        || async {
            let batches = lake_rows(lake).await;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            (rows >= n).then_some(batches)
        },
    )
    .await
}

#[tokio::test]
async fn unchanged_toast_values_are_filled_or_marked_never_null() {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    // EXTERNAL storage: the 10 kB values are stored out of line (TOASTed), uncompressed.
    client
        .batch_execute(
            "CREATE TABLE doc_full (id int PRIMARY KEY, body text, n int);
             CREATE TABLE doc_key (id int PRIMARY KEY, body text, n int);
             ALTER TABLE doc_full ALTER body SET STORAGE EXTERNAL;
             ALTER TABLE doc_key ALTER body SET STORAGE EXTERNAL;
             ALTER TABLE doc_full REPLICA IDENTITY FULL;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("docs.ndjson");
    let running = start(
        spec(&db, "toast", &["doc_full", "doc_key"], dir.path()),
        dir.path(),
        sinks(dir.path(), &out),
    );
    client
        .batch_execute(
            "INSERT INTO doc_full VALUES (1, repeat('f', 10000), 0);
             INSERT INTO doc_key VALUES (1, repeat('k', 10000), 0);",
        )
        .await
        .unwrap();
    wait_lines(&out, 2).await;
    // Updates that leave the TOASTed body alone: PostgreSQL does not send it.
    client
        .batch_execute(
            "UPDATE doc_full SET n = 1 WHERE id = 1;
             UPDATE doc_key SET n = 1 WHERE id = 1;",
        )
        .await
        .unwrap();
    let lines = wait_lines(&out, 4).await;
    let lake = wait_lake_rows(&dir.path().join("lake"), 4).await;
    running.stop().await;

    let update = |table: &str| -> Value {
        lines
            .iter()
            .find(|l| l["_ebb_table"] == table && l["_ebb_op"] == "update")
            .unwrap()
            .clone()
    };
    // REPLICA IDENTITY FULL: filled from the old image.
    let full = update("public.doc_full");
    assert_eq!(full["body"], json!("f".repeat(10000)));
    assert_eq!(full["n"], 1);
    assert_eq!(full["_ebb_changed"], json!(["n"]));
    assert!(full.get("_ebb_unchanged_toast").is_none_or(Value::is_null));
    // Default identity: no old image; the value is marked unchanged, not passed off as NULL.
    let key = update("public.doc_key");
    assert_eq!(key["_ebb_unchanged_toast"], json!(["body"]), "{key}");
    assert!(key["body"].is_null());
    assert_eq!(key["_ebb_changed"], json!(["id", "n"]));
    // The inserts carry no marker.
    for l in lines.iter().filter(|l| l["_ebb_op"] == "insert") {
        assert!(l.get("_ebb_unchanged_toast").is_none_or(Value::is_null));
    }

    // The lake says the same.
    let mut marked = Vec::new();
    for b in &lake {
        let toast = b
            .column_by_name("_ebb_unchanged_toast")
            .unwrap()
            .as_list::<i32>();
        let body = b.column_by_name("body").unwrap().as_string::<i32>();
        for r in 0..b.num_rows() {
            if toast.is_valid(r) {
                let cols = toast.value(r);
                let cols = cols.as_string::<i32>();
                marked.push(cols.value(0).to_string());
                assert!(body.is_null(r));
            } else {
                assert!(body.is_valid(r), "a body is NULL without a marker");
                assert_eq!(body.value(r).len(), 10000);
            }
        }
    }
    assert_eq!(marked, ["body"]);
}

#[tokio::test]
async fn schema_changes_mid_stream_reach_the_sinks() {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute("CREATE TABLE ev (id int PRIMARY KEY, a text);")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ev.ndjson");
    let running = start(
        spec(&db, "ev", &["ev"], dir.path()),
        dir.path(),
        sinks(dir.path(), &out),
    );
    client
        .batch_execute("INSERT INTO ev VALUES (1, 'one')")
        .await
        .unwrap();
    wait_lines(&out, 1).await;
    client
        .batch_execute(
            "ALTER TABLE ev ADD COLUMN b int;
             INSERT INTO ev VALUES (2, 'two', 5);
             ALTER TABLE ev DROP COLUMN a;
             INSERT INTO ev VALUES (3, 7);
             ALTER TABLE ev ALTER COLUMN b TYPE bigint;
             INSERT INTO ev VALUES (4, 9000000000);
             UPDATE ev SET b = b + 1 WHERE id = 2;",
        )
        .await
        .unwrap();
    let lines = wait_lines(&out, 5).await;
    let lake = wait_lake_rows(&dir.path().join("lake"), 5).await;
    running.stop().await;

    let by_id = |id: i64, op: &str| -> Value {
        lines
            .iter()
            .find(|l| l["id"] == id && l["_ebb_op"] == op)
            .unwrap_or_else(|| panic!("no {op} of {id} in {lines:#?}"))
            .clone()
    };
    let one = by_id(1, "insert");
    assert_eq!(one["a"], "one");
    assert!(one.get("b").is_none());
    let two = by_id(2, "insert");
    assert_eq!(
        (two["a"].clone(), two["b"].clone()),
        (json!("two"), json!(5))
    );
    let three = by_id(3, "insert");
    assert!(
        three.get("a").is_none(),
        "dropped column still sent: {three}"
    );
    assert_eq!(three["b"], 7);
    assert_eq!(by_id(4, "insert")["b"], 9_000_000_000_i64);
    assert_eq!(by_id(2, "update")["b"], 6);

    // The lake: one file per shape, each with the table's columns at the time.
    let store = LocalFileSystem::new_with_prefix(dir.path().join("lake")).unwrap();
    let files: usize = read_manifest(&store, &Path::default())
        .await
        .unwrap()
        .iter()
        .map(|e| e.files.len())
        .sum();
    assert!(files >= 4, "{files} files for 4 shapes");
    let shapes: Vec<(Vec<String>, Vec<i64>)> = lake
        .iter()
        .map(|b| {
            let names: Vec<String> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| !n.starts_with("_ebb_"))
                .collect();
            let b_col = b.column_by_name("b").map(|c| match c.data_type() {
                DataType::Int32 => c
                    .as_primitive::<Int32Type>()
                    .values()
                    .iter()
                    .map(|v| i64::from(*v))
                    .collect(),
                DataType::Int64 => c.as_primitive::<Int64Type>().values().to_vec(),
                other => panic!("b is {other}"),
            });
            (names, b_col.unwrap_or_default())
        })
        .collect();
    assert!(
        shapes.contains(&(vec!["id".into(), "a".into()], vec![])),
        "{shapes:?}"
    );
    assert!(shapes.contains(&(vec!["id".into(), "a".into(), "b".into()], vec![5])));
    assert!(shapes.contains(&(vec!["id".into(), "b".into()], vec![7])));
    assert!(
        lake.iter().any(|b| b
            .column_by_name("b")
            .is_some_and(|c| c.data_type() == &DataType::Int64)),
        "the retyped column is bigint in the lake"
    );
}

#[tokio::test]
async fn truncate_reaches_the_sinks_in_order() {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE tr (id int PRIMARY KEY);
             INSERT INTO tr VALUES (1), (2);",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tr.ndjson");
    let running = start(
        spec(&db, "tr", &["tr"], dir.path()),
        dir.path(),
        sinks(dir.path(), &out),
    );
    wait_lines(&out, 2).await;
    client
        .batch_execute(
            "INSERT INTO tr VALUES (3);
             BEGIN; INSERT INTO tr VALUES (4); TRUNCATE tr; INSERT INTO tr VALUES (5); COMMIT;",
        )
        .await
        .unwrap();
    let lines = wait_lines(&out, 6).await;
    let lake_dir = dir.path().join("lake");
    let store = LocalFileSystem::new_with_prefix(&lake_dir).unwrap();
    let entries = wait_for(
        "the truncate in the lake",
        Duration::from_secs(30),
        || async {
            let entries = read_manifest(&store, &Path::default()).await.unwrap();
            let rows: u64 = entries.iter().flat_map(|e| &e.files).map(|f| f.rows).sum();
            (rows >= 5 && entries.iter().any(|e| !e.truncates.is_empty())).then_some(entries)
        },
    )
    .await;
    running.stop().await;

    let ops: Vec<(String, Value)> = lines
        .iter()
        .map(|l| (l["_ebb_op"].as_str().unwrap().to_string(), l["id"].clone()))
        .collect();
    assert_eq!(
        ops[2..],
        [
            ("insert".to_string(), json!(3)),
            ("insert".to_string(), json!(4)),
            ("truncate".to_string(), Value::Null),
            ("insert".to_string(), json!(5)),
        ]
    );
    let t = &lines[4];
    assert_eq!(t["_ebb_table"], "public.tr");
    assert_eq!(t["_ebb_lsn"], lines[3]["_ebb_lsn"]);
    assert!(lines[3]["_ebb_seq"].as_u64() < t["_ebb_seq"].as_u64());
    assert!(t["_ebb_seq"].as_u64() < lines[5]["_ebb_seq"].as_u64());

    // Replaying the lake with its truncates leaves exactly the source table.
    let truncates: Vec<_> = entries.iter().flat_map(|e| e.truncates.clone()).collect();
    assert_eq!(truncates.len(), 1);
    let (t_lsn, t_seq) = (truncates[0].lsn, truncates[0].seq);
    let mut ids: Vec<i32> = Vec::new();
    for b in lake_rows(&lake_dir).await {
        let id = b.column_by_name("id").unwrap().as_primitive::<Int32Type>();
        let lsn = b
            .column_by_name("_ebb_lsn")
            .unwrap()
            .as_primitive::<arrow::datatypes::UInt64Type>();
        let seq = b
            .column_by_name("_ebb_seq")
            .unwrap()
            .as_primitive::<arrow::datatypes::UInt64Type>();
        for r in 0..b.num_rows() {
            if (lsn.value(r), seq.value(r)) > (t_lsn, t_seq) {
                ids.push(id.value(r));
            }
        }
    }
    assert_eq!(ids, [5]);
}
