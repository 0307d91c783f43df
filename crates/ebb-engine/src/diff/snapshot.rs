//! Snapshots of what a sync delivered: Parquet files on object_store with a manifest,
//! committed atomically.
//!
//! Layout under the snapshot root (default `.ebb/snapshots/` in the project):
//!
//! ```text
//! <sync>/v000042/part-*.parquet   the rows: _ebb_key, _ebb_hash, then the mapped columns
//! <sync>/v000042.json             the manifest: version, rows, columns, key, parent
//! <sync>/CURRENT                  "42": the committed version
//! ```
//!
//! A version's files and manifest are written first; the one-object `put` of `CURRENT` is
//! the commit. A crash before it leaves the previous version current; the stray files are
//! collected by the next commit. Each commit keeps the previous version (for inspection) and
//! deletes older ones.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::EngineError;

/// What a committed snapshot version holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub sync: String,
    pub version: u64,
    pub parent: Option<u64>,
    pub rows: u64,
    /// The sync's key columns (the `_ebb_key` is built from them).
    pub key_columns: Vec<String>,
    /// The mapped columns, in canonical (name) order.
    pub columns: Vec<String>,
    /// RFC 3339 time of the commit.
    pub committed_at: String,
}

/// Where snapshots live.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    store: Arc<dyn ObjectStore>,
    /// The root as a URL ending with `/`.
    root: Url,
}

impl SnapshotStore {
    /// A snapshot store in a local folder (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<SnapshotStore, EngineError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| EngineError::Snapshot(format!("{}: {e}", dir.display())))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| EngineError::Snapshot(format!("{}: {e}", dir.display())))?;
        let root = Url::from_directory_path(&dir)
            .map_err(|()| EngineError::Snapshot(format!("{} is not absolute", dir.display())))?;
        Ok(SnapshotStore {
            store: Arc::new(object_store::local::LocalFileSystem::new()),
            root,
        })
    }

    /// A snapshot store on any object store, rooted at `root` (a URL ending with `/`).
    pub fn new(store: Arc<dyn ObjectStore>, root: Url) -> SnapshotStore {
        SnapshotStore { store, root }
    }

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The URL of a sync's version folder, for DataFusion to read or write.
    pub fn version_url(&self, sync: &str, version: u64) -> String {
        format!("{}{sync}/v{version:06}/", self.root)
    }

    /// The Parquet files of a committed version, in path order (the order positions in the
    /// snapshot count rows in).
    pub(crate) async fn version_files(
        &self,
        sync: &str,
        version: u64,
    ) -> Result<Vec<object_store::ObjectMeta>, EngineError> {
        let prefix = self.path(&format!("{sync}/v{version:06}/"));
        let mut files: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_filter(|meta| futures::future::ready(meta.location.as_ref().ends_with(".parquet")))
            .try_collect()
            .await?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }

    fn path(&self, rel: &str) -> StorePath {
        let full = format!("{}{rel}", self.root.path().trim_start_matches('/'));
        StorePath::from(full.as_str())
    }

    /// The committed manifest of `sync`, if it has one.
    pub async fn current(&self, sync: &str) -> Result<Option<Manifest>, EngineError> {
        let version = match self.store.get(&self.path(&format!("{sync}/CURRENT"))).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let version: u64 = String::from_utf8_lossy(&version)
            .trim()
            .parse()
            .map_err(|_| {
                EngineError::Snapshot(format!("{sync}/CURRENT is not a version number"))
            })?;
        let manifest = self
            .store
            .get(&self.path(&format!("{sync}/v{version:06}.json")))
            .await?
            .bytes()
            .await?;
        let manifest: Manifest = serde_json::from_slice(&manifest)
            .map_err(|e| EngineError::Snapshot(format!("{sync} manifest v{version}: {e}")))?;
        Ok(Some(manifest))
    }

    /// Commits `manifest` (whose files are already written): writes the manifest, then the
    /// `CURRENT` pointer, then collects versions older than its parent.
    pub async fn commit(&self, manifest: &Manifest) -> Result<(), EngineError> {
        let sync = &manifest.sync;
        let body = serde_json::to_vec_pretty(manifest)
            .map_err(|e| EngineError::Snapshot(format!("{sync}: {e}")))?;
        self.store
            .put(
                &self.path(&format!("{sync}/v{:06}.json", manifest.version)),
                PutPayload::from(body),
            )
            .await?;
        self.store
            .put(
                &self.path(&format!("{sync}/CURRENT")),
                PutPayload::from(manifest.version.to_string().into_bytes()),
            )
            .await?;
        self.collect(
            sync,
            manifest
                .parent
                .unwrap_or(manifest.version)
                .min(manifest.version),
        )
        .await
    }

    /// Deletes versions below `keep_from` and any uncommitted versions above the current one.
    async fn collect(&self, sync: &str, keep_from: u64) -> Result<(), EngineError> {
        let current = self.current(sync).await?.map_or(0, |m| m.version);
        let prefix = self.path(&format!("{sync}/"));
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        for meta in objects {
            let rel = meta
                .location
                .as_ref()
                .strip_prefix(prefix.as_ref())
                .unwrap_or_default();
            let rel = rel.trim_start_matches('/');
            let Some(version) = rel
                .strip_prefix('v')
                .and_then(|r| r.get(..6))
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            if version < keep_from || version > current {
                self.store.delete(&meta.location).await?;
            }
        }
        if let Ok(dir) = self.root.join(&format!("{sync}/")).and_then(|u| {
            u.to_file_path()
                .map_err(|()| url::ParseError::RelativeUrlWithoutBase)
        }) && let Ok(entries) = std::fs::read_dir(dir)
        {
            for entry in entries.flatten() {
                if entry.path().is_dir() {
                    // Only empty ones: remove_dir refuses a folder that still has files.
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
        Ok(())
    }
}
