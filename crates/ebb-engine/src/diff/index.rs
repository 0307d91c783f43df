//! The DataFusion engine's fast path: the diff against an in-memory index of the snapshot.
//!
//! When the sync has a snapshot whose index fits the memory budget, a run reads each file
//! about once, instead of staging every new row and joining twice:
//!
//! 1. **Index** the snapshot: only its `_ebb_key` and `_ebb_hash` columns are read, into a
//!    table ([`super::table`]) from the key's identity to (delivered row hash, row position,
//!    state). The identity is the 128-bit `xxh3_128` of the key text, not the text itself,
//!    so an entry takes 32 bytes whatever the key's length. Two different keys share an
//!    identity with odds of about n²/2¹²⁹ (10⁹ keys: 1 in 10²¹); the two keys would then be
//!    taken for one.
//! 2. **Probe** with the model's rows as they stream in (key and hash as [`super::canonical`]
//!    computes them): a key not in the index is a candidate insert, a different hash a
//!    candidate update, the same hash unchanged. Only candidates are kept, in a staging
//!    file, with the snapshot position of their delivered row. New keys go into a second
//!    map, so a key seen twice is caught whichever side it is on; when that map outgrows
//!    its budget, an exact `GROUP BY` over the staged insert candidates finishes the check.
//! 3. **Deletes** are the indexed keys never seen. The snapshot is read once more, only the
//!    rows of deletes and updates (a Parquet row selection), in position order; the update
//!    candidates, sorted by position (DataFusion, spilling if they are many), pair with them.
//! 4. **Emit** through [`super::ChangeWriter`], as the join path does: same ops, sequence
//!    numbers and `_ebb_changed`, so [`super::PendingDiff::commit`] works unchanged.
//!
//! The table is filled and probed by one task; Parquet decoding, key and row hashing run on
//! other tasks (two files or two batches at a time), so both cores of a small machine work.
//!
//! The join path ([`super::diff`]'s own) stays for a first run, a full resync, a snapshot
//! whose columns differ from the current mapping, and an index that would not fit.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, UInt8Array, UInt32Array, UInt64Array, new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use bytes::Bytes;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use datafusion::parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::ParquetReadOptions;
use ebb_core::change;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use super::table::IdTable;
use super::{
    ChangeWriter, DataFusionDiff, DiffOptions, DiffReport, DiffSpec, Manifest, PassThrough,
    SnapshotStore, arrow_err, canonical, df_err, parquet_err, quote, register_old,
    staging_properties,
};
use crate::EngineError;

/// A key's identity in the index: the two halves of its `xxh3_128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeyId(pub(super) u64, pub(super) u64);

impl KeyId {
    pub(super) fn of(key: &str) -> KeyId {
        let h = xxhash_rust::xxh3::xxh3_128(key.as_bytes());
        KeyId(h as u64, (h >> 64) as u64)
    }
}

impl Hash for KeyId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a hash: the map takes its low half as is.
        state.write_u64(self.0);
    }
}

type IdMap<V> = HashMap<KeyId, V, BuildHasherDefault<PassThrough>>;

/// An indexed (delivered) key: its row hash, and its row position in the snapshot with the
/// key's state in this run in the top bits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) hash: u64,
    pub(super) pos_state: u64,
}

const STATE_SHIFT: u32 = 61;
const POS_MASK: u64 = (1 << STATE_SHIFT) - 1;
/// Not seen in this run (yet): a delete, unless it turns up.
const UNSEEN: u64 = 0;
/// Seen once, same hash.
const SAME: u64 = 1;
/// Seen once, different hash: a candidate update.
const CHANGED: u64 = 2;
/// Seen more than once: left out.
const DUPLICATE: u64 = 3;

impl Entry {
    fn state(self) -> u64 {
        self.pos_state >> STATE_SHIFT
    }
    fn pos(self) -> u64 {
        self.pos_state & POS_MASK
    }
    fn set_state(&mut self, state: u64) {
        self.pos_state = self.pos() | (state << STATE_SHIFT);
    }
}

