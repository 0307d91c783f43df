//! Stable cluster ids across runs, and their history.
//!
//! The rules, applied to the previous run's record → cluster assignment:
//! - a cluster whose members all stayed together keeps its id, however many records join it;
//! - a merge (members of several old clusters now in one) keeps the **oldest** id (ids are
//!   handed out in increasing order, so the smallest) and records a `merged` event naming the
//!   absorbed ids, which are retired with the survivor as their successor;
//! - a split (members of one old cluster now in several) retires the old id and gives every
//!   piece a **new** id, recorded as a `split` event;
//! - a cluster whose records have all gone is `removed`;
//! - a cluster of records never seen before is `created`.
//!
//! State lives as Parquet under `.ebb/identity/<name>/` (object_store, local by default):
//!
//! ```text
//! v000007/assignments.parquet  source, record_id, cluster_id
//! v000007/clusters.parquet     every id ever handed out: status, created/ended run, successor
//! v000007/history.parquet      every event of every run
//! CURRENT                      "7"
//! ```
//!
//! A run writes its version's files first; the one-object `put` of `CURRENT` commits it, so a
//! crash leaves the previous run current. The previous version is kept, older ones deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt64Array,
};
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, TimeUnit, TimestampMicrosecondType, UInt64Type,
};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use url::Url;

use super::cluster::Clusters;
use super::records::Records;
use crate::EngineError;

/// What became of a cluster id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Live,
    /// Absorbed into its successor.
    Merged,
    /// Its records now belong to several new clusters.
    Split,
    /// All its records are gone.
    Removed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Live => "live",
            Status::Merged => "merged",
            Status::Split => "split",
            Status::Removed => "removed",
        }
    }
    fn parse(s: &str) -> Status {
        match s {
            "merged" => Status::Merged,
            "split" => Status::Split,
            "removed" => Status::Removed,
            _ => Status::Live,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterInfo {
    pub status: Status,
    pub created_run: u64,
    pub ended_run: Option<u64>,
    /// For merged ids: the id that absorbed it.
    pub successor: Option<i64>,
    pub size: u64,
}

/// One event of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub run: u64,
    /// Microseconds since the epoch.
    pub at: i64,
    /// `created`, `merged`, `split` or `removed`.
    pub kind: &'static str,
    pub cluster_id: i64,
    /// merged: the absorbed ids; split: the new ids; created: the split id it came from.
    pub related: Vec<i64>,
    pub records: u64,
}

/// The persisted state of one identity space.
#[derive(Debug, Clone, Default)]
pub struct IdState {
    pub run: u64,
    /// (source, record id) → cluster id.
    pub assignments: HashMap<(String, String), i64>,
    pub clusters: BTreeMap<i64, ClusterInfo>,
    pub history: Vec<Event>,
}

/// What one run did to the ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdChanges {
    pub kept: u64,
    pub created: u64,
    pub merged: u64,
    pub split: u64,
    pub removed: u64,
}

impl IdState {
    fn next_id(&self) -> i64 {
        self.clusters.keys().next_back().map_or(1, |k| k + 1)
    }

