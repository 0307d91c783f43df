//! A Parquet lake on object_store (a local folder or `s3://bucket/prefix`).
//!
//! # Layout
//!
//! ```text
//! <root>/data/<schema.table>/<manifest number>-<n>.parquet   one file per table and roll
//! <root>/_manifest/<manifest number, 20 digits>.json         one entry per commit
//! ```
//!
//! Each file holds the ChangeBatch columns, then `_ebb_lsn` (the commit LSN) and
//! `_ebb_unchanged_toast` (columns whose null means "unchanged TOAST value, not sent"), then
//! the entity's columns; a schema change starts a new file. Files are uploaded whole (object_store
//! puts are atomic: never a half file), and become part of the lake only when a manifest entry
//! lists them: the entry is created with put-if-absent and records the files, their LSN
//! ranges and the position they complete. Readers take the union of the manifest entries'
//! files. On open, files no entry lists (written before a crash) are deleted, and the last
//! entry's position is where the pipeline resumes for this sink: no change is lost or written
//! twice.
//!
//! A `TRUNCATE` is recorded in the manifest entry that commits it (`truncates`: table, commit
//! LSN, `_ebb_seq`): a reader drops the table's rows ordered before it.

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, PutMode, PutOptions, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::{LSN_COLUMN, Sink, sink_error};
use crate::changes::{Delivery, Truncation, UNCHANGED_TOAST_COLUMN};
use crate::error::CdcError;
use crate::position::Position;

/// Default size at which a file is closed.
pub const DEFAULT_ROLL_BYTES: usize = 64 << 20;
/// Default age at which files are committed.
pub const DEFAULT_ROLL_INTERVAL: Duration = Duration::from_secs(10);

/// One file listed by a manifest entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to the lake's root.
    pub path: String,
    /// `schema.table`.
    pub table: String,
    /// Changes in the file.
    pub rows: u64,
    /// Smallest and largest commit LSN in the file.
    pub min_lsn: u64,
    /// See `min_lsn`.
    pub max_lsn: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// One commit of the lake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Its number, from 1.
    pub number: u64,
    /// The files it adds.
    pub files: Vec<ManifestFile>,
    /// `TRUNCATE`s it commits: rows of the table ordered before one (by `_ebb_lsn`, then
    /// `_ebb_seq`) are gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncates: Vec<Truncation>,
    /// What the lake holds once this entry is in.
    pub position: Position,
}

/// The open file of one table.
struct OpenFile {
    schema: SchemaRef,
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
    min_lsn: u64,
    max_lsn: u64,
}

impl std::fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenFile")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// The Parquet lake sink.
#[derive(Debug)]
pub struct ParquetLakeSink {
    store: Arc<dyn ObjectStore>,
    root: Path,
    label: String,
    roll_bytes: usize,
    roll_interval: Duration,
    next_number: u64,
    files_in_entry: u64,
    open: BTreeMap<Arc<str>, OpenFile>,
    /// Uploaded, not yet listed by a manifest entry.
    staged: Vec<ManifestFile>,
    /// Truncations not yet committed.
    truncates: Vec<Truncation>,
    durable: Position,
    pending_since: Option<Instant>,
    last_entry_at: Instant,
}

fn lake_error(label: &str) -> impl Fn(String) -> CdcError + use<> {
    sink_error(label, true)
}

/// Reads every manifest entry of the lake at `root` in `store`, in order.
pub async fn read_manifest(
    store: &dyn ObjectStore,
    root: &Path,
) -> Result<Vec<ManifestEntry>, object_store::Error> {
    let prefix = root.clone().join("_manifest");
    let mut metas: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    let mut entries = Vec::new();
    for meta in metas {
        if meta.location.extension() != Some("json") {
            continue;
        }
        let bytes = store
            .get_opts(&meta.location, GetOptions::default())
            .await?
            .bytes()
            .await?;
        let entry: ManifestEntry =
            serde_json::from_slice(&bytes).map_err(|e| object_store::Error::Generic {
                store: "manifest",
                source: Box::new(e),
            })?;
        entries.push(entry);
    }
    Ok(entries)
}

