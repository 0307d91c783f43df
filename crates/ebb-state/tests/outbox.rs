//! The outbox: events written with the state change that causes them, replay from a
//! cursor, relaying.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ebb_state::{NewRun, RunCounts, RunKind, RunOutcome, RunStatus, Trigger};
use serde_json::json;

use crate::contract;
use crate::support::Fixture;

const LEASE: Duration = Duration::from_secs(60);

async fn finishing_a_run_writes_its_event_in_the_same_transaction(f: Fixture) {
    let store = f.open().await;
    let run = store
        .create_run(&NewRun::new(
            "acme",
            "contacts",
            RunKind::Sync,
            Trigger::Api,
        ))
        .await
        .unwrap()
        .run;
    store.start_run(run.id, "w1", LEASE).await.unwrap();
    assert_eq!(store.events_after("acme", None, 10).await.unwrap(), vec![]);

    let counts = RunCounts {
        planned: 5,
        accepted: 4,
        rejected: 1,
        ..Default::default()
    };
    let outcome = RunOutcome {
        status: RunStatus::Partial,
        counts,
        error: None,
    };
    // A worker without the lease changes nothing, and no event appears.
    assert!(store.finish_run(run.id, "w2", &outcome).await.is_err());
    assert_eq!(store.events_after("acme", None, 10).await.unwrap(), vec![]);
    assert_eq!(
        store.get_run(run.id).await.unwrap().unwrap().status,
        RunStatus::Running
    );

    let done = store.finish_run(run.id, "w1", &outcome).await.unwrap();
    let events = store.events_after("acme", None, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.tenant.as_str(), e.topic.as_str()),
        ("acme", "run.finished")
    );
    assert_eq!(e.payload["run_id"], json!(run.id));
    assert_eq!(e.payload["status"], json!("partial"));
    assert_eq!(e.payload["sync"], json!("contacts"));
    assert_eq!(e.payload["trigger"], json!("api"));
    assert_eq!(e.payload["counts"]["accepted"], json!(4));
    assert_eq!(e.payload["counts"]["rejected"], json!(1));
    assert_eq!(e.payload["finished_at"], json!(done.finished_at));
    assert_eq!(e.relayed_at, None);
}

async fn the_event_exists_iff_the_state_change_committed(f: Fixture) {
    let store = f.open().await;
    let run = store
        .create_run(&NewRun::new(
            "acme",
            "contacts",
            RunKind::Sync,
            Trigger::Manual,
        ))
        .await
        .unwrap()
        .run;
    store.start_run(run.id, "w1", LEASE).await.unwrap();
    // Make the outbox insert fail inside finish_run's transaction: the run's update must
    // roll back with it.
    if f.sqlite_path().is_some() {
        f.raw(
            "CREATE TRIGGER no_events BEFORE INSERT ON outbox
             BEGIN SELECT RAISE(ABORT, 'no events'); END;",
        )
        .await
        .unwrap();
    } else {
        f.raw("ALTER TABLE outbox ADD CONSTRAINT no_events CHECK (topic <> 'run.finished')")
            .await
            .unwrap();
    }
    let outcome = RunOutcome {
        status: RunStatus::Succeeded,
        counts: RunCounts::default(),
        error: None,
    };
    assert!(store.finish_run(run.id, "w1", &outcome).await.is_err());
    let after = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(
        after.status,
        RunStatus::Running,
        "the state change rolled back"
    );
    assert_eq!(after.finished_at, None);

    // Once events can be written again, finishing works and writes exactly one.
    if f.sqlite_path().is_some() {
        f.raw("DROP TRIGGER no_events").await.unwrap();
    } else {
        f.raw("ALTER TABLE outbox DROP CONSTRAINT no_events")
            .await
            .unwrap();
    }
    store.finish_run(run.id, "w1", &outcome).await.unwrap();
    assert_eq!(store.events_after("acme", None, 10).await.unwrap().len(), 1);
}

