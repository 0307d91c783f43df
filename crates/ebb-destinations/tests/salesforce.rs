use std::time::Duration;

use ebb_core::Secret;
use ebb_destinations::destinations::salesforce::{SalesforceConfig, SalesforceDestination};
use ebb_destinations::{Destination, DestinationError, Operation, Record, RecordResult};
use ebb_testkit::emulators::Fault;
use ebb_testkit::emulators::salesforce::SalesforceEmulator;
use serde_json::json;

use crate::record;

const TOKEN: &str = "00Dxx0000001gPL!AQ4AQ.test";

fn destination(emulator: &SalesforceEmulator, external_id: &str) -> SalesforceDestination {
    let mut config = SalesforceConfig::new(
        &emulator.instance_url(),
        Secret::new(TOKEN),
        "Contact",
        external_id,
    )
    .unwrap();
    config.timeout = Duration::from_millis(500);
    config.poll_interval = Duration::from_millis(5);
    SalesforceDestination::new(config).unwrap()
}

fn contact(op: Operation, n: u32, email: &str) -> Record {
    let mut r = record(
        op,
        &n.to_string(),
        json!({"LastName": format!("Person {n}"), "Email": email, "MRR__c": n * 10}),
    );
    r.id = format!("ebb-{n}");
    r
}