    /// Assigns ids to this run's clusters by the rules above. Returns the new state (with
    /// this run's events appended), the id per cluster label, and the counts.
    pub fn assign(
        &self,
        r: &Records,
        clusters: &Clusters,
        now: i64,
    ) -> (IdState, HashMap<u32, i64>, IdChanges) {
        let run = self.run + 1;
        let mut next = self.next_id();
        // Old id → the new clusters (labels) holding its records, and the reverse.
        let mut old_to_new: BTreeMap<i64, BTreeSet<u32>> = BTreeMap::new();
        let mut new_to_old: BTreeMap<u32, BTreeSet<i64>> = BTreeMap::new();
        let mut sizes: BTreeMap<u32, u64> = BTreeMap::new();
        let mut keys = Vec::with_capacity(r.len());
        for i in 0..r.len() {
            let label = clusters.of[i];
            *sizes.entry(label).or_insert(0) += 1;
            new_to_old.entry(label).or_default();
            let key = (
                r.source_name(i).to_string(),
                r.key.get(i).unwrap_or_default().to_string(),
            );
            if let Some(old) = self.assignments.get(&key) {
                old_to_new.entry(*old).or_default().insert(label);
                new_to_old.entry(label).or_default().insert(*old);
            }
            keys.push(key);
        }
        let mut state = IdState {
            run,
            assignments: HashMap::with_capacity(r.len()),
            clusters: self.clusters.clone(),
            history: self.history.clone(),
        };
        let mut changes = IdChanges::default();
        let mut id_of: HashMap<u32, i64> = HashMap::with_capacity(sizes.len());
        let mut split_origin: HashMap<u32, i64> = HashMap::new();
        for (label, olds) in &new_to_old {
            // Old ids whose records all landed here may carry over; the oldest wins.
            let whole: Vec<i64> = olds
                .iter()
                .copied()
                .filter(|o| old_to_new[o].len() == 1)
                .collect();
            let id = match whole.first() {
                Some(&oldest) => {
                    changes.kept += 1;
                    if whole.len() > 1 {
                        changes.merged += whole.len() as u64 - 1;
                        for &absorbed in &whole[1..] {
                            if let Some(info) = state.clusters.get_mut(&absorbed) {
                                info.status = Status::Merged;
                                info.ended_run = Some(run);
                                info.successor = Some(oldest);
                            }
                        }
                        state.history.push(Event {
                            run,
                            at: now,
                            kind: "merged",
                            cluster_id: oldest,
                            related: whole[1..].to_vec(),
                            records: sizes[label],
                        });
                    }
                    oldest
                }
                None => {
                    let id = next;
                    next += 1;
                    changes.created += 1;
                    if let Some(o) = olds.iter().find(|o| old_to_new[*o].len() > 1) {
                        split_origin.insert(*label, *o);
                    }
                    state.clusters.insert(
                        id,
                        ClusterInfo {
                            status: Status::Live,
                            created_run: run,
                            ended_run: None,
                            successor: None,
                            size: 0,
                        },
                    );
                    state.history.push(Event {
                        run,
                        at: now,
                        kind: "created",
                        cluster_id: id,
                        related: split_origin.get(label).into_iter().copied().collect(),
                        records: sizes[label],
                    });
                    id
                }
            };
            if let Some(info) = state.clusters.get_mut(&id) {
                info.size = sizes[label];
            }
            id_of.insert(*label, id);
        }
        // Splits: one event per old id, naming its pieces' new ids.
        for (old, labels) in &old_to_new {
            if labels.len() > 1 {
                changes.split += 1;
                let pieces: Vec<i64> = labels.iter().map(|l| id_of[l]).collect();
                if let Some(info) = state.clusters.get_mut(old) {
                    info.status = Status::Split;
                    info.ended_run = Some(run);
                }
                state.history.push(Event {
                    run,
                    at: now,
                    kind: "split",
                    cluster_id: *old,
                    related: pieces,
                    records: labels.iter().map(|l| sizes[l]).sum(),
                });
            }
        }
        // Removed: live ids with no record left.
        for (id, info) in state.clusters.iter_mut() {
            if info.status == Status::Live && info.created_run < run && !old_to_new.contains_key(id)
            {
                changes.removed += 1;
                info.status = Status::Removed;
                info.ended_run = Some(run);
                info.size = 0;
                state.history.push(Event {
                    run,
                    at: now,
                    kind: "removed",
                    cluster_id: *id,
                    related: Vec::new(),
                    records: 0,
                });
            }
        }
        for (i, key) in keys.into_iter().enumerate() {
            state.assignments.insert(key, id_of[&clusters.of[i]]);
        }
        (state, id_of, changes)
    }
}

/// Where the id state of every identity space lives.
#[derive(Debug, Clone)]
pub struct IdStore {
    store: Arc<dyn ObjectStore>,
    root: Url,
}