/// Bytes per key of the new-key map while it grows (the old and the doubled table at once).
const FRESH_BYTES_PER_KEY: u64 = (std::mem::size_of::<(KeyId, bool)>() as u64 + 1) * 16 / 7;

/// The rows read of one snapshot file.
struct SnapshotFile {
    meta: ObjectMeta,
    reader_meta: ArrowReaderMetadata,
    rows: u64,
}

/// The snapshot a diff can run against by index, with the memory the index may take.
pub(super) struct Plan {
    files: Vec<SnapshotFile>,
    /// Bytes for the index of new keys (`None`: no limit).
    fresh_budget: Option<u64>,
}

/// Whether the diff of `new_schema` against `base` can take the index path: a snapshot with
/// rows, the same columns and types as the current mapping, and an index that fits half the
/// memory limit. Reads only the snapshot files' footers.
pub(super) async fn plan(
    snapshots: &SnapshotStore,
    base: Option<&Manifest>,
    new_schema: &Schema,
    columns: &[String],
    options: &DiffOptions,
) -> Result<Option<Plan>, EngineError> {
    let Some(base) = base else { return Ok(None) };
    if base.rows == 0 || options.full_resync || base.columns != columns {
        return Ok(None);
    }
    let budget = options.memory_limit.map(|limit| limit as u64 / 2);
    let index = IdTable::bytes(base.rows);
    if budget.is_some_and(|b| index >= b) {
        return Ok(None);
    }
    let mut files = Vec::new();
    let mut rows = 0;
    for meta in snapshots.version_files(&base.sync, base.version).await? {
        let mut reader = StoreReader::new(Arc::clone(snapshots.object_store()), &meta);
        let reader_meta = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
            .await
            .map_err(|e| snapshot_err(&meta, e))?;
        let same = reader_meta.schema().fields().len() == new_schema.fields().len()
            && reader_meta
                .schema()
                .fields()
                .iter()
                .zip(new_schema.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !same {
            return Ok(None);
        }
        let file_rows = reader_meta.metadata().file_metadata().num_rows() as u64;
        rows += file_rows;
        files.push(SnapshotFile {
            meta,
            reader_meta,
            rows: file_rows,
        });
    }
    if rows != base.rows {
        // Not the snapshot its manifest describes: the join path reads it as it is.
        return Ok(None);
    }
    Ok(Some(Plan {
        files,
        fresh_budget: budget.map(|b| b - index),
    }))
}

fn snapshot_err(file: &ObjectMeta, e: datafusion::parquet::errors::ParquetError) -> EngineError {
    EngineError::Snapshot(format!("{}: {e}", file.location))
}

/// Reads a snapshot file from object_store for the Parquet reader.
struct StoreReader {
    store: Arc<dyn ObjectStore>,
    meta: ObjectMeta,
}

impl StoreReader {
    fn new(store: Arc<dyn ObjectStore>, meta: &ObjectMeta) -> StoreReader {
        StoreReader {
            store,
            meta: meta.clone(),
        }
    }
}

fn store_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, ParquetError>> {
        async move {
            self.store
                .get_range(&self.meta.location, range)
                .await
                .map_err(store_err)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<Bytes>, ParquetError>> {
        async move {
            self.store
                .get_ranges(&self.meta.location, &ranges)
                .await
                .map_err(store_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>, ParquetError>> {
        async move {
            let size = self.meta.size;
            let metadata = ParquetMetaDataReader::new()
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Duplicate keys found so far: counts, and the smallest few.
#[derive(Default)]
struct Duplicates {
    keys: u64,
    rows: u64,
    sample: BTreeSet<String>,
}

impl Duplicates {
    /// A key found `rows` times.
    fn add(&mut self, key: &str, rows: u64) {
        self.keys += 1;
        self.rows += rows;
        if self.sample.len() < 5 || self.sample.last().is_some_and(|last| key < last.as_str()) {
            self.sample.insert(key.to_string());
            if self.sample.len() > 5 {
                self.sample.pop_last();
            }
        }
    }
}

/// The column of a candidate row holding the position of its delivered row (NULL: none).
const OLD_POS: &str = "_ebb_old_pos";

/// The index of a snapshot's keys (step 1).
pub(super) struct Index {
    map: IdTable,
    plan: Plan,
}

/// Reads the snapshot's keys and hashes into an index; `None` when the snapshot holds a key
/// twice (or two keys share an identity), which the join path handles as it is.
pub(super) async fn build(
    plan: Plan,
    snapshots: &SnapshotStore,
) -> Result<Option<Index>, EngineError> {
    let started = Instant::now();
    let rows: u64 = plan.files.iter().map(|f| f.rows).sum();
    // Files are decoded and their keys hashed on other tasks, two at a time, while this one
    // fills the table (in file order: positions count rows in it). The table's memory is
    // set up on a thread of its own meanwhile.
    let table = tokio::task::spawn_blocking(move || IdTable::prefaulted(rows));
    let mut pending = std::collections::VecDeque::new();
    let mut files = plan.files.iter();
    let mut start_readers = |pending: &mut std::collections::VecDeque<_>| {
        while pending.len() < 2
            && let Some(file) = files.next()
        {
            pending.push_back(spawn_key_reader(snapshots.object_store(), file));
        }
    };
    start_readers(&mut pending);
    let mut map = table
        .await
        .map_err(|e| EngineError::Diff(format!("allocating the snapshot index: {e}")))??;
    let mut pos = 0u64;
    loop {
        start_readers(&mut pending);
        let Some(mut chunks) = pending.pop_front() else {
            break;
        };
        while let Some(chunk) = chunks.recv().await {
            let Some((ids, hashes)) = chunk? else {
                return Ok(None); // a NULL key
            };
            let first = pos;
            pos += ids.len() as u64;
            let entries = hashes.iter().zip(first..).map(|(hash, pos)| Entry {
                hash: *hash,
                pos_state: pos,
            });
            if !map.insert_all(&ids, entries) {
                return Ok(None); // a key twice, or more rows than the files declare
            }
        }
    }
    if pos != rows {
        return Err(EngineError::Snapshot(format!(
            "snapshot {}: read {pos} rows of the {rows} its files declare",
            plan.files.first().map_or("", |f| f.meta.location.as_ref()),
        )));
    }
    tracing::debug!(
        keys = map.len(),
        ms = started.elapsed().as_millis() as u64,
        "diff: snapshot indexed"
    );
    Ok(Some(Index { map, plan }))
}

/// The identities and row hashes of a file's keys, batch by batch; `None` for a batch with
/// a NULL key.
type KeyChunk = Result<Option<(Vec<KeyId>, arrow::buffer::ScalarBuffer<u64>)>, EngineError>;

/// Reads the keys and hashes of `file` on a task of its own.
fn spawn_key_reader(
    store: &Arc<dyn ObjectStore>,
    file: &SnapshotFile,
) -> tokio::sync::mpsc::Receiver<KeyChunk> {
    let to_chunk = |batch: RecordBatch| {
        let keys = batch.column(0).as_string::<i32>();
        if keys.null_count() > 0 {
            return None;
        }
        let ids = (0..keys.len()).map(|i| KeyId::of(keys.value(i))).collect();
        let hashes = batch
            .column(1)
            .as_primitive::<UInt64Type>()
            .values()
            .clone();
        Some((ids, hashes))
    };
    spawn_snapshot_reader(store, file, vec![0, 1], None, to_chunk, Option::is_none)
}

/// Reads `columns` of `file` (only the rows `selection` picks, if any) on a task of its
/// own, handing on each batch through `map`; stops after an error or after an answer that
/// `last` says ends it. Up to 32 answers (a few MB) may wait for the consumer, so the next
/// file decodes meanwhile.
fn spawn_snapshot_reader<T: Send + 'static>(
    store: &Arc<dyn ObjectStore>,
    file: &SnapshotFile,
    columns: Vec<usize>,
    selection: Option<RowSelection>,
    map: impl Fn(RecordBatch) -> T + Send + 'static,
    last: fn(&T) -> bool,
) -> tokio::sync::mpsc::Receiver<Result<T, EngineError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(32);
    let reader = StoreReader::new(Arc::clone(store), &file.meta);
    let meta = file.meta.clone();
    let reader_meta = file.reader_meta.clone();
    tokio::spawn(async move {
        let projection = ProjectionMask::roots(reader_meta.parquet_schema(), columns);
        let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, reader_meta)
            .with_projection(projection)
            .with_batch_size(8192);
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
        let mut stream = match builder.build() {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(snapshot_err(&meta, e))).await;
                return;
            }
        };
        while let Some(batch) = stream.next().await {
            let answer = batch.map_err(|e| snapshot_err(&meta, e)).map(&map);
            let stop = answer.as_ref().map_or(true, last);
            if tx.send(answer).await.is_err() || stop {
                return; // the diff stopped, or this is its last answer
            }
        }
    });
    rx
}

/// The model's rows, decoded and hashed on other tasks as they arrive, waiting for the
/// probe. Started before the snapshot is indexed, so the two overlap.
pub(super) struct HashedRows {
    rx: tokio::sync::mpsc::Receiver<Result<Hashed, EngineError>>,
    schema: SchemaRef,
}

/// How many hashed batches may wait for the probe (about a megabyte each at 8,192 rows).
const HASHED_AHEAD: usize = 128;

/// Starts decoding and hashing `input` (keys from `key_indices`, row hashes over
/// `column_indices`), two batches at a time; their order does not matter.
pub(super) fn start_hashing(
    input: SendableRecordBatchStream,
    key_indices: &[usize],
    column_indices: &[usize],
) -> HashedRows {
    let schema = input.schema();
    let (tx, rx) = tokio::sync::mpsc::channel(HASHED_AHEAD);
    let key_indices: Arc<[usize]> = key_indices.into();
    let column_indices: Arc<[usize]> = column_indices.into();
    tokio::spawn(async move {
        let mut hashed = input
            .map(|batch| {
                let key_indices = Arc::clone(&key_indices);
                let column_indices = Arc::clone(&column_indices);
                tokio::spawn(async move {
                    let batch = batch.map_err(df_err)?;
                    hash_batch(batch, &key_indices, &column_indices)
                })
            })
            .buffer_unordered(2);
        while let Some(hashed) = hashed.next().await {
            let hashed = hashed
                .map_err(|e| EngineError::Diff(format!("hashing rows: {e}")))
                .and_then(|h| h);
            let failed = hashed.is_err();
            if tx.send(hashed).await.is_err() || failed {
                return; // the diff stopped, or this is its last answer
            }
        }
    });
    HashedRows { rx, schema }
}

impl HashedRows {
    /// The model's batches again (those already hashed first), for the join path when the
    /// index could not be built.
    pub(super) fn into_stream(self) -> SendableRecordBatchStream {
        let batches = futures::stream::unfold(self.rx, |mut rx| async move {
            let next = rx
                .recv()
                .await?
                .map(|h| h.batch)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)));
            Some((next, rx))
        });
        Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(self.schema, batches),
        )
    }
}

