//! Run lifecycle, one active run per sync, listing, logs.

use std::collections::HashSet;
use std::time::Duration;

use ebb_state::{
    LogLevel, NewRun, RunCounts, RunFilter, RunKind, RunOutcome, RunStatus, StateError, Trigger,
};
use serde_json::json;

use crate::contract;
use crate::support::Fixture;

const LEASE: Duration = Duration::from_secs(60);

fn new_run(tenant: &str, sync: &str) -> NewRun {
    NewRun::new(tenant, sync, RunKind::Sync, Trigger::Manual)
}

fn counts() -> RunCounts {
    RunCounts {
        planned: 10,
        inserted: 4,
        updated: 3,
        deleted: 1,
        accepted: 7,
        rejected: 1,
        retried: 2,
        skipped_bad_keys: 2,
    }
}

async fn lifecycle_queued_running_finished(f: Fixture) {
    let store = f.open().await;
    let created = store
        .create_run(&new_run("acme", "contacts"))
        .await
        .unwrap();
    assert!(created.created);
    let run = created.run;
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(
        (run.started_at, run.finished_at, run.worker.as_deref()),
        (None, None, None)
    );
    assert_eq!(run.counts, RunCounts::default());

    // Finishing a run nobody started is refused.
    let outcome = RunOutcome {
        status: RunStatus::Partial,
        counts: counts(),
        error: Some("1 record rejected".into()),
    };
    let err = store.finish_run(run.id, "w1", &outcome).await.unwrap_err();
    assert!(matches!(err, StateError::LeaseLost { .. }), "{err}");

    let running = store.start_run(run.id, "w1", LEASE).await.unwrap();
    assert_eq!(running.status, RunStatus::Running);
    assert_eq!(running.worker.as_deref(), Some("w1"));
    assert_eq!(running.attempts, 1);
    let started = running.started_at.unwrap();
    assert!(running.lease_expires_at.unwrap() >= started + 59_000);
    // Starting it again is refused: it is not queued any more.
    let err = store.start_run(run.id, "w2", LEASE).await.unwrap_err();
    assert!(matches!(err, StateError::InvalidTransition { .. }), "{err}");

    let progress = RunCounts {
        planned: 10,
        accepted: 3,
        ..Default::default()
    };
    let mid = store
        .record_progress(run.id, "w1", &progress)
        .await
        .unwrap();
    assert_eq!(mid.counts, progress);
    let err = store
        .record_progress(run.id, "w2", &progress)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::LeaseLost { .. }), "{err}");

    // Only final statuses end a run.
    let not_final = RunOutcome {
        status: RunStatus::Running,
        ..outcome.clone()
    };
    let err = store
        .finish_run(run.id, "w1", &not_final)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::InvalidTransition { .. }), "{err}");

    let done = store.finish_run(run.id, "w1", &outcome).await.unwrap();
    assert_eq!(done.status, RunStatus::Partial);
    assert_eq!(done.counts, counts());
    assert_eq!(done.error.as_deref(), Some("1 record rejected"));
    assert!(done.finished_at.unwrap() >= started);
    assert_eq!(done.lease_expires_at, None);
    assert_eq!(store.get_run(run.id).await.unwrap(), Some(done.clone()));
    assert_eq!(
        store.latest_run("acme", "contacts").await.unwrap(),
        Some(done)
    );
    // A finished run stays finished.
    let err = store.finish_run(run.id, "w1", &outcome).await.unwrap_err();
    assert!(
        err.to_string().contains("the run is partial"),
        "unexpected error: {err}"
    );
    assert_eq!(store.get_run(run.id + 1000).await.unwrap(), None);
    assert_eq!(store.latest_run("acme", "nope").await.unwrap(), None);
}

