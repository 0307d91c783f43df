//! The Parquet lake: files committed with a manifest, crash leftovers removed.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use ebb_cdc::sink::{NdjsonSink, ParquetLakeSink, read_manifest};
use ebb_testkit::PgCluster;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::support::{spec, start, wait_for, wait_lines};

/// Every row of every file the manifest lists.
pub async fn lake_rows(dir: &std::path::Path) -> Vec<RecordBatch> {
    let store = LocalFileSystem::new_with_prefix(dir).unwrap();
    let entries = read_manifest(&store, &Path::default()).await.unwrap();
    let mut out = Vec::new();
    for e in entries {
        for f in e.files {
            let bytes = std::fs::read(dir.join(&f.path)).unwrap();
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
                bytes::Bytes::from(bytes),
                1024,
            )
            .unwrap();
            for b in reader {
                out.push(b.unwrap());
            }
        }
    }
    out
}

#[tokio::test]
async fn parquet_lake_commits_files_with_a_manifest_and_survives_restarts() {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, total int);
             INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 100) g;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let ndjson = dir.path().join("orders.ndjson");
    let sinks = || {
        let mut lake_sink = ParquetLakeSink::open_url("lake", dir.path()).unwrap();
        lake_sink.set_roll_interval(std::time::Duration::from_millis(50));
        vec![
            Box::new(lake_sink) as Box<dyn ebb_cdc::sink::DynSink>,
            Box::new(NdjsonSink::file(ndjson.clone())),
        ]
    };
    let running = start(
        spec(&db, "orders", &["orders"], dir.path()),
        dir.path(),
        sinks(),
    );
    // The copy first, then changes.
    wait_lines(&ndjson, 100).await;
    client
        .batch_execute(
            "UPDATE orders SET total = 0 WHERE id <= 5; DELETE FROM orders WHERE id = 100;",
        )
        .await
        .unwrap();
    wait_lines(&ndjson, 106).await;
    let count = || async {
        let rows: usize = lake_rows(&lake)
            .await
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        (rows == 106).then_some(())
    };
    wait_for(
        "106 rows in the lake",
        std::time::Duration::from_secs(20),
        count,
    )
    .await;
    running.stop().await;

    // A file no manifest lists (as a crash between upload and commit leaves) is removed.
    let orphan = lake.join("data/public.orders/99999999999999999999-0.parquet");
    std::fs::write(&orphan, b"half").unwrap();
    let running = start(
        spec(&db, "orders", &["orders"], dir.path()),
        dir.path(),
        sinks(),
    );
    client
        .batch_execute("INSERT INTO orders VALUES (200, 1)")
        .await
        .unwrap();
    wait_lines(&ndjson, 107).await;
    let count = || async {
        let rows: usize = lake_rows(&lake)
            .await
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        (rows == 107).then_some(())
    };
    wait_for(
        "107 rows in the lake",
        std::time::Duration::from_secs(20),
        count,
    )
    .await;
    running.stop().await;
    assert!(!orphan.exists());

    let store = Arc::new(LocalFileSystem::new_with_prefix(&lake).unwrap()) as Arc<dyn ObjectStore>;
    let entries = read_manifest(store.as_ref(), &Path::default())
        .await
        .unwrap();
    assert!(entries.len() >= 2);
    for w in entries.windows(2) {
        assert!(w[0].position.commit_lsn <= w[1].position.commit_lsn);
    }
    // Every file's recorded LSN range matches its rows.
    for e in &entries {
        for f in &e.files {
            let bytes = std::fs::read(lake.join(&f.path)).unwrap();
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
                bytes::Bytes::from(bytes),
                1024,
            )
            .unwrap();
            for b in reader {
                let b = b.unwrap();
                let lsn = b
                    .column_by_name("_ebb_lsn")
                    .unwrap()
                    .as_primitive::<UInt64Type>();
                assert!(
                    lsn.values()
                        .iter()
                        .all(|l| (f.min_lsn..=f.max_lsn).contains(l))
                );
            }
        }
    }
}
