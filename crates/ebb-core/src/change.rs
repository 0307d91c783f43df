//! The canonical change: one Arrow record batch that CDC and reverse ETL both produce and
//! every destination consumes.
//!
//! A [`ChangeBatch`] starts with four metadata columns, then the entity's own columns:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `_ebb_op` | UInt8 | [`Op`]: insert, update, delete, upsert |
//! | `_ebb_key` | Utf8 | the entity's primary key, stable across runs (see [`Key`]) |
//! | `_ebb_seq` | UInt64 | order within the stream: commit LSN + index for CDC, run + row for syncs |
//! | `_ebb_changed` | List<Utf8>, nullable | for updates, the columns that changed |
//!
//! Entity columns hold the after-image (for deletes: the last known image, or only the key).

use std::sync::Arc;

use arrow::array::{Array, AsArray, ListArray, RecordBatch, StringArray, UInt8Array, UInt64Array};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, UInt8Type, UInt64Type};

pub const OP: &str = "_ebb_op";
pub const KEY: &str = "_ebb_key";
pub const SEQ: &str = "_ebb_seq";
pub const CHANGED: &str = "_ebb_changed";

/// The number of metadata columns before the entity's columns.
pub const METADATA_COLUMNS: usize = 4;

/// What happened to an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Op {
    Insert = 1,
    Update = 2,
    Delete = 3,
    /// Insert-or-update, where the source cannot tell which.
    Upsert = 4,
}

impl Op {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Op> {
        match code {
            1 => Some(Op::Insert),
            2 => Some(Op::Update),
            3 => Some(Op::Delete),
            4 => Some(Op::Upsert),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Upsert => "upsert",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four metadata fields, in order.
pub fn metadata_fields() -> Vec<FieldRef> {
    vec![
        Arc::new(Field::new(OP, DataType::UInt8, false)),
        Arc::new(Field::new(KEY, DataType::Utf8, false)),
        Arc::new(Field::new(SEQ, DataType::UInt64, false)),
        Arc::new(Field::new(
            CHANGED,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        )),
    ]
}

/// The schema of a change batch over an entity with `entity` columns.
pub fn schema_for(entity: &Schema) -> SchemaRef {
    let mut fields = metadata_fields();
    fields.extend(entity.fields().iter().cloned());
    Arc::new(Schema::new_with_metadata(fields, entity.metadata().clone()))
}

/// A primary key's canonical text, the value of `_ebb_key`.
///
/// One column: its canonical text (integers in decimal, text as is). Several columns: a
/// JSON array of the parts (`["acme",42]`), so `("a,b", "c")` and `("a", "b,c")` differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub String);

impl Key {
    pub fn single(part: impl Into<String>) -> Key {
        Key(part.into())
    }

    pub fn composite(parts: &[serde_json::Value]) -> Key {
        Key(serde_json::Value::Array(parts.to_vec()).to_string())
    }
}

/// Why a record batch is not a change batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeBatchError {
    #[error("column {index} must be {name} of type {expected}, found {found}")]
    Metadata {
        index: usize,
        name: &'static str,
        expected: String,
        found: String,
    },
    #[error("row {row}: unknown operation code {code} in _ebb_op")]
    BadOp { row: usize, code: u8 },
    #[error("row {row}: _ebb_op, _ebb_key and _ebb_seq may not be null")]
    NullMetadata { row: usize },
}

/// A record batch checked to be a change batch, with typed access to its metadata.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    batch: RecordBatch,
}

impl ChangeBatch {
    /// Checks the metadata columns (names, types, no nulls, known op codes).
    pub fn try_new(batch: RecordBatch) -> Result<ChangeBatch, ChangeBatchError> {
        let expected = metadata_fields();
        let schema = batch.schema();
        for (index, want) in expected.iter().enumerate() {
            let found = schema.fields().get(index);
            let ok =
                found.is_some_and(|f| f.name() == want.name() && f.data_type() == want.data_type());
            if !ok {
                return Err(ChangeBatchError::Metadata {
                    index,
                    name: [OP, KEY, SEQ, CHANGED][index],
                    expected: want.data_type().to_string(),
                    found: found.map_or("nothing".into(), |f| {
                        format!("{} {}", f.name(), f.data_type())
                    }),
                });
            }
        }
        for i in 0..3 {
            if let Some(row) = (0..batch.num_rows()).find(|r| batch.column(i).is_null(*r)) {
                return Err(ChangeBatchError::NullMetadata { row });
            }
        }
        let ops = batch.column(0).as_primitive::<UInt8Type>();
        if let Some((row, code)) = ops
            .values()
            .iter()
            .enumerate()
            .find(|(_, c)| Op::from_code(**c).is_none())
        {
            return Err(ChangeBatchError::BadOp { row, code: *code });
        }
        Ok(ChangeBatch { batch })
    }