async fn trigger_during_a_run_is_queued_once(f: Fixture) {
    let store = f.open().await;
    let first = store
        .create_run(&new_run("acme", "contacts"))
        .await
        .unwrap();
    let again = store
        .create_run(&new_run("acme", "contacts"))
        .await
        .unwrap();
    assert!(!again.created, "a second trigger joins the queued run");
    assert_eq!(again.run.id, first.run.id);

    store.start_run(first.run.id, "w1", LEASE).await.unwrap();
    // While it runs, one more run is queued behind it, once.
    let behind = store
        .create_run(&new_run("acme", "contacts"))
        .await
        .unwrap();
    assert!(behind.created);
    assert_ne!(behind.run.id, first.run.id);
    for _ in 0..3 {
        let dup = store
            .create_run(&new_run("acme", "contacts"))
            .await
            .unwrap();
        assert_eq!((dup.created, dup.run.id), (false, behind.run.id));
    }
    // It cannot start while its sibling runs.
    let err = store
        .start_run(behind.run.id, "w2", LEASE)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::InvalidTransition { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("another run of its sync is running"),
        "{err}"
    );

    // Other syncs and other tenants are independent.
    let other_sync = store.create_run(&new_run("acme", "deals")).await.unwrap();
    let other_tenant = store
        .create_run(&new_run("globex", "contacts"))
        .await
        .unwrap();
    assert!(other_sync.created && other_tenant.created);

    let page = store
        .list_runs(
            &RunFilter {
                tenant: Some("acme".into()),
                sync: Some("contacts".into()),
                status: None,
            },
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);

    // After the running one ends, the queued one may start.
    let outcome = RunOutcome {
        status: RunStatus::Succeeded,
        counts: RunCounts::default(),
        error: None,
    };
    store
        .finish_run(first.run.id, "w1", &outcome)
        .await
        .unwrap();
    let started = store.start_run(behind.run.id, "w2", LEASE).await.unwrap();
    assert_eq!(started.status, RunStatus::Running);
}

async fn unique_indexes_refuse_a_second_active_run(f: Fixture) {
    let store = f.open().await;
    let run = store
        .create_run(&new_run("acme", "contacts"))
        .await
        .unwrap()
        .run;
    let insert = |status: &str| {
        format!(
            "INSERT INTO runs (tenant, sync, kind, trigger, status, created_at) \
             VALUES ('acme', 'contacts', 'sync', 'manual', '{status}', 0)"
        )
    };
    let err = f.raw(&insert("queued")).await.unwrap_err();
    assert!(err.to_lowercase().contains("unique"), "{err}");
    store.start_run(run.id, "w1", LEASE).await.unwrap();
    let err = f.raw(&insert("running")).await.unwrap_err();
    assert!(err.to_lowercase().contains("unique"), "{err}");
    // Finished runs are not limited.
    f.raw(&insert("failed")).await.unwrap();
    f.raw(&insert("failed")).await.unwrap();
}