/// Runs the diff by index (see the module doc). `new_schema` is a staged row's (key, hash,
/// mapped columns in canonical order), `column_indices` pick the mapped columns from the
/// model's batches in `rows`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn diff(
    index: Index,
    mut rows: HashedRows,
    spec: DiffSpec,
    columns: Vec<String>,
    column_indices: Vec<usize>,
    new_schema: SchemaRef,
    base: Manifest,
    snapshots: &SnapshotStore,
    staging: tempfile::TempDir,
    ctx: datafusion::prelude::SessionContext,
    options: DiffOptions,
    mut report: DiffReport,
) -> Result<DataFusionDiff, EngineError> {
    let started = Instant::now();
    let store = Arc::clone(snapshots.object_store());
    let Index {
        map: mut index,
        plan,
    } = index;

    // 2. Probe with the model's rows; keep the candidates.
    let cand_path = staging.path().join("candidates.parquet");
    let mut cand_fields: Vec<Arc<Field>> = new_schema.fields().iter().cloned().collect();
    cand_fields.push(Arc::new(Field::new(OLD_POS, DataType::UInt64, true)));
    let cand_schema = Arc::new(Schema::new(cand_fields));
    let mut cand_writer = ArrowWriter::try_new(
        File::create(&cand_path).map_err(|e| EngineError::Diff(format!("staging: {e}")))?,
        Arc::clone(&cand_schema),
        Some(candidate_properties()),
    )
    .map_err(parquet_err)?;
    // New keys: whether seen more than once.
    let mut fresh: IdMap<bool> = HashMap::default();
    let fresh_max = plan
        .fresh_budget
        .map_or(usize::MAX, |b| (b / FRESH_BYTES_PER_KEY) as usize);
    let mut fresh_overflow = false;
    let mut dups = Duplicates::default();
    let mut staged_rows = 0u64;
    // Keys and row hashes are computed on other tasks ([`start_hashing`]); this task probes.
    while let Some(hashed) = rows.rx.recv().await {
        let Hashed {
            batch,
            keys,
            ids,
            hashes,
        } = hashed?;
        report.rows_read += batch.num_rows() as u64;
        let mut take = Vec::new();
        let mut old_pos = Vec::new();
        let hash_of = hashes.values();
        index.probe_all(&ids, |row, entry| {
            let hash = hash_of[row];
            let Some(id) = ids[row] else {
                report.bad_keys.null_key_rows += 1;
                return;
            };
            staged_rows += 1;
            if let Some(entry) = entry {
                match entry.state() {
                    UNSEEN if entry.hash == hash => entry.set_state(SAME),
                    UNSEEN => {
                        entry.set_state(CHANGED);
                        take.push(row as u32);
                        old_pos.push(Some(entry.pos()));
                    }
                    DUPLICATE => dups.rows += 1,
                    _ => {
                        entry.set_state(DUPLICATE);
                        dups.add(keys.value(row), 2);
                    }
                }
            } else if let Some(seen_twice) = fresh.get_mut(&id) {
                if *seen_twice {
                    dups.rows += 1;
                } else {
                    *seen_twice = true;
                    dups.add(keys.value(row), 2);
                }
            } else {
                if fresh.len() < fresh_max {
                    fresh.insert(id, false);
                } else {
                    fresh_overflow = true;
                }
                take.push(row as u32);
                old_pos.push(None);
            }
        });
        if take.is_empty() {
            continue;
        }
        let take = UInt32Array::from(take);
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(cand_schema.fields().len());
        cols.push(arrow::compute::take(&keys, &take, None).map_err(arrow_err)?);
        cols.push(arrow::compute::take(&hashes, &take, None).map_err(arrow_err)?);
        for i in column_indices.iter() {
            cols.push(arrow::compute::take(batch.column(*i), &take, None).map_err(arrow_err)?);
        }
        cols.push(Arc::new(UInt64Array::from(old_pos)));
        let cand = RecordBatch::try_new(Arc::clone(&cand_schema), cols).map_err(arrow_err)?;
        cand_writer.write(&cand).map_err(parquet_err)?;
    }
    cand_writer.close().map_err(parquet_err)?;
    tracing::debug!(
        rows = staged_rows,
        ms = started.elapsed().as_millis() as u64,
        "diff: model rows probed"
    );

    // Keys seen more than once that the new-key map did not track.
    let mut untracked_dups: IdMap<()> = HashMap::default();
    if fresh_overflow {
        tracing::debug!(
            tracked = fresh.len(),
            "diff: new keys past the budget, exact duplicate check"
        );
        ctx.register_parquet(
            "candidates",
            cand_path.to_string_lossy().as_ref(),
            ParquetReadOptions::default(),
        )
        .await
        .map_err(df_err)?;
        let k = quote(change::KEY);
        let found = super::collect(
            &ctx,
            &format!(
                "select {k}, count(*) from candidates where {} is null \
                 group by {k} having count(*) > 1",
                quote(OLD_POS)
            ),
        )
        .await?;
        for b in &found {
            let keys = b.column(0).as_string::<i32>();
            let counts = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
            for (key, n) in keys.iter().zip(counts.values()) {
                let key = key.unwrap_or_default();
                dups.add(key, *n as u64);
                untracked_dups.insert(KeyId::of(key), ());
            }
        }
        ctx.deregister_table("candidates").map_err(df_err)?;
    }
    report.bad_keys.duplicate_keys = dups.keys;
    report.bad_keys.duplicate_rows = dups.rows;
    report.bad_keys.sample_duplicates = dups.sample.into_iter().collect();
    let clean_rows = staged_rows - dups.rows;

    let mut out = ChangeWriter::create(
        &staging.path().join("changes.parquet"),
        &new_schema,
        &columns,
        false,
    )?;
    let n_cols = columns.len();
    let null_cols = |rows: usize| -> Vec<ArrayRef> {
        new_schema.fields()[2..]
            .iter()
            .map(|f| new_null_array(f.data_type(), rows))
            .collect()
    };

    // 3a. Inserts: the candidates without a delivered row, but for duplicated keys.
    let file = File::open(&cand_path).map_err(|e| EngineError::Diff(format!("staging: {e}")))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(8192).build())
        .map_err(parquet_err)?;
    for batch in reader {
        let batch = batch.map_err(arrow_err)?;
        let keys = batch.column(0).as_string::<i32>();
        let old_pos = batch.column(2 + n_cols);
        let keep: arrow::array::BooleanArray = (0..batch.num_rows())
            .map(|row| {
                if old_pos.is_valid(row) {
                    return Some(false);
                }
                let id = KeyId::of(keys.value(row));
                Some(fresh.get(&id) != Some(&true) && !untracked_dups.contains_key(&id))
            })
            .collect();
        let batch = arrow::compute::filter_record_batch(&batch, &keep).map_err(arrow_err)?;
        let rows = batch.num_rows();
        if rows == 0 {
            continue;
        }
        out.write(
            batch.column(0).as_string::<i32>(),
            &UInt8Array::from(vec![1; rows]),
            batch.column(1).as_primitive::<UInt64Type>(),
            &batch.columns()[2..2 + n_cols],
            &null_cols(rows),
            &mut report,
        )?;
    }
    drop(fresh);
    drop(untracked_dups);

    // 3b. The delivered rows to read again: deletes and updates, in snapshot order.
    let mut wanted: Vec<u64> = index
        .entries()
        .filter_map(|e| match e.state() {
            UNSEEN => Some(e.pos()),
            CHANGED => Some(e.pos() | 1 << 63),
            _ => None,
        })
        .collect();
    drop(index);
    wanted.sort_unstable_by_key(|p| p & POS_MASK);
    tracing::debug!(
        fetch = wanted.len(),
        ms = started.elapsed().as_millis() as u64,
        "diff: inserts written"
    );

    // The update candidates in snapshot order, to pair with the delivered rows.
    ctx.register_parquet(
        "candidates",
        cand_path.to_string_lossy().as_ref(),
        ParquetReadOptions::default(),
    )
    .await
    .map_err(df_err)?;
    let updates = ctx
        .sql(&format!(
            "select * from candidates where {p} is not null order by {p}",
            p = quote(OLD_POS)
        ))
        .await
        .map_err(df_err)?
        .execute_stream()
        .await
        .map_err(df_err)?;
    let mut updates = Cursor {
        stream: updates,
        batch: None,
        row: 0,
        pos_col: 2 + n_cols,
        batches: 0,
    };

    // Each file's selected rows are read on a task of its own, two files at a time, and
    // consumed in file order.
    let mut selections = Vec::new();
    let mut next = 0usize; // into `wanted`
    let mut first = 0u64; // the first position of the file
    for file in &plan.files {
        let end = first + file.rows;
        let start = next;
        while next < wanted.len() && wanted[next] & POS_MASK < end {
            next += 1;
        }
        if next > start {
            selections.push((file, first, start..next));
        }
        first = end;
    }
    let mut reading = std::collections::VecDeque::new();
    let mut selections = selections.into_iter();
    loop {
        while reading.len() < 2
            && let Some((file, first, range)) = selections.next()
        {
            let rx = spawn_selected_reader(&store, file, first, &wanted[range.clone()], n_cols);
            reading.push_back((file, range, rx));
        }
        let Some((file, range, mut stream)) = reading.pop_front() else {
            break;
        };
        let here = &wanted[range];
        let mut kinds = here.iter();
        while let Some(batch) = stream.recv().await {
            let batch = batch?;
            let rows = batch.num_rows();
            let mut is_update = Vec::with_capacity(rows);
            let mut update_pos = Vec::new();
            for _ in 0..rows {
                let p = kinds.next().ok_or_else(|| {
                    EngineError::Snapshot(format!(
                        "{}: more rows than selected",
                        file.meta.location
                    ))
                })?;
                let update = p >> 63 == 1;
                is_update.push(update);
                if update {
                    update_pos.push(p & POS_MASK);
                }
            }
            let is_update = arrow::array::BooleanArray::from(is_update);
            let is_delete = arrow::compute::not(&is_update).map_err(arrow_err)?;

            let deleted =
                arrow::compute::filter_record_batch(&batch, &is_delete).map_err(arrow_err)?;
            if deleted.num_rows() > 0 {
                let n = deleted.num_rows();
                out.write(
                    deleted.column(0).as_string::<i32>(),
                    &UInt8Array::from(vec![3; n]),
                    &UInt64Array::new_null(n),
                    &null_cols(n),
                    &deleted.columns()[1..],
                    &mut report,
                )?;
            }
            if !update_pos.is_empty() {
                let before =
                    arrow::compute::filter_record_batch(&batch, &is_update).map_err(arrow_err)?;
                let after = updates.take(&update_pos).await?;
                let old_keys = before.column(0).as_string::<i32>();
                let new_keys = after.column(0).as_string::<i32>();
                if let Some(row) =
                    (0..old_keys.len()).find(|r| old_keys.value(*r) != new_keys.value(*r))
                {
                    return Err(EngineError::Diff(format!(
                        "keys \"{}\" and \"{}\" share a 128-bit key hash; diff this sync \
                         with a memory limit too small for the snapshot index to use the join",
                        old_keys.value(row),
                        new_keys.value(row)
                    )));
                }
                let n = after.num_rows();
                out.write(
                    new_keys,
                    &UInt8Array::from(vec![2; n]),
                    after.column(1).as_primitive::<UInt64Type>(),
                    &after.columns()[2..2 + n_cols],
                    &before.columns()[1..],
                    &mut report,
                )?;
            }
        }
        if kinds.next().is_some() {
            return Err(EngineError::Snapshot(format!(
                "{}: fewer rows than selected",
                file.meta.location
            )));
        }
    }
    out.finish()?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "diff: changes written"
    );
    report.unchanged = clean_rows.saturating_sub(report.inserts + report.updates);

    // The commit reads the snapshot as the join path registers it.
    register_old(&ctx, snapshots, Some(&base), &new_schema).await?;
    Ok(DataFusionDiff {
        has_dups: false,
        staged_rows,
        key_bytes: 0,
        ctx,
        spec,
        columns,
        base: Some(base),
        staging,
        new_schema,
        report,
        options,
    })
}