#[tokio::test]
async fn a_job_applies_valid_rows_and_maps_failed_results_back() {
    let emulator = SalesforceEmulator::builder(TOKEN).start().await;
    let dest = destination(&emulator, "Ebb_Id__c");
    let mut no_name = contact(Operation::Upsert, 3, "p3@example.com");
    no_name.fields.remove("LastName");
    let mut no_id = contact(Operation::Upsert, 4, "p4@example.com");
    no_id.id = String::new();
    let batch = [
        contact(Operation::Upsert, 1, "p1@example.com"),
        contact(Operation::Upsert, 2, "not-an-email"),
        no_name,
        no_id,
    ];
    let outcome = dest.write(&batch).await.unwrap();
    assert_eq!(outcome.results[0], RecordResult::Accepted);
    match &outcome.results[1] {
        RecordResult::Rejected { reason, field } => {
            assert!(reason.starts_with("INVALID_EMAIL_ADDRESS:"), "{reason}");
            assert_eq!(field.as_deref(), Some("Email"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&outcome.results[2], RecordResult::Rejected { reason, field: Some(f) }
            if reason.starts_with("REQUIRED_FIELD_MISSING") && f == "LastName"),
        "{:?}",
        outcome.results[2]
    );
    assert!(matches!(&outcome.results[3], RecordResult::Rejected { .. }));
    assert!(outcome.rate.remaining.is_some(), "Sforce-Limit-Info read");
    let held = emulator.find("Contact", "Ebb_Id__c", "ebb-1").unwrap();
    assert_eq!(held.fields["MRR__c"], "10");
    assert_eq!(emulator.records("Contact").len(), 1);

    // The same upsert again (a retried job) changes nothing.
    dest.write(&batch[..1]).await.unwrap();
    let held = emulator.find("Contact", "Ebb_Id__c", "ebb-1").unwrap();
    assert_eq!((held.writes, held.versions), (2, 1));

    // A null clears the field (#N/A); an absent field is left as it is.
    let mut clear = record(Operation::Upsert, "1", json!({"MRR__c": null}));
    clear.id = "ebb-1".into();
    assert_eq!(
        dest.write(&[clear]).await.unwrap().results[0],
        RecordResult::Accepted
    );
    let held = emulator.find("Contact", "Ebb_Id__c", "ebb-1").unwrap();
    assert!(!held.fields.contains_key("MRR__c"));
    assert_eq!(held.fields["LastName"], "Person 1");
}

#[tokio::test]
async fn deletes_and_updates_find_ids_by_external_id() {
    let emulator = SalesforceEmulator::builder(TOKEN).start().await;
    let dest = destination(&emulator, "Ebb_Id__c");
    let batch: Vec<Record> = (1..=3)
        .map(|n| contact(Operation::Upsert, n, &format!("p{n}@example.com")))
        .collect();
    assert!(
        dest.write(&batch)
            .await
            .unwrap()
            .results
            .iter()
            .all(|r| *r == RecordResult::Accepted)
    );

    let mut update = contact(Operation::Update, 2, "new2@example.com");
    update.fields.remove("LastName");
    let missing = contact(Operation::Update, 9, "p9@example.com");
    let outcome = dest.write(&[update, missing]).await.unwrap();
    assert_eq!(outcome.results[0], RecordResult::Accepted);
    assert!(
        matches!(&outcome.results[1], RecordResult::Rejected { reason, .. } if reason.contains("ebb-9"))
    );
    assert_eq!(
        emulator
            .find("Contact", "Ebb_Id__c", "ebb-2")
            .unwrap()
            .fields["Email"],
        "new2@example.com"
    );
    assert_eq!(
        emulator.records("Contact").len(),
        3,
        "update-only created nothing"
    );

    let delete = |n: u32| {
        let mut r = record(Operation::Delete, &n.to_string(), json!({}));
        r.id = format!("ebb-{n}");
        r
    };
    let outcome = dest.write(&[delete(1), delete(7)]).await.unwrap();
    assert_eq!(
        outcome.results,
        vec![RecordResult::Accepted, RecordResult::Accepted]
    );
    assert!(emulator.find("Contact", "Ebb_Id__c", "ebb-1").is_none());
    assert!(
        emulator
            .records("Contact")
            .iter()
            .any(|r| r.deleted && r.fields["Ebb_Id__c"] == "ebb-1")
    );
    // Deleting it again is a no-op.
    assert_eq!(
        dest.write(&[delete(1)]).await.unwrap().results,
        vec![RecordResult::Accepted]
    );
}

#[tokio::test]
async fn an_unknown_field_fails_the_job_and_rejects_every_record_naming_it() {
    let emulator = SalesforceEmulator::builder(TOKEN).start().await;
    let dest = destination(&emulator, "Ebb_Id__c");
    let mut r = contact(Operation::Upsert, 1, "p1@example.com");
    r.fields.insert("Score__c".into(), json!(3));
    let outcome = dest.write(&[r.clone(), r]).await.unwrap();
    for result in &outcome.results {
        assert!(
            matches!(result, RecordResult::Rejected { reason, field: Some(f) }
                if reason.contains("Field name not found") && f == "Score__c"),
            "{result:?}"
        );
    }
    assert!(emulator.records("Contact").is_empty());
}

#[tokio::test]
async fn unprocessed_records_are_retryable_and_faults_abort_the_job() {
    let emulator = SalesforceEmulator::builder(TOKEN).start().await;
    let dest = destination(&emulator, "Ebb_Id__c");
    emulator.set_process_limit(Some(2));
    let batch: Vec<Record> = (1..=4)
        .map(|n| contact(Operation::Upsert, n, &format!("p{n}@example.com")))
        .collect();
    let outcome = dest.write(&batch).await.unwrap();
    assert_eq!(
        &outcome.results[..2],
        &[RecordResult::Accepted, RecordResult::Accepted]
    );
    assert!(
        matches!(&outcome.results[2], RecordResult::Retryable { reason, .. } if reason.contains("unprocessedrecords"))
    );
    assert!(matches!(
        &outcome.results[3],
        RecordResult::Retryable { .. }
    ));
    emulator.set_process_limit(None);

    // Every second request answers 503: the job is aborted, the batch retryable, nothing
    // applied.
    let before = emulator.records("Contact").len();
    let fresh = contact(Operation::Upsert, 5, "p5@example.com");
    emulator.faults().inject_every(2, vec![Fault::ServerError]);
    let err = dest.write(std::slice::from_ref(&fresh)).await.unwrap_err();
    assert!(matches!(err, DestinationError::Retryable { .. }), "{err}");
    emulator.faults().clear();
    assert_eq!(emulator.records("Contact").len(), before);
    assert!(
        emulator
            .jobs()
            .values()
            .all(|s| !matches!(s, ebb_testkit::emulators::salesforce::JobState::Open)),
        "the failed job was aborted: {:?}",
        emulator.jobs()
    );

    // A bad token is fatal.
    let mut config = SalesforceConfig::new(
        &emulator.instance_url(),
        Secret::new("expired"),
        "Contact",
        "Ebb_Id__c",
    )
    .unwrap();
    config.poll_interval = Duration::from_millis(5);
    let bad = SalesforceDestination::new(config).unwrap();
    assert!(matches!(
        bad.write(&[fresh]).await.unwrap_err(),
        DestinationError::Fatal { .. }
    ));
}

#[tokio::test]
async fn the_request_limit_is_throttling() {
    let emulator = SalesforceEmulator::builder(TOKEN)
        .api_limit(3, Duration::from_secs(60))
        .start()
        .await;
    let dest = destination(&emulator, "Ebb_Id__c");
    let err = dest
        .write(&[contact(Operation::Upsert, 1, "p1@example.com")])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DestinationError::Throttled { policy: Some(p), .. } if p == "REQUEST_LIMIT_EXCEEDED"),
        "{err}"
    );
}
