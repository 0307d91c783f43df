//! Rows of one table into ChangeBatches: keys, ops, sequence numbers, changed columns, TOAST
//! fill, and the schema that follows the table's Relation messages.

use std::sync::Arc;

use arrow::array::{Array, ListArray, ListBuilder, RecordBatch, StringBuilder, UInt64Array};
use arrow::datatypes::SchemaRef;
use ebb_core::change::{ChangeBatch, Key, Op};
use ebb_postgres::Lsn;
use ebb_postgres::pgoutput::{
    Column, OldTuple, OldTupleKind, Relation, ReplicaIdentity, TupleData,
};
use ebb_postgres::types::{PgType, RowBatchBuilder, TypeRegistry};

use crate::error::CdcError;
use crate::position::seq;

/// A batch of changes of one table on its way to the sinks.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `schema.table`.
    pub table: Arc<str>,
    /// The changes.
    pub changes: ChangeBatch,
    /// Each row's commit LSN (for an initial copy: the snapshot's LSN).
    pub lsns: Arc<UInt64Array>,
    /// For each row, the columns whose value PostgreSQL did not send because it is an
    /// unchanged TOASTed value and no old image could fill it (`REPLICA IDENTITY` other than
    /// `FULL`): such a value is null in `changes` and means "unchanged", never NULL. `None`
    /// when no row has one. Sinks write it as `_ebb_unchanged_toast`.
    pub unchanged_toast: Option<Arc<ListArray>>,
}

/// Column the sinks write [`Delivery::unchanged_toast`] to.
pub const UNCHANGED_TOAST_COLUMN: &str = "_ebb_unchanged_toast";

impl Delivery {
    /// The rows of this delivery that `keep` accepts (by table and commit LSN), or `None`
    /// when none are.
    pub fn filtered(&self, keep: impl Fn(&str, u64) -> bool) -> Option<Delivery> {
        let mask: arrow::array::BooleanArray = self
            .lsns
            .values()
            .iter()
            .map(|l| Some(keep(&self.table, *l)))
            .collect();
        let kept = mask.true_count();
        if kept == self.lsns.len() {
            return Some(self.clone());
        }
        if kept == 0 {
            return None;
        }
        let batch = arrow::compute::filter_record_batch(self.changes.batch(), &mask).ok()?;
        let lsns = arrow::compute::filter(self.lsns.as_ref(), &mask).ok()?;
        let unchanged_toast = match &self.unchanged_toast {
            Some(t) => Some(Arc::new(
                arrow::compute::filter(t.as_ref(), &mask)
                    .ok()?
                    .as_any()
                    .downcast_ref::<ListArray>()?
                    .clone(),
            )),
            None => None,
        };
        Some(Delivery {
            table: self.table.clone(),
            changes: ChangeBatch::try_new(batch).ok()?,
            lsns: Arc::new(
                lsns.as_any()
                    .downcast_ref::<UInt64Array>()
                    .cloned()
                    .unwrap_or_else(|| UInt64Array::from(Vec::<u64>::new())),
            ),
            unchanged_toast,
        })
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.changes.num_rows()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `TRUNCATE` of one table: every row of the table that an earlier change (by commit LSN,
/// then `_ebb_seq`) delivered is gone. Sinks record it in order with the changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Truncation {
    /// `schema.table`.
    pub table: String,
    /// Commit LSN of its transaction.
    pub lsn: u64,
    /// Its `_ebb_seq` (its place among the transaction's changes).
    pub seq: u64,
    /// `TRUNCATE ... CASCADE`.
    #[serde(default)]
    pub cascade: bool,
    /// `TRUNCATE ... RESTART IDENTITY`.
    #[serde(default)]
    pub restart_identity: bool,
}

/// The `_ebb_key` of a row from the text form of its key columns: the text itself for one
/// column, a JSON array (integers as numbers) for several.
pub fn key_from_text(parts: &[Option<&[u8]>], types: &[&PgType]) -> Key {
    if let [part] = parts {
        return Key::single(part.map(String::from_utf8_lossy).unwrap_or_default());
    }
    let values: Vec<serde_json::Value> = parts
        .iter()
        .zip(types)
        .map(|(part, ty)| match part.map(String::from_utf8_lossy) {
            None => serde_json::Value::Null,
            Some(v) => match ty {
                PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid => v
                    .parse::<i64>()
                    .map(serde_json::Value::from)
                    .unwrap_or_else(|_| serde_json::Value::String(v.into_owned())),
                _ => serde_json::Value::String(v.into_owned()),
            },
        })
        .collect();
    Key::composite(&values)
}

/// One column of a captured table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    /// Column name.
    pub name: String,
    /// Its type.
    pub ty: PgType,
    /// Part of the key (`_ebb_key`).
    pub is_key: bool,
}

/// A captured table: its current shape and the changes gathered since the last flush.
#[derive(Debug)]
pub struct TableChanges {
    /// `schema.table`.
    pub name: Arc<str>,
    columns: Vec<TableColumn>,
    key: Vec<usize>,
    identity: ReplicaIdentity,
    rows: RowBatchBuilder,
    ops: Vec<Op>,
    keys: Vec<Key>,
    seqs: Vec<u64>,
    lsns: Vec<u64>,
    changed: Vec<Option<Vec<String>>>,
    bytes: usize,
    /// Rows that could not be converted (logged, left out).
    pub rejected: u64,
}

impl TableChanges {
    /// A table with these columns.
    pub fn new(name: Arc<str>, columns: Vec<TableColumn>, identity: ReplicaIdentity) -> Self {
        let mut key: Vec<usize> = (0..columns.len()).filter(|i| columns[*i].is_key).collect();
        if key.is_empty() {
            // No replica identity key: the whole row identifies it.
            key = (0..columns.len()).collect();
        }
        let rows = RowBatchBuilder::new(columns.iter().map(|c| (c.name.as_str(), c.ty.clone())));
        TableChanges {
            name,
            columns,
            key,
            identity,
            rows,
            ops: Vec::new(),
            keys: Vec::new(),
            seqs: Vec::new(),
            lsns: Vec::new(),
            changed: Vec::new(),
            bytes: 0,
            rejected: 0,
        }
    }

