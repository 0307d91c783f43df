//! The replication connection against a real server.

use std::time::Duration;

use ebb_postgres::Lsn;
use ebb_postgres::pgoutput::{Column, LogicalMessage};
use ebb_postgres::replication::{
    PgOutputOptions, ReplicationConnection, ReplicationError, SnapshotAction,
};
use ebb_testkit::PgCluster;

use crate::support::{config, wait_for};

#[tokio::test]
async fn streams_a_transaction_and_confirms_the_flush_position() {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             CREATE PUBLICATION p FOR TABLE t;",
        )
        .await
        .unwrap();

    let mut conn = ReplicationConnection::connect(&config(&db)).await.unwrap();
    let system = conn.identify_system().await.unwrap();
    assert_eq!(system.dbname.as_deref(), Some(db.name()));
    assert!(system.xlogpos > Lsn::ZERO);
    let slot = conn
        .create_slot("smoke", false, SnapshotAction::NoExport)
        .await
        .unwrap();
    assert_eq!(slot.slot_name, "smoke");
    assert_eq!(slot.snapshot_name, None);
    assert!(matches!(
        conn.create_slot("smoke", false, SnapshotAction::NoExport)
            .await,
        Err(ReplicationError::SlotAlreadyExists { .. })
    ));

    client
        .batch_execute("INSERT INTO t VALUES (1, 'a'), (2, NULL)")
        .await
        .unwrap();

    let mut stream = conn
        .start_replication("smoke", Lsn::ZERO, &PgOutputOptions::new(["p"]))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let m = stream.next_message().await.unwrap().expect("stream open");
            match m.message {
                LogicalMessage::Commit(c) => break c.end_lsn,
                LogicalMessage::Insert(i) => {
                    seen.push(
                        i.new
                            .iter()
                            .map(|c| match c {
                                Column::Text(t) => Some(String::from_utf8(t.to_vec()).unwrap()),
                                Column::Null => None,
                                other => panic!("unexpected {other:?}"),
                            })
                            .collect::<Vec<_>>(),
                    );
                }
                LogicalMessage::Begin(_) | LogicalMessage::Relation(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("commit within 30 s");
    assert_eq!(
        seen,
        vec![
            vec![Some("1".to_owned()), Some("a".to_owned())],
            vec![Some("2".to_owned()), None]
        ]
    );

    stream.set_positions(end, end, end);
    stream.send_status_update(false).await.unwrap();
    let confirmed = wait_for("confirmed_flush_lsn to advance", Duration::from_secs(10), || async {
        let row = client
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'smoke'",
                &[],
            )
            .await
            .unwrap();
        let lsn: Lsn = row.get::<_, String>(0).parse().unwrap();
        (lsn >= end).then_some(lsn)
    })
    .await;
    assert_eq!(confirmed, end);

    let mut conn = stream.stop().await.unwrap();
    conn.drop_slot("smoke", true).await.unwrap();
    assert!(matches!(
        conn.drop_slot("smoke", false).await,
        Err(ReplicationError::SlotMissing { .. })
    ));
    conn.close().await.unwrap();
}
