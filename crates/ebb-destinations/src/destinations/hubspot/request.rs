//! Request bodies of the CRM v3 batch endpoints.
//!
//! Property values are strings in HubSpot: numbers and booleans are written as text, null
//! as the empty string (which clears the property).

use serde_json::{Value, json};

use crate::Record;

/// `batch/upsert` and `batch/update`: each input is found by `idProperty` and carries its
/// position in the batch as `objectWriteTraceId`, which turns on 207 partial results and
/// maps each error back to its record.
pub fn write_body(records: &[Record], id_property: &str) -> Value {
    let inputs: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let properties: serde_json::Map<String, Value> = r
                .fields
                .iter()
                .filter(|(k, _)| k.as_str() != id_property)
                .map(|(k, v)| (k.clone(), Value::String(property_value(v))))
                .collect();
            json!({
                "idProperty": id_property,
                "id": r.id,
                "properties": properties,
                "objectWriteTraceId": i.to_string(),
            })
        })
        .collect();
    json!({ "inputs": inputs })
}

/// `batch/read` by `idProperty`, to find record ids before archiving.
pub fn read_body(records: &[Record], id_property: &str) -> Value {
    json!({
        "idProperty": id_property,
        "properties": [id_property],
        "inputs": records.iter().map(|r| json!({"id": r.id})).collect::<Vec<_>>(),
    })
}

/// `batch/archive` by HubSpot record id.
pub fn archive_body(ids: &[String]) -> Value {
    json!({ "inputs": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>() })
}

/// A JSON value as HubSpot property text.
pub fn property_value(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
