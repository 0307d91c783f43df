use std::time::Duration;

use ebb_core::Secret;
use ebb_destinations::destinations::hubspot::{HubspotConfig, HubspotDestination};
use ebb_destinations::{Destination, DestinationError, Operation, RecordResult};
use ebb_testkit::emulators::hubspot::HubspotEmulator;
use serde_json::json;

use crate::record;

const TOKEN: &str = "pat-na1-test";

fn destination(emulator: &HubspotEmulator, token: &str) -> HubspotDestination {
    let mut config = HubspotConfig::new(Secret::new(token), "contacts", "email");
    config.base_url = url::Url::parse(&emulator.base_url()).unwrap();
    config.timeout = Duration::from_millis(500);
    HubspotDestination::new(config).unwrap()
}

fn contact(n: u32, mrr: serde_json::Value) -> ebb_destinations::Record {
    let mut r = record(
        Operation::Upsert,
        &n.to_string(),
        json!({"firstname": format!("Person {n}"), "mrr": mrr}),
    );
    r.id = format!("p{n}@example.com");
    r
}

#[tokio::test]
async fn partial_failures_map_back_to_records_and_valid_ones_apply() {
    let emulator = HubspotEmulator::builder(TOKEN).start().await;
    let dest = destination(&emulator, TOKEN);
    let mut bad_email = contact(3, json!(1));
    bad_email.id = "not-an-email".into();
    let batch = [contact(1, json!(10)), contact(2, json!("lots")), bad_email];
    let outcome = dest.write(&batch).await.unwrap();
    assert_eq!(outcome.results[0], RecordResult::Accepted);
    match &outcome.results[1] {
        RecordResult::Rejected { reason, field } => {
            assert!(reason.starts_with("VALIDATION_ERROR"), "{reason}");
            assert!(
                reason.contains("\"lots\" is not a valid number"),
                "{reason}"
            );
            assert_eq!(field.as_deref(), Some("mrr"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&outcome.results[2], RecordResult::Rejected { field: Some(f), .. } if f == "email")
    );
    assert_eq!(outcome.rate.remaining, Some(189));
    let held = emulator.find("contacts", "email", "p1@example.com");
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].properties["mrr"], "10");
    assert_eq!(emulator.objects("contacts").len(), 1);

    // The same upsert again changes nothing: one record, one version.
    dest.write(&batch[..1]).await.unwrap();
    let held = emulator.find("contacts", "email", "p1@example.com");
    assert_eq!((held[0].writes, held[0].versions), (2, 1));
}

#[tokio::test]
async fn deletes_archive_by_id_property() {
    let emulator = HubspotEmulator::builder(TOKEN).start().await;
    let dest = destination(&emulator, TOKEN);
    dest.write(&[contact(1, json!(1)), contact(2, json!(2))])
        .await
        .unwrap();
    let mut gone = contact(1, json!(null));
    gone.op = Operation::Delete;
    gone.fields.clear();
    let mut never_there = contact(9, json!(null));
    never_there.op = Operation::Delete;
    let outcome = dest.write(&[gone, never_there]).await.unwrap();
    assert_eq!(outcome.results, vec![RecordResult::Accepted; 2]);
    assert!(
        emulator
            .find("contacts", "email", "p1@example.com")
            .is_empty()
    );
    assert_eq!(
        emulator.find("contacts", "email", "p2@example.com").len(),
        1
    );
    let archived: Vec<_> = emulator
        .objects("contacts")
        .into_iter()
        .filter(|o| o.archived)
        .collect();
    assert_eq!(archived.len(), 1);
}

#[tokio::test]
async fn documented_limits_are_enforced() {
    let emulator = HubspotEmulator::builder(TOKEN)
        .rate_limit(3, Duration::from_secs(10))
        .start()
        .await;
    let dest = destination(&emulator, TOKEN);
    for n in 0..3 {
        dest.write(&[contact(n, json!(n))]).await.unwrap();
    }
    match dest.write(&[contact(4, json!(4))]).await {
        Err(DestinationError::Throttled {
            after: Some(after),
            policy,
        }) => {
            assert_eq!(policy.as_deref(), Some("TEN_SECONDLY_ROLLING"));
            assert!(after <= Duration::from_secs(10) && after >= Duration::from_secs(1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        emulator
            .log()
            .entries()
            .iter()
            .filter(|e| e.over_limit)
            .count(),
        1
    );

    // More than 100 inputs: the emulator refuses the batch as HubSpot does.
    let inputs: Vec<_> = (0..101)
        .map(
            |n| json!({"idProperty": "email", "id": format!("x{n}@example.com"), "properties": {}}),
        )
        .collect();
    let other = HubspotEmulator::builder(TOKEN).start().await;
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/crm/v3/objects/contacts/batch/upsert",
            other.base_url()
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"inputs": inputs}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("cannot exceed 100"));
}

#[tokio::test]
async fn a_bad_token_is_fatal() {
    let emulator = HubspotEmulator::builder(TOKEN).start().await;
    let dest = destination(&emulator, "wrong");
    let err = dest.write(&[contact(1, json!(1))]).await.unwrap_err();
    assert!(matches!(err, DestinationError::Fatal { .. }), "{err}");
    assert!(err.to_string().contains("scopes"), "{err}");
}