/// Reads the rows of `file` at `positions` (ascending; the top bit is a flag, `first` the
/// file's first position): the key and the mapped columns, on a task of its own.
fn spawn_selected_reader(
    store: &Arc<dyn ObjectStore>,
    file: &SnapshotFile,
    first: u64,
    positions: &[u64],
    n_cols: usize,
) -> tokio::sync::mpsc::Receiver<Result<RecordBatch, EngineError>> {
    let end = first + file.rows;
    let mut selectors = Vec::with_capacity(positions.len() * 2);
    let mut at = first;
    for p in positions {
        let p = p & POS_MASK;
        if p > at {
            selectors.push(RowSelector::skip((p - at) as usize));
        }
        selectors.push(RowSelector::select(1));
        at = p + 1;
    }
    if end > at {
        selectors.push(RowSelector::skip((end - at) as usize));
    }
    spawn_snapshot_reader(
        store,
        file,
        std::iter::once(0).chain(2..2 + n_cols).collect(),
        Some(RowSelection::from(selectors)),
        |batch| batch,
        |_| false,
    )
}

/// A batch of the model's rows with each row's key, key identity (`None`: a NULL key part)
/// and row hash.
struct Hashed {
    batch: RecordBatch,
    keys: arrow::array::StringArray,
    ids: Vec<Option<KeyId>>,
    hashes: UInt64Array,
}

