//! Planning: change batches and a sync's settings to the [`Record`]s a destination takes.
//!
//! | mode | insert / upsert | update | delete |
//! |---|---|---|---|
//! | upsert | upsert | upsert | — |
//! | update | update | update | — |
//! | insert | insert | — | — |
//! | mirror | upsert | upsert | delete |
//! | archive | upsert | upsert | archive |
//!
//! **Only changed fields.** An update whose change carries `_ebb_changed` (the diff knows
//! which columns changed) is sent with only the mapped fields of those columns when
//! [`SyncPlan::changed_fields_only`] is on (the default for every mode that sends
//! updates) and the destination takes partial updates
//! ([`Capabilities::partial_updates`](ebb_destinations::Capabilities::partial_updates):
//! HubSpot, Salesforce, Braze, Postgres; not a webhook or a Parquet export, whose messages
//! stand for the whole record). Inserts, and updates without `_ebb_changed`, carry every
//! mapped field. An update none of whose mapped columns changed is not sent.

use arrow::array::RecordBatch;
use arrow::json::WriterBuilder;
use arrow::json::writer::JsonArray;
use ebb_core::change::{ChangeBatch, Op};
use ebb_core::config::project::SyncMode;
use ebb_core::config::sync::SyncConfig;
use ebb_destinations::{Destination, Operation, Record};
use serde_json::{Map, Value};

use crate::idempotency::{self, Origin};

/// How a sync's changes become records.
#[derive(Debug, Clone)]
pub struct SyncPlan {
    pub origin: Origin,
    pub mode: SyncMode,
    /// Source column → destination field, in order. Empty: every entity column under its
    /// own name.
    pub mapping: Vec<(String, String)>,
    /// The source column whose value finds the record in the destination (`match.source`);
    /// without one, the entity's key (`_ebb_key`).
    pub match_column: Option<String>,
    /// Send updates with only their changed fields (see the module docs). On by default.
    pub changed_fields_only: bool,
}

/// Why changes cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "mapped column \"{0}\" is not in the model's output; map one of its columns or add it to the model"
    )]
    UnknownColumn(String),
    #[error("cannot turn rows into JSON: {0}")]
    Json(String),
}

impl SyncPlan {
    /// The plan of a sync from its config (`mode` falls back to `default_mode`).
    pub fn from_config(name: &str, sync: &SyncConfig, default_mode: SyncMode) -> SyncPlan {
        SyncPlan {
            origin: Origin::Sync {
                name: name.to_string(),
            },
            mode: sync.mode.unwrap_or(default_mode),
            mapping: sync
                .mapping
                .value
                .iter()
                .map(|m| (m.from.value.clone(), m.to.value.clone()))
                .collect(),
            match_column: sync.match_on.as_ref().map(|m| m.source.value.clone()),
            changed_fields_only: true,
        }
    }

    /// The destination operation for a change, or `None` when the mode skips it.
    pub fn operation(&self, op: Op) -> Option<Operation> {
        use SyncMode as M;
        match (self.mode, op) {
            (M::Upsert | M::Mirror | M::Archive, Op::Insert | Op::Update | Op::Upsert) => {
                Some(Operation::Upsert)
            }
            (M::Update, Op::Insert | Op::Update | Op::Upsert) => Some(Operation::Update),
            (M::Insert, Op::Insert | Op::Upsert) => Some(Operation::Insert),
            (M::Mirror, Op::Delete) => Some(Operation::Delete),
            (M::Archive, Op::Delete) => Some(Operation::Archive),
            _ => None,
        }
    }

    /// Checks, without I/O, that the destination takes the operations of this mode and the
    /// mapped field names.
    pub fn validate(&self, destination: &impl Destination) -> Vec<String> {
        let mut problems = Vec::new();
        let caps = destination.capabilities();
        let mut ops: Vec<Operation> = [Op::Insert, Op::Update, Op::Delete]
            .into_iter()
            .filter_map(|op| self.operation(op))
            .collect();
        ops.dedup();
        for op in ops {
            if !caps.supports(op) {
                problems.push(format!(
                    "the {} destination does not support {op}; choose another mode",
                    destination.kind()
                ));
            }
        }
        let fields: Vec<&str> = self.mapping.iter().map(|(_, to)| to.as_str()).collect();
        if let Err(errs) = destination.validate_mapping(&fields) {
            problems.extend(errs.iter().map(|e| format!("mapping: {e}")));
        }
        problems
    }
}

/// The records for one change batch, in order; changes the mode skips are left out.
/// Updates carry only their changed fields when the plan asks for it (the destination
/// is not consulted: [`deliver_changes`](crate::deliver_changes) does that).
pub fn plan(batch: &ChangeBatch, plan: &SyncPlan) -> Result<Vec<Record>, PlanError> {
    plan_records(batch, plan, plan.changed_fields_only)
}