    /// A table from a pgoutput Relation message.
    /// `keys` names the key columns when the catalog knows better than the Relation message
    /// (which marks every column as key under `REPLICA IDENTITY FULL`).
    pub fn from_relation(
        relation: &Relation,
        registry: &TypeRegistry,
        keys: Option<&[String]>,
    ) -> TableChanges {
        let schema = if relation.namespace.is_empty() {
            "pg_catalog"
        } else {
            relation.namespace.as_str()
        };
        let columns = relation
            .columns
            .iter()
            .map(|c| TableColumn {
                name: c.name.clone(),
                ty: PgType::resolve(c.type_oid, c.type_modifier, registry),
                is_key: match keys {
                    Some(keys) if !keys.is_empty() => keys.contains(&c.name),
                    _ => c.is_key,
                },
            })
            .collect();
        TableChanges::new(
            format!("{schema}.{}", relation.name).into(),
            columns,
            relation.replica_identity,
        )
    }

    /// The columns.
    pub fn columns(&self) -> &[TableColumn] {
        &self.columns
    }

    /// The entity schema (without the metadata columns).
    pub fn schema(&self) -> &SchemaRef {
        self.rows.schema()
    }

    /// Changes gathered since the last flush.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether none are gathered.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Approximate bytes gathered (the size of the values as received).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The canonical key text of a row given as columns.
    fn key_of(&self, values: &[Column<'_>]) -> Key {
        let parts: Vec<Option<&[u8]>> = self
            .key
            .iter()
            .map(|i| match values.get(*i) {
                Some(Column::Text(v) | Column::Binary(v)) => Some(*v),
                _ => None,
            })
            .collect();
        let types: Vec<&PgType> = self.key.iter().map(|i| &self.columns[*i].ty).collect();
        key_from_text(&parts, &types)
    }

    fn push(
        &mut self,
        op: Op,
        key: Key,
        values: &[Column<'_>],
        commit_lsn: Lsn,
        index: u64,
        changed: Option<Vec<String>>,
    ) {
        let bytes: usize = values
            .iter()
            .map(|c| match c {
                Column::Text(v) | Column::Binary(v) => v.len() + 4,
                _ => 1,
            })
            .sum();
        if let Err(e) = self
            .rows
            .append_columns(values.len(), values.iter().copied())
        {
            // The row is left out of the batch; keep the metadata aligned.
            self.rejected += 1;
            tracing::warn!(table = %self.name, lsn = %commit_lsn, error = %e, "change rejected: a value did not convert");
            return;
        }
        self.bytes += bytes + key.0.len() + 24;
        self.ops.push(op);
        self.keys.push(key);
        self.seqs.push(seq(commit_lsn, index));
        self.lsns.push(commit_lsn.0);
        self.changed.push(changed);
    }

    /// An inserted row.
    pub fn insert(&mut self, new: &TupleData, commit_lsn: Lsn, index: u64) {
        let values: Vec<Column<'_>> = new.iter().collect();
        let key = self.key_of(&values);
        self.push(Op::Insert, key, &values, commit_lsn, index, None);
    }

    /// An updated row. Unchanged TOAST values are filled from the old image when the replica
    /// identity sends one (`FULL`); otherwise they stay empty and are left out of
    /// `_ebb_changed`, which then lists every column that may have changed: an empty value
    /// whose column is not listed means "unchanged, not sent", never NULL.
    pub fn update(&mut self, old: Option<&OldTuple>, new: &TupleData, commit_lsn: Lsn, index: u64) {
        let mut values: Vec<Column<'_>> = new.iter().collect();
        let old_values: Option<Vec<Column<'_>>> = old
            .filter(|o| o.kind == OldTupleKind::Full)
            .map(|o| o.tuple.iter().collect());
        if let Some(old_values) = &old_values {
            for (v, o) in values.iter_mut().zip(old_values) {
                if *v == Column::UnchangedToast && matches!(o, Column::Text(_) | Column::Binary(_))
                {
                    *v = *o;
                }
            }
        }
        let changed: Vec<String> = match &old_values {
            Some(old_values) => values
                .iter()
                .zip(old_values)
                .zip(&self.columns)
                .filter(|((v, o), _)| v != o && **v != Column::UnchangedToast)
                .map(|(_, c)| c.name.clone())
                .collect(),
            None => values
                .iter()
                .zip(&self.columns)
                .filter(|(v, _)| **v != Column::UnchangedToast)
                .map(|(_, c)| c.name.clone())
                .collect(),
        };
        let key = self.key_of(&values);
        if let Some(old) = old
            && old.kind == OldTupleKind::Key
        {
            // The key changed: the old key's row is gone.
            let old_values: Vec<Column<'_>> = old.tuple.iter().collect();
            let old_key = self.key_of(&old_values);
            if old_key != key {
                self.push(Op::Delete, old_key, &old_values, commit_lsn, index, None);
            }
        }
        self.push(Op::Update, key, &values, commit_lsn, index, Some(changed));
    }

    /// A deleted row: the key, or the whole old row with `REPLICA IDENTITY FULL`.
    pub fn delete(&mut self, old: &OldTuple, commit_lsn: Lsn, index: u64) {
        let values: Vec<Column<'_>> = old.tuple.iter().collect();
        let key = self.key_of(&values);
        self.push(Op::Delete, key, &values, commit_lsn, index, None);
    }

    /// Whether the replica identity sends old images.
    pub fn has_full_identity(&self) -> bool {
        self.identity == ReplicaIdentity::Full
    }

    /// The changes gathered so far as a delivery; `None` when there are none.
    pub fn finish(&mut self) -> Result<Option<Delivery>, CdcError> {
        if self.ops.is_empty() {
            // Drop rows a rejected-only batch left in the builder.
            let _ = self.rows.finish();
            return Ok(None);
        }
        let rows = self
            .rows
            .finish()
            .map_err(|e| CdcError::Data(format!("table {}: building a batch: {e}", self.name)))?;
        let entity: RecordBatch = rows.batch;
        let unchanged_toast = if rows.unchanged_toast.is_empty() {
            None
        } else {
            let mut per_row: Vec<Vec<&str>> = vec![Vec::new(); entity.num_rows()];
            for (row, column) in &rows.unchanged_toast {
                if let (Some(slot), Some(c)) = (per_row.get_mut(*row), self.columns.get(*column)) {
                    slot.push(c.name.as_str());
                }
            }
            let mut builder = ListBuilder::new(StringBuilder::new());
            for names in per_row {
                for n in &names {
                    builder.values().append_value(n);
                }
                builder.append(!names.is_empty());
            }
            Some(Arc::new(builder.finish()))
        };
        let changes =
            ChangeBatch::from_parts(&self.ops, &self.keys, &self.seqs, &self.changed, &entity)
                .map_err(|e| {
                    CdcError::Data(format!("table {}: building a change batch: {e}", self.name))
                })?;
        let lsns = Arc::new(UInt64Array::from(std::mem::take(&mut self.lsns)));
        self.ops.clear();
        self.keys.clear();
        self.seqs.clear();
        self.changed.clear();
        self.bytes = 0;
        Ok(Some(Delivery {
            table: self.name.clone(),
            changes,
            lsns,
            unchanged_toast,
        }))
    }
}
