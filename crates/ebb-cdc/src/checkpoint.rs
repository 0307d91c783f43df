//! Checkpoints: where a pipeline resumes. [`CheckpointStore`] is the contract; the file store
//! keeps one JSON file per pipeline under the project's `.ebb/cdc/` (the state store's SQLite
//! and Postgres backends implement the same trait later).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CdcError;
use crate::position::Position;

/// A pipeline's persisted progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The replication slot the position belongs to.
    pub slot: String,
    /// What every sink durably holds: the flush LSN confirmed to PostgreSQL and where a
    /// restart resumes, and the tables whose initial copy is complete.
    pub position: Position,
    /// Whether the initial snapshot is complete (snapshot: initial / initial_only).
    #[serde(default)]
    pub snapshot_done: bool,
    /// Unix milliseconds of the last save.
    #[serde(default)]
    pub updated_at_ms: u64,
}

/// Where checkpoints are kept.
///
/// Contract: [`save`](Self::save) returns only once the checkpoint is durable and replaces the
/// previous one atomically (a crash leaves the old one or the new one, never a mix);
/// [`load`](Self::load) returns the last saved checkpoint.
pub trait CheckpointStore: Send {
    /// The last saved checkpoint of `pipeline`, if any.
    fn load(
        &self,
        pipeline: &str,
    ) -> impl Future<Output = Result<Option<Checkpoint>, CdcError>> + Send;
    /// Saves `checkpoint` durably.
    fn save(
        &self,
        pipeline: &str,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), CdcError>> + Send;
    /// Forgets `pipeline`'s checkpoint.
    fn remove(&self, pipeline: &str) -> impl Future<Output = Result<(), CdcError>> + Send;
}

/// Checkpoints as `<dir>/<pipeline>.json`, written to a temporary file, fsynced and renamed.
#[derive(Debug, Clone)]
pub struct FileCheckpointStore {
    dir: PathBuf,
}

impl FileCheckpointStore {
    /// A store in `dir` (created on first save), e.g. `<project>/.ebb/cdc`.
    pub fn new(dir: impl Into<PathBuf>) -> FileCheckpointStore {
        FileCheckpointStore { dir: dir.into() }
    }

    /// The file of `pipeline`'s checkpoint.
    pub fn path(&self, pipeline: &str) -> PathBuf {
        self.dir.join(format!("{pipeline}.json"))
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync of
/// the folder.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl CheckpointStore for FileCheckpointStore {
    async fn load(&self, pipeline: &str) -> Result<Option<Checkpoint>, CdcError> {
        let path = self.path(pipeline);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                CdcError::Data(format!(
                    "checkpoint {} is corrupt ({e}); remove it with `ebb cdc drop {pipeline}`",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CdcError::io(format!("reading {}", path.display()))(e)),
        }
    }

    async fn save(&self, pipeline: &str, checkpoint: &Checkpoint) -> Result<(), CdcError> {
        let path = self.path(pipeline);
        let mut checkpoint = checkpoint.clone();
        checkpoint.updated_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let bytes = serde_json::to_vec_pretty(&checkpoint)
            .map_err(|e| CdcError::Data(format!("serializing a checkpoint: {e}")))?;
        write_atomic(&path, &bytes).map_err(CdcError::io(format!("writing {}", path.display())))
    }

    async fn remove(&self, pipeline: &str) -> Result<(), CdcError> {
        let path = self.path(pipeline);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CdcError::io(format!("removing {}", path.display()))(e))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCheckpointStore::new(dir.path().join("cdc"));
        assert_eq!(store.load("p").await.unwrap(), None);
        let mut c = Checkpoint {
            slot: "s".into(),
            ..Checkpoint::default()
        };
        c.position.flush_lsn = 42;
        store.save("p", &c).await.unwrap();
        c.position.flush_lsn = 43;
        store.save("p", &c).await.unwrap();
        let back = store.load("p").await.unwrap().unwrap();
        assert_eq!(back.position.flush_lsn, 43);
        assert!(back.updated_at_ms > 0);
        // Only the checkpoint is left: no temporary files.
        let files: Vec<_> = std::fs::read_dir(dir.path().join("cdc")).unwrap().collect();
        assert_eq!(files.len(), 1);
        store.remove("p").await.unwrap();
        assert_eq!(store.load("p").await.unwrap(), None);
    }
}