async fn list_runs_pages_newest_first_with_filters(f: Fixture) {
    let store = f.open().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let tenant = if i % 5 == 0 { "globex" } else { "acme" };
        let run = store
            .create_run(&new_run(tenant, &format!("sync_{i}")))
            .await
            .unwrap()
            .run;
        ids.push(run.id);
    }
    // Ids increase with creation.
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    // Fail three acme runs.
    for &id in &ids[1..4] {
        store.start_run(id, "w", LEASE).await.unwrap();
        let outcome = RunOutcome {
            status: RunStatus::Failed,
            counts: RunCounts::default(),
            error: Some("boom".into()),
        };
        store.finish_run(id, "w", &outcome).await.unwrap();
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_runs(&RunFilter::default(), cursor.as_deref(), 10)
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let acme = store
        .list_runs(
            &RunFilter {
                tenant: Some("acme".into()),
                ..Default::default()
            },
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(acme.items.len(), 20);
    assert!(acme.items.iter().all(|r| r.tenant == "acme"));
    assert_eq!(acme.next_cursor, None);

    let failed = store
        .list_runs(
            &RunFilter {
                status: Some(RunStatus::Failed),
                ..Default::default()
            },
            None,
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        failed.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[3], ids[2]]
    );
    let rest = store
        .list_runs(
            &RunFilter {
                status: Some(RunStatus::Failed),
                ..Default::default()
            },
            failed.next_cursor.as_deref(),
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    assert_eq!(rest.next_cursor, None);

    let one_sync = store
        .list_runs(
            &RunFilter {
                sync: Some("sync_7".into()),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(one_sync.items.len(), 1);

    let err = store
        .list_runs(&RunFilter::default(), Some("not-a-cursor"), 10)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cursor"), "{err}");
}

async fn cancel_queued_and_running_runs(f: Fixture) {
    let store = f.open().await;
    let queued = store.create_run(&new_run("acme", "a")).await.unwrap().run;
    let cancelled = store.cancel_run(queued.id, Some("by alice")).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert_eq!(cancelled.error.as_deref(), Some("by alice"));
    // The sync is free again.
    assert!(
        store
            .create_run(&new_run("acme", "a"))
            .await
            .unwrap()
            .created
    );

    let running = store.create_run(&new_run("acme", "b")).await.unwrap().run;
    store.start_run(running.id, "w1", LEASE).await.unwrap();
    store.cancel_run(running.id, None).await.unwrap();
    // Its worker learns at the next heartbeat.
    let err = store.heartbeat(running.id, "w1", LEASE).await.unwrap_err();
    assert!(matches!(err, StateError::LeaseLost { .. }), "{err}");
    assert!(err.to_string().contains("cancelled"), "{err}");
    let err = store.cancel_run(running.id, None).await.unwrap_err();
    assert!(matches!(err, StateError::InvalidTransition { .. }), "{err}");
    let err = store.cancel_run(999_999, None).await.unwrap_err();
    assert!(matches!(err, StateError::NotFound(_)), "{err}");
}

async fn run_log_keeps_lines_in_order_with_redacted_samples(f: Fixture) {
    let store = f.open().await;
    let run = store
        .create_run(&new_run("acme", "contacts"))
        .await
        .unwrap()
        .run;
    store
        .append_log(run.id, LogLevel::Info, "planned 3 records", None)
        .await
        .unwrap();
    let sample = json!({
        "email": "jane.doe@example.com",
        "api_key": "sk_live_abc",
        "name": "Jane",
        "nested": {"password": "hunter2", "plan": "pro"},
    });
    store
        .append_log(
            run.id,
            LogLevel::Warn,
            "record refused: contact jane.doe@example.com exists",
            Some(&sample),
        )
        .await
        .unwrap();
    let log = store.run_log(run.id).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].level, log[0].message.as_str(), &log[0].sample),
        (LogLevel::Info, "planned 3 records", &None)
    );
    assert_eq!(log[1].level, LogLevel::Warn);
    assert_eq!(
        log[1].message,
        "record refused: contact j***@example.com exists"
    );
    assert_eq!(
        log[1].sample,
        Some(json!({
            "email": "j***@example.com",
            "api_key": "[REDACTED]",
            "name": "Jane",
            "nested": {"password": "[REDACTED]", "plan": "pro"},
        }))
    );
    assert!(log[0].id < log[1].id && log[0].at <= log[1].at);
    // Nothing of the secret reached the store.
    let text = format!("{log:?}");
    assert!(!text.contains("hunter2") && !text.contains("sk_live") && !text.contains("jane.doe"));

    let err = store
        .append_log(424_242, LogLevel::Info, "x", None)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::NotFound(_)), "{err}");
    let ids: HashSet<_> = log.iter().map(|l| l.run_id).collect();
    assert_eq!(ids, HashSet::from([run.id]));
}

contract!(
    lifecycle_queued_running_finished,
    trigger_during_a_run_is_queued_once,
    unique_indexes_refuse_a_second_active_run,
    list_runs_pages_newest_first_with_filters,
    cancel_queued_and_running_runs,
    run_log_keeps_lines_in_order_with_redacted_samples,
);
