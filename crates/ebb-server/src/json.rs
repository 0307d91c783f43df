//! Arrow rows as JSON values: numbers stay numbers (as Arrow prints them, so a decimal keeps
//! its scale), NULL is `null`, everything else is its display string (dates as ISO 8601).

use arrow::array::{Array, RecordBatch};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::Value;

/// Column names and rows of `batches` (which share a schema).
pub fn rows(batches: &[RecordBatch]) -> Result<(Vec<String>, Vec<Vec<Value>>), ArrowError> {
    let mut names = Vec::new();
    let mut out = Vec::new();
    let options = FormatOptions::default();
    for batch in batches {
        names = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..batch.num_rows() {
            let mut row = Vec::with_capacity(formatters.len());
            for (col, f) in batch.columns().iter().zip(&formatters) {
                row.push(if col.is_null(r) {
                    Value::Null
                } else {
                    let text = f.value(r).to_string();
                    if col.data_type().is_numeric() {
                        text.parse::<serde_json::Number>()
                            .map_or(Value::String(text), Value::Number)
                    } else {
                        Value::String(text)
                    }
                });
            }
            out.push(row);
        }
    }
    Ok((names, out))
}