async fn replay_from_a_cursor_per_tenant(f: Fixture) {
    let store = f.open().await;
    for i in 0..25 {
        store
            .append_event("acme", "change", &json!({"n": i}))
            .await
            .unwrap();
        if i % 5 == 0 {
            store
                .append_event("globex", "change", &json!({"n": i}))
                .await
                .unwrap();
        }
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let batch = store.events_after("acme", cursor, 10).await.unwrap();
        if batch.is_empty() {
            break;
        }
        cursor = batch.last().map(|e| e.id);
        seen.extend(batch);
    }
    assert_eq!(
        seen.iter()
            .map(|e| e.payload["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        (0..25).collect::<Vec<_>>()
    );
    assert!(seen.iter().all(|e| e.tenant == "acme"));
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id));
    // A batch is written at once, in order, after what came before.
    let batch: Vec<_> = (25..30).map(|n| json!({"n": n})).collect();
    let ids = store.append_events("acme", "change", &batch).await.unwrap();
    assert_eq!(ids.len(), 5);
    assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > seen[24].id);
    let tail = store
        .events_after("acme", Some(seen[24].id), 100)
        .await
        .unwrap();
    assert_eq!(tail.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(
        tail.iter()
            .map(|e| e.payload["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        (25..30).collect::<Vec<_>>()
    );
    assert_eq!(
        store.append_events("acme", "x", &[]).await.unwrap(),
        Vec::<i64>::new()
    );
    // Replay from the middle.
    let from = seen[9].id;
    let rest = store.events_after("acme", Some(from), 100).await.unwrap();
    assert_eq!(rest.len(), 20);
    assert_eq!(rest[0].payload["n"], json!(10));
    assert_eq!(
        store.events_after("globex", None, 100).await.unwrap().len(),
        5
    );
}

async fn the_relay_sees_each_event_until_marked(f: Fixture) {
    let store = f.open().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        ids.push(
            store
                .append_event(tenant, "t", &json!({"i": i}))
                .await
                .unwrap(),
        );
    }
    let pending = store.unrelayed(100).await.unwrap();
    assert_eq!(pending.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(store.unrelayed(2).await.unwrap().len(), 2);
    store.mark_relayed(&ids[..4]).await.unwrap();
    let pending = store.unrelayed(100).await.unwrap();
    assert_eq!(pending.iter().map(|e| e.id).collect::<Vec<_>>(), ids[4..]);
    // Relayed events stay for replay, marked.
    let acme = store.events_after("acme", None, 100).await.unwrap();
    assert_eq!(acme.len(), 3);
    assert!(acme[0].relayed_at.is_some() && acme[1].relayed_at.is_some());
    assert_eq!(acme[2].relayed_at, None);
    // Marking twice is harmless.
    store.mark_relayed(&ids).await.unwrap();
    assert_eq!(store.unrelayed(100).await.unwrap(), vec![]);
}

/// One relayer at a time holds a claim; what it does not mark relayed comes back to the
/// next claim after the lease expires, to whichever worker asks.
async fn one_relayer_claims_at_a_time_and_a_dead_ones_claim_expires(f: Fixture) {
    let store = f.open().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            store
                .append_event("acme", "t", &json!({"i": i}))
                .await
                .unwrap(),
        );
    }
    let lease = Duration::from_millis(300);
    let a = store.claim_events("a", 3, lease).await.unwrap();
    assert_eq!(a.iter().map(|e| e.id).collect::<Vec<_>>(), ids[..3]);
    // While a's claim is live, b gets nothing, and a may claim again (its own retries).
    assert!(store.claim_events("b", 10, lease).await.unwrap().is_empty());
    assert_eq!(store.claim_events("a", 10, lease).await.unwrap().len(), 5);
    store.mark_relayed(&ids[..2]).await.unwrap();
    // a dies; after the lease b claims what is left, in id order.
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let b = store.claim_events("b", 10, lease).await.unwrap();
    assert_eq!(b.iter().map(|e| e.id).collect::<Vec<_>>(), ids[2..]);
    store.mark_relayed(&ids[2..]).await.unwrap();
    // Nothing left, and a finished claim blocks nobody.
    assert!(store.claim_events("c", 10, lease).await.unwrap().is_empty());
    store
        .append_event("acme", "t", &json!({"i": 5}))
        .await
        .unwrap();
    assert_eq!(store.claim_events("c", 10, lease).await.unwrap().len(), 1);
}

/// Writers commit concurrently while a consumer follows with a cursor: the consumer must
/// see every event exactly once (ids commit in order per tenant).
async fn a_following_consumer_misses_no_concurrent_event(f: Fixture) {
    const WRITERS: usize = 4;
    const EACH: usize = 60;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = f.open().await;
        writers.push(tokio::spawn(async move {
            for i in 0..EACH {
                store
                    .append_event("acme", "change", &json!({"w": w, "i": i}))
                    .await
                    .unwrap();
            }
        }));
    }
    let reader = f.open().await;
    let mut cursor = None;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Follow until the writers are done and a read finds nothing new.
    loop {
        assert!(Instant::now() < deadline, "read {} events", seen.len());
        let writing = writers.iter().any(|w| !w.is_finished());
        let batch = reader.events_after("acme", cursor, 7).await.unwrap();
        match batch.last() {
            Some(last) => cursor = Some(last.id),
            None if !writing => break,
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
        seen.extend(
            batch
                .into_iter()
                .map(|e| (e.payload["w"].clone(), e.payload["i"].clone())),
        );
    }
    for w in writers {
        w.await.unwrap();
    }
    let unique: HashSet<_> = seen.iter().map(|p| format!("{p:?}")).collect();
    assert_eq!(unique.len(), seen.len(), "no event twice");
    assert_eq!(
        seen.len(),
        WRITERS * EACH,
        "no event skipped by the follower"
    );
}

contract!(
    finishing_a_run_writes_its_event_in_the_same_transaction,
    the_event_exists_iff_the_state_change_committed,
    replay_from_a_cursor_per_tenant,
    the_relay_sees_each_event_until_marked,
    one_relayer_claims_at_a_time_and_a_dead_ones_claim_expires,
    a_following_consumer_misses_no_concurrent_event,
);
