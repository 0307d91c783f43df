use std::time::Duration;

use ebb_core::Secret;
use ebb_core::change::Op;
use ebb_core::config::project::SyncMode;
use ebb_delivery::{
    DeadLetters, DeliveryOptions, MemoryDeadLetters, Origin, Quotas, SyncPlan, deliver_changes,
};
use ebb_destinations::RateLimit;
use ebb_destinations::destinations::salesforce::{SalesforceConfig, SalesforceDestination};
use ebb_testkit::emulators::Fault;
use ebb_testkit::emulators::salesforce::{FieldType, SalesforceEmulator};

use crate::{contacts, quick_retries};

const TOKEN: &str = "00Dxx0000001gPL!delivery";
/// The org's API limit in this test: 60 requests a second (a day's allocation, scaled).
const LIMIT: RateLimit = RateLimit {
    requests: 60,
    per: Duration::from_secs(1),
};

fn destination(emulator: &SalesforceEmulator) -> SalesforceDestination {
    let mut config = SalesforceConfig::new(
        &emulator.instance_url(),
        Secret::new(TOKEN),
        "Contact",
        "Ebb_Id__c",
    )
    .unwrap();
    config.timeout = Duration::from_millis(300);
    config.poll_interval = Duration::from_millis(5);
    config.rate_limits = vec![LIMIT];
    SalesforceDestination::new(config).unwrap()
}

fn plan() -> SyncPlan {
    SyncPlan {
        origin: Origin::Sync {
            name: "sf_contacts".into(),
        },
        mode: SyncMode::Mirror,
        mapping: vec![
            ("email".into(), "Email".into()),
            ("firstname".into(), "LastName".into()),
            ("mrr".into(), "MRR__c".into()),
        ],
        match_column: None,
        changed_fields_only: true,
    }
}

#[tokio::test]
async fn every_valid_record_applies_once_through_faults_and_invalid_ones_wait_in_the_dlq() {
    let emulator = SalesforceEmulator::builder(TOKEN)
        .api_limit(LIMIT.requests, LIMIT.per)
        .start()
        .await;
    emulator.faults().set_hang(Duration::from_secs(1));
    // Every 11th request fails; a job is 8 requests, so each failed job's retry gets through.
    emulator.faults().inject_every(
        11,
        vec![
            Fault::Throttle {
                retry_after: Duration::from_millis(300),
            },
            Fault::TimeoutAfterApply,
            Fault::ServerError,
            Fault::DropConnection,
            Fault::TimeoutBeforeApply,
        ],
    );
    let dest = destination(&emulator);
    // 200 contacts: every 20th has an MRR Salesforce refuses, every 40th a broken email.
    let row = |i: usize| {
        let email = if i % 40 == 7 {
            format!("p{i}-at-example.com")
        } else {
            format!("p{i}@example.com")
        };
        let mrr = if i % 20 == 3 {
            "n/a".to_string()
        } else {
            (i * 10).to_string()
        };
        (Op::Insert, format!("c{i}"), Some(email), Some(mrr))
    };
    let rows: Vec<_> = (0..200).map(row).collect();
    let quotas = Quotas::new();
    let dlq = MemoryDeadLetters::new();
    let mut options = DeliveryOptions::new("acme", "sf_contacts");
    options.retry = quick_retries();
    options.max_batch = Some(40);
    let t0 = tokio::time::Instant::now();

    let report = deliver_changes(&[contacts(&rows)], &plan(), &dest, &quotas, &dlq, &options)
        .await
        .unwrap();
    let invalid_mrr: Vec<usize> = (0..200).filter(|i| i % 20 == 3).collect();
    let invalid_email: Vec<usize> = (0..200).filter(|i| i % 40 == 7).collect();
    let invalid = invalid_mrr.len() + invalid_email.len();
    assert_eq!(report.rejected, invalid, "{report:?}");
    assert_eq!(report.accepted, 200 - invalid);
    assert!(
        emulator.faults().injected() > 0 && report.retried > 0,
        "{report:?}"
    );

    // Exactly once in effect, by the emulator's own state.
    let live: Vec<_> = emulator
        .records("Contact")
        .into_iter()
        .filter(|r| !r.deleted)
        .collect();
    assert_eq!(live.len(), 200 - invalid);
    for i in (0..200).filter(|i| i % 20 != 3 && i % 40 != 7) {
        let held = emulator
            .find("Contact", "Ebb_Id__c", &format!("c{i}"))
            .unwrap_or_else(|| panic!("contact {i} missing"));
        assert_eq!(held.versions, 1, "contact {i} changed more than once");
        assert_eq!(held.fields["MRR__c"], (i * 10).to_string());
    }
    // Invalid ones wait in the DLQ with Salesforce's own reason and field.
    let letters = dlq.pending("acme", "sf_contacts").await.unwrap();
    assert_eq!(letters.len(), invalid);
    for letter in &letters {
        let i: usize = letter.record.key[1..].parse().unwrap();
        if i % 40 == 7 {
            assert!(
                letter.reason.starts_with("INVALID_EMAIL_ADDRESS:"),
                "{}",
                letter.reason
            );
            assert_eq!(letter.field.as_deref(), Some("Email"));
        } else {
            assert!(
                letter
                    .reason
                    .starts_with("INVALID_TYPE_ON_FIELD_IN_RECORD:MRR__c"),
                "{}",
                letter.reason
            );
            assert_eq!(letter.field.as_deref(), Some("MRR__c"));
        }
    }
    // Paced under the org's limit: no request refused for the rate.
    assert!(
        emulator.log().entries().iter().all(|e| !e.over_limit),
        "a request exceeded the API limit"
    );
    assert!(emulator.log().max_in_window(t0, LIMIT.per) <= LIMIT.requests as usize);

    // MRR__c becomes a text field: the next run retries the dead letters; the broken
    // emails stay with a second failure counted.
    emulator.set_field_type("Contact", "MRR__c", FieldType::Text);
    emulator.faults().clear();
    let report = deliver_changes(&[], &plan(), &dest, &quotas, &dlq, &options)
        .await
        .unwrap();
    assert_eq!(report.dead_letters_retried, invalid);
    assert_eq!(
        (report.accepted, report.rejected),
        (invalid_mrr.len(), invalid_email.len()),
        "{report:?}"
    );
    let left = dlq.pending("acme", "sf_contacts").await.unwrap();
    assert!(left.iter().all(|l| l.failures == 2));
    assert_eq!(
        emulator.find("Contact", "Ebb_Id__c", "c3").unwrap().fields["MRR__c"],
        "n/a"
    );

    // Mirror deletes: found by external id, deleted once.
    let gone: Vec<_> = [0usize, 1, 2]
        .iter()
        .map(|i| (Op::Delete, format!("c{i}"), None, None))
        .collect();
    let report = deliver_changes(&[contacts(&gone)], &plan(), &dest, &quotas, &dlq, &options)
        .await
        .unwrap();
    assert_eq!(report.accepted, 3, "{report:?}");
    for i in [0, 1, 2] {
        assert!(
            emulator
                .find("Contact", "Ebb_Id__c", &format!("c{i}"))
                .is_none()
        );
    }
}
