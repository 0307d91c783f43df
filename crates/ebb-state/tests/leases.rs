//! Several workers on one store: claims, heartbeats, takeover after a lease expires.

use std::collections::HashMap;
use std::time::Duration;

use ebb_state::{NewRun, RunCounts, RunKind, RunOutcome, RunStatus, StateError, Trigger};

use crate::contract;
use crate::support::{Fixture, wait_for};

const LONG: Duration = Duration::from_secs(120);

fn new_run(sync: &str) -> NewRun {
    NewRun::new("acme", sync, RunKind::Sync, Trigger::Schedule)
}

fn succeeded() -> RunOutcome {
    RunOutcome {
        status: RunStatus::Succeeded,
        counts: RunCounts::default(),
        error: None,
    }
}

async fn claims_take_the_oldest_free_run_and_skip_busy_syncs(f: Fixture) {
    let store = f.open().await;
    let a = store.create_run(&new_run("a")).await.unwrap().run;
    let b = store.create_run(&new_run("b")).await.unwrap().run;

    let first = store.claim_next_run("w1", LONG).await.unwrap().unwrap();
    assert_eq!((first.id, first.worker.as_deref()), (a.id, Some("w1")));
    assert_eq!(first.status, RunStatus::Running);
    let second = store.claim_next_run("w2", LONG).await.unwrap().unwrap();
    assert_eq!(second.id, b.id);
    assert_eq!(store.claim_next_run("w3", LONG).await.unwrap(), None);

    // A run queued behind a running one waits for it.
    let a2 = store.create_run(&new_run("a")).await.unwrap().run;
    assert_eq!(store.claim_next_run("w3", LONG).await.unwrap(), None);
    store.finish_run(a.id, "w1", &succeeded()).await.unwrap();
    let third = store.claim_next_run("w3", LONG).await.unwrap().unwrap();
    assert_eq!((third.id, third.attempts), (a2.id, 1));
}

async fn an_expired_lease_is_taken_over(f: Fixture) {
    let store = f.open().await;
    let other_worker = f.open().await;
    let run = store.create_run(&new_run("a")).await.unwrap().run;
    let short = Duration::from_millis(300);
    let claimed = store.claim_next_run("w1", LONG).await.unwrap().unwrap();
    assert_eq!(claimed.id, run.id);
    // While the lease holds, nobody else gets the run.
    assert_eq!(other_worker.claim_next_run("w2", LONG).await.unwrap(), None);
    // The last heartbeat asks for a short lease; then w1 "dies".
    let beat = store.heartbeat(run.id, "w1", short).await.unwrap();
    assert!(beat.lease_expires_at < claimed.lease_expires_at);

    // w2 takes the run over once the lease ends.
    let taken = wait_for(
        Duration::from_secs(15),
        "the expired run to be claimed",
        || {
            let s = other_worker.clone();
            async move { s.claim_next_run("w2", LONG).await.unwrap() }
        },
    )
    .await;
    assert_eq!(taken.id, run.id);
    assert_eq!(taken.worker.as_deref(), Some("w2"));
    assert_eq!(taken.attempts, 2);
    assert_eq!(
        taken.started_at, claimed.started_at,
        "the first start is kept"
    );

    // The old worker finds out, and cannot finish the run.
    let err = store.heartbeat(run.id, "w1", short).await.unwrap_err();
    assert!(matches!(err, StateError::LeaseLost { .. }), "{err}");
    assert!(err.to_string().contains("w2 holds it now"), "{err}");
    let err = store
        .finish_run(run.id, "w1", &succeeded())
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::LeaseLost { .. }), "{err}");
    let done = other_worker
        .finish_run(run.id, "w2", &succeeded())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
    // Exactly one run.finished event: the failed finish wrote none.
    let events = store.events_after("acme", None, 100).await.unwrap();
    assert_eq!(events.len(), 1);
}

async fn a_released_run_is_taken_over_at_once(f: Fixture) {
    let store = f.open().await;
    store.create_run(&new_run("a")).await.unwrap();
    let run = store.claim_next_run("w1", LONG).await.unwrap().unwrap();
    assert_eq!(store.claim_next_run("w2", LONG).await.unwrap(), None);
    store.release_run(run.id, "w1").await.unwrap();
    let taken = store.claim_next_run("w2", LONG).await.unwrap().unwrap();
    assert_eq!((taken.id, taken.worker.as_deref()), (run.id, Some("w2")));
    let err = store.release_run(run.id, "w1").await.unwrap_err();
    assert!(matches!(err, StateError::LeaseLost { .. }), "{err}");
}

async fn concurrent_claimers_claim_each_run_exactly_once(f: Fixture) {
    const RUNS: usize = 150;
    const WORKERS: usize = 8;
    let setup = f.open().await;
    for i in 0..RUNS {
        setup
            .create_run(&new_run(&format!("sync_{i}")))
            .await
            .unwrap();
    }
    // Each worker has its own handle (its own connection), like separate processes.
    let mut handles = Vec::new();
    for w in 0..WORKERS {
        let store = f.open().await;
        handles.push(tokio::spawn(async move {
            let worker = format!("worker-{w}");
            let mut mine = Vec::new();
            while let Some(run) = store.claim_next_run(&worker, LONG).await.unwrap() {
                assert_eq!(run.worker.as_deref(), Some(worker.as_str()));
                store
                    .finish_run(run.id, &worker, &succeeded())
                    .await
                    .unwrap();
                mine.push(run.id);
            }
            mine
        }));
    }
    let mut claims: HashMap<i64, usize> = HashMap::new();
    for h in handles {
        for id in h.await.unwrap() {
            *claims.entry(id).or_default() += 1;
        }
    }
    assert_eq!(claims.len(), RUNS, "every run was claimed");
    assert!(
        claims.values().all(|&n| n == 1),
        "no run was claimed twice: {claims:?}"
    );
    let runs = setup
        .list_runs(&Default::default(), None, 1000)
        .await
        .unwrap();
    assert!(
        runs.items
            .iter()
            .all(|r| r.status == RunStatus::Succeeded && r.attempts == 1)
    );
}

contract!(
    claims_take_the_oldest_free_run_and_skip_busy_syncs,
    an_expired_lease_is_taken_over,
    a_released_run_is_taken_over_at_once,
    concurrent_claimers_claim_each_run_exactly_once,
);
