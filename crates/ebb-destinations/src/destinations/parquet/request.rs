//! Records to a Parquet file: ebb's columns (`_ebb_op`, `_ebb_key`, `_ebb_id`,
//! `_ebb_idempotency_key`), then the records' fields with types inferred from their JSON
//! values (integers, floats, booleans, strings; nested values as JSON text), nullable.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::json::ReaderBuilder;
use arrow::json::reader::infer_json_schema_from_iterator;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::Record;

/// Columns ebb adds before the record's fields.
pub const META_COLUMNS: [&str; 4] = ["_ebb_op", "_ebb_key", "_ebb_id", "_ebb_idempotency_key"];

/// The file name of a write: derived from the records' idempotency keys, so a retried
/// write puts the same file again instead of adding a second one.
pub fn file_name(records: &[Record]) -> String {
    let mut h = Sha256::new();
    for r in records {
        h.update((r.idempotency_key.len() as u64).to_be_bytes());
        h.update(r.idempotency_key.as_bytes());
    }
    let hex: String = h.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("part-{hex}.parquet")
}

/// The fields as JSON rows, nested values as JSON text (one column type per field).
fn field_rows(records: &[Record]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            let row: Map<String, Value> = r
                .fields
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Array(_) | Value::Object(_) => Value::String(v.to_string()),
                        other => other.clone(),
                    };
                    (k.clone(), v)
                })
                .collect();
            Value::Object(row)
        })
        .collect()
}

/// The records as one Arrow batch.
pub fn batch(records: &[Record]) -> Result<RecordBatch, String> {
    let rows = field_rows(records);
    let inferred = infer_json_schema_from_iterator(rows.iter().map(|v| Ok(v.clone())))
        .map_err(|e| format!("cannot infer column types: {e}"))?;
    // Field columns in name order (records keep fields sorted); a column whose inferred
    // type is not a plain scalar (e.g. mixed values) is text.
    let mut fields: Vec<Field> = Vec::new();
    for name in records.iter().flat_map(|r| r.fields.keys()) {
        if META_COLUMNS.contains(&name.as_str()) {
            return Err(format!(
                "field \"{name}\" collides with a column ebb adds; map it to another name"
            ));
        }
        if fields.iter().any(|f| f.name() == name) {
            continue;
        }
        let data_type = inferred
            .field_with_name(name)
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Utf8);
        let data_type = match data_type {
            DataType::Null => DataType::Utf8,
            DataType::Int64 | DataType::Float64 | DataType::Boolean | DataType::Utf8 => data_type,
            _ => DataType::Utf8,
        };
        fields.push(Field::new(name, data_type, true));
    }
    let field_schema = Arc::new(Schema::new(fields.clone()));
    let entity = if fields.is_empty() {
        None
    } else {
        let mut decoder = ReaderBuilder::new(field_schema.clone())
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(|e| e.to_string())?;
        decoder
            .serialize(&rows)
            .map_err(|e| format!("cannot build columns: {e}"))?;
        decoder.flush().map_err(|e| e.to_string())?
    };
    let meta = |f: fn(&Record) -> &str| -> Arc<StringArray> {
        Arc::new(StringArray::from_iter_values(records.iter().map(f)))
    };
    let mut schema_fields: Vec<Field> = META_COLUMNS
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, false))
        .collect();
    schema_fields.extend(fields);
    let mut columns: Vec<arrow::array::ArrayRef> = vec![
        meta(|r| r.op.as_str()),
        meta(|r| &r.key),
        meta(|r| &r.id),
        meta(|r| &r.idempotency_key),
    ];
    if let Some(entity) = entity {
        columns.extend(entity.columns().iter().cloned());
    }
    RecordBatch::try_new(Arc::new(Schema::new(schema_fields)), columns).map_err(|e| e.to_string())
}

/// The batch as Parquet bytes (Snappy).
pub fn parquet_bytes(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer =
        ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.into_inner().map_err(|e| e.to_string())
}
