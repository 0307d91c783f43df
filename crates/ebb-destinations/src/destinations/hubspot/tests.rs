use ebb_core::Secret;
use serde_json::json;

use super::*;

fn record(key: &str, fields: Value) -> Record {
    Record {
        op: Operation::Upsert,
        key: key.into(),
        id: format!("{key}@example.com"),
        fields: fields.as_object().unwrap().clone(),
        idempotency_key: key.into(),
    }
}

#[test]
fn upsert_inputs_carry_id_property_and_trace_ids() {
    let body = request::write_body(
        &[record(
            "a",
            json!({"email": "a@example.com", "mrr": 12.5, "vip": true, "note": null}),
        )],
        "email",
    );
    assert_eq!(
        body,
        json!({"inputs": [{
            "idProperty": "email",
            "id": "a@example.com",
            "properties": {"mrr": "12.5", "vip": "true", "note": ""},
            "objectWriteTraceId": "0",
        }]})
    );
}

#[test]
fn multi_status_errors_map_back_to_records() {
    let body: response::BatchResponse = serde_json::from_value(json!({
        "status": "COMPLETE",
        "results": [{"id": "1", "objectWriteTraceId": "0"}, {"id": "2", "objectWriteTraceId": "2"}],
        "numErrors": 1,
        "errors": [{"status": "error", "category": "VALIDATION_ERROR",
                    "message": "Property values were not valid",
                    "context": {"objectWriteTraceId": ["1"], "propertyName": ["mrr"]}}],
    }))
    .unwrap();
    let results = response::write_results(4, &body);
    assert_eq!(results[0], RecordResult::Accepted);
    assert_eq!(
        results[1],
        RecordResult::Rejected {
            reason: "VALIDATION_ERROR: Property values were not valid".into(),
            field: Some("mrr".into())
        }
    );
    assert_eq!(results[2], RecordResult::Accepted);
    assert!(matches!(results[3], RecordResult::Retryable { .. }));
}

#[test]
fn rate_limit_answers_carry_the_policy() {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("retry-after", "2".parse().unwrap());
    let err = response::error(
        reqwest::StatusCode::TOO_MANY_REQUESTS,
        &headers,
        r#"{"status":"error","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}"#,
    );
    assert!(matches!(
        err,
        DestinationError::Throttled { after: Some(a), policy: Some(p) }
            if a == std::time::Duration::from_secs(2) && p == "TEN_SECONDLY_ROLLING"
    ));
}

#[test]
fn mapping_needs_internal_names() {
    let dest =
        HubspotDestination::new(HubspotConfig::new(Secret::new("t"), "contacts", "email")).unwrap();
    assert!(dest.validate_mapping(&["email", "lead_score"]).is_ok());
    let problems = dest.validate_mapping(&["Lead Score"]).unwrap_err();
    assert!(
        problems[0].message.contains("\"lead_score\""),
        "{}",
        problems[0]
    );
}

#[test]
fn config_is_checked() {
    let mut c = HubspotConfig::new(Secret::new("t"), "contacts", "email");
    assert!(c.validate().is_ok());
    c.object_type = "2-1234".into();
    assert!(c.validate().is_ok());
    c.object_type = "Contacts".into();
    assert!(c.validate().unwrap_err().contains("contacts, companies"));
}
