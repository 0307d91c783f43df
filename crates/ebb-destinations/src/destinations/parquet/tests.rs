use std::path::Path;

use arrow::util::pretty::pretty_format_batches;
use serde_json::json;

use super::*;

fn record(op: Operation, key: &str, fields: serde_json::Value) -> Record {
    Record {
        op,
        key: key.into(),
        id: key.into(),
        fields: fields.as_object().unwrap().clone(),
        idempotency_key: format!("k{key}"),
    }
}

#[test]
fn records_become_typed_columns_after_ebbs_own() {
    let b = batch(&[
        record(
            Operation::Upsert,
            "1",
            json!({"name": "Acme", "mrr": 10, "vip": true, "tags": ["a"]}),
        ),
        record(Operation::Upsert, "2", json!({"name": null, "mrr": 2.5})),
        record(Operation::Delete, "3", json!({})),
    ])
    .unwrap();
    let text = pretty_format_batches(std::slice::from_ref(&b))
        .unwrap()
        .to_string();
    assert_eq!(
        text,
        "+---------+----------+---------+----------------------+------+------+-------+------+\n\
         | _ebb_op | _ebb_key | _ebb_id | _ebb_idempotency_key | mrr  | name | tags  | vip  |\n\
         +---------+----------+---------+----------------------+------+------+-------+------+\n\
         | upsert  | 1        | 1       | k1                   | 10.0 | Acme | [\"a\"] | true |\n\
         | upsert  | 2        | 2       | k2                   | 2.5  |      |       |      |\n\
         | delete  | 3        | 3       | k3                   |      |      |       |      |\n\
         +---------+----------+---------+----------------------+------+------+-------+------+"
    );
}

#[test]
fn file_names_follow_the_idempotency_keys() {
    let a = [record(Operation::Upsert, "1", json!({}))];
    let b = [record(Operation::Upsert, "2", json!({}))];
    assert_eq!(file_name(&a), file_name(&a.clone()));
    assert_ne!(file_name(&a), file_name(&b));
    assert!(file_name(&a).starts_with("part-") && file_name(&a).ends_with(".parquet"));
}

#[test]
fn config_reads_folders_and_s3() {
    let c = ParquetConfig::new("exports", Path::new("/p"), "accounts").unwrap();
    assert_eq!(c.root, Root::Local("/p/exports".into()));
    let c = ParquetConfig::new("s3://lake/ebb/", Path::new("/p"), "accounts").unwrap();
    assert_eq!(
        c.root,
        Root::S3 {
            bucket: "lake".into(),
            prefix: "ebb".into()
        }
    );
    assert!(ParquetConfig::new("gs://x", Path::new("/p"), "a").is_err());
    assert!(ParquetConfig::new("exports", Path::new("/p"), "../up").is_err());
}
