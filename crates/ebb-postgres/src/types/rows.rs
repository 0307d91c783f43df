//! [`RowBatchBuilder`]: rows of a relation (pgoutput tuples or `COPY` rows) into one
//! Arrow `RecordBatch`.

use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;

use super::{ColumnBuilder, PgType, TypeRegistry, ValueError};
use crate::pgoutput::{Column, Relation, TupleData};
use crate::retry::RetryClass;

/// A row that could not be added to a [`RowBatchBuilder`]. The row is left out of the batch;
/// the rows before and after it are kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// One column's value did not convert.
    #[error("row {row}, column {column:?}: {source}")]
    Value {
        /// Index of the row among those appended since the last finish.
        row: usize,
        /// Column name.
        column: String,
        /// Why.
        source: ValueError,
    },
    /// The row has a different number of columns than the schema (a stale Relation).
    #[error("row {row} has {found} columns, the relation has {expected}")]
    ColumnCount {
        /// Index of the row among those appended since the last finish.
        row: usize,
        /// Columns in the schema.
        expected: usize,
        /// Columns in the row.
        found: usize,
    },
}

impl RowError {
    /// The class of the underlying value error; a column-count mismatch is fatal (the decoder
    /// and the relation cache disagree).
    pub fn retry_class(&self) -> RetryClass {
        match self {
            RowError::Value { source, .. } => source.retry_class(),
            RowError::ColumnCount { .. } => RetryClass::Fatal,
        }
    }
}

/// A finished batch of rows.
#[derive(Debug, Clone)]
pub struct RowBatch {
    /// The rows that converted, in order.
    pub batch: RecordBatch,
    /// `(row, column)` of every value that was an unchanged TOASTed datum: it is null in
    /// `batch`, but its real value is the one the row had before (the caller fills or marks it).
    pub unchanged_toast: Vec<(usize, usize)>,
}

/// Accumulates rows of one relation into Arrow arrays.
#[derive(Debug)]
pub struct RowBatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    rows: usize,
    rejected: Vec<usize>,
    unchanged_toast: Vec<(usize, usize)>,
}

impl RowBatchBuilder {
    /// A builder for columns with these names and types. All fields are nullable: pgoutput
    /// key-only old tuples and unchanged TOAST values leave columns empty.
    pub fn new<S: AsRef<str>>(columns: impl IntoIterator<Item = (S, PgType)>) -> RowBatchBuilder {
        let (fields, builders): (Vec<_>, Vec<_>) = columns
            .into_iter()
            .map(|(name, ty)| (ty.field(name.as_ref(), true), ColumnBuilder::new(ty)))
            .unzip();
        RowBatchBuilder {
            schema: Arc::new(Schema::new(fields)),
            columns: builders,
            rows: 0,
            rejected: Vec::new(),
            unchanged_toast: Vec::new(),
        }
    }

    /// A builder for the rows of a pgoutput [`Relation`].
    pub fn for_relation(relation: &Relation, registry: &TypeRegistry) -> RowBatchBuilder {
        RowBatchBuilder::new(relation.columns.iter().map(|c| {
            (
                c.name.as_str(),
                PgType::resolve(c.type_oid, c.type_modifier, registry),
            )
        }))
    }

    /// The batch schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Whether every column can take binary values: false when a column has an unmapped
    /// type, whose values must then be streamed as text (pgoutput `binary = false`).
    pub fn supports_binary(&self) -> bool {
        self.columns.iter().all(ColumnBuilder::supports_binary)
    }

    /// Rows appended since the last finish (rejected ones included).
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no rows were appended.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends a pgoutput tuple.
    pub fn append_tuple(&mut self, tuple: &TupleData) -> Result<(), RowError> {
        self.append_columns(tuple.len(), tuple.iter())
    }

    /// Appends one row given as `n` column values; on error the row is left out of the batch.
    pub fn append_columns<'a>(
        &mut self,
        n: usize,
        values: impl IntoIterator<Item = Column<'a>>,
    ) -> Result<(), RowError> {
        let row = self.rows;
        self.rows += 1;
        let mut first_error = None;
        if n != self.columns.len() {
            first_error = Some(RowError::ColumnCount {
                row,
                expected: self.columns.len(),
                found: n,
            });
        }
        let mut values = values.into_iter();
        for (i, builder) in self.columns.iter_mut().enumerate() {
            let result = match values.next() {
                _ if first_error.is_some() => {
                    builder.append_null();
                    Ok(())
                }
                None | Some(Column::Null) => {
                    builder.append_null();
                    Ok(())
                }
                Some(Column::UnchangedToast) => {
                    self.unchanged_toast.push((row, i));
                    builder.append_null();
                    Ok(())
                }
                Some(Column::Text(v)) => builder.append_text(v),
                Some(Column::Binary(v)) => builder.append_binary(v),
            };
            if let Err(source) = result {
                first_error = Some(RowError::Value {
                    row,
                    column: self.schema.field(i).name().clone(),
                    source,
                });
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => {
                self.rejected.push(row);
                Err(e)
            }
        }
    }

    /// The rows appended so far, rejected rows left out; the builder is empty afterwards.
    pub fn finish(&mut self) -> Result<RowBatch, ArrowError> {
        let arrays = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        let mut batch = RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)?;
        let mut unchanged_toast = std::mem::take(&mut self.unchanged_toast);
        let rejected = std::mem::take(&mut self.rejected);
        if !rejected.is_empty() {
            let keep: BooleanArray = (0..self.rows)
                .map(|r| Some(rejected.binary_search(&r).is_err()))
                .collect();
            batch = arrow::compute::filter_record_batch(&batch, &keep)?;
            unchanged_toast.retain(|(row, _)| rejected.binary_search(row).is_err());
            for (row, _) in &mut unchanged_toast {
                *row -= rejected.partition_point(|r| r < row);
            }
        }
        self.rows = 0;
        Ok(RowBatch {
            batch,
            unchanged_toast,
        })
    }
}
