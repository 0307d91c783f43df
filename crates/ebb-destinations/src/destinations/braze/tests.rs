use ebb_core::Secret;
use serde_json::json;

use super::*;

fn record(op: Operation, id: &str) -> Record {
    Record {
        op,
        key: id.into(),
        id: id.into(),
        fields: json!({"first_name": "Ada"}).as_object().unwrap().clone(),
        idempotency_key: id.into(),
    }
}

#[test]
fn attributes_are_found_by_external_id() {
    let body = request::track_body(&[
        record(Operation::Upsert, "u1"),
        record(Operation::Update, "u2"),
    ]);
    assert_eq!(
        body,
        json!({"attributes": [
            {"external_id": "u1", "first_name": "Ada"},
            {"external_id": "u2", "first_name": "Ada", "_update_existing_only": true},
        ]})
    );
}

#[test]
fn errors_map_back_by_index() {
    let body: response::TrackResponse = serde_json::from_value(json!({
        "message": "success",
        "errors": [{"type": "'x' is not a valid email address", "input_array": "attributes", "index": 1}],
    }))
    .unwrap();
    let r = response::results(3, &body);
    assert_eq!(r[0], RecordResult::Accepted);
    assert!(
        matches!(&r[1], RecordResult::Rejected { reason, .. } if reason.contains("valid email"))
    );
}

#[test]
fn mapping_refuses_reserved_names() {
    let dest = BrazeDestination::new(
        BrazeConfig::new("https://rest.iad-01.braze.com", Secret::new("k")).unwrap(),
    )
    .unwrap();
    assert!(dest.validate_mapping(&["first_name", "mrr"]).is_ok());
    assert_eq!(
        dest.validate_mapping(&["external_id", "_x"])
            .unwrap_err()
            .len(),
        2
    );
}