fn hash_batch(
    batch: RecordBatch,
    key_indices: &[usize],
    column_indices: &[usize],
) -> Result<Hashed, EngineError> {
    let rows = batch.num_rows();
    let key_cols: Vec<&dyn Array> = key_indices
        .iter()
        .map(|i| batch.column(*i).as_ref())
        .collect();
    let keys = canonical::key_strings(&key_cols, rows).map_err(arrow_err)?;
    let values: Vec<&dyn Array> = column_indices
        .iter()
        .map(|i| batch.column(*i).as_ref())
        .collect();
    let hashes = canonical::row_hashes(&values, rows).map_err(arrow_err)?;
    let ids = keys.iter().map(|k| k.map(KeyId::of)).collect();
    Ok(Hashed {
        batch,
        keys,
        ids,
        hashes,
    })
}

/// The update candidates, sorted by the position of their delivered row.
struct Cursor {
    stream: SendableRecordBatchStream,
    batch: Option<RecordBatch>,
    row: usize,
    pos_col: usize,
    /// Counts the batches read, to tell them apart.
    batches: u64,
}

impl Cursor {
    /// The candidates of the delivered rows at `positions` (ascending), skipping those of
    /// keys left out as duplicates, as one batch.
    async fn take(&mut self, positions: &[u64]) -> Result<RecordBatch, EngineError> {
        let mut sources: Vec<RecordBatch> = Vec::new();
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(positions.len());
        let mut last_source = None;
        for want in positions {
            loop {
                let batch = match &self.batch {
                    Some(b) if self.row < b.num_rows() => b,
                    _ => {
                        let Some(next) = self.stream.next().await else {
                            return Err(EngineError::Diff(format!(
                                "no update candidate for snapshot row {want}"
                            )));
                        };
                        self.batch = Some(next.map_err(df_err)?);
                        self.row = 0;
                        self.batches += 1;
                        continue;
                    }
                };
                let at = batch
                    .column(self.pos_col)
                    .as_primitive::<UInt64Type>()
                    .value(self.row);
                if at < *want {
                    self.row += 1; // a duplicated key's first row
                    continue;
                }
                if at > *want {
                    return Err(EngineError::Diff(format!(
                        "no update candidate for snapshot row {want}"
                    )));
                }
                if last_source != Some(self.batches) {
                    sources.push(batch.clone());
                    last_source = Some(self.batches);
                }
                picks.push((sources.len() - 1, self.row));
                self.row += 1;
                break;
            }
        }
        let schema = sources[0].schema();
        let mut cols = Vec::with_capacity(schema.fields().len());
        for c in 0..schema.fields().len() {
            let arrays: Vec<&dyn Array> = sources.iter().map(|s| s.column(c).as_ref()).collect();
            cols.push(arrow::compute::interleave(&arrays, &picks).map_err(arrow_err)?);
        }
        RecordBatch::try_new(schema, cols).map_err(arrow_err)
    }
}

/// Candidates are few and read twice: small row groups keep the writer's buffer small when
/// they are many.
fn candidate_properties() -> datafusion::parquet::file::properties::WriterProperties {
    staging_properties()
        .into_builder()
        .set_max_row_group_row_count(Some(64 * 1024))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_keep_the_five_smallest() {
        let mut d = Duplicates::default();
        for k in ["m", "c", "z", "a", "q", "b", "y"] {
            d.add(k, 2);
        }
        d.rows += 1;
        assert_eq!((d.keys, d.rows), (7, 15));
        assert_eq!(
            d.sample.into_iter().collect::<Vec<_>>(),
            ["a", "b", "c", "m", "q"]
        );
    }

    #[test]
    fn entry_state_and_position_share_a_word() {
        let mut e = Entry {
            hash: 7,
            pos_state: (1 << 40) + 3,
        };
        assert_eq!((e.state(), e.pos()), (UNSEEN, (1 << 40) + 3));
        e.set_state(DUPLICATE);
        assert_eq!((e.state(), e.pos()), (DUPLICATE, (1 << 40) + 3));
        assert_eq!(std::mem::size_of::<(KeyId, Entry)>(), 32);
    }
}
