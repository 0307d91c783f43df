//! The workers of one `ebb serve` process: each takes the oldest runnable run from the
//! state store under a lease (`FOR UPDATE SKIP LOCKED` on Postgres, so any number of
//! processes share one store and each run goes to one of them), runs it, and records the
//! result.
//!
//! - **Heartbeats** extend the lease every third of its length. A worker that loses its
//!   lease (it was cancelled, or it stalled so long that another worker took the run over)
//!   drops the run at once.
//! - **A dead worker's run** (SIGKILL, power loss) is claimed by another worker when its
//!   lease expires, and run again from the start. That is safe because a sync commits its
//!   snapshot only after delivery: the new run finds the same changes and sends them with
//!   the same idempotency keys, and a run that had committed finds nothing left to send.
//! - **Graceful shutdown**: workers stop claiming; a run in flight gets the grace period to
//!   finish, and is then released (its lease ends now, so another process takes it at once;
//!   nothing was committed, so nothing is lost).
//! - **Sequences**: when a run succeeds, the syncs whose `schedule.after` names it are
//!   queued in the same transaction that finishes the run.

use std::sync::Arc;
use std::time::Duration;

use ebb_state::{NewRun, Run, RunKind, RunOutcome, RunStatus, StateError, Trigger};
use ebb_sync::{Progress, RunOptions, SyncRunner};
use tokio::sync::watch;

use crate::api::AppState;

/// How a worker leases its runs.
#[derive(Debug, Clone, Copy)]
pub struct Leases {
    /// A run whose worker has not heartbeat for this long is taken over.
    pub lease: Duration,
    /// How long a run in flight may take to finish once shutdown starts.
    pub grace: Duration,
    /// How often an idle worker looks for work when nothing wakes it.
    pub poll: Duration,
}

impl Default for Leases {
    fn default() -> Leases {
        Leases {
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(30),
            poll: Duration::from_secs(1),
        }
    }
}

