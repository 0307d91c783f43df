//! Schedules fire once per due instant, pausing, "after sync A succeeds" sequences, and the
//! counts the metrics endpoint reads.

use std::sync::Arc;
use std::time::Duration;

use ebb_delivery::{DeadLetter, DeadLetters};
use ebb_destinations::{Operation, Record};
use ebb_state::{NewRun, RunCounts, RunKind, RunOutcome, RunStatus, StateError, Trigger};
use tokio::sync::Barrier;

use crate::contract;
use crate::support::Fixture;

const LEASE: Duration = Duration::from_secs(60);
const MINUTE: i64 = 60_000;
/// A due instant: a whole minute, as a cron schedule gives.
const T0: i64 = 1_700_000_040_000;

fn scheduled(tenant: &str, sync: &str) -> NewRun {
    NewRun::new(tenant, sync, RunKind::Sync, Trigger::Schedule)
}

fn after(sync: &str) -> NewRun {
    NewRun::new("acme", sync, RunKind::Sync, Trigger::After)
}

fn outcome(status: RunStatus) -> RunOutcome {
    RunOutcome {
        status,
        counts: RunCounts {
            planned: 3,
            accepted: 3,
            ..Default::default()
        },
        error: (status != RunStatus::Succeeded).then(|| "boom".to_string()),
    }
}

