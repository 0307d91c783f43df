//! Snapshot + stream into NDJSON: consistency, restart without duplicates, checkpoints.

use std::time::Duration;

use ebb_cdc::checkpoint::{CheckpointStore, FileCheckpointStore};
use ebb_cdc::sink::NdjsonSink;
use ebb_postgres::Lsn;
use ebb_testkit::PgCluster;

use crate::support::{ndjson, replay, spec, start, table_rows, wait_for, wait_lines};

const COLUMNS: &[&str] = &["id", "name", "qty"];

#[tokio::test]
async fn snapshot_then_stream_then_restart_delivers_each_change_once() {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text, qty int);
             INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(1, 50) g;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/items.ndjson");
    let sinks = || vec![Box::new(NdjsonSink::file(out.clone())) as Box<dyn ebb_cdc::sink::DynSink>];

    let running = start(
        spec(&db, "items", &["items"], dir.path()),
        dir.path(),
        sinks(),
    );
    let lines = wait_lines(&out, 50).await;
    assert!(lines.iter().all(|l| l["_ebb_op"] == "insert"));
    client
        .batch_execute(
            "INSERT INTO items VALUES (51, 'new', 1);
             UPDATE items SET qty = qty + 100 WHERE id <= 3;
             DELETE FROM items WHERE id = 10;
             BEGIN; UPDATE items SET id = 1000 WHERE id = 20; COMMIT;",
        )
        .await
        .unwrap();
    let lines = wait_lines(&out, 50 + 1 + 3 + 1 + 2).await;
    let update = lines.iter().find(|l| l["_ebb_op"] == "update").unwrap();
    assert_eq!(update["_ebb_table"], "public.items");
    assert_eq!(
        update["_ebb_changed"],
        serde_json::json!(["id", "name", "qty"])
    );
    let summary = running.stop().await;
    assert!(summary.flush_lsn > Lsn::ZERO);

    // The checkpoint and the slot agree on where to resume.
    let store = FileCheckpointStore::new(dir.path().join("checkpoints"));
    let checkpoint = store.load("items").await.unwrap().unwrap();
    assert!(checkpoint.snapshot_done);
    assert_eq!(checkpoint.position.flush_lsn, summary.flush_lsn.0);
    let confirmed: String = client
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'items_slot'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(confirmed.parse::<Lsn>().unwrap() >= summary.flush_lsn);

    // Changes while stopped arrive after a restart, nothing twice.
    client
        .batch_execute(
            "INSERT INTO items VALUES (52, 'while stopped', 2); DELETE FROM items WHERE id = 11;",
        )
        .await
        .unwrap();
    let running = start(
        spec(&db, "items", &["items"], dir.path()),
        dir.path(),
        sinks(),
    );
    let n = lines.len() + 2;
    wait_lines(&out, n).await;
    client
        .batch_execute("UPDATE items SET name = 'renamed' WHERE id = 52;")
        .await
        .unwrap();
    let lines = wait_lines(&out, n + 1).await;
    running.stop().await;
    assert_eq!(ndjson(&out).len(), n + 1, "no more lines than changes");
    assert_eq!(
        replay(&lines, "public.items", COLUMNS),
        table_rows(&client, "items", "id", COLUMNS).await
    );
}

#[tokio::test]
async fn idle_published_tables_keep_the_slot_advancing() {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE quiet (id int PRIMARY KEY);
             CREATE TABLE busy (id serial PRIMARY KEY, v text);",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quiet.ndjson");
    let running = start(
        spec(&db, "quiet", &["quiet"], dir.path()),
        dir.path(),
        vec![Box::new(NdjsonSink::file(out.clone()))],
    );
    let slot_lsn = || async {
        let s: Option<String> = client
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'quiet_slot'",
                &[],
            )
            .await
            .ok()?
            .get(0);
        s?.parse::<Lsn>().ok()
    };
    let first = wait_for("the slot", Duration::from_secs(20), slot_lsn).await;
    // Only the unpublished table is busy.
    for _ in 0..20 {
        client
            .batch_execute("INSERT INTO busy (v) SELECT 'x' FROM generate_series(1, 500)")
            .await
            .unwrap();
    }
    let wal: Lsn = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap();
    wait_for(
        "confirmed_flush_lsn to pass the busy table's WAL",
        Duration::from_secs(30),
        || async { slot_lsn().await.filter(|l| *l >= wal) },
    )
    .await;
    running.stop().await;
    assert!(wal > first);
    assert!(ndjson(&out).is_empty());
}
