use std::time::Duration;

use ebb_core::Secret;
use ebb_core::change::Op;
use ebb_core::config::project::SyncMode;
use ebb_delivery::{
    DeadLetters, DeliveryOptions, MemoryDeadLetters, Origin, Quotas, SyncPlan, deliver_changes,
};
use ebb_destinations::destinations::webhook::{WebhookConfig, WebhookDestination};
use ebb_testkit::emulators::Fault;
use ebb_testkit::emulators::webhook::WebhookReceiver;

use crate::{contacts, quick_retries};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test]
async fn every_valid_change_applies_once_and_invalid_ones_wait_in_the_dlq() {
    let receiver = WebhookReceiver::start(SECRET).await;
    receiver.require_fields(&["email"]);
    receiver.faults().set_hang(Duration::from_secs(2));
    receiver.faults().inject_every(
        3,
        vec![
            Fault::TimeoutAfterApply,
            Fault::ServerError,
            Fault::Throttle {
                retry_after: Duration::from_millis(500),
            },
            Fault::DropConnection,
            Fault::TimeoutBeforeApply,
        ],
    );
    let mut config = WebhookConfig::new(&receiver.url(), vec![Secret::new(SECRET)]).unwrap();
    config.batch_size = 8;
    config.timeout = Duration::from_millis(300);
    let dest = WebhookDestination::new(config).unwrap();

    // 60 contacts; every 12th has no email, and the receiver requires one.
    let rows: Vec<_> = (0..60)
        .map(|i| {
            let email = (i % 12 != 5).then(|| format!("p{i}@example.com"));
            (Op::Insert, i.to_string(), email, Some(i.to_string()))
        })
        .collect();
    let plan = SyncPlan {
        origin: Origin::Sync {
            name: "contacts_hook".into(),
        },
        mode: SyncMode::Upsert,
        mapping: vec![
            ("email".into(), "email".into()),
            ("mrr".into(), "mrr".into()),
        ],
        match_column: None,
        changed_fields_only: true,
    };
    let quotas = Quotas::new();
    let dlq = MemoryDeadLetters::new();
    let mut options = DeliveryOptions::new("acme", "contacts_hook");
    options.retry = quick_retries();

    let report = deliver_changes(&[contacts(&rows)], &plan, &dest, &quotas, &dlq, &options)
        .await
        .unwrap();
    assert_eq!(
        (report.planned, report.accepted, report.rejected),
        (60, 55, 5),
        "{report:?}"
    );
    assert!(
        report.splits > 0 && report.throttled > 0 && report.retried > 0,
        "{report:?}"
    );
    assert!(receiver.faults().injected() > 3);

    let applied = receiver.applied();
    assert_eq!(applied.len(), 55);
    assert!(
        applied.values().all(|n| *n == 1),
        "applied more than once: {applied:?}"
    );
    let letters = dlq.pending("acme", "contacts_hook").await.unwrap();
    let mut keys: Vec<&str> = letters.iter().map(|l| l.record.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["17", "29", "41", "5", "53"]);
    for letter in &letters {
        assert_eq!(letter.reason, "HTTP 400: missing required field \"email\"");
        assert_eq!(letter.field.as_deref(), Some("email"));
    }

    // The receiver relaxes its rule; the next delivery, with no new changes, retries the
    // dead letters and nothing else.
    receiver.require_fields(&[]);
    receiver.faults().clear();
    let report = deliver_changes(&[], &plan, &dest, &quotas, &dlq, &options)
        .await
        .unwrap();
    assert_eq!(
        (report.dead_letters_retried, report.accepted),
        (5, 5),
        "{report:?}"
    );
    assert!(
        dlq.pending("acme", "contacts_hook")
            .await
            .unwrap()
            .is_empty()
    );
    let applied = receiver.applied();
    assert_eq!(applied.len(), 60);
    assert!(applied.values().all(|n| *n == 1));
}

#[tokio::test]
async fn gone_endpoints_stop_the_delivery_and_keep_the_records() {
    let receiver = WebhookReceiver::start(SECRET).await;
    receiver.set_gone(true);
    let dest = WebhookDestination::new(
        WebhookConfig::new(&receiver.url(), vec![Secret::new(SECRET)]).unwrap(),
    )
    .unwrap();
    let rows: Vec<_> = (0..3)
        .map(|i| (Op::Insert, i.to_string(), Some(format!("p{i}@x.io")), None))
        .collect();
    let plan = SyncPlan {
        origin: Origin::Cdc {
            slot: "ebb_slot".into(),
        },
        mode: SyncMode::Mirror,
        mapping: vec![],
        match_column: None,
        changed_fields_only: true,
    };
    let dlq = MemoryDeadLetters::new();
    let report = deliver_changes(
        &[contacts(&rows)],
        &plan,
        &dest,
        &Quotas::new(),
        &dlq,
        &DeliveryOptions::new("acme", "cdc"),
    )
    .await
    .unwrap();
    assert!(report.aborted.as_deref().unwrap().contains("410 Gone"));
    assert_eq!((report.requests, report.rejected), (1, 3));
    assert_eq!(dlq.all().len(), 3);
    assert!(
        dlq.all()[0]
            .record
            .idempotency_key
            .starts_with("c_ebb_slot_")
    );
}

#[tokio::test]
async fn an_unreachable_destination_stops_the_delivery_instead_of_dead_lettering_everything() {
    // A port nobody listens on: every request fails to connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = WebhookConfig::new(
        &format!("http://127.0.0.1:{port}/hooks"),
        vec![Secret::new(SECRET)],
    )
    .unwrap();
    config.batch_size = 5;
    config.timeout = Duration::from_millis(300);
    let dest = WebhookDestination::new(config).unwrap();
    let rows: Vec<_> = (0..100)
        .map(|i| {
            (
                Op::Insert,
                format!("c{i:03}"),
                Some(format!("c{i}@example.com")),
                None,
            )
        })
        .collect();
    let batch = contacts(&rows);
    let plan = SyncPlan {
        origin: Origin::Sync {
            name: "contacts".into(),
        },
        mode: SyncMode::Upsert,
        mapping: vec![("email".into(), "email".into())],
        match_column: None,
        changed_fields_only: true,
    };
    let dlq = MemoryDeadLetters::new();
    let mut options = DeliveryOptions::new("acme", "contacts");
    options.retry = quick_retries();
    options.retry.attempts = 2;
    let report = deliver_changes(&[batch], &plan, &dest, &Quotas::new(), &dlq, &options)
        .await
        .unwrap();
    let why = report.aborted.as_deref().expect("delivery stops");
    assert!(why.contains("unreachable"), "{why}");
    // Three batches of 5 spent their budget and wait in the DLQ; the other 85 records were
    // neither sent nor dead-lettered (a sync sends them on its next run).
    assert_eq!(report.accepted, 0);
    assert_eq!(report.rejected, 15, "{report:?}");
    assert_eq!(dlq.pending("acme", "contacts").await.unwrap().len(), 15);
    assert_eq!(report.sent, 15);
}
