//! The project's state store (`state:` in ebb.yml; SQLite under `.ebb/` by default) as the
//! CLI uses it: a run row for every sync run, its log, and the dead-letter queue.

use std::time::Duration;

use anyhow::Context as _;
use ebb_core::project::Project;
use ebb_state::{NewRun, RunId, RunKind, StateStore, Trigger};
use ebb_sync::{SyncError, SyncOutcome, SyncRunner};

/// Where refused records wait for the next run: the state store itself.
pub type DeadLetterStore = StateStore;

/// The CLI is one worker; its lease outlives any run it makes (no heartbeats needed).
const LEASE: Duration = Duration::from_secs(24 * 3600);

/// The project's state store.
#[derive(Debug, Clone)]
pub struct Store {
    store: StateStore,
    worker: String,
}

pub async fn open(project: &Project) -> anyhow::Result<Store> {
    let config = project
        .config
        .as_ref()
        .map(|c| c.state.clone())
        .unwrap_or_default();
    let store = StateStore::open(&config, &project.root)
        .await
        .with_context(|| "cannot open the state store (`state:` in ebb.yml)")?;
    Ok(Store {
        store,
        worker: format!("cli-{}", std::process::id()),
    })
}

impl Store {
    pub fn inner(&self) -> &StateStore {
        &self.store
    }

    pub fn dead_letters(&self) -> DeadLetterStore {
        self.store.clone()
    }

    /// Records that a run of `sync` starts now; its id. A failure to record is printed and
    /// the run goes on (the snapshot, not the run row, is what delivery depends on).
    pub async fn start_run(
        &self,
        runner: &SyncRunner<'_, DeadLetterStore>,
        sync: &str,
    ) -> Option<RunId> {
        let tenant = runner.tenant_of(sync);
        let result = async {
            let created = self
                .store
                .create_run(&NewRun::new(&tenant, sync, RunKind::Sync, Trigger::Manual))
                .await?;
            self.store
                .start_run(created.run.id, &self.worker, LEASE)
                .await
        }
        .await;
        match result {
            Ok(run) => Some(run.id),
            Err(err) => {
                eprintln!("warning: the run of {sync} is not recorded in the state store: {err}");
                None
            }
        }
    }

    /// Ends the run with the outcome's counts and status (and writes its `run.finished`
    /// event), with a log line and a few redacted sample payloads.
    pub async fn finish_run(&self, id: Option<RunId>, result: &Result<SyncOutcome, SyncError>) {
        let Some(id) = id else { return };
        let outcome = ebb_server::record::log_result(&self.store, id, result).await;
        if let Err(err) = self.store.finish_run(id, &self.worker, &outcome).await {
            eprintln!("warning: the end of run {id} is not recorded in the state store: {err}");
        }
    }
}
