use std::time::Duration;

use ebb_core::Secret;
use ebb_core::change::Op;
use ebb_core::config::project::SyncMode;
use ebb_delivery::{
    DeadLetters, DeliveryOptions, MemoryDeadLetters, Origin, Quotas, SyncPlan, deliver_changes,
};
use ebb_destinations::RateLimit;
use ebb_destinations::destinations::braze::{BrazeConfig, BrazeDestination};
use ebb_testkit::emulators::Fault;
use ebb_testkit::emulators::braze::BrazeEmulator;
use tokio::time::Instant;

use crate::{contacts, quick_retries};

const KEY: &str = "braze-rest-key";

fn destination(emulator: &BrazeEmulator, limit: Option<RateLimit>) -> BrazeDestination {
    let mut config = BrazeConfig::new(&emulator.base_url(), Secret::new(KEY)).unwrap();
    config.timeout = Duration::from_millis(300);
    if let Some(limit) = limit {
        config.rate_limit = limit;
    }
    BrazeDestination::new(config).unwrap()
}

fn plan() -> SyncPlan {
    SyncPlan {
        origin: Origin::Sync {
            name: "users".into(),
        },
        mode: SyncMode::Upsert,
        mapping: vec![
            ("email".into(), "email".into()),
            ("firstname".into(), "first_name".into()),
            ("mrr".into(), "mrr".into()),
        ],
        match_column: None,
        changed_fields_only: true,
    }
}

fn row(i: usize, valid: bool) -> (Op, String, Option<String>, Option<String>) {
    let email = if valid {
        format!("u{i}@example.com")
    } else {
        format!("u{i} at example")
    };
    (
        Op::Upsert,
        format!("u{i}"),
        Some(email),
        Some(i.to_string()),
    )
}

#[tokio::test]
async fn every_valid_user_applies_once_and_invalid_ones_wait_in_the_dlq() {
    let emulator = BrazeEmulator::start(KEY, 50_000, Duration::from_secs(60)).await;
    emulator.faults().set_hang(Duration::from_secs(2));
    emulator.faults().inject_every(
        2,
        vec![
            Fault::TimeoutAfterApply,
            Fault::Throttle {
                retry_after: Duration::from_millis(500),
            },
            Fault::ServerError,
            Fault::DropConnection,
            Fault::TimeoutBeforeApply,
        ],
    );
    let dest = destination(&emulator, None);
    let rows: Vec<_> = (0..200).map(|i| row(i, i % 20 != 4)).collect();
    let quotas = Quotas::new();
    let dlq = MemoryDeadLetters::new();
    let mut options = DeliveryOptions::new("acme", "users");
    options.retry = quick_retries();
    let report = deliver_changes(&[contacts(&rows)], &plan(), &dest, &quotas, &dlq, &options)
        .await
        .unwrap();
    assert_eq!((report.accepted, report.rejected), (190, 10), "{report:?}");
    assert!(report.throttled > 0 && report.retried > 0, "{report:?}");
    let users = emulator.users();
    assert_eq!(users.len(), 190);
    for (id, user) in &users {
        assert_eq!(user.versions, 1, "{id} changed more than once");
        assert_eq!(user.attributes["email"], format!("{id}@example.com"));
    }
    let letters = dlq.pending("acme", "users").await.unwrap();
    assert_eq!(letters.len(), 10);
    assert!(
        letters
            .iter()
            .all(|l| l.reason.ends_with("is not a valid email address"))
    );

    // A second delivery retries them (still refused), a third carries the fixed rows.
    emulator.faults().clear();
    let report = deliver_changes(&[], &plan(), &dest, &quotas, &dlq, &options)
        .await
        .unwrap();
    assert_eq!((report.dead_letters_retried, report.rejected), (10, 10));
    assert!(
        dlq.pending("acme", "users")
            .await
            .unwrap()
            .iter()
            .all(|l| l.failures == 2)
    );
    let fixed: Vec<_> = (0..200)
        .filter(|i| i % 20 == 4)
        .map(|i| row(i, true))
        .collect();
    let report = deliver_changes(&[contacts(&fixed)], &plan(), &dest, &quotas, &dlq, &options)
        .await
        .unwrap();
    assert_eq!(
        (report.dead_letters_retried, report.accepted),
        (0, 10),
        "{report:?}"
    );
    assert!(dlq.pending("acme", "users").await.unwrap().is_empty());
    assert_eq!(emulator.users().len(), 200);
}

#[tokio::test]
async fn at_the_documented_rate_nothing_is_throttled() {
    let limit = RateLimit {
        requests: 10,
        per: Duration::from_secs(1),
    };
    let emulator = BrazeEmulator::start(KEY, limit.requests, limit.per).await;
    let dest = destination(&emulator, Some(limit));
    let rows: Vec<_> = (0..150).map(|i| row(i, true)).collect();
    let mut options = DeliveryOptions::new("acme", "users");
    options.max_batch = Some(5);
    let started = Instant::now();
    let report = deliver_changes(
        &[contacts(&rows)],
        &plan(),
        &dest,
        &Quotas::new(),
        &MemoryDeadLetters::new(),
        &options,
    )
    .await
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        (report.accepted, report.requests, report.throttled),
        (150, 30, 0)
    );
    // 30 requests at 10 a second: the first 10 at once, then two more windows, so 2 s. A
    // limiter that waited two windows instead of one would take at least 4 s; the margin
    // up to it is for a loaded machine (3.0 s was seen here with builds running).
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_millis(3900),
        "{elapsed:?}"
    );
    assert!(emulator.log().max_in_window(started, limit.per) <= 10);
}