impl IdStore {
    /// A store in a local folder (created if missing), `.ebb/identity/` in a project.
    pub fn local(dir: &std::path::Path) -> Result<IdStore, EngineError> {
        let err = |e: String| EngineError::Identity(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        let dir = dir.canonicalize().map_err(|e| err(e.to_string()))?;
        let root = Url::from_directory_path(&dir).map_err(|()| err("not absolute".into()))?;
        Ok(IdStore {
            store: Arc::new(object_store::local::LocalFileSystem::new()),
            root,
        })
    }

    /// A store on any object store, rooted at `root` (a URL ending with `/`).
    pub fn new(store: Arc<dyn ObjectStore>, root: Url) -> IdStore {
        IdStore { store, root }
    }

    fn path(&self, rel: &str) -> StorePath {
        let full = format!("{}{rel}", self.root.path().trim_start_matches('/'));
        StorePath::from(full.as_str())
    }

    /// The folder (URL) of an identity space's committed version `run`.
    pub fn version_url(&self, name: &str, run: u64) -> String {
        format!("{}{name}/v{run:06}/", self.root)
    }

    async fn get(&self, rel: &str) -> Result<Option<Bytes>, EngineError> {
        match self.store.get(&self.path(rel)).await {
            Ok(got) => Ok(Some(got.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The committed run of `name`, if any.
    pub async fn current_run(&self, name: &str) -> Result<Option<u64>, EngineError> {
        let Some(run) = self.get(&format!("{name}/CURRENT")).await? else {
            return Ok(None);
        };
        String::from_utf8_lossy(&run)
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| EngineError::Identity(format!("{name}/CURRENT is not a run number")))
    }

    /// The committed state of `name` (empty before its first run).
    pub async fn load(&self, name: &str) -> Result<IdState, EngineError> {
        let Some(run) = self.current_run(name).await? else {
            return Ok(IdState::default());
        };
        let read = |file: &'static str| async move {
            let rel = format!("{name}/v{run:06}/{file}");
            let bytes = self
                .get(&rel)
                .await?
                .ok_or_else(|| EngineError::Identity(format!("{rel} is missing")))?;
            read_parquet(bytes).map_err(|e| EngineError::Identity(format!("{rel}: {e}")))
        };
        let mut state = IdState {
            run,
            ..IdState::default()
        };
        for b in read("assignments.parquet").await? {
            let source = b.column(0).as_string::<i32>();
            let record = b.column(1).as_string::<i32>();
            let cluster = b.column(2).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                state.assignments.insert(
                    (source.value(i).to_string(), record.value(i).to_string()),
                    cluster.value(i),
                );
            }
        }
        for b in read("clusters.parquet").await? {
            let id = b.column(0).as_primitive::<Int64Type>();
            let status = b.column(1).as_string::<i32>();
            let created = b.column(2).as_primitive::<UInt64Type>();
            let ended = b.column(3).as_primitive::<UInt64Type>();
            let successor = b.column(4).as_primitive::<Int64Type>();
            let size = b.column(5).as_primitive::<UInt64Type>();
            for i in 0..b.num_rows() {
                state.clusters.insert(
                    id.value(i),
                    ClusterInfo {
                        status: Status::parse(status.value(i)),
                        created_run: created.value(i),
                        ended_run: ended.is_valid(i).then(|| ended.value(i)),
                        successor: successor.is_valid(i).then(|| successor.value(i)),
                        size: size.value(i),
                    },
                );
            }
        }
        for b in read("history.parquet").await? {
            let run = b.column(0).as_primitive::<UInt64Type>();
            let at = b.column(1).as_primitive::<TimestampMicrosecondType>();
            let kind = b.column(2).as_string::<i32>();
            let cluster = b.column(3).as_primitive::<Int64Type>();
            let related = b.column(4).as_string::<i32>();
            let records = b.column(5).as_primitive::<UInt64Type>();
            for i in 0..b.num_rows() {
                state.history.push(Event {
                    run: run.value(i),
                    at: at.value(i),
                    kind: match kind.value(i) {
                        "merged" => "merged",
                        "split" => "split",
                        "removed" => "removed",
                        _ => "created",
                    },
                    cluster_id: cluster.value(i),
                    related: related
                        .value(i)
                        .split(',')
                        .filter_map(|s| s.trim().parse().ok())
                        .collect(),
                    records: records.value(i),
                });
            }
        }
        Ok(state)
    }

    /// Writes `state` as run `state.run` and commits it; then deletes versions older than
    /// the previous one.
    pub async fn commit(&self, name: &str, state: &IdState) -> Result<(), EngineError> {
        self.commit_files(name, state, Vec::new()).await
    }

    /// Like [`IdStore::commit`], with the run's outputs (`resolved.parquet`,
    /// `golden.parquet`) in the same version folder.
    pub async fn commit_with_outputs(
        &self,
        name: &str,
        state: &IdState,
        resolved: &RecordBatch,
        golden: &RecordBatch,
    ) -> Result<(), EngineError> {
        let extra = vec![
            ("resolved.parquet", resolved.clone()),
            ("golden.parquet", golden.clone()),
        ];
        self.commit_files(name, state, extra).await
    }

    async fn commit_files(
        &self,
        name: &str,
        state: &IdState,
        extra: Vec<(&'static str, RecordBatch)>,
    ) -> Result<(), EngineError> {
        let run = state.run;
        let dir = format!("{name}/v{run:06}");
        let mut files = vec![
            ("assignments.parquet", state.assignments_batch()?),
            ("clusters.parquet", state.clusters_batch()?),
            ("history.parquet", state.history_batch()?),
        ];
        files.extend(extra);
        for (file, batch) in files {
            let bytes = write_parquet(&batch)?;
            self.store
                .put(
                    &self.path(&format!("{dir}/{file}")),
                    PutPayload::from(bytes),
                )
                .await?;
        }
        self.store
            .put(
                &self.path(&format!("{name}/CURRENT")),
                PutPayload::from(run.to_string().into_bytes()),
            )
            .await?;
        // Collect versions other than this one and the one before.
        let prefix = self.path(&format!("{name}/"));
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        for meta in objects {
            let path = meta.location.to_string();
            let version = path
                .rsplit('/')
                .nth(1)
                .and_then(|v| v.strip_prefix('v'))
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(v) = version
                && v + 1 < run
            {
                self.store.delete(&meta.location).await?;
            }
        }
        if let Ok(dir) = self.root.join(&format!("{name}/"))
            && let Ok(dir) = dir.to_file_path()
            && let Ok(entries) = std::fs::read_dir(&dir)
        {
            for entry in entries.flatten() {
                // Empty folders of collected versions; remove_dir refuses non-empty ones.
                let _ = std::fs::remove_dir(entry.path());
            }
        }
        Ok(())
    }
}

impl IdState {
    /// `source, record_id, cluster_id`, sorted.
    pub fn assignments_batch(&self) -> Result<RecordBatch, EngineError> {
        let mut rows: Vec<(&(String, String), &i64)> = self.assignments.iter().collect();
        rows.sort_unstable();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| *r.1))),
        ];
        batch(
            vec![
                Field::new("source", DataType::Utf8, false),
                Field::new("record_id", DataType::Utf8, false),
                Field::new("cluster_id", DataType::Int64, false),
            ],
            columns,
        )
    }

    pub fn clusters_batch(&self) -> Result<RecordBatch, EngineError> {
        let c = &self.clusters;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(c.keys().copied())),
            Arc::new(StringArray::from_iter_values(
                c.values().map(|i| i.status.as_str()),
            )),
            Arc::new(UInt64Array::from_iter_values(
                c.values().map(|i| i.created_run),
            )),
            Arc::new(UInt64Array::from_iter(c.values().map(|i| i.ended_run))),
            Arc::new(Int64Array::from_iter(c.values().map(|i| i.successor))),
            Arc::new(UInt64Array::from_iter_values(c.values().map(|i| i.size))),
        ];
        batch(
            vec![
                Field::new("cluster_id", DataType::Int64, false),
                Field::new("status", DataType::Utf8, false),
                Field::new("created_run", DataType::UInt64, false),
                Field::new("ended_run", DataType::UInt64, true),
                Field::new("successor", DataType::Int64, true),
                Field::new("size", DataType::UInt64, false),
            ],
            columns,
        )
    }

    pub fn history_batch(&self) -> Result<RecordBatch, EngineError> {
        let h = &self.history;
        let related = |e: &Event| {
            e.related
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(h.iter().map(|e| e.run))),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(h.iter().map(|e| e.at))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(h.iter().map(|e| e.kind))),
            Arc::new(Int64Array::from_iter_values(h.iter().map(|e| e.cluster_id))),
            Arc::new(StringArray::from_iter_values(h.iter().map(related))),
            Arc::new(UInt64Array::from_iter_values(h.iter().map(|e| e.records))),
        ];
        batch(
            vec![
                Field::new("run", DataType::UInt64, false),
                Field::new(
                    "at",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false,
                ),
                Field::new("event", DataType::Utf8, false),
                Field::new("cluster_id", DataType::Int64, false),
                Field::new("related_ids", DataType::Utf8, false),
                Field::new("records", DataType::UInt64, false),
            ],
            columns,
        )
    }

    /// The events that concern `cluster_id` (as subject or as a related id).
    pub fn history_of(&self, cluster_id: i64) -> Vec<&Event> {
        self.history
            .iter()
            .filter(|e| e.cluster_id == cluster_id || e.related.contains(&cluster_id))
            .collect()
    }
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<RecordBatch, EngineError> {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| EngineError::Identity(format!("building a batch: {e}")))
}

/// One batch as Parquet bytes.
pub fn write_parquet(batch: &RecordBatch) -> Result<Vec<u8>, EngineError> {
    let err = |e: parquet::errors::ParquetError| EngineError::Identity(format!("parquet: {e}"));
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).map_err(err)?;
    writer.write(batch).map_err(err)?;
    writer.close().map_err(err)?;
    Ok(out)
}

fn read_parquet(bytes: Bytes) -> Result<Vec<RecordBatch>, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}
