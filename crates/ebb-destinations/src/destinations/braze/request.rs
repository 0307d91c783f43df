//! `/users/track` bodies: one attributes object per record, found by `external_id`.

use serde_json::{Value, json};

use crate::{Operation, Record};

/// The attributes objects; an update-only record sets `_update_existing_only` so Braze
/// never creates a user for it.
pub fn track_body(records: &[Record]) -> Value {
    let attributes: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut object = r.fields.clone();
            object.insert("external_id".into(), Value::String(r.id.clone()));
            if r.op == Operation::Update {
                object.insert("_update_existing_only".into(), Value::Bool(true));
            }
            Value::Object(object)
        })
        .collect();
    json!({ "attributes": attributes })
}
