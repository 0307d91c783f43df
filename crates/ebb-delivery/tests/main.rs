//! Integration tests of ebb-delivery against the testkit's SaaS API emulators, with
//! injected throttling, server errors, timeouts and dropped connections.

mod braze;
mod fairness;
mod hubspot;
mod salesforce;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use ebb_core::change::{ChangeBatch, Key, Op};
use ebb_delivery::RetryPolicy;

/// A change batch of contacts: key, email, firstname, mrr (text, so it can be invalid).
fn contacts(rows: &[(Op, String, Option<String>, Option<String>)]) -> ChangeBatch {
    let entity = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("email", DataType::Utf8, true),
            Field::new("firstname", DataType::Utf8, true),
            Field::new("mrr", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2.clone()))),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| Some(format!("Person {}", r.1))),
            )),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.3.clone()))),
        ],
    )
    .unwrap();
    let n = rows.len();
    ChangeBatch::from_parts(
        &rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        &rows
            .iter()
            .map(|r| Key::single(r.1.clone()))
            .collect::<Vec<_>>(),
        &(0..n as u64).collect::<Vec<_>>(),
        &vec![None; n],
        &entity,
    )
    .unwrap()
}

/// Fast retries: tests inject many faults.
fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(10),
        max: Duration::from_millis(200),
        attempts: 8,
        throttles: 30,
    }
}