/// One worker loop; ends when `shutdown` turns true (after its run in flight, if any, is
/// finished or released).
pub async fn run(
    state: Arc<AppState>,
    slot: usize,
    leases: Leases,
    shutdown: watch::Receiver<bool>,
) {
    let worker = format!("{}#{slot}", state.worker_id);
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Register for a wake-up before looking, so a run queued in between is not missed.
        let woken = state.wake.notified();
        match state.store.claim_next_run(&worker, leases.lease).await {
            Ok(Some(run)) => {
                execute(&state, &worker, run, leases, shutdown.clone()).await;
                continue;
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(worker, error = %err, "cannot claim runs"),
        }
        let mut stop = shutdown.clone();
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(leases.poll) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Why a run stopped before it finished.
enum Stopped {
    LeaseLost(StateError),
    Shutdown,
}

async fn execute(
    state: &Arc<AppState>,
    worker: &str,
    run: Run,
    leases: Leases,
    shutdown: watch::Receiver<bool>,
) {
    tracing::info!(worker, run = run.id, sync = %run.sync, attempt = run.attempts, "run started");
    state.prom.run_started();
    let (progress_tx, progress_rx) = watch::channel(None::<usize>);
    let work = async {
        if run.kind != RunKind::Sync {
            return Err(format!(
                "ebb serve runs syncs only; {} runs are started with the ebb CLI",
                run.kind
            ));
        }
        let runner = SyncRunner::open(state.project, state.store.clone())
            .await
            .map_err(|e| e.to_string())?;
        let progress = |p: Progress| {
            if let Progress::Delivering { total, .. } = p {
                let _ = progress_tx.send(Some(total));
            }
        };
        Ok(runner
            .run(&run.sync, &RunOptions::default(), &progress)
            .await)
    };
    let stopped = keep_lease(state, worker, &run, leases, shutdown, progress_rx);
    let result = tokio::select! {
        result = work => Ok(result),
        stopped = stopped => Err(stopped),
    };
    state.prom.run_ended();
    match result {
        Ok(result) => {
            let outcome = match &result {
                Ok(sync_result) => {
                    crate::record::log_result(&state.store, run.id, sync_result).await
                }
                Err(message) => RunOutcome {
                    status: RunStatus::Failed,
                    counts: Default::default(),
                    error: Some(message.clone()),
                },
            };
            finish(
                state,
                worker,
                &run,
                &outcome,
                result.ok().and_then(Result::ok),
            )
            .await;
        }
        Err(Stopped::LeaseLost(err)) => {
            tracing::warn!(worker, run = run.id, error = %err, "run dropped: the lease is lost");
        }
        Err(Stopped::Shutdown) => {
            // Nothing was committed (the snapshot commits last), so another worker can take
            // the run over from the start.
            match state.store.release_run(run.id, worker).await {
                Ok(()) => tracing::info!(
                    worker,
                    run = run.id,
                    "run released for another worker at shutdown"
                ),
                Err(err) => {
                    tracing::warn!(worker, run = run.id, error = %err, "run not released; it is taken over when its lease expires")
                }
            }
        }
    }
}

async fn finish(
    state: &AppState,
    worker: &str,
    run: &Run,
    outcome: &RunOutcome,
    sync: Option<ebb_sync::SyncOutcome>,
) {
    // Syncs that run after this one succeeds.
    let then: Vec<NewRun> = state
        .project
        .syncs
        .iter()
        .filter(|s| s.config.enabled)
        .filter(|s| {
            s.config
                .schedule
                .as_ref()
                .and_then(|sch| sch.value.after.as_ref())
                .is_some_and(|a| a.value == run.sync)
        })
        .map(|s| NewRun::new(crate::tenant_of(s), &s.name, RunKind::Sync, Trigger::After))
        .collect();
    match state
        .store
        .finish_run_then(run.id, worker, outcome, &then)
        .await
    {
        Ok((finished, queued)) => {
            tracing::info!(worker, run = run.id, status = %finished.status, followers = queued.len(), "run finished");
            let report = sync.and_then(|s| s.delivery).unwrap_or_default();
            state.prom.run_finished(
                finished.status.as_str(),
                report.accepted as u64,
                report.rejected as u64,
                report.retried as u64,
                report.throttled as u64,
            );
            if !queued.is_empty() {
                state.wake.notify_waiters();
            }
        }
        Err(err) => {
            tracing::warn!(worker, run = run.id, error = %err, "the run's end is not recorded")
        }
    }
}

/// Heartbeats until the lease is lost or shutdown's grace runs out; records progress on
/// the way. Never returns while all is well.
async fn keep_lease(
    state: &AppState,
    worker: &str,
    run: &Run,
    leases: Leases,
    mut shutdown: watch::Receiver<bool>,
    progress: watch::Receiver<Option<usize>>,
) -> Stopped {
    let beat = (leases.lease / 3).max(Duration::from_millis(100));
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let grace_over = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(beat) => {}
            _ = shutdown.changed(), if deadline.is_none() => {
                if *shutdown.borrow() {
                    tracing::info!(worker, run = run.id, grace = ?leases.grace, "shutdown: the run may finish within the grace period");
                    deadline = Some(tokio::time::Instant::now() + leases.grace);
                }
                continue;
            }
            _ = grace_over => return Stopped::Shutdown,
        }
        match state.store.heartbeat(run.id, worker, leases.lease).await {
            Ok(_) => {}
            Err(err @ StateError::LeaseLost { .. }) => return Stopped::LeaseLost(err),
            Err(err) => {
                tracing::warn!(worker, run = run.id, error = %err, "heartbeat failed; retrying")
            }
        }
        let latest = *progress.borrow();
        if let Some(total) = latest {
            // Planned records; delivered ones are counted when the run finishes.
            let counts = ebb_state::RunCounts {
                planned: total as i64,
                ..Default::default()
            };
            let _ = state.store.record_progress(run.id, worker, &counts).await;
        }
    }
}