impl ParquetLakeSink {
    /// A lake in `store` under `root`.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, label: String) -> ParquetLakeSink {
        ParquetLakeSink {
            store,
            root,
            label,
            roll_bytes: DEFAULT_ROLL_BYTES,
            roll_interval: DEFAULT_ROLL_INTERVAL,
            next_number: 1,
            files_in_entry: 0,
            open: BTreeMap::new(),
            staged: Vec::new(),
            truncates: Vec::new(),
            durable: Position::default(),
            pending_since: None,
            last_entry_at: Instant::now(),
        }
    }

    /// A lake at `url`: `s3://bucket/prefix` (credentials from the environment) or a local
    /// folder (relative to `base`).
    pub fn open_url(url: &str, base: &FsPath) -> Result<ParquetLakeSink, CdcError> {
        let label = format!("parquet:{url}");
        let fatal = sink_error(&label, false);
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| fatal(e.to_string()))?;
            return Ok(ParquetLakeSink::new(
                Arc::new(store),
                Path::from(prefix),
                label,
            ));
        }
        let dir = base.join(url);
        std::fs::create_dir_all(&dir)
            .map_err(|e| fatal(format!("creating {}: {e}", dir.display())))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| fatal(e.to_string()))?;
        Ok(ParquetLakeSink::new(
            Arc::new(store),
            Path::default(),
            label,
        ))
    }

    /// Files close at this size.
    pub fn set_roll_bytes(&mut self, bytes: usize) {
        self.roll_bytes = bytes.max(1024);
    }

    /// Files are committed at least this often while changes arrive.
    pub fn set_roll_interval(&mut self, interval: Duration) {
        self.roll_interval = interval;
    }

    fn file_schema(changes: &SchemaRef) -> SchemaRef {
        let mut fields: Vec<Arc<Field>> = changes.fields().iter().cloned().collect();
        fields.insert(4, Arc::new(Field::new(LSN_COLUMN, DataType::UInt64, false)));
        fields.insert(
            5,
            Arc::new(Field::new(UNCHANGED_TOAST_COLUMN, toast_type(), true)),
        );
        Arc::new(Schema::new(fields))
    }

    async fn close_file(&mut self, table: &Arc<str>) -> Result<(), CdcError> {
        let Some(file) = self.open.remove(table) else {
            return Ok(());
        };
        let bytes = file
            .writer
            .into_inner()
            .map_err(|e| lake_error(&self.label)(format!("finishing a Parquet file: {e}")))?;
        let name = format!(
            "data/{table}/{:020}-{}.parquet",
            self.next_number, self.files_in_entry
        );
        self.files_in_entry += 1;
        let size = bytes.len() as u64;
        self.store
            .put_opts(
                &self.root.clone().join_all(name.split('/')),
                PutPayload::from(Bytes::from(bytes)),
                PutOptions::default(),
            )
            .await
            .map_err(|e| lake_error(&self.label)(format!("uploading {name}: {e}")))?;
        self.staged.push(ManifestFile {
            path: name,
            table: table.to_string(),
            rows: file.rows,
            min_lsn: file.min_lsn,
            max_lsn: file.max_lsn,
            bytes: size,
        });
        Ok(())
    }
}

/// The type of `_ebb_unchanged_toast`: a list of column names.
fn toast_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

trait JoinAll {
    fn join_all<'a>(self, parts: impl Iterator<Item = &'a str>) -> Path;
}

impl JoinAll for Path {
    fn join_all<'a>(self, parts: impl Iterator<Item = &'a str>) -> Path {
        parts.fold(self, |p, part| p.join(part))
    }
}

impl Sink for ParquetLakeSink {
    fn name(&self) -> String {
        self.label.clone()
    }

    async fn open(&mut self) -> Result<Option<Position>, CdcError> {
        let err = lake_error(&self.label);
        let entries = read_manifest(self.store.as_ref(), &self.root)
            .await
            .map_err(|e| err(format!("reading the manifest: {e}")))?;
        let listed: std::collections::HashSet<&str> = entries
            .iter()
            .flat_map(|e| e.files.iter().map(|f| f.path.as_str()))
            .collect();
        let data = self.root.clone().join("data");
        let metas: Vec<_> = self
            .store
            .list(Some(&data))
            .try_collect()
            .await
            .map_err(|e| err(format!("listing data files: {e}")))?;
        let root_len = self.root.parts().count();
        let orphans: Vec<Path> = metas
            .into_iter()
            .map(|m| m.location)
            .filter(|p| {
                let rel: Vec<_> = p
                    .parts()
                    .skip(root_len)
                    .map(|s| s.as_ref().to_string())
                    .collect();
                !listed.contains(rel.join("/").as_str())
            })
            .collect();
        if !orphans.is_empty() {
            tracing::info!(sink = %self.label, files = orphans.len(), "deleting files no manifest entry lists (written before a crash)");
            let stream = futures::stream::iter(orphans.into_iter().map(Ok)).boxed();
            let _: Vec<_> = self
                .store
                .delete_stream(stream)
                .try_collect()
                .await
                .map_err(|e| err(format!("deleting unlisted files: {e}")))?;
        }
        self.next_number = entries.last().map_or(1, |e| e.number + 1);
        self.durable = entries
            .last()
            .map(|e| e.position.clone())
            .unwrap_or_default();
        Ok(Some(self.durable.clone()))
    }

