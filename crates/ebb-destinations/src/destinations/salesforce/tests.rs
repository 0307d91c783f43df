use ebb_core::Secret;
use serde_json::json;

use super::*;

fn record(key: &str, fields: Value) -> Record {
    Record {
        op: Operation::Upsert,
        key: key.into(),
        id: key.into(),
        fields: fields.as_object().unwrap().clone(),
        idempotency_key: key.into(),
    }
}

#[test]
fn csv_has_the_key_first_and_the_union_of_fields() {
    let a = record(
        "a",
        json!({"Email": "a@x.io", "MRR__c": 12.5, "Note__c": null}),
    );
    let b = record("b,\"q\"", json!({"Active__c": true}));
    let csv = request::csv_data("Ebb_Id__c", &["a", "b,\"q\""], &[&a, &b]);
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "Ebb_Id__c,Email,MRR__c,Note__c,Active__c\n\
         a,a@x.io,12.5,#N/A,\n\
         \"b,\"\"q\"\"\",,,,true\n"
    );
}

#[test]
fn lookup_queries_escape_values() {
    assert_eq!(
        request::lookup_query("Contact", "Ebb_Id__c", &["a", "o'neil"]),
        "SELECT Id, Ebb_Id__c FROM Contact WHERE Ebb_Id__c IN ('a','o\\'neil')"
    );
}

#[test]
fn failed_results_map_back_with_the_field() {
    let keys = ["a".to_string(), "b".to_string(), "c".to_string()];
    let map = response::ResultMap {
        index: keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), vec![i]))
            .collect(),
        column: "Ebb_Id__c",
    };
    let mut results = vec![
        RecordResult::Retryable {
            after: None,
            reason: "none".into()
        };
        3
    ];
    let ok = response::read_results(
        "\"sf__Id\",\"sf__Created\",\"Ebb_Id__c\"\n\"003\",\"true\",\"a\"\n",
    )
    .unwrap();
    let failed = response::read_results(
        "\"sf__Id\",\"sf__Error\",\"EBB_ID__C\"\n\"\",\"INVALID_EMAIL_ADDRESS:Email: invalid email address: x:Email --\",\"b\"\n",
    )
    .unwrap();
    map.successful(&ok, &mut results);
    map.failed(&failed, &mut results);
    assert_eq!(results[0], RecordResult::Accepted);
    assert_eq!(
        results[1],
        RecordResult::Rejected {
            reason: "INVALID_EMAIL_ADDRESS:Email: invalid email address: x:Email --".into(),
            field: Some("Email".into())
        }
    );
    assert!(matches!(results[2], RecordResult::Retryable { .. }));
    assert_eq!(
        response::error_field("MISSING_ARGUMENT:Ebb_Id__c not specified:--"),
        None
    );
}

#[test]
fn request_limit_errors_throttle_and_bad_sessions_are_fatal() {
    let headers = HeaderMap::new();
    let err = response::error(
        reqwest::StatusCode::FORBIDDEN,
        &headers,
        r#"[{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":"TotalRequests Limit exceeded."}]"#,
    );
    assert!(
        matches!(err, DestinationError::Throttled { policy: Some(p), .. } if p == "REQUEST_LIMIT_EXCEEDED")
    );
    let err = response::error(
        reqwest::StatusCode::UNAUTHORIZED,
        &headers,
        r#"[{"errorCode":"INVALID_SESSION_ID","message":"Session expired or invalid"}]"#,
    );
    assert!(matches!(err, DestinationError::Fatal { .. }));
    let mut headers = HeaderMap::new();
    headers.insert("sforce-limit-info", "api-usage=25/15000".parse().unwrap());
    assert_eq!(response::rate_signal(&headers).remaining, Some(14_975));
}

#[test]
fn config_and_mapping_are_checked() {
    let c = SalesforceConfig::new(
        "https://acme.my.salesforce.com",
        Secret::new("t"),
        "Contact",
        "Ebb_Id__c",
    )
    .unwrap();
    let dest = SalesforceDestination::new(c.clone()).unwrap();
    assert!(
        dest.validate_mapping(&["Email", "MRR__c", "ns__Score__c"])
            .is_ok()
    );
    let problems = dest.validate_mapping(&["Lead Score", "Id"]).unwrap_err();
    assert_eq!(problems.len(), 2);
    let mut bad = c;
    bad.api_version = "v62".into();
    assert!(bad.validate().unwrap_err().contains("62.0"));
    assert!(SalesforceConfig::new("https://x", Secret::new("t"), "Contact Us", "Id").is_err());
}
