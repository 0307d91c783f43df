use ebb_core::Secret;
use serde_json::json;

use super::*;

fn record(key: &str, fields: serde_json::Value) -> Record {
    Record {
        op: Operation::Upsert,
        key: key.into(),
        id: key.into(),
        fields: fields.as_object().unwrap().clone(),
        idempotency_key: key.into(),
    }
}

#[test]
fn copy_text_escapes_backslashes_and_sets_the_key() {
    let r = record("7", json!({"note": "a\\b\nc"}));
    let text = String::from_utf8(request::copy_text(&[&r], "id")).unwrap();
    assert_eq!(text, "0\t{\"id\":\"7\",\"note\":\"a\\\\\\\\b\\\\nc\"}\n");
}

#[test]
fn records_are_grouped_by_their_fields() {
    let records = [
        record("1", json!({"a": 1, "b": 2})),
        record("2", json!({"a": 1})),
        record("3", json!({"b": 2, "a": 1})),
    ];
    let groups = PostgresDestination::groups(&records);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].1, vec![0, 2]);
    assert_eq!(groups[1].1, vec![1]);
}

#[test]
fn upsert_sql_updates_only_carried_columns() {
    let sql = request::upsert("\"public\".\"t\"", "id", &["id", "mrr"], 0, 2, true);
    assert!(
        sql.contains("ON CONFLICT (\"id\") DO UPDATE SET \"mrr\" = EXCLUDED.\"mrr\""),
        "{sql}"
    );
    assert!(sql.contains("ord >= 0 AND ord < 2"), "{sql}");
    let insert_only = request::upsert("\"public\".\"t\"", "id", &["id", "mrr"], 0, 2, false);
    assert!(insert_only.ends_with("DO NOTHING"), "{insert_only}");
}

#[test]
fn config_is_checked() {
    assert!(
        PostgresConfig::new(Secret::new("postgres://u@h/db"), "public", "accounts", "id").is_ok()
    );
    assert!(PostgresConfig::new(Secret::new(""), "public", "accounts", "id").is_err());
    let err = PostgresDestination::new(
        PostgresConfig::new(
            Secret::new("postgres://u@h:notaport/db"),
            "public",
            "t",
            "id",
        )
        .unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("connection string"), "{err}");
}
