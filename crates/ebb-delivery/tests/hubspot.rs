use std::time::Duration;

use ebb_core::Secret;
use ebb_core::change::Op;
use ebb_core::config::project::SyncMode;
use ebb_delivery::{
    DeadLetters, DeliveryOptions, MemoryDeadLetters, Origin, Quotas, SyncPlan, deliver_changes,
};
use ebb_destinations::destinations::hubspot::{HubspotConfig, HubspotDestination};
use ebb_testkit::emulators::Fault;
use ebb_testkit::emulators::hubspot::{HubspotEmulator, PropertyType};

use crate::{contacts, quick_retries};

const TOKEN: &str = "pat-na1-delivery";

pub fn config(emulator: &HubspotEmulator, object_type: &str, id_property: &str) -> HubspotConfig {
    let mut config = HubspotConfig::new(Secret::new(TOKEN), object_type, id_property);
    config.base_url = url::Url::parse(&emulator.base_url()).unwrap();
    config.timeout = Duration::from_millis(300);
    config
}

fn destination(
    emulator: &HubspotEmulator,
    object_type: &str,
    id_property: &str,
) -> HubspotDestination {
    HubspotDestination::new(config(emulator, object_type, id_property)).unwrap()
}

fn plan(mode: SyncMode) -> SyncPlan {
    SyncPlan {
        origin: Origin::Sync {
            name: "contacts".into(),
        },
        mode,
        mapping: vec![
            ("firstname".into(), "firstname".into()),
            ("mrr".into(), "mrr".into()),
        ],
        match_column: Some("email".into()),
        changed_fields_only: true,
    }
}

#[tokio::test]
async fn every_valid_record_applies_once_and_invalid_ones_wait_in_the_dlq() {
    let emulator = HubspotEmulator::builder(TOKEN).start().await;
    emulator.faults().set_hang(Duration::from_secs(2));
    emulator.faults().inject_every(
        2,
        vec![
            Fault::Throttle {
                retry_after: Duration::from_millis(500),
            },
            Fault::TimeoutAfterApply,
            Fault::ServerError,
            Fault::DropConnection,
            Fault::TimeoutBeforeApply,
        ],
    );
    let dest = destination(&emulator, "contacts", "email");
    // 250 contacts: every 25th has an mrr HubSpot refuses, every 50th a broken email.
    let row = |i: usize| {
        let email = if i % 50 == 7 {
            format!("p{i}-at-example.com")
        } else {
            format!("p{i}@example.com")
        };
        let mrr = if i % 25 == 3 {
            "n/a".to_string()
        } else {
            (i * 10).to_string()
        };
        (Op::Insert, i.to_string(), Some(email), Some(mrr))
    };
    let rows: Vec<_> = (0..250).map(row).collect();
    let quotas = Quotas::new();
    let dlq = MemoryDeadLetters::new();
    let mut options = DeliveryOptions::new("acme", "contacts");
    options.retry = quick_retries();

    let report = deliver_changes(
        &[contacts(&rows)],
        &plan(SyncMode::Mirror),
        &dest,
        &quotas,
        &dlq,
        &options,
    )
    .await
    .unwrap();
    let invalid_mrr = (0..250).filter(|i| i % 25 == 3).count();
    let invalid_email = (0..250).filter(|i| i % 50 == 7).count();
    assert_eq!(report.rejected, invalid_mrr + invalid_email, "{report:?}");
    assert_eq!(report.accepted, 250 - report.rejected);
    assert!(report.throttled > 0 && report.retried > 0, "{report:?}");

    // Exactly once in effect, by the emulator's own state.
    let objects = emulator.objects("contacts");
    assert_eq!(objects.len(), 250 - report.rejected);
    for i in (0..250).filter(|i| i % 25 != 3 && i % 50 != 7) {
        let held = emulator.find("contacts", "email", &format!("p{i}@example.com"));
        assert_eq!(held.len(), 1, "contact {i}");
        assert_eq!(held[0].versions, 1, "contact {i} changed more than once");
        assert_eq!(held[0].properties["mrr"], (i * 10).to_string());
    }
    let letters = dlq.pending("acme", "contacts").await.unwrap();
    for letter in &letters {
        let i: usize = letter.record.key.parse().unwrap();
        if i % 50 == 7 {
            assert_eq!(letter.field.as_deref(), Some("email"));
            assert!(
                letter.reason.contains("is not a valid email address"),
                "{}",
                letter.reason
            );
        } else {
            assert_eq!(letter.field.as_deref(), Some("mrr"));
            assert!(
                letter
                    .reason
                    .starts_with("VALIDATION_ERROR: Property values were not valid: \"n/a\""),
                "{}",
                letter.reason
            );
        }
    }

    // HubSpot's mrr becomes a text property: the next delivery retries the dead letters;
    // the broken emails stay in the DLQ with a second failure counted.
    emulator.set_property("contacts", "mrr", PropertyType::Text);
    emulator.faults().clear();
    let report = deliver_changes(&[], &plan(SyncMode::Mirror), &dest, &quotas, &dlq, &options)
        .await
        .unwrap();
    assert_eq!(report.dead_letters_retried, invalid_mrr + invalid_email);
    assert_eq!(
        (report.accepted, report.rejected),
        (invalid_mrr, invalid_email),
        "{report:?}"
    );
    let left = dlq.pending("acme", "contacts").await.unwrap();
    assert_eq!(left.len(), invalid_email);
    assert!(left.iter().all(|l| l.failures == 2));
    assert_eq!(
        emulator.find("contacts", "email", "p3@example.com")[0].properties["mrr"],
        "n/a"
    );

    // Mirror mode deletes: archived in HubSpot, once.
    let gone: Vec<_> = (0..10)
        .filter(|i| i % 25 != 3 && i % 50 != 7)
        .map(|i| {
            (
                Op::Delete,
                i.to_string(),
                Some(format!("p{i}@example.com")),
                None,
            )
        })
        .collect();
    let report = deliver_changes(
        &[contacts(&gone)],
        &plan(SyncMode::Mirror),
        &dest,
        &quotas,
        &dlq,
        &options,
    )
    .await
    .unwrap();
    assert_eq!(
        (report.accepted, report.rejected),
        (gone.len(), invalid_email),
        "{report:?}"
    );
    for row in &gone {
        assert!(
            emulator
                .find("contacts", "email", row.2.as_deref().unwrap())
                .is_empty()
        );
    }
    let archived = emulator
        .objects("contacts")
        .into_iter()
        .filter(|o| o.archived)
        .count();
    assert_eq!(archived, gone.len());
}
