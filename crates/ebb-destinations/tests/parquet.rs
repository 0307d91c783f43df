use std::fs::File;

use arrow::array::{Array, Float64Array, StringArray};
use ebb_destinations::destinations::parquet::{ParquetConfig, ParquetDestination};
use ebb_destinations::{Destination, Operation, RecordResult};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

use crate::record;

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn each_write_is_one_whole_file_and_a_retry_replaces_it() -> anyhow::Result<()> {
    let project = tempfile::tempdir()?;
    let config = ParquetConfig::new("exports", project.path(), "accounts").unwrap();
    let dest = ParquetDestination::new(config)?;
    let batch = [
        record(Operation::Upsert, "1", json!({"name": "Acme", "mrr": 10.5})),
        record(Operation::Upsert, "2", json!({"name": "Bolt", "mrr": null})),
    ];
    let outcome = dest.write(&batch).await?;
    assert_eq!(outcome.results, vec![RecordResult::Accepted; 2]);
    // A retry of the same batch puts the same file again.
    dest.write(&batch).await?;
    let dir = project.path().join("exports/accounts");
    assert_eq!(files(&dir).len(), 1, "{:?}", files(&dir));
    dest.write(&[record(Operation::Delete, "2", json!({}))])
        .await?;
    let written = files(&dir);
    assert_eq!(written.len(), 2);
    assert!(
        written
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "parquet"))
    );

    // The files read back with ebb's columns and the fields.
    let mut rows = 0;
    for path in written {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path)?)?.build()?;
        for b in reader {
            let b = b?;
            rows += b.num_rows();
            let ops = b
                .column_by_name("_ebb_op")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            if ops.value(0) == "upsert" {
                let mrr = b
                    .column_by_name("mrr")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .unwrap();
                assert_eq!(mrr.value(0), 10.5);
                assert!(mrr.is_null(1));
            }
        }
    }
    assert_eq!(rows, 3);
    Ok(())
}
