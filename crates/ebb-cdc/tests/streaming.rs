//! Large transactions streamed before commit (pgoutput v2): spilled beyond the memory budget,
//! aborted subtransactions dropped.

use ebb_cdc::sink::NdjsonSink;
use ebb_testkit::PgCluster;

use crate::support::{ndjson, replay, spec, start_watched, table_rows, wait_for, wait_lines};

#[tokio::test]
async fn streamed_transactions_spill_and_drop_aborted_subtransactions() {
    let cluster = PgCluster::builder()
        .setting("logical_decoding_work_mem", "64kB")
        .start()
        .unwrap();
    let db = cluster.fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute("CREATE TABLE big (id int PRIMARY KEY, payload text);")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.ndjson");
    let mut s = spec(&db, "big", &["big"], dir.path());
    s.memory_budget = 256 * 1024;
    let (running, status) =
        start_watched(s, dir.path(), vec![Box::new(NdjsonSink::file(out.clone()))]);
    // Wait for the (empty) snapshot to finish and streaming to start: a first change arrives.
    client
        .batch_execute("INSERT INTO big VALUES (0, 'first')")
        .await
        .unwrap();
    wait_lines(&out, 1).await;
    client
        .batch_execute(
            "BEGIN;
             INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
             SAVEPOINT a;
             INSERT INTO big SELECT g, 'aborted' FROM generate_series(20001, 25000) g;
             ROLLBACK TO SAVEPOINT a;
             UPDATE big SET payload = 'kept' WHERE id <= 100;
             COMMIT;
             BEGIN;
             INSERT INTO big SELECT g, 'rolled back' FROM generate_series(30001, 40000) g;
             ROLLBACK;
             INSERT INTO big VALUES (-1, 'last');",
        )
        .await
        .unwrap();
    // id 0 is updated too.
    let lines = wait_lines(&out, 1 + 20000 + 101 + 1).await;
    let spilled = status.borrow().spilled_bytes;
    running.stop().await;
    // PostgreSQL streamed the transactions before their commit, and ebb spilled them.
    // (The server's statistics arrive within a second or so.)
    wait_for(
        "pg_stat_replication_slots to count the streamed transactions",
        std::time::Duration::from_secs(10),
        || async {
            let streamed: i64 = client
                .query_one(
                    "SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = 'big_slot'",
                    &[],
                )
                .await
                .ok()?
                .get(0);
            (streamed >= 2).then_some(())
        },
    )
    .await;
    assert!(spilled > 256 * 1024, "{spilled} bytes spilled");
    assert_eq!(ndjson(&out).len(), 1 + 20000 + 101 + 1);
    assert!(
        !lines
            .iter()
            .any(|l| l["payload"] == "aborted" || l["payload"] == "rolled back")
    );
    let cols = &["id", "payload"];
    assert_eq!(
        replay(&lines, "public.big", cols),
        table_rows(&client, "big", "id", cols).await
    );
    // The spill files are gone.
    let spill = dir.path().join("spill");
    assert!(!spill.exists() || std::fs::read_dir(&spill).unwrap().next().is_none());
}
