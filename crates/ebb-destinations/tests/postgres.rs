use ebb_core::Secret;
use ebb_destinations::destinations::postgres::{PostgresConfig, PostgresDestination};
use ebb_destinations::{Destination, DestinationError, Operation, Record, RecordResult};
use ebb_testkit::PgCluster;
use serde_json::json;

use crate::record;

async fn setup() -> (tokio_postgres::Client, PostgresDestination) {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE accounts (
                id bigint PRIMARY KEY,
                name text NOT NULL,
                mrr numeric(12,2) CHECK (mrr >= 0),
                plan text,
                tags jsonb
            )",
        )
        .await
        .unwrap();
    let config = PostgresConfig::new(Secret::new(db.url()), "public", "accounts", "id").unwrap();
    (client, PostgresDestination::new(config).unwrap())
}

fn account(op: Operation, id: u32, fields: serde_json::Value) -> Record {
    record(op, &id.to_string(), fields)
}

async fn rows(
    client: &tokio_postgres::Client,
) -> Vec<(i64, String, Option<String>, Option<String>)> {
    client
        .query(
            "SELECT id, name, mrr::text, plan FROM accounts ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[tokio::test]
async fn upserts_update_only_carried_columns_and_deletes_by_key() {
    let (client, dest) = setup().await;
    let batch = [
        account(
            Operation::Upsert,
            1,
            json!({"name": "Acme", "mrr": 10.5, "plan": "pro", "tags": ["a", "b\\c"]}),
        ),
        account(
            Operation::Upsert,
            2,
            json!({"name": "Bolt", "mrr": 3, "plan": null}),
        ),
    ];
    let outcome = dest.write(&batch).await.unwrap();
    assert_eq!(outcome.results, vec![RecordResult::Accepted; 2]);
    // Again: no further effect.
    dest.write(&batch).await.unwrap();
    // Only the changed field: the other columns stay.
    dest.write(&[account(Operation::Upsert, 1, json!({"mrr": 20}))])
        .await
        .unwrap();
    assert_eq!(
        rows(&client).await,
        vec![
            (1, "Acme".into(), Some("20.00".into()), Some("pro".into())),
            (2, "Bolt".into(), Some("3.00".into()), None),
        ]
    );
    let tags: String = client
        .query_one("SELECT tags::text FROM accounts WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&tags).unwrap(),
        json!(["a", "b\\c"])
    );

    let outcome = dest
        .write(&[
            account(Operation::Delete, 2, json!({})),
            account(Operation::Delete, 9, json!({})),
        ])
        .await
        .unwrap();
    assert_eq!(outcome.results, vec![RecordResult::Accepted; 2]);
    assert_eq!(rows(&client).await.len(), 1);

    // Insert-only leaves an existing row; update-only rejects a missing one.
    dest.write(&[account(Operation::Insert, 1, json!({"name": "Other"}))])
        .await
        .unwrap();
    assert_eq!(rows(&client).await[0].1, "Acme");
    let outcome = dest
        .write(&[
            account(Operation::Update, 1, json!({"plan": "team"})),
            account(Operation::Update, 5, json!({"plan": "team"})),
        ])
        .await
        .unwrap();
    assert_eq!(outcome.results[0], RecordResult::Accepted);
    assert!(
        matches!(&outcome.results[1], RecordResult::Rejected { reason, .. } if reason.contains("id = 5"))
    );
    assert_eq!(
        rows(&client).await,
        vec![(1, "Acme".into(), Some("20.00".into()), Some("team".into()))]
    );
}

#[tokio::test]
async fn a_bad_value_rejects_the_batch_and_applies_nothing() {
    let (client, dest) = setup().await;
    let batch = [
        account(Operation::Upsert, 1, json!({"name": "Acme", "mrr": 1})),
        account(Operation::Upsert, 2, json!({"name": "Bolt", "mrr": -5})),
    ];
    match dest.write(&batch).await.unwrap_err() {
        DestinationError::Rejected { reason, .. } => {
            assert!(
                reason.contains("accounts_mrr_check") && reason.contains("23514"),
                "{reason}"
            )
        }
        other => panic!("{other}"),
    }
    match dest
        .write(&[account(Operation::Upsert, 3, json!({"mrr": 1}))])
        .await
        .unwrap_err()
    {
        DestinationError::Rejected { reason, field } => {
            assert!(reason.contains("not-null"), "{reason}");
            assert_eq!(field.as_deref(), Some("name"));
        }
        other => panic!("{other}"),
    }
    match dest
        .write(&[account(
            Operation::Upsert,
            4,
            json!({"name": "x", "mrr": "lots"}),
        )])
        .await
        .unwrap_err()
    {
        DestinationError::Rejected { reason, .. } => {
            assert!(reason.contains("numeric"), "{reason}")
        }
        other => panic!("{other}"),
    }
    assert!(rows(&client).await.is_empty(), "nothing applied");
    // The connection is still good after the failures.
    dest.write(&batch[..1]).await.unwrap();
    assert_eq!(rows(&client).await.len(), 1);
}

#[tokio::test]
async fn a_missing_table_or_unique_key_is_a_config_error() {
    let (client, _) = setup().await;
    client
        .batch_execute("CREATE TABLE nokey (id int, name text)")
        .await
        .unwrap();
    let url = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get::<_, String>(0);
    let db_url = format!(
        "postgres://postgres@127.0.0.1:{}/{url}",
        PgCluster::shared().port()
    );
    for (table, expect) in [("nokey", "unique index"), ("absent", "create")] {
        let config =
            PostgresConfig::new(Secret::new(db_url.clone()), "public", table, "id").unwrap();
        let dest = PostgresDestination::new(config).unwrap();
        match dest
            .write(&[account(Operation::Upsert, 1, json!({"name": "x"}))])
            .await
            .unwrap_err()
        {
            DestinationError::Fatal { reason } => assert!(reason.contains(expect), "{reason}"),
            other => panic!("{other}"),
        }
    }
}