/// [`plan`], with `changed_only` deciding whether updates carry only changed fields.
pub fn plan_records(
    batch: &ChangeBatch,
    plan: &SyncPlan,
    changed_only: bool,
) -> Result<Vec<Record>, PlanError> {
    let entity = batch.entity();
    let schema = entity.schema();
    let mapping: Vec<(String, String)> = if plan.mapping.is_empty() {
        schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.name().clone()))
            .collect()
    } else {
        plan.mapping.clone()
    };
    for column in mapping
        .iter()
        .map(|(from, _)| from)
        .chain(plan.match_column.iter())
    {
        if schema.index_of(column).is_err() {
            return Err(PlanError::UnknownColumn(column.clone()));
        }
    }
    let rows = json_rows(&entity)?;
    let mut records = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let Some(op) = plan.operation(batch.op(i)) else {
            continue;
        };
        let key = batch.key(i).to_string();
        let id = match &plan.match_column {
            Some(column) => match row.get(column) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            },
            None => key.clone(),
        };
        let changed = (changed_only && batch.op(i) == Op::Update)
            .then(|| batch.changed(i))
            .flatten();
        let fields: Map<String, Value> = if op.removes() {
            Map::new()
        } else {
            mapping
                .iter()
                .filter(|(from, _)| changed.as_ref().is_none_or(|c| c.contains(from)))
                .map(|(from, to)| (to.clone(), row.get(from).cloned().unwrap_or(Value::Null)))
                .collect()
        };
        if changed.is_some() && fields.is_empty() {
            continue;
        }
        let idempotency_key = match &plan.origin {
            Origin::Sync { name } => {
                idempotency::for_sync(name, &key, &idempotency::row_hash(op, &fields))
            }
            Origin::Cdc { slot } => idempotency::for_cdc(slot, batch.seq(i)),
        };
        records.push(Record {
            op,
            key,
            id,
            fields,
            idempotency_key,
        });
    }
    Ok(records)
}

/// Each row as a JSON object, nulls included.
fn json_rows(batch: &RecordBatch) -> Result<Vec<Map<String, Value>>, PlanError> {
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(Vec::new());
    writer
        .write(batch)
        .map_err(|e| PlanError::Json(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| PlanError::Json(e.to_string()))?;
    let bytes = writer.into_inner();
    serde_json::from_slice(&bytes).map_err(|e| PlanError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use ebb_core::change::Key;

    use super::*;

    fn changes() -> ChangeBatch {
        let entity = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("email", DataType::Utf8, true),
                Field::new("mrr", DataType::Int64, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a@x.io"),
                    Some("b@x.io"),
                    Some("c@x.io"),
                ])),
                Arc::new(Int64Array::from(vec![Some(10), None, Some(3)])),
            ],
        )
        .unwrap();
        ChangeBatch::from_parts(
            &[Op::Insert, Op::Update, Op::Delete],
            &[Key::single("1"), Key::single("2"), Key::single("3")],
            &[1, 2, 3],
            &[None, Some(vec!["mrr".into()]), None],
            &entity,
        )
        .unwrap()
    }

    fn sync_plan(mode: SyncMode) -> SyncPlan {
        SyncPlan {
            origin: Origin::Sync {
                name: "contacts".into(),
            },
            mode,
            mapping: vec![("mrr".into(), "monthly_revenue".into())],
            match_column: Some("email".into()),
            changed_fields_only: true,
        }
    }

    #[test]
    fn modes_choose_operations() {
        let ops = |mode| -> Vec<Operation> {
            plan(&changes(), &sync_plan(mode))
                .unwrap()
                .iter()
                .map(|r| r.op)
                .collect()
        };
        use Operation as O;
        assert_eq!(ops(SyncMode::Upsert), vec![O::Upsert, O::Upsert]);
        assert_eq!(ops(SyncMode::Update), vec![O::Update, O::Update]);
        assert_eq!(ops(SyncMode::Insert), vec![O::Insert]);
        assert_eq!(ops(SyncMode::Mirror), vec![O::Upsert, O::Upsert, O::Delete]);
        assert_eq!(
            ops(SyncMode::Archive),
            vec![O::Upsert, O::Upsert, O::Archive]
        );
    }

    #[test]
    fn records_carry_mapped_fields_match_value_and_stable_keys() {
        let records = plan(&changes(), &sync_plan(SyncMode::Mirror)).unwrap();
        assert_eq!(records[0].id, "a@x.io");
        assert_eq!(records[0].fields["monthly_revenue"], 10);
        assert_eq!(records[1].fields["monthly_revenue"], Value::Null);
        assert!(records[2].fields.is_empty());
        let again = plan(&changes(), &sync_plan(SyncMode::Mirror)).unwrap();
        assert_eq!(records, again);
        assert_ne!(records[0].idempotency_key, records[1].idempotency_key);
    }

    #[test]
    fn updates_carry_only_changed_fields_when_asked() {
        let mut p = sync_plan(SyncMode::Upsert);
        p.mapping.push(("email".into(), "email".into()));
        let records = plan(&changes(), &p).unwrap();
        // Row 2 is an update whose `_ebb_changed` is [mrr].
        assert_eq!(
            records[1].fields.keys().collect::<Vec<_>>(),
            vec!["monthly_revenue"]
        );
        assert_eq!(records[0].fields.len(), 2, "inserts carry every field");
        let all = plan_records(&changes(), &p, false).unwrap();
        assert_eq!(all[1].fields.len(), 2);
        assert_ne!(all[1].idempotency_key, records[1].idempotency_key);
        // An update none of whose mapped columns changed is not sent.
        p.mapping = vec![("email".into(), "email".into())];
        let records = plan(&changes(), &p).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].key, "1");
    }

    #[test]
    fn unknown_columns_are_named() {
        let mut p = sync_plan(SyncMode::Upsert);
        p.mapping.push(("arr".into(), "arr".into()));
        let err = plan(&changes(), &p).unwrap_err();
        assert!(err.to_string().contains("\"arr\""), "{err}");
    }
}
