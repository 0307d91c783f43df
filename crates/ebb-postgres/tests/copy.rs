//! Binary COPY into Arrow, inside the snapshot of a new slot (`USE_SNAPSHOT`), checked
//! against the text form of the same rows.

use arrow::array::AsArray;
use arrow::datatypes::{Date32Type, TimestampMicrosecondType};
use arrow::util::pretty::pretty_format_batches;
use ebb_postgres::copy::copy_query_to_arrow;
use ebb_postgres::pgoutput::Column;
use ebb_postgres::replication::{ReplicationConnection, SnapshotAction};
use ebb_postgres::types::{CustomType, PgType, RowBatchBuilder, TypeRegistry};
use ebb_testkit::PgCluster;

use crate::oracle::{SCHEMA, WORKLOAD};
use crate::support::config;

#[tokio::test]
async fn binary_copy_in_a_slot_snapshot_matches_text() {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client.batch_execute(SCHEMA).await.unwrap();
    client.batch_execute(WORKLOAD[0]).await.unwrap();

    // EXPORT_SNAPSHOT names a snapshot; USE_SNAPSHOT makes it the transaction's own.
    let mut exporter = ReplicationConnection::connect(&config(&db)).await.unwrap();
    let exported = exporter
        .create_slot("copy_export", true, SnapshotAction::Export)
        .await
        .unwrap();
    assert!(exported.snapshot_name.is_some());
    exporter.close().await.unwrap();

    let mut conn = ReplicationConnection::connect(&config(&db)).await.unwrap();
    conn.simple_query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .unwrap();
    let slot = conn
        .create_slot("copy_use", true, SnapshotAction::Use)
        .await
        .unwrap();
    assert_eq!(slot.snapshot_name, None);
    // Rows committed after the slot's snapshot are not in the copy.
    client
        .batch_execute("INSERT INTO all_types (id) VALUES (99)")
        .await
        .unwrap();

    let mut registry = TypeRegistry::new();
    let types = &conn
        .simple_query("SELECT 'mood'::regtype::oid, '_mood'::regtype::oid")
        .await
        .unwrap()[0];
    let mood: u32 = types.rows[0][0].as_deref().unwrap().parse().unwrap();
    let moods: u32 = types.rows[0][1].as_deref().unwrap().parse().unwrap();
    registry.insert(
        mood,
        CustomType::Enum {
            name: "mood".into(),
        },
    );
    registry.insert(
        moods,
        CustomType::Array {
            name: "_mood".into(),
            element: mood,
        },
    );
    let attributes = &conn
        .simple_query(
            "SELECT attname, atttypid, atttypmod FROM pg_attribute \
             WHERE attrelid = 'all_types'::regclass AND attnum > 0 AND NOT attisdropped \
             ORDER BY attnum",
        )
        .await
        .unwrap()[0];
    let columns: Vec<(String, PgType)> = attributes
        .rows
        .iter()
        .map(|r| {
            let v = |i: usize| r[i].clone().unwrap();
            (
                v(0),
                PgType::resolve(v(1).parse().unwrap(), v(2).parse().unwrap(), &registry),
            )
        })
        .collect();

    let (batches, rejected) = copy_query_to_arrow(
        &mut conn,
        "SELECT * FROM all_types ORDER BY id",
        columns.clone(),
        2,
    )
    .await
    .unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(batches.len(), 2);
    let binary = arrow::compute::concat_batches(
        batches[0].batch.schema_ref(),
        batches.iter().map(|b| &b.batch),
    )
    .unwrap();
    assert_eq!(binary.num_rows(), 3, "row 99 is after the snapshot");

    // The same rows as text, through the same mapping.
    let text_rows = &conn
        .simple_query("SELECT * FROM all_types ORDER BY id")
        .await
        .unwrap()[0];
    let mut builder = RowBatchBuilder::new(columns);
    for row in &text_rows.rows {
        builder
            .append_columns(
                row.len(),
                row.iter().map(|v| match v {
                    Some(v) => Column::Text(v.as_bytes()),
                    None => Column::Null,
                }),
            )
            .unwrap();
    }
    let text = builder.finish().unwrap().batch;
    assert_eq!(text.schema(), binary.schema());
    for (i, field) in text.schema().fields().iter().enumerate() {
        assert_eq!(
            text.column(i).to_data(),
            binary.column(i).to_data(),
            "{}: text and binary COPY differ",
            field.name()
        );
    }
    conn.simple_query("COMMIT").await.unwrap();

    // ±infinity are the ends of the Arrow range (documented in ebb_postgres::types).
    let tstz = binary.column(18).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(tstz.value(0), 1_704_144_845_678_901);
    assert_eq!(tstz.value(2), i64::MIN);
    let date = binary.column(15).as_primitive::<Date32Type>();
    assert_eq!(date.value(2), i32::MAX);

    let shown = binary.project(&[0, 7, 8, 19, 22, 23, 26, 28]).unwrap();
    let table = pretty_format_batches(&[shown]).unwrap().to_string();
    let expected = "\
+----+---------------+---------------+------------------------------------------------+--------+----------+----------------+------------+
| id | c_numeric     | c_numeric_any | c_interval                                     | c_mood | c_int4s  | c_inet         | c_oid      |
+----+---------------+---------------+------------------------------------------------+--------+----------+----------------+------------+
| 1  | 123456789.123 | 12.5000       | 14 mons 3 days 4 hours 5 mins 6.500000000 secs | happy  | [1, , 3] | 192.168.1.5/24 | 4000000000 |
| 2  |               |               |                                                |        |          |                |            |
| 3  | -0.001        | NaN           | -1 days -1.000000000 secs                      | sad    | []       | ::1            | 0          |
+----+---------------+---------------+------------------------------------------------+--------+----------+----------------+------------+";
    assert_eq!(table, expected, "got:\n{table}");
}