    async fn write(&mut self, delivery: &Delivery) -> Result<(), CdcError> {
        let err = lake_error(&self.label);
        let changes = delivery.changes.batch();
        let schema = Self::file_schema(&changes.schema());
        if self
            .open
            .get(&delivery.table)
            .is_some_and(|f| f.schema != schema)
        {
            // The table's shape changed: its new rows go to a new file.
            self.close_file(&delivery.table).await?;
        }
        if !self.open.contains_key(&delivery.table) {
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(64 * 1024))
                .build();
            let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
                .map_err(|e| err(format!("starting a Parquet file: {e}")))?;
            self.open.insert(
                delivery.table.clone(),
                OpenFile {
                    schema: schema.clone(),
                    writer,
                    rows: 0,
                    min_lsn: u64::MAX,
                    max_lsn: 0,
                },
            );
        }
        let mut columns: Vec<ArrayRef> = changes.columns().to_vec();
        columns.insert(4, delivery.lsns.clone());
        columns.insert(
            5,
            match &delivery.unchanged_toast {
                Some(t) => t.clone(),
                None => arrow::array::new_null_array(&toast_type(), changes.num_rows()),
            },
        );
        let batch = RecordBatch::try_new(schema, columns)
            .map_err(|e| err(format!("building a Parquet batch: {e}")))?;
        let file = self.open.get_mut(&delivery.table).expect("just opened");
        file.writer
            .write(&batch)
            .map_err(|e| err(format!("writing Parquet: {e}")))?;
        file.rows += batch.num_rows() as u64;
        if let (Some(min), Some(max)) = (
            delivery.lsns.values().iter().min(),
            delivery.lsns.values().iter().max(),
        ) {
            file.min_lsn = file.min_lsn.min(*min);
            file.max_lsn = file.max_lsn.max(*max);
        }
        let size = file.writer.bytes_written() + file.writer.in_progress_size();
        if size >= self.roll_bytes {
            // Uploaded now, listed at the next commit.
            self.close_file(&delivery.table).await?;
        }
        self.pending_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    async fn truncate(&mut self, t: &Truncation) -> Result<(), CdcError> {
        // Rows of the table written before it close their file, so that a reader can apply
        // it between files as well as by (`_ebb_lsn`, `_ebb_seq`).
        let table: Arc<str> = t.table.as_str().into();
        self.close_file(&table).await?;
        self.truncates.push(t.clone());
        self.pending_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    async fn commit(&mut self, position: &Position, force: bool) -> Result<Position, CdcError> {
        let pending =
            !(self.open.is_empty() && self.staged.is_empty() && self.truncates.is_empty());
        if !pending && *position == self.durable {
            return Ok(self.durable.clone());
        }
        // Without changes, a position-only entry (the slot moved on) is written at most once
        // per roll interval.
        let since = if pending {
            self.pending_since
        } else {
            Some(self.last_entry_at)
        };
        let due = force
            || since.is_some_and(|t| t.elapsed() >= self.roll_interval)
            || self.staged.iter().map(|f| f.bytes as usize).sum::<usize>() >= self.roll_bytes;
        if !due {
            return Ok(self.durable.clone());
        }
        let tables: Vec<Arc<str>> = self.open.keys().cloned().collect();
        for t in &tables {
            self.close_file(t).await?;
        }
        let entry = ManifestEntry {
            number: self.next_number,
            files: std::mem::take(&mut self.staged),
            truncates: std::mem::take(&mut self.truncates),
            position: position.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&entry)
            .map_err(|e| lake_error(&self.label)(e.to_string()))?;
        let path = self
            .root
            .clone()
            .join("_manifest")
            .clone()
            .join(format!("{:020}.json", entry.number));
        self.store
            .put_opts(
                &path,
                PutPayload::from(Bytes::from(bytes)),
                PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                },
            )
            .await
            .map_err(|e| {
                sink_error(&self.label, false)(format!(
                    "committing manifest entry {}: {e} (is another pipeline writing to this lake?)",
                    entry.number
                ))
            })?;
        self.next_number += 1;
        self.files_in_entry = 0;
        self.pending_since = None;
        self.last_entry_at = Instant::now();
        self.durable = position.clone();
        Ok(self.durable.clone())
    }
}