    /// Builds a change batch from its parts. `changed` is `None` for rows that are not
    /// updates (or when the source cannot tell).
    pub fn from_parts(
        ops: &[Op],
        keys: &[Key],
        seqs: &[u64],
        changed: &[Option<Vec<String>>],
        entity: &RecordBatch,
    ) -> Result<ChangeBatch, arrow::error::ArrowError> {
        let n = entity.num_rows();
        if ops.len() != n || keys.len() != n || seqs.len() != n || changed.len() != n {
            return Err(arrow::error::ArrowError::InvalidArgumentError(format!(
                "change batch parts have different lengths: {n} rows, {} ops, {} keys, {} seqs, {} changed",
                ops.len(),
                keys.len(),
                seqs.len(),
                changed.len()
            )));
        }
        let op = UInt8Array::from_iter_values(ops.iter().map(|o| o.code()));
        let key = StringArray::from_iter_values(keys.iter().map(|k| k.0.as_str()));
        let seq = UInt64Array::from_iter_values(seqs.iter().copied());
        let changed = ListArray::from_iter_primitive_strings(changed);
        let mut columns: Vec<Arc<dyn Array>> = vec![
            Arc::new(op),
            Arc::new(key),
            Arc::new(seq),
            Arc::new(changed),
        ];
        columns.extend(entity.columns().iter().cloned());
        let batch = RecordBatch::try_new(schema_for(&entity.schema()), columns)?;
        Ok(ChangeBatch { batch })
    }

    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    pub fn into_batch(self) -> RecordBatch {
        self.batch
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn op(&self, row: usize) -> Op {
        let code = self.batch.column(0).as_primitive::<UInt8Type>().value(row);
        Op::from_code(code).expect("checked in try_new")
    }

    pub fn key(&self, row: usize) -> &str {
        self.batch.column(1).as_string::<i32>().value(row)
    }

    pub fn seq(&self, row: usize) -> u64 {
        self.batch.column(2).as_primitive::<UInt64Type>().value(row)
    }

    /// The columns an update changed, when known.
    pub fn changed(&self, row: usize) -> Option<Vec<String>> {
        let list = self.batch.column(3).as_list::<i32>();
        if list.is_null(row) {
            return None;
        }
        let values = list.value(row);
        let values = values.as_string::<i32>();
        Some(
            (0..values.len())
                .filter(|i| !values.is_null(*i))
                .map(|i| values.value(i).to_string())
                .collect(),
        )
    }

    /// The entity's columns, without the metadata.
    pub fn entity(&self) -> RecordBatch {
        let indices: Vec<usize> = (METADATA_COLUMNS..self.batch.num_columns()).collect();
        self.batch.project(&indices).expect("indices are in range")
    }
}

/// Helpers to build the `_ebb_changed` list column.
trait ListFromStrings {
    fn from_iter_primitive_strings(rows: &[Option<Vec<String>>]) -> ListArray;
}

impl ListFromStrings for ListArray {
    fn from_iter_primitive_strings(rows: &[Option<Vec<String>>]) -> ListArray {
        let mut builder = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
        for row in rows {
            match row {
                Some(cols) => {
                    for c in cols {
                        builder.values().append_value(c);
                    }
                    builder.append(true);
                }
                None => builder.append(false),
            }
        }
        builder.finish()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;

    use super::*;

    fn entity() -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("mrr", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from(vec![Some(10), None]))],
        )
        .unwrap()
    }

    #[test]
    fn round_trips_its_parts() {
        let b = ChangeBatch::from_parts(
            &[Op::Insert, Op::Update],
            &[Key::single("1"), Key::composite(&["a".into(), 2.into()])],
            &[7, 8],
            &[None, Some(vec!["mrr".into()])],
            &entity(),
        )
        .unwrap();
        let b = ChangeBatch::try_new(b.into_batch()).unwrap();
        assert_eq!((b.op(0), b.op(1)), (Op::Insert, Op::Update));
        assert_eq!((b.key(0), b.key(1)), ("1", "[\"a\",2]"));
        assert_eq!(b.seq(1), 8);
        assert_eq!(b.changed(0), None);
        assert_eq!(b.changed(1), Some(vec!["mrr".to_string()]));
        assert_eq!(b.entity().num_columns(), 1);
    }

    #[test]
    fn rejects_batches_without_the_metadata() {
        let err = ChangeBatch::try_new(entity()).unwrap_err();
        assert!(
            err.to_string().starts_with("column 0 must be _ebb_op"),
            "{err}"
        );
    }
}