async fn a_schedule_fires_once_per_due_instant(f: Fixture) {
    let store = f.open().await;
    let contacts = scheduled("acme", "contacts");

    // First sighting: remembered, but it does not fire for the past.
    assert_eq!(store.fire_schedule(&contacts, T0).await.unwrap(), None);
    assert_eq!(
        f.count("SELECT last_due_at FROM schedules WHERE tenant = 'acme' AND sync = 'contacts'")
            .await,
        T0
    );
    assert_eq!(store.fire_schedule(&contacts, T0).await.unwrap(), None);
    assert_eq!(store.latest_run("acme", "contacts").await.unwrap(), None);

    // The next instant fires, once.
    let fired = store
        .fire_schedule(&contacts, T0 + MINUTE)
        .await
        .unwrap()
        .expect("a new due instant fires");
    assert!(fired.created);
    let run = fired.run;
    assert_eq!(
        (run.tenant.as_str(), run.sync.as_str()),
        ("acme", "contacts")
    );
    assert_eq!(
        (run.kind, run.trigger, run.status),
        (RunKind::Sync, Trigger::Schedule, RunStatus::Queued)
    );
    assert_eq!(
        f.count("SELECT last_due_at FROM schedules WHERE tenant = 'acme' AND sync = 'contacts'")
            .await,
        T0 + MINUTE
    );
    assert_eq!(
        store.fire_schedule(&contacts, T0 + MINUTE).await.unwrap(),
        None
    );
    // An older instant (a worker whose clock lags) does not fire nor move the schedule back.
    assert_eq!(store.fire_schedule(&contacts, T0).await.unwrap(), None);
    assert_eq!(
        f.count("SELECT last_due_at FROM schedules WHERE tenant = 'acme' AND sync = 'contacts'")
            .await,
        T0 + MINUTE
    );

    // While the run is still queued, the next instant folds into it.
    let folded = store
        .fire_schedule(&contacts, T0 + 2 * MINUTE)
        .await
        .unwrap()
        .expect("a new due instant fires");
    assert_eq!((folded.created, folded.run.id), (false, run.id));

    // While it runs, the next instant queues one run behind it.
    store.start_run(run.id, "w1", LEASE).await.unwrap();
    let behind = store
        .fire_schedule(&contacts, T0 + 3 * MINUTE)
        .await
        .unwrap()
        .expect("a new due instant fires");
    assert!(behind.created);
    assert_ne!(behind.run.id, run.id);
    assert_eq!(
        f.count("SELECT COUNT(*) FROM runs WHERE tenant = 'acme' AND sync = 'contacts'")
            .await,
        2
    );

    // Other syncs and tenants keep their own schedules.
    assert_eq!(
        store
            .fire_schedule(&scheduled("acme", "deals"), T0 + 3 * MINUTE)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .fire_schedule(&scheduled("globex", "contacts"), T0 + 3 * MINUTE)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .fire_schedule(&scheduled("globex", "contacts"), T0 + 4 * MINUTE)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(f.count("SELECT COUNT(*) FROM schedules").await, 3);
}

async fn a_failed_fire_leaves_the_instant_unfired(f: Fixture) {
    let store = f.open().await;
    let contacts = scheduled("acme", "contacts");
    assert_eq!(store.fire_schedule(&contacts, T0).await.unwrap(), None);

    // Make the run's INSERT fail inside fire_schedule's transaction: the schedule's update
    // must roll back with it, so the instant fires once the store works again.
    if f.sqlite_path().is_some() {
        f.raw(
            "CREATE TRIGGER no_runs BEFORE INSERT ON runs
             BEGIN SELECT RAISE(ABORT, 'no runs'); END;",
        )
        .await
        .unwrap();
    } else {
        f.raw("ALTER TABLE runs ADD CONSTRAINT no_runs CHECK (trigger <> 'schedule')")
            .await
            .unwrap();
    }
    assert!(store.fire_schedule(&contacts, T0 + MINUTE).await.is_err());
    assert_eq!(
        f.count("SELECT last_due_at FROM schedules").await,
        T0,
        "the schedule's update rolled back"
    );
    if f.sqlite_path().is_some() {
        f.raw("DROP TRIGGER no_runs").await.unwrap();
    } else {
        f.raw("ALTER TABLE runs DROP CONSTRAINT no_runs")
            .await
            .unwrap();
    }
    let fired = store.fire_schedule(&contacts, T0 + MINUTE).await.unwrap();
    assert!(fired.is_some_and(|c| c.created));
    assert_eq!(f.count("SELECT COUNT(*) FROM runs").await, 1);
}

async fn concurrent_fires_of_one_instant_fire_once(f: Fixture) {
    const HANDLES: usize = 4;
    const TASKS_PER_HANDLE: usize = 6;
    const ROUNDS: i64 = 6;
    let tasks = HANDLES * TASKS_PER_HANDLE;
    let barrier = Arc::new(Barrier::new(tasks));
    let mut joins = Vec::new();
    for _ in 0..HANDLES {
        // Each handle has its own connection(s), like separate `ebb serve` processes.
        let store = f.open().await;
        for _ in 0..TASKS_PER_HANDLE {
            let (store, barrier) = (store.clone(), Arc::clone(&barrier));
            joins.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                // Round 0 is the first sighting; each later round is a new due instant.
                for round in 0..ROUNDS {
                    barrier.wait().await;
                    let fired = store
                        .fire_schedule(&scheduled("acme", "contacts"), T0 + round * MINUTE)
                        .await
                        .unwrap();
                    answers.push((round, fired));
                }
                answers
            }));
        }
    }
    let mut fired_per_round = vec![Vec::new(); usize::try_from(ROUNDS).unwrap()];
    for join in joins {
        for (round, fired) in join.await.unwrap() {
            if let Some(created) = fired {
                fired_per_round[usize::try_from(round).unwrap()].push(created);
            }
        }
    }
    assert!(
        fired_per_round[0].is_empty(),
        "a first sighting never fires: {:?}",
        fired_per_round[0]
    );
    for (round, fired) in fired_per_round.iter().enumerate().skip(1) {
        assert_eq!(
            fired.len(),
            1,
            "round {round}: exactly one of {tasks} callers fires, got {fired:?}"
        );
    }
    // The first firing queued the run; the later ones folded into it (nobody claimed it).
    assert!(fired_per_round[1][0].created);
    let id = fired_per_round[1][0].run.id;
    for fired in &fired_per_round[2..] {
        assert_eq!((fired[0].created, fired[0].run.id), (false, id));
    }
    assert_eq!(f.count("SELECT COUNT(*) FROM runs").await, 1);
    assert_eq!(
        f.count("SELECT last_due_at FROM schedules").await,
        T0 + (ROUNDS - 1) * MINUTE
    );
}

async fn pausing_and_resuming_syncs(f: Fixture) {
    let store = f.open().await;
    assert_eq!(store.paused_syncs(None).await.unwrap(), vec![]);
    store.set_paused("globex", "contacts", true).await.unwrap();
    store.set_paused("acme", "deals", true).await.unwrap();
    store.set_paused("acme", "contacts", true).await.unwrap();
    // Pausing twice is the same as once; resuming a sync never paused is harmless.
    store.set_paused("acme", "contacts", true).await.unwrap();
    store.set_paused("acme", "tickets", false).await.unwrap();
    let pair = |t: &str, s: &str| (t.to_string(), s.to_string());
    assert_eq!(
        store.paused_syncs(None).await.unwrap(),
        vec![
            pair("acme", "contacts"),
            pair("acme", "deals"),
            pair("globex", "contacts"),
        ]
    );
    assert_eq!(
        store.paused_syncs(Some("globex")).await.unwrap(),
        vec![pair("globex", "contacts")]
    );
    assert_eq!(store.paused_syncs(Some("initech")).await.unwrap(), vec![]);

    store.set_paused("acme", "contacts", false).await.unwrap();
    assert_eq!(
        store.paused_syncs(Some("acme")).await.unwrap(),
        vec![pair("acme", "deals")]
    );
    // It survives a reopen (another process sees it).
    drop(store);
    let reopened = f.open().await;
    assert_eq!(
        reopened.paused_syncs(None).await.unwrap(),
        vec![pair("acme", "deals"), pair("globex", "contacts")]
    );
}

