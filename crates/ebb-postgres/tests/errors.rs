//! Errors a user can act on, each provoked on a real server.

use std::time::Duration;

use ebb_postgres::Lsn;
use ebb_postgres::replication::{
    PgOutputOptions, ReplicationConnection, ReplicationError, SnapshotAction,
};
use ebb_postgres::retry::RetryClass;
use ebb_testkit::PgCluster;

use crate::support::{config, wait_for};

#[tokio::test]
async fn role_without_replication_privilege() {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute("DROP ROLE IF EXISTS ebb_norepl; CREATE ROLE ebb_norepl LOGIN")
        .await
        .unwrap();
    let mut cfg = config(&db);
    cfg.user = "ebb_norepl".into();
    let err = ReplicationConnection::connect(&cfg).await.unwrap_err();
    assert!(
        matches!(err, ReplicationError::NoReplicationPrivilege { ref user, .. } if user == "ebb_norepl"),
        "{err:?}"
    );
    assert_eq!(err.retry_class(), RetryClass::Fatal);
    assert!(
        err.to_string()
            .contains("ALTER ROLE ebb_norepl WITH REPLICATION")
    );
}

#[tokio::test]
async fn missing_slot_missing_publication_and_active_slot() {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t;")
        .await
        .unwrap();

    let conn = ReplicationConnection::connect(&config(&db)).await.unwrap();
    let err = conn
        .start_replication("no_such_slot", Lsn::ZERO, &PgOutputOptions::new(["p"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReplicationError::SlotMissing { .. }),
        "{err:?}"
    );

    let mut conn = ReplicationConnection::connect(&config(&db)).await.unwrap();
    conn.create_slot("busy", true, SnapshotAction::NoExport)
        .await
        .unwrap();
    let other = ReplicationConnection::connect(&config(&db)).await.unwrap();
    // A temporary slot belongs to its connection: another one sees it active.
    let err = other
        .start_replication("busy", Lsn::ZERO, &PgOutputOptions::new(["p"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReplicationError::SlotActive { pid: Some(_), .. }),
        "{err:?}"
    );
    assert_eq!(
        err.retry_class(),
        RetryClass::Retryable {
            after: Some(Duration::from_secs(10))
        }
    );

    let mut conn2 = ReplicationConnection::connect(&config(&db)).await.unwrap();
    conn2
        .create_slot("pubcheck", false, SnapshotAction::NoExport)
        .await
        .unwrap();
    let err = conn2
        .start_replication("pubcheck", Lsn::ZERO, &PgOutputOptions::new(["p", "nope"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReplicationError::PublicationMissing { ref publication } if publication == "nope"),
        "{err:?}"
    );
    let mut conn3 = ReplicationConnection::connect(&config(&db)).await.unwrap();
    conn3.drop_slot("pubcheck", true).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn wal_level_not_logical() {
    let cluster = PgCluster::builder()
        .setting("wal_level", "replica")
        .start()
        .expect("start a wal_level=replica cluster");
    let db = cluster.fresh_database().await;
    let mut conn = ReplicationConnection::connect(&config(&db)).await.unwrap();
    let err = conn
        .create_slot("s", false, SnapshotAction::NoExport)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReplicationError::WalLevelNotLogical { ref actual } if actual == "replica"),
        "{err:?}"
    );
    assert!(err.to_string().contains("wal_level = logical"));
}

#[tokio::test]
async fn invalidated_slot() {
    let cluster = PgCluster::builder()
        .setting("max_slot_wal_keep_size", "1MB")
        .start()
        .expect("start a cluster that invalidates slots early");
    let db = cluster.fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute("CREATE TABLE t (id int, pad text); CREATE PUBLICATION p FOR TABLE t;")
        .await
        .unwrap();
    client
        .batch_execute("SELECT pg_create_logical_replication_slot('doomed', 'pgoutput')")
        .await
        .unwrap();
    wait_for(
        "the slot to lose its WAL",
        Duration::from_secs(60),
        || async {
            for sql in [
                "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g",
                "SELECT pg_switch_wal()",
                "CHECKPOINT",
            ] {
                client.batch_execute(sql).await.unwrap();
            }
            let row = client
                .query_one(
                    "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'doomed'",
                    &[],
                )
                .await
                .unwrap();
            (row.get::<_, Option<String>>(0).as_deref() == Some("lost")).then_some(())
        },
    )
    .await;
    let conn = ReplicationConnection::connect(&config(&db)).await.unwrap();
    let err = conn
        .start_replication("doomed", Lsn::ZERO, &PgOutputOptions::new(["p"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReplicationError::SlotInvalidated { .. }),
        "{err:?}"
    );
    assert_eq!(err.retry_class(), RetryClass::Fatal);
}
