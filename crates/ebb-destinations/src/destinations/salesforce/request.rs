//! Request bodies of Bulk API 2.0 ingest jobs: the job, its CSV data, and the SOQL query
//! that finds record ids by external id.
//!
//! CSV values follow the Bulk API's rules: an empty value leaves a field as it is, so a
//! JSON null is written `#N/A`, which clears it; booleans are `true`/`false`; numbers are
//! written as JSON writes them; objects and arrays as JSON text. Records of one job may
//! carry different fields (only changed fields are sent): the header is the union and a
//! record without a field leaves it empty, which changes nothing.

use serde_json::{Value, json};

use crate::Record;

/// The job: `operation` is Salesforce's (`upsert`, `insert`, `update`, `delete`).
pub fn job_body(object: &str, operation: &str, external_id: Option<&str>) -> Value {
    let mut body = json!({
        "object": object,
        "operation": operation,
        "contentType": "CSV",
        "lineEnding": "LF",
        "columnDelimiter": "COMMA",
    });
    if let Some(ext) = external_id {
        body["externalIdFieldName"] = json!(ext);
    }
    body
}

/// A value as Bulk API CSV text.
pub fn csv_value(value: &Value) -> String {
    match value {
        Value::Null => "#N/A".into(),
        Value::String(s) if s.is_empty() => "#N/A".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// The CSV of a job: the key column (`key_column`, holding each row's `keys[i]`) first,
/// then the union of the records' fields in first-seen order (fields named like the key
/// column are skipped: the key is the record's identity).
pub fn csv_data(key_column: &str, keys: &[&str], records: &[&Record]) -> Vec<u8> {
    let mut header: Vec<&str> = vec![key_column];
    for record in records {
        for name in record.fields.keys() {
            if !name.eq_ignore_ascii_case(key_column) && !header.contains(&name.as_str()) {
                header.push(name);
            }
        }
    }
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    writer.write_record(&header).expect("writes to memory");
    for (record, key) in records.iter().zip(keys) {
        let row = header.iter().enumerate().map(|(i, name)| {
            if i == 0 {
                key.to_string()
            } else {
                record.fields.get(*name).map(csv_value).unwrap_or_default()
            }
        });
        writer.write_record(row).expect("writes to memory");
    }
    writer.into_inner().expect("writes to memory")
}

/// Values in one id lookup at most (the query goes in the URL, which Salesforce caps at
/// 16,384 characters).
pub const LOOKUP_CHUNK: usize = 200;

/// `SELECT Id, EXT FROM OBJECT WHERE EXT IN ('a','b')`, values escaped for SOQL.
pub fn lookup_query(object: &str, external_id: &str, values: &[&str]) -> String {
    let list: Vec<String> = values
        .iter()
        .map(|v| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect();
    format!(
        "SELECT Id, {external_id} FROM {object} WHERE {external_id} IN ({})",
        list.join(",")
    )
}