async fn a_succeeded_run_queues_what_follows_it(f: Fixture) {
    let store = f.open().await;
    let a = store.create_run(&scheduled("acme", "a")).await.unwrap().run;
    store.start_run(a.id, "w1", LEASE).await.unwrap();
    // `c` already has a queued run: the follower folds into it.
    let c_queued = store.create_run(&after("c")).await.unwrap().run;

    let then = [after("b"), after("c")];
    // Only the worker holding the lease may finish it; nothing is queued otherwise.
    let err = store
        .finish_run_then(a.id, "w2", &outcome(RunStatus::Succeeded), &then)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::LeaseLost { .. }), "{err}");
    assert_eq!(store.latest_run("acme", "b").await.unwrap(), None);

    let (done, queued) = store
        .finish_run_then(a.id, "w1", &outcome(RunStatus::Succeeded), &then)
        .await
        .unwrap();
    assert_eq!((done.id, done.status), (a.id, RunStatus::Succeeded));
    assert_eq!(done.counts.accepted, 3);
    assert_eq!(queued.len(), 2);
    assert!(queued[0].created);
    assert_eq!(
        (
            queued[0].run.sync.as_str(),
            queued[0].run.trigger,
            queued[0].run.status
        ),
        ("b", Trigger::After, RunStatus::Queued)
    );
    assert_eq!((queued[1].created, queued[1].run.id), (false, c_queued.id));
    assert_eq!(
        store.latest_run("acme", "b").await.unwrap(),
        Some(queued[0].run.clone())
    );
    // The run.finished event was written as with finish_run.
    let events = store.events_after("acme", None, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload["run_id"], serde_json::json!(a.id));

    // A run that did not succeed queues nothing.
    for status in [RunStatus::Partial, RunStatus::Failed, RunStatus::Cancelled] {
        let run = store.create_run(&scheduled("acme", "x")).await.unwrap().run;
        store.start_run(run.id, "w1", LEASE).await.unwrap();
        let (done, queued) = store
            .finish_run_then(run.id, "w1", &outcome(status), &[after("y")])
            .await
            .unwrap();
        assert_eq!(done.status, status);
        assert_eq!(queued, vec![], "{status} queues nothing");
    }
    assert_eq!(store.latest_run("acme", "y").await.unwrap(), None);

    // An empty list is plain finish_run.
    let run = store.create_run(&scheduled("acme", "z")).await.unwrap().run;
    store.start_run(run.id, "w1", LEASE).await.unwrap();
    let (_, queued) = store
        .finish_run_then(run.id, "w1", &outcome(RunStatus::Succeeded), &[])
        .await
        .unwrap();
    assert!(queued.is_empty());
}

