//! When things go wrong: an invalidated slot, an interrupted initial copy, a slot that lags.

use std::sync::Arc;
use std::time::Duration;

use ebb_cdc::CdcError;
use ebb_cdc::checkpoint::{CheckpointStore, FileCheckpointStore};
use ebb_cdc::pipeline::{Pipeline, drop_pipeline};
use ebb_cdc::sink::{DynSink, NdjsonSink};
use ebb_testkit::PgCluster;

use crate::support::{
    ndjson, replay, spec, start, start_watched, table_rows, wait_for, wait_lines,
};

const COLUMNS: &[&str] = &["id", "v"];

#[tokio::test]
async fn an_invalidated_slot_stops_the_pipeline_and_a_new_snapshot_recovers() {
    let cluster = PgCluster::builder()
        .setting("max_slot_wal_keep_size", "1MB")
        .start()
        .unwrap();
    let db = cluster.fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE acc (id int PRIMARY KEY, v int);
             CREATE TABLE filler (id int, pad text);
             INSERT INTO acc SELECT g, g FROM generate_series(1, 10) g;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("acc.ndjson");
    let sinks = || vec![Box::new(NdjsonSink::file(out.clone())) as Box<dyn DynSink>];
    let s = spec(&db, "inv", &["acc"], dir.path());
    let running = start(s.clone(), dir.path(), sinks());
    wait_lines(&out, 10).await;

    // An open transaction on a published table holds the slot's restart_lsn back while
    // other tables write far more WAL than max_slot_wal_keep_size lets the slot keep.
    let holder = db.connect().await;
    holder
        .batch_execute("BEGIN; INSERT INTO acc VALUES (100, 100);")
        .await
        .unwrap();
    wait_for(
        "the slot to be invalidated",
        Duration::from_secs(120),
        || async {
            client
            .batch_execute(
                "INSERT INTO filler SELECT g, repeat('x', 1000) FROM generate_series(1, 5000) g;
                 SELECT pg_switch_wal();
                 CHECKPOINT;",
            )
            .await
            .unwrap();
            let status: Option<String> = client
                .query_one(
                    "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'inv_slot'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (status.as_deref() == Some("lost")).then_some(())
        },
    )
    .await;
    holder.batch_execute("COMMIT").await.unwrap();
    client
        .batch_execute("UPDATE acc SET v = -v WHERE id <= 3")
        .await
        .unwrap();

    // The running pipeline stops with the error that says what to do.
    let err = tokio::time::timeout(Duration::from_secs(60), running.join())
        .await
        .expect("the pipeline stops")
        .unwrap_err();
    assert!(matches!(err, CdcError::SlotInvalidated { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("inv_slot") && message.contains("ebb cdc drop inv"),
        "{message}"
    );
    // A restart says the same, before doing anything.
    let err = start(s.clone(), dir.path(), sinks())
        .join()
        .await
        .unwrap_err();
    assert!(matches!(err, CdcError::SlotInvalidated { .. }), "{err:?}");

    // The documented recovery: drop, run again: a new slot, a new copy of the tables.
    let store = FileCheckpointStore::new(dir.path().join("checkpoints"));
    assert!(drop_pipeline(&s, &store).await.unwrap());
    let before = ndjson(&out).len();
    let running = start(s.clone(), dir.path(), sinks());
    let lines = wait_lines(&out, before + 11).await;
    client
        .batch_execute("UPDATE acc SET v = 0 WHERE id = 100")
        .await
        .unwrap();
    let lines = wait_lines(&out, lines.len() + 1).await;
    running.stop().await;
    // Everything the lost WAL held (row 100, the negated values) is in the new copy.
    assert_eq!(
        replay(&lines, "public.acc", COLUMNS),
        table_rows(&client, "acc", "id", COLUMNS).await
    );
}

#[tokio::test]
async fn an_interrupted_initial_copy_resumes_the_unfinished_tables() {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE s1 (id int PRIMARY KEY, v int);
             CREATE TABLE s2 (id int PRIMARY KEY, v int);
             CREATE TABLE s3 (id int PRIMARY KEY, v int);
             INSERT INTO s1 SELECT g, g FROM generate_series(1, 5000) g;
             INSERT INTO s2 SELECT g, g FROM generate_series(1, 5000) g;
             INSERT INTO s3 SELECT g, g FROM generate_series(1, 5000) g;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.ndjson");
    let sinks = || vec![Box::new(NdjsonSink::file(out.clone())) as Box<dyn DynSink>];
    let mut s = spec(&db, "resume", &["s1", "s2", "s3"], dir.path());
    // Small batches: the stop lands while the second table is still being copied.
    s.max_rows = 100;
    let store = || FileCheckpointStore::new(dir.path().join("checkpoints"));

    // Stopped while the second table is being copied.
    let mut p = Pipeline::new(s.clone(), store(), sinks());
    let mut status = p.status();
    let err = p
        .run(async move {
            let _ = status.wait_for(|s| s.phase == "snapshot public.s2").await;
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("initial copy"), "{err}");
    let checkpoint = store().load("resume").await.unwrap().unwrap();
    assert!(!checkpoint.snapshot_done);
    let copied: Vec<&String> = checkpoint.position.tables.keys().collect();
    assert_eq!(copied, ["public.s1"]);

    client
        .batch_execute(
            "UPDATE s1 SET v = -v WHERE id <= 10;
             UPDATE s2 SET v = -v WHERE id <= 10;
             DELETE FROM s3 WHERE id <= 10;",
        )
        .await
        .unwrap();
    let running = start(s.clone(), dir.path(), sinks());
    // s1 once (copy) + its 10 updates, s2 and s3 copied with the changes in.
    wait_lines(&out, 5000 + 10 + 5000 + 4990).await;
    client
        .batch_execute("INSERT INTO s1 VALUES (0, 0); INSERT INTO s2 VALUES (0, 0);")
        .await
        .unwrap();
    let lines = wait_lines(&out, 5000 + 10 + 5000 + 4990 + 2).await;
    running.stop().await;
    assert_eq!(ndjson(&out).len(), 5000 + 10 + 5000 + 4990 + 2);
    for table in ["s1", "s2", "s3"] {
        let inserts = lines
            .iter()
            .filter(|l| l["_ebb_table"] == format!("public.{table}") && l["_ebb_op"] == "insert")
            .count();
        let want = if table == "s3" { 4990 } else { 5001 };
        assert_eq!(inserts, want, "{table} copied once");
        assert_eq!(
            replay(&lines, &format!("public.{table}"), COLUMNS),
            table_rows(&client, table, "id", COLUMNS).await,
            "{table}"
        );
    }
    let checkpoint = store().load("resume").await.unwrap().unwrap();
    assert!(checkpoint.snapshot_done);
    assert_eq!(checkpoint.position.tables.len(), 3);
}

#[tokio::test]
async fn slot_lag_is_measured_and_warned_about() {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE watched (id int PRIMARY KEY);
             CREATE TABLE other (id serial PRIMARY KEY, pad text);",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(&db, "lag", &["watched"], dir.path());
    s.heartbeat = None;
    s.lag_warn_bytes = 64 * 1024;
    let (running, mut status) = start_watched(
        s,
        dir.path(),
        vec![Box::new(NdjsonSink::file(dir.path().join("w.ndjson")))],
    );
    status
        .wait_for(|s| s.phase == "streaming" && s.lag_bytes.is_some())
        .await
        .unwrap();
    // WAL the pipeline is not told about quickly: lag grows past the threshold. The
    // writes go on until the warning is seen (at most ~60 s), so a fast machine whose slot
    // keeps up with a fixed amount of WAL cannot end them before a measurement lands.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let db = db.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let client = db.connect().await;
            for _ in 0..20_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                client
                    .batch_execute("INSERT INTO other (pad) SELECT repeat('x', 500) FROM generate_series(1, 500)")
                    .await
                    .unwrap();
            }
        })
    };
    let seen = tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|s| s.lag_warning && s.lag_bytes.is_some_and(|b| b > 64 * 1024)),
    )
    .await
    .expect("a lag warning")
    .unwrap()
    .clone();
    assert!(seen.lag_bytes.unwrap() > 64 * 1024);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    // Once the writes stop, keepalives let the slot catch up and the warning clears.
    tokio::time::timeout(Duration::from_secs(60), status.wait_for(|s| !s.lag_warning))
        .await
        .expect("the warning clears")
        .unwrap();
    let text = ebb_cdc::metrics::render("lag", &status.borrow());
    assert!(
        text.contains("ebb_cdc_slot_lag_bytes{pipeline=\"lag\"} "),
        "{text}"
    );
    running.stop().await;
}
