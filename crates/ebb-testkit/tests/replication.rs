//! Logical decoding works in a test cluster, with both output plugins ebb cares about.

use ebb_testkit::PgCluster;

#[tokio::test]
async fn a_logical_slot_in_the_test_cluster_streams_inserted_rows() -> anyhow::Result<()> {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, label text)")
        .await?;

    // test_decoding: readable text.
    client
        .execute(
            "SELECT pg_create_logical_replication_slot('s1', 'test_decoding')",
            &[],
        )
        .await?;
    client
        .batch_execute("INSERT INTO items VALUES (1, 'alpha'), (2, 'beta')")
        .await?;
    let changes: Vec<String> = client
        .query(
            "SELECT data FROM pg_logical_slot_get_changes('s1', NULL, NULL)",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(changes.len(), 4, "{changes:#?}");
    assert!(changes[0].starts_with("BEGIN "), "{changes:#?}");
    assert_eq!(
        changes[1],
        "table public.items: INSERT: id[integer]:1 label[text]:'alpha'"
    );
    assert_eq!(
        changes[2],
        "table public.items: INSERT: id[integer]:2 label[text]:'beta'"
    );
    assert!(changes[3].starts_with("COMMIT "), "{changes:#?}");
    // get_changes consumed them.
    let again = client
        .query(
            "SELECT data FROM pg_logical_slot_get_changes('s1', NULL, NULL)",
            &[],
        )
        .await?;
    assert!(again.is_empty());

    // pgoutput: the binary protocol ebb's CDC decodes.
    client
        .batch_execute("CREATE PUBLICATION pub FOR TABLE items")
        .await?;
    client
        .execute(
            "SELECT pg_create_logical_replication_slot('s', 'pgoutput')",
            &[],
        )
        .await?;
    client
        .batch_execute("INSERT INTO items VALUES (3, 'gamma')")
        .await?;
    let messages: Vec<Vec<u8>> = client
        .query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes('s', NULL, NULL, \
             'proto_version', '1', 'publication_names', 'pub')",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let kinds: String = messages.iter().map(|m| char::from(m[0])).collect();
    // Begin, Relation, Insert, Commit.
    assert_eq!(kinds, "BRIC");
    let insert = &messages[2];
    assert!(
        insert.windows(b"gamma".len()).any(|w| w == b"gamma"),
        "insert message without the value: {insert:?}"
    );

    client
        .batch_execute(
            "SELECT pg_drop_replication_slot('s1'); SELECT pg_drop_replication_slot('s');",
        )
        .await?;
    Ok(())
}