async fn followers_are_queued_in_the_finishing_transaction(f: Fixture) {
    let store = f.open().await;
    let a = store.create_run(&scheduled("acme", "a")).await.unwrap().run;
    store.start_run(a.id, "w1", LEASE).await.unwrap();
    // Make the run.finished event fail: the followers' INSERTs must roll back with it.
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
    let then = [after("b")];
    assert!(
        store
            .finish_run_then(a.id, "w1", &outcome(RunStatus::Succeeded), &then)
            .await
            .is_err()
    );
    assert_eq!(
        store.get_run(a.id).await.unwrap().unwrap().status,
        RunStatus::Running
    );
    assert_eq!(store.latest_run("acme", "b").await.unwrap(), None);

    // Likewise a follower that cannot be queued keeps the run running.
    if f.sqlite_path().is_some() {
        f.raw("DROP TRIGGER no_events").await.unwrap();
    } else {
        f.raw("ALTER TABLE outbox DROP CONSTRAINT no_events")
            .await
            .unwrap();
    }
    let bad = [after("b"), after("c")];
    if f.sqlite_path().is_some() {
        f.raw(
            "CREATE TRIGGER no_c BEFORE INSERT ON runs WHEN NEW.sync = 'c'
             BEGIN SELECT RAISE(ABORT, 'no c'); END;",
        )
        .await
        .unwrap();
    } else {
        f.raw("ALTER TABLE runs ADD CONSTRAINT no_c CHECK (sync <> 'c')")
            .await
            .unwrap();
    }
    assert!(
        store
            .finish_run_then(a.id, "w1", &outcome(RunStatus::Succeeded), &bad)
            .await
            .is_err()
    );
    assert_eq!(
        store.get_run(a.id).await.unwrap().unwrap().status,
        RunStatus::Running
    );
    assert_eq!(store.latest_run("acme", "b").await.unwrap(), None);
    assert!(
        store
            .events_after("acme", None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Once the store works again, one finish writes the run, its event and its follower.
    let (_, queued) = store
        .finish_run_then(a.id, "w1", &outcome(RunStatus::Succeeded), &then)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(store.events_after("acme", None, 10).await.unwrap().len(), 1);
    assert_eq!(
        f.count("SELECT COUNT(*) FROM runs WHERE sync = 'b'").await,
        1
    );
}

fn letter(tenant: &str, sync: &str, key: &str) -> DeadLetter {
    DeadLetter {
        tenant: tenant.into(),
        sync: sync.into(),
        record: Record {
            op: Operation::Upsert,
            key: key.into(),
            id: key.into(),
            fields: serde_json::Map::new(),
            idempotency_key: format!("idem-{key}"),
        },
        reason: "invalid".into(),
        field: None,
        failures: 1,
        first_failed_at: 100,
        last_failed_at: 100,
    }
}

async fn run_stats_and_dlq_depths_count_per_tenant(f: Fixture) {
    let store = f.open().await;
    assert_eq!(store.run_stats().await.unwrap(), vec![]);
    assert_eq!(store.dlq_depths().await.unwrap(), vec![]);

    // acme: 2 succeeded, 1 failed, 1 running, 1 queued; globex: 1 queued.
    for (sync, status) in [
        ("a", RunStatus::Succeeded),
        ("b", RunStatus::Succeeded),
        ("c", RunStatus::Failed),
    ] {
        let run = store
            .create_run(&scheduled("acme", sync))
            .await
            .unwrap()
            .run;
        store.start_run(run.id, "w", LEASE).await.unwrap();
        store
            .finish_run(run.id, "w", &outcome(status))
            .await
            .unwrap();
    }
    let running = store.create_run(&scheduled("acme", "d")).await.unwrap().run;
    store.start_run(running.id, "w", LEASE).await.unwrap();
    store.create_run(&scheduled("acme", "d")).await.unwrap();
    store.create_run(&scheduled("globex", "a")).await.unwrap();
    let stat = |t: &str, s: RunStatus, n: i64| (t.to_string(), s, n);
    assert_eq!(
        store.run_stats().await.unwrap(),
        vec![
            stat("acme", RunStatus::Failed, 1),
            stat("acme", RunStatus::Queued, 1),
            stat("acme", RunStatus::Running, 1),
            stat("acme", RunStatus::Succeeded, 2),
            stat("globex", RunStatus::Queued, 1),
        ]
    );

    store
        .put(vec![
            letter("globex", "contacts", "k1"),
            letter("acme", "deals", "k1"),
            letter("acme", "contacts", "k1"),
            letter("acme", "contacts", "k2"),
            letter("acme", "contacts", "k3"),
        ])
        .await
        .unwrap();
    store
        .resolve("acme", "contacts", &["k2".to_string()])
        .await
        .unwrap();
    let depth = |t: &str, s: &str, n: i64| (t.to_string(), s.to_string(), n);
    assert_eq!(
        store.dlq_depths().await.unwrap(),
        vec![
            depth("acme", "contacts", 2),
            depth("acme", "deals", 1),
            depth("globex", "contacts", 1),
        ]
    );
}

contract!(
    a_schedule_fires_once_per_due_instant,
    a_failed_fire_leaves_the_instant_unfired,
    concurrent_fires_of_one_instant_fire_once,
    pausing_and_resuming_syncs,
    a_succeeded_run_queues_what_follows_it,
    followers_are_queued_in_the_finishing_transaction,
    run_stats_and_dlq_depths_count_per_tenant,
);
