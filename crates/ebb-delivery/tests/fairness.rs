use std::time::Duration;

use ebb_core::change::Op;
use ebb_core::config::project::SyncMode;
use ebb_delivery::{DeliveryOptions, MemoryDeadLetters, Origin, Quotas, SyncPlan, deliver_changes};
use ebb_destinations::destinations::hubspot::HubspotDestination;
use ebb_destinations::{Destination, RateLimit};
use ebb_testkit::emulators::Fault;
use ebb_testkit::emulators::hubspot::HubspotEmulator;
use tokio::time::Instant;

use crate::contacts;
use crate::hubspot::config;

/// Two tenants' syncs share one HubSpot account whose limit is 20 requests a second. The
/// account is throttled once at the start (another app spent its quota); from then on no
/// second holds more than 20 requests, and while both syncs run each gets half.
#[tokio::test]
async fn tenants_sharing_an_account_get_fair_shares_within_the_documented_rate() {
    let limit = RateLimit {
        requests: 20,
        per: Duration::from_secs(1),
    };
    let emulator = HubspotEmulator::builder("pat-na1-delivery")
        .rate_limit(limit.requests, limit.per)
        .start()
        .await;
    emulator.faults().inject(
        Fault::Throttle {
            retry_after: Duration::from_secs(1),
        },
        1,
    );
    let dest = |object_type: &str, id_property: &str| {
        let mut config = config(&emulator, object_type, id_property);
        config.rate_limits = vec![limit];
        HubspotDestination::new(config).unwrap()
    };
    let contacts_dest = dest("contacts", "email");
    let companies_dest = dest("companies", "domain");
    assert_eq!(contacts_dest.account(), companies_dest.account());

    let rows = |domain: bool| -> Vec<_> {
        (0..300)
            .map(|i| {
                let id = if domain {
                    format!("c{i}.example.com")
                } else {
                    format!("p{i}@example.com")
                };
                (Op::Insert, i.to_string(), Some(id), Some(i.to_string()))
            })
            .collect()
    };
    let plan = |name: &str| SyncPlan {
        origin: Origin::Sync { name: name.into() },
        mode: SyncMode::Upsert,
        mapping: vec![("mrr".into(), "mrr".into())],
        match_column: Some("email".into()),
        changed_fields_only: true,
    };
    let quotas = Quotas::new();
    let (dlq_a, dlq_b) = (MemoryDeadLetters::new(), MemoryDeadLetters::new());
    let mut options_a = DeliveryOptions::new("tenant-a", "contacts");
    let mut options_b = DeliveryOptions::new("tenant-b", "companies");
    options_a.max_batch = Some(5);
    options_b.max_batch = Some(5);
    let started = Instant::now();
    let batch_a = [contacts(&rows(false))];
    let batch_b = [contacts(&rows(true))];
    let (plan_a, plan_b) = (plan("contacts"), plan("companies"));
    let (a, b) = tokio::join!(
        deliver_changes(
            &batch_a,
            &plan_a,
            &contacts_dest,
            &quotas,
            &dlq_a,
            &options_a
        ),
        deliver_changes(
            &batch_b,
            &plan_b,
            &companies_dest,
            &quotas,
            &dlq_b,
            &options_b
        ),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.accepted, b.accepted), (300, 300), "{a:?} {b:?}");
    assert!(started.elapsed() < Duration::from_secs(15));

    let log = emulator.log().entries();
    let first_429 = log
        .iter()
        .find(|e| e.status == 429)
        .expect("the injected 429")
        .at;
    assert_eq!(
        log.iter().filter(|e| e.over_limit).count(),
        0,
        "the emulator refused requests for the rate"
    );
    let busiest = emulator.log().max_in_window(first_429, limit.per);
    assert!(
        busiest <= limit.requests as usize,
        "{busiest} requests in one window"
    );

    // While both ran, each had half of the requests.
    let admitted: Vec<_> = log.iter().filter(|e| e.status != 429).collect();
    let end_a = admitted
        .iter()
        .rev()
        .find(|e| e.path.contains("contacts"))
        .unwrap()
        .at;
    let end_b = admitted
        .iter()
        .rev()
        .find(|e| e.path.contains("companies"))
        .unwrap()
        .at;
    let both_until = end_a.min(end_b);
    let during: Vec<_> = admitted.iter().filter(|e| e.at <= both_until).collect();
    let to_a = during
        .iter()
        .filter(|e| e.path.contains("contacts"))
        .count();
    let to_b = during.len() - to_a;
    assert!(
        to_a.abs_diff(to_b) <= during.len() / 10 + 1,
        "contacts {to_a} vs companies {to_b} requests"
    );
}
