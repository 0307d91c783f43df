//! Integration tests of ebb-destinations against the testkit's SaaS API emulators.

mod hubspot;
mod parquet;
mod postgres;
mod salesforce;
mod webhook;

use ebb_destinations::{Operation, Record};
use serde_json::Value;

/// A record with the given fields (a JSON object).
fn record(op: Operation, key: &str, fields: Value) -> Record {
    Record {
        op,
        key: key.to_string(),
        id: key.to_string(),
        fields: fields.as_object().cloned().unwrap_or_default(),
        idempotency_key: format!("sync:test:{key}:{}", fields),
    }
}
