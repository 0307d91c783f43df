//! Helpers shared by the test modules.

use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use ebb_warehouse::{Warehouse, WarehouseError};
use futures::TryStreamExt;

/// Runs `sql` and collects every batch.
pub async fn collect(w: &impl Warehouse, sql: &str) -> Result<Vec<RecordBatch>, WarehouseError> {
    let stream = w.query(sql).await?;
    Ok(stream.try_collect().await?)
}

/// Runs `sql` and renders its result as a pretty table.
pub async fn table(w: &impl Warehouse, sql: &str) -> String {
    let batches = collect(w, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pretty_format_batches(&batches).unwrap().to_string()
}

/// Lines of a pretty table, for `assert_eq!` against a literal.
pub fn lines(table: &str) -> Vec<&str> {
    table.lines().collect()
}

/// The error `sql` fails with before any row is read.
pub async fn query_error(w: &impl Warehouse, sql: &str) -> WarehouseError {
    match w.query(sql).await {
        Ok(_) => panic!("{sql} should fail"),
        Err(e) => e,
    }
}
