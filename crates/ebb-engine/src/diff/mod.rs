//! The snapshot diff: compare what a model returns now with what a sync last delivered,
//! and emit only the row-level changes, as ChangeBatches.
//!
//! How a run goes ([`diff`], then [`PendingDiff::commit`]):
//! 1. **Stage**: the model's rows stream in; each gets its `_ebb_key` (from the sync's key
//!    columns) and `_ebb_hash` (the [`canonical`] hash of the mapped columns), and is written
//!    to a local staging Parquet file. Rows with a NULL key part are counted and left out.
//! 2. **Bad keys**: keys that occur more than once are counted, sampled and left out, on
//!    both sides: a duplicated key is never sent and its delivered state is not touched.
//! 3. **Find changes** on a narrow join of (key, hash) pairs, the new rows against the last
//!    committed snapshot: inserts, deletes, and keys whose hash differs. Only then are the
//!    changed rows' values fetched, so memory follows the number of changes, not the table.
//! 4. **Emit**: updates carry `_ebb_changed`, the mapped columns whose values differ;
//!    deletes carry the last delivered image. Changes are written to staging and read back
//!    in batches by [`PendingDiff::changes`].
//! 5. **Commit**, after delivery: the new snapshot is the old one plus exactly the changes
//!    the destination accepted; rejected keys keep their old state, so they differ again on
//!    the next run and are retried.
//!
//! Steps 1-4 above are the join path. When the sync has a snapshot whose in-memory index
//! fits the memory budget, [`index`] does the same work reading each file about once, with
//! identical results (its module doc says how).
//!
//! This file is the DataFusion engine (lakes, and any warehouse whose rows stream in);
//! snapshots are Parquet on object_store ([`snapshot`]). [`postgres`] is the
//! warehouse-native engine. [`diff_model`] picks one by [`DiffEngine`]; both emit the same
//! ChangeBatches and follow the same commit protocol (see `docs/diff.md`).

pub mod canonical;
mod index;
pub mod postgres;
pub mod snapshot;
mod table;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, new_null_array,
};
use arrow::compute::{cast, is_not_null};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt8Type, UInt64Type};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::MemTable;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use ebb_core::change::{self, ChangeBatch, Key, Op};
use ebb_warehouse::{AnyWarehouse, Warehouse};
use futures::StreamExt;

pub use snapshot::{Manifest, SnapshotStore};

use crate::EngineError;

/// The column of a staged row and of a snapshot holding the canonical row hash.
pub const HASH: &str = "_ebb_hash";

/// What to compare.
#[derive(Debug, Clone)]
pub struct DiffSpec {
    /// The sync's name: snapshots are kept per sync.
    pub sync: String,
    /// The primary key columns, in order.
    pub key_columns: Vec<String>,
    /// The mapped columns: only these are hashed, compared and sent.
    pub columns: Vec<String>,
}

/// Where a diff runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DiffEngine {
    /// Pick by warehouse: a lake diffs on DataFusion, a Postgres warehouse in Postgres.
    #[default]
    Auto,
    /// DataFusion in ebb's process: the model's rows stream in, snapshots are Parquet on
    /// object_store; spills to disk under [`DiffOptions::memory_limit`].
    DataFusion,
    /// Inside the warehouse (Postgres): snapshots are tables in `ebb_state`, only the
    /// changes leave the warehouse. See [`postgres`].
    Warehouse,
}

impl DiffEngine {
    /// The engine that runs a diff of a model on `warehouse`.
    pub fn resolve(self, warehouse: &AnyWarehouse) -> DiffEngine {
        match (self, warehouse) {
            (DiffEngine::Auto, AnyWarehouse::Postgres(_)) => DiffEngine::Warehouse,
            (DiffEngine::Auto, AnyWarehouse::Lake(_)) => DiffEngine::DataFusion,
            (engine, _) => engine,
        }
    }
}

/// Options every sync has.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Where the diff runs (see [`diff_model`]).
    pub engine: DiffEngine,
    /// First run only: mark the current rows as synced without sending them.
    pub skip_initial_backfill: bool,
    /// Send every row once more (as upserts), whatever was delivered before.
    pub full_resync: bool,
    /// Memory DataFusion may use before spilling to disk.
    pub memory_limit: Option<usize>,
    /// Rows per ChangeBatch handed to delivery.
    pub batch_rows: usize,
    /// Where staging files go (default: the system temp folder).
    pub staging_dir: Option<PathBuf>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            engine: DiffEngine::Auto,
            skip_initial_backfill: false,
            full_resync: false,
            memory_limit: Some(2 << 30),
            batch_rows: 8192,
            staging_dir: None,
        }
    }
}

/// Keys that could not be synced, reported in the run's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BadKeys {
    /// Rows whose key (or a part of it) is NULL.
    pub null_key_rows: u64,
    /// Distinct keys that occur more than once.
    pub duplicate_keys: u64,
    /// Rows carrying those keys.
    pub duplicate_rows: u64,
    /// A few of the duplicated keys.
    pub sample_duplicates: Vec<String>,
}

/// The counts of a diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffReport {
    /// Rows the model returned.
    pub rows_read: u64,
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    /// Rows whose mapped values did not change.
    pub unchanged: u64,
    pub bad_keys: BadKeys,
    /// With `skip_initial_backfill` on a first run: rows marked as synced without sending.
    pub marked_synced: Option<u64>,
    /// The snapshot version compared against (`None` on a first run).
    pub base_version: Option<u64>,
}

impl DiffReport {
    pub fn changes(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }
}

/// A diff whose changes are ready to deliver; commit it with what the destination rejected.
pub struct PendingDiff {
    inner: Inner,
}

enum Inner {
    DataFusion(Box<DataFusionDiff>),
    Postgres(Box<postgres::PgDiff>),
}

/// Bytes a hash join's build side takes for a row of (key, hash), besides the key's text:
/// the hash, offsets, the hash table's entry and slack.
const HASH_JOIN_BYTES_PER_ROW: u64 = 48;

/// Bytes of memory a key hash takes in the duplicate check (a hash set of u64).
const KEY_SET_BYTES_PER_KEY: usize = 32;

/// Key hashes already seen (the values are xxh3 hashes: no need to hash them again).
type KeyHashes = HashSet<u64, std::hash::BuildHasherDefault<PassThrough>>;

/// A hasher for values that are hashes already.
#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A diff computed by DataFusion.
struct DataFusionDiff {
    /// Some keys occur more than once: a `dups` table is registered.
    has_dups: bool,
    /// Rows staged (keys not NULL), and the bytes of their keys.
    staged_rows: u64,
    key_bytes: u64,
    ctx: SessionContext,
    spec: DiffSpec,
    /// Mapped columns in canonical (name) order.
    columns: Vec<String>,
    base: Option<Manifest>,
    staging: tempfile::TempDir,
    new_schema: SchemaRef,
    report: DiffReport,
    options: DiffOptions,
}

fn df_err(e: datafusion::error::DataFusionError) -> EngineError {
    EngineError::Diff(e.strip_backtrace())
}

fn arrow_err(e: arrow::error::ArrowError) -> EngineError {
    EngineError::Diff(e.to_string())
}

fn parquet_err(e: datafusion::parquet::errors::ParquetError) -> EngineError {
    EngineError::Diff(e.to_string())
}

fn quote(name: &str) -> String {
    ebb_warehouse::quote_ident(name)
}

/// A DataFusion session for diffs: plain Utf8 strings, a memory limit, spilling.
fn session(options: &DiffOptions) -> Result<SessionContext, EngineError> {
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit) = options.memory_limit {
        // Fair shares between the spilling operators (sorts of a sort-merge join), so one
        // cannot starve the others into failing.
        runtime = runtime.with_memory_pool(Arc::new(
            datafusion::execution::memory_pool::FairSpillPool::new(limit),
        ));
    }
    let runtime = runtime.build_arc().map_err(df_err)?;
    let mut config = SessionConfig::new();
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    config.options_mut().sql_parser.map_string_types_to_utf8view = false;
    // Snapshot files are written one column chunk at a time: parallel column writers
    // buffer whole row groups per column in memory.
    config
        .options_mut()
        .execution
        .parquet
        .allow_single_file_parallelism = false;
    if let Some(limit) = options.memory_limit {
        // Each sorting partition holds this much back for merging its spilled runs: keep
        // it a small share of a small limit, or a sort-merge join fails instead of spilling.
        let reservation = &mut config.options_mut().execution.sort_spill_reservation_bytes;
        *reservation = (*reservation).min(limit / 16);
    }
    // Parquet statistics leave NaN out of min/max, and DataFusion 55 reads a column whose
    // min equals its max as that constant: a column of NaN and inf came back as all inf.
    // ebb's staging and snapshot files are never pruned by statistics, so write none.
    config.options_mut().execution.parquet.statistics_enabled = Some("none".into());
    config.options_mut().execution.collect_statistics = false;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// The mapped columns in canonical (name) order, after checking the spec and options.
fn canonical_columns(spec: &DiffSpec, options: &DiffOptions) -> Result<Vec<String>, EngineError> {
    if spec.key_columns.is_empty() {
        return Err(EngineError::Diff(format!(
            "sync \"{}\" has no primary key; set `primary_key` on the sync or its model",
            spec.sync
        )));
    }
    if options.full_resync && options.skip_initial_backfill {
        return Err(EngineError::Diff(
            "`full_resync` and `skip_initial_backfill` contradict each other; use one".into(),
        ));
    }
    let mut columns = spec.columns.clone();
    columns.sort();
    columns.dedup();
    Ok(columns)
}

/// A fresh staging folder for one diff (removed when the diff is dropped).
fn staging_dir(options: &DiffOptions) -> Result<tempfile::TempDir, EngineError> {
    match &options.staging_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| EngineError::Diff(format!("staging folder {}: {e}", dir.display())))?;
            tempfile::Builder::new().prefix("ebb-diff-").tempdir_in(dir)
        }
        None => tempfile::Builder::new().prefix("ebb-diff-").tempdir(),
    }
    .map_err(|e| EngineError::Diff(format!("staging folder: {e}")))
}

/// Removes a trailing `;` so the SQL can be nested as a subquery.
fn strip_statement_end(sql: &str) -> &str {
    let mut s = sql.trim_end();
    while let Some(rest) = s.strip_suffix(';') {
        s = rest.trim_end();
    }
    s
}

/// Diffs the result of `model_sql` on `warehouse` against the sync's last committed
/// snapshot, on the engine `options.engine` resolves to: DataFusion (the model's rows stream
/// in; snapshots in `snapshots`) or the warehouse itself (Postgres: snapshots in its
/// `ebb_state` schema; `snapshots` is not used). Nothing is committed until
/// [`PendingDiff::commit`].
pub async fn diff_model(
    warehouse: &AnyWarehouse,
    model_sql: &str,
    spec: DiffSpec,
    snapshots: &SnapshotStore,
    options: DiffOptions,
) -> Result<PendingDiff, EngineError> {
    match (options.engine.resolve(warehouse), warehouse) {
        (DiffEngine::Warehouse, AnyWarehouse::Postgres(pg)) => {
            diff_in_postgres(pg, model_sql, spec, options).await
        }
        (DiffEngine::Warehouse, _) => Err(EngineError::Diff(format!(
            "sync \"{}\": the warehouse-native diff needs a postgres warehouse; a {} warehouse \
             diffs on DataFusion (set the sync's diff engine to datafusion or auto)",
            spec.sync,
            warehouse.kind()
        ))),
        _ => {
            let stream = warehouse.query(model_sql).await?;
            diff(stream, spec, snapshots, options).await
        }
    }
}

/// Diffs the result of `model_sql` inside the Postgres warehouse against the sync's
/// snapshot there (the warehouse-native engine, [`postgres`]).
pub async fn diff_in_postgres(
    warehouse: &ebb_warehouse::postgres::PgWarehouse,
    model_sql: &str,
    spec: DiffSpec,
    options: DiffOptions,
) -> Result<PendingDiff, EngineError> {
    let pending = postgres::diff(warehouse, model_sql, spec, options).await?;
    Ok(PendingDiff {
        inner: Inner::Postgres(Box::new(pending)),
    })
}

/// Diffs the rows of `input` (the model's result) against the sync's last committed
/// snapshot, on DataFusion. Nothing is committed until [`PendingDiff::commit`].
pub async fn diff(
    mut input: SendableRecordBatchStream,
    spec: DiffSpec,
    snapshots: &SnapshotStore,
    options: DiffOptions,
) -> Result<PendingDiff, EngineError> {
    let columns = canonical_columns(&spec, &options)?;
    let staging = staging_dir(&options)?;
    let ctx = session(&options)?;
    let mut report = DiffReport::default();

    // 1. Stage the new rows with their key and hash.
    let input_schema = input.schema();
    let mut staged_fields = vec![
        Field::new(change::KEY, DataType::Utf8, false),
        Field::new(HASH, DataType::UInt64, false),
    ];
    let mut column_indices = Vec::new();
    for name in &columns {
        let (i, field) = input_schema.column_with_name(name).ok_or_else(|| {
            EngineError::Diff(format!(
                "sync \"{}\" maps column \"{name}\", which the model does not return",
                spec.sync
            ))
        })?;
        column_indices.push(i);
        staged_fields.push(field.as_ref().clone().with_nullable(true));
    }
    let key_indices = spec
        .key_columns
        .iter()
        .map(|k| {
            input_schema.index_of(k).map_err(|_| {
                EngineError::Diff(format!(
                    "the key column \"{k}\" of sync \"{}\" is not in the model's result",
                    spec.sync
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let new_schema: SchemaRef = Arc::new(Schema::new(staged_fields));

    // The last committed snapshot, or an empty one.
    let base = snapshots.current(&spec.sync).await?;
    report.base_version = base.as_ref().map(|m| m.version);

    // The fast path, when the snapshot's index fits the memory budget. The model's rows
    // start decoding and hashing while the index is built.
    if let Some(plan) =
        index::plan(snapshots, base.as_ref(), &new_schema, &columns, &options).await?
        && let Some(base) = base.clone()
    {
        let rows = index::start_hashing(input, &key_indices, &column_indices);
        match index::build(plan, snapshots).await? {
            Some(built) => {
                let pending = index::diff(
                    built,
                    rows,
                    spec,
                    columns,
                    column_indices,
                    new_schema,
                    base,
                    snapshots,
                    staging,
                    ctx,
                    options,
                    report,
                )
                .await?;
                return Ok(PendingDiff {
                    inner: Inner::DataFusion(Box::new(pending)),
                });
            }
            // A snapshot the index cannot hold (a key twice): the join path reads the rows,
            // those already hashed first.
            None => input = rows.into_stream(),
        }
    }

    let new_path = staging.path().join("new.parquet");
    let file = File::create(&new_path).map_err(|e| EngineError::Diff(format!("staging: {e}")))?;

    // A thread writes staging while this task reads and hashes the next batches.
    let (to_writer, batches) = std::sync::mpsc::sync_channel::<RecordBatch>(4);
    let writer_schema = Arc::clone(&new_schema);
    let writer = std::thread::Builder::new()
        .name("ebb-diff-staging".into())
        .spawn(move || -> Result<(), EngineError> {
            let mut writer = ArrowWriter::try_new(file, writer_schema, Some(staging_properties()))
                .map_err(parquet_err)?;
            for batch in batches {
                writer.write(&batch).map_err(parquet_err)?;
            }
            writer.close().map_err(parquet_err)?;
            Ok(())
        })
        .map_err(|e| EngineError::Diff(format!("staging thread: {e}")))?;
    // Duplicate keys are rare: a set of 64-bit key hashes rules them out without a query,
    // while it fits its share of the memory limit; a repeated hash sends the exact check
    // to DataFusion.
    let max_keys = options
        .memory_limit
        .map_or(usize::MAX, |limit| limit / KEY_SET_BYTES_PER_KEY);
    let mut key_hashes: Option<KeyHashes> = Some(HashSet::with_capacity_and_hasher(
        base.as_ref().map_or(0, |m| m.rows as usize).min(max_keys),
        Default::default(),
    ));
    let mut maybe_duplicates = false;
    let mut staged_rows = 0u64;
    let mut key_bytes = 0u64;
    let staged: Result<(), EngineError> = async {
        while let Some(batch) = input.next().await {
            let batch = batch.map_err(df_err)?;
            report.rows_read += batch.num_rows() as u64;
            let keys: Vec<&dyn Array> = key_indices
                .iter()
                .map(|i| batch.column(*i).as_ref())
                .collect();
            let key = canonical::key_strings(&keys, batch.num_rows()).map_err(arrow_err)?;
            let values: Vec<&dyn Array> = column_indices
                .iter()
                .map(|i| batch.column(*i).as_ref())
                .collect();
            let hash = canonical::row_hashes(&values, batch.num_rows()).map_err(arrow_err)?;
            let mut cols: Vec<ArrayRef> = vec![Arc::new(key), Arc::new(hash)];
            cols.extend(column_indices.iter().map(|i| Arc::clone(batch.column(*i))));
            if cols[0].null_count() > 0 {
                let keep = is_not_null(&cols[0]).map_err(arrow_err)?;
                report.bad_keys.null_key_rows += (keep.len() - keep.true_count()) as u64;
                cols = cols
                    .iter()
                    .map(|c| arrow::compute::filter(c.as_ref(), &keep))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(arrow_err)?;
            }
            let key = cols[0].as_string::<i32>();
            staged_rows += key.len() as u64;
            key_bytes += key.value_data().len() as u64;
            if let Some(set) = &mut key_hashes {
                if set.len() + key.len() > max_keys {
                    key_hashes = None;
                    maybe_duplicates = true;
                } else {
                    for k in key.iter().flatten() {
                        maybe_duplicates |= !set.insert(xxhash_rust::xxh3::xxh3_64(k.as_bytes()));
                    }
                }
            }
            let staged = RecordBatch::try_new(Arc::clone(&new_schema), cols).map_err(arrow_err)?;
            if to_writer.send(staged).is_err() {
                break; // the writer failed: its error is reported below
            }
        }
        Ok(())
    }
    .await;
    drop(to_writer);
    drop(key_hashes);
    let written = writer
        .join()
        .map_err(|_| EngineError::Diff("the staging writer panicked".into()))?;
    staged?;
    written?;
    ctx.register_parquet(
        "new",
        new_path.to_string_lossy().as_ref(),
        ParquetReadOptions::default(),
    )
    .await
    .map_err(df_err)?;
    register_old(&ctx, snapshots, base.as_ref(), &new_schema).await?;

    // 2. Duplicate keys: exactly, when the key hashes could not rule them out.
    if maybe_duplicates {
        let dups = collect(
            &ctx,
            &format!(
                "select {k}, count(*) as n from new group by {k} having count(*) > 1",
                k = quote(change::KEY)
            ),
        )
        .await?;
        let mut keys = Vec::new();
        for b in &dups {
            let k = b.column(0).as_string::<i32>();
            let n = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
            for i in 0..b.num_rows() {
                keys.push(k.value(i).to_string());
                report.bad_keys.duplicate_rows += n.value(i) as u64;
            }
        }
        report.bad_keys.duplicate_keys = keys.len() as u64;
        let mut sample = keys.clone();
        sample.sort();
        sample.truncate(5);
        report.bad_keys.sample_duplicates = sample;
        let table = MemTable::try_new(
            Arc::new(Schema::new(vec![Field::new(
                change::KEY,
                DataType::Utf8,
                false,
            )])),
            vec![vec![
                RecordBatch::try_new(
                    Arc::new(Schema::new(vec![Field::new(
                        change::KEY,
                        DataType::Utf8,
                        false,
                    )])),
                    vec![Arc::new(StringArray::from(keys))],
                )
                .map_err(arrow_err)?,
            ]],
        )
        .map_err(df_err)?;
        ctx.register_table("dups", Arc::new(table))
            .map_err(df_err)?;
    }
    let clean_rows = staged_rows - report.bad_keys.duplicate_rows;
    let report_has_dups = report.bad_keys.duplicate_keys > 0;

    let mut pending = DataFusionDiff {
        ctx,
        spec,
        columns,
        base,
        staging,
        new_schema,
        report,
        options,
        has_dups: report_has_dups,
        staged_rows,
        key_bytes,
    };
    if pending.base.is_none() && pending.options.skip_initial_backfill {
        pending.report.marked_synced = Some(clean_rows);
        pending.report.unchanged = clean_rows;
    }
    pending.write_changes(clean_rows).await?; // with skip_initial_backfill: an empty file
    Ok(PendingDiff {
        inner: Inner::DataFusion(Box::new(pending)),
    })
}

/// Registers the last snapshot as `old`, projected onto the current mapped columns (a column
/// the snapshot lacks reads as NULL), or an empty table on a first run.
async fn register_old(
    ctx: &SessionContext,
    snapshots: &SnapshotStore,
    base: Option<&Manifest>,
    new_schema: &SchemaRef,
) -> Result<(), EngineError> {
    match base {
        // An empty snapshot has no files to read.
        None | Some(Manifest { rows: 0, .. }) => {
            let empty = MemTable::try_new(Arc::clone(new_schema), vec![vec![]]).map_err(df_err)?;
            ctx.register_table("old", Arc::new(empty)).map_err(df_err)?;
        }
        Some(manifest) => {
            ctx.register_object_store(
                &url::Url::parse(&snapshots.version_url(&manifest.sync, manifest.version))
                    .map_err(|e| EngineError::Snapshot(e.to_string()))?,
                Arc::clone(snapshots.object_store()),
            );
            ctx.register_parquet(
                "old_files",
                snapshots.version_url(&manifest.sync, manifest.version),
                ParquetReadOptions::default(),
            )
            .await
            .map_err(df_err)?;
            let projection: Vec<String> = new_schema
                .fields()
                .iter()
                .map(|f| {
                    let name = f.name();
                    let present =
                        name == change::KEY || name == HASH || manifest.columns.contains(name);
                    let source = if present {
                        quote(name)
                    } else {
                        "NULL".to_string()
                    };
                    format!(
                        "arrow_cast({source}, '{}') as {}",
                        f.data_type(),
                        quote(name)
                    )
                })
                .collect();
            ctx.sql(&format!(
                "create view old as select {} from old_files",
                projection.join(", ")
            ))
            .await
            .map_err(df_err)?;
        }
    }
    Ok(())
}

/// The schema of staged changes: a ChangeBatch over the mapped columns (`entity`), plus
/// the new row hash (for the commit).
fn changes_schema(entity: &Schema) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = change::schema_for(entity)
        .fields()
        .iter()
        .cloned()
        .collect();
    fields.push(Arc::new(Field::new(HASH, DataType::UInt64, true)));
    Arc::new(Schema::new(fields))
}

/// Writes the changes file: ChangeBatches over the mapped columns plus the new row hash,
/// numbered in write order, with `_ebb_changed` for updates.
struct ChangeWriter<'a> {
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    entity_schema: SchemaRef,
    /// Mapped columns in canonical order.
    columns: &'a [String],
    full_resync: bool,
    seq: u64,
}

impl<'a> ChangeWriter<'a> {
    /// `new_schema` is a staged row's: key, hash, then the mapped columns.
    fn create(
        path: &Path,
        new_schema: &Schema,
        columns: &'a [String],
        full_resync: bool,
    ) -> Result<Self, EngineError> {
        let entity_schema = Arc::new(Schema::new(new_schema.fields()[2..].to_vec()));
        let schema = changes_schema(&entity_schema);
        let file = File::create(path).map_err(|e| EngineError::Diff(format!("staging: {e}")))?;
        let writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(staging_properties()))
            .map_err(parquet_err)?;
        Ok(ChangeWriter {
            writer,
            schema,
            entity_schema,
            columns,
            full_resync,
            seq: 0,
        })
    }

    /// Writes one batch of changed keys. `ops` are 1 (insert), 2 (hash differs) or 3
    /// (delete); `new_cols` and `old_cols` (mapped columns, canonical order, the new row's
    /// types) hold the new values (NULL for deletes) and the delivered ones (NULL for
    /// inserts). A key whose values are all the same under a different hash is left out.
    fn write(
        &mut self,
        keys: &StringArray,
        ops: &arrow::array::UInt8Array,
        hashes: &arrow::array::UInt64Array,
        new_cols: &[ArrayRef],
        old_cols: &[ArrayRef],
        report: &mut DiffReport,
    ) -> Result<(), EngineError> {
        let rows = keys.len();
        let mut keep = Vec::with_capacity(rows);
        let mut out_ops = Vec::with_capacity(rows);
        let mut out_keys = Vec::with_capacity(rows);
        let mut out_seqs = Vec::with_capacity(rows);
        let mut out_changed: Vec<Option<Vec<String>>> = Vec::with_capacity(rows);
        let mut is_delete = Vec::with_capacity(rows);
        for row in 0..rows {
            let op = match ops.value(row) {
                1 if self.full_resync => Op::Upsert,
                1 => Op::Insert,
                3 => Op::Delete,
                _ if self.full_resync => Op::Upsert,
                _ => Op::Update,
            };
            let changed = if op == Op::Update {
                let mut names = Vec::new();
                for (i, name) in self.columns.iter().enumerate() {
                    if !canonical::same_value(new_cols[i].as_ref(), row, old_cols[i].as_ref(), row)
                        .map_err(arrow_err)?
                    {
                        names.push(name.clone());
                    }
                }
                if names.is_empty() {
                    // Same values under a different hash (the mapping gained an empty
                    // column): nothing to send.
                    keep.push(false);
                    continue;
                }
                Some(names)
            } else {
                None
            };
            keep.push(true);
            is_delete.push(op == Op::Delete);
            out_ops.push(op);
            out_keys.push(Key::single(keys.value(row)));
            out_seqs.push(self.seq);
            self.seq += 1;
            out_changed.push(changed);
            match op {
                Op::Insert => report.inserts += 1,
                Op::Delete => report.deletes += 1,
                Op::Update | Op::Upsert => report.updates += 1,
            }
        }
        if out_ops.is_empty() {
            return Ok(());
        }
        let keep = BooleanArray::from(keep);
        let mask = BooleanArray::from(is_delete);
        let mut entity_cols: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (n, o) in new_cols.iter().zip(old_cols) {
            let n = arrow::compute::filter(n.as_ref(), &keep).map_err(arrow_err)?;
            let o = arrow::compute::filter(o.as_ref(), &keep).map_err(arrow_err)?;
            entity_cols.push(arrow::compute::kernels::zip::zip(&mask, &o, &n).map_err(arrow_err)?);
        }
        let kept_hashes = arrow::compute::filter(hashes, &keep).map_err(arrow_err)?;
        let entity = RecordBatch::try_new(Arc::clone(&self.entity_schema), entity_cols)
            .map_err(arrow_err)?;
        let cb = ChangeBatch::from_parts(&out_ops, &out_keys, &out_seqs, &out_changed, &entity)
            .map_err(arrow_err)?;
        let mut cols = cb.into_batch().columns().to_vec();
        cols.push(kept_hashes);
        let staged = RecordBatch::try_new(Arc::clone(&self.schema), cols).map_err(arrow_err)?;
        self.writer.write(&staged).map_err(parquet_err)
    }

    fn finish(self) -> Result<(), EngineError> {
        self.writer.close().map_err(parquet_err)?;
        Ok(())
    }
}

/// Staging files are written once and read once or twice, locally: plain encoding, no
/// compression, no statistics (see [`session`]), so writing them costs little CPU.
fn staging_properties() -> datafusion::parquet::file::properties::WriterProperties {
    use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
    WriterProperties::builder()
        .set_statistics_enabled(EnabledStatistics::None)
        .set_dictionary_enabled(false)
        .set_compression(datafusion::parquet::basic::Compression::UNCOMPRESSED)
        .build()
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, EngineError> {
    ctx.sql(sql)
        .await
        .map_err(df_err)?
        .collect()
        .await
        .map_err(df_err)
}

impl std::fmt::Debug for PendingDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDiff")
            .field("engine", &self.engine())
            .field("sync", &self.spec().sync)
            .field("report", self.report())
            .field("staging", &self.staging_dir())
            .finish_non_exhaustive()
    }
}

impl PendingDiff {
    /// The engine that computed this diff: [`DiffEngine::DataFusion`] or
    /// [`DiffEngine::Warehouse`].
    pub fn engine(&self) -> DiffEngine {
        match &self.inner {
            Inner::DataFusion(_) => DiffEngine::DataFusion,
            Inner::Postgres(_) => DiffEngine::Warehouse,
        }
    }

    pub fn report(&self) -> &DiffReport {
        match &self.inner {
            Inner::DataFusion(d) => &d.report,
            Inner::Postgres(d) => &d.report,
        }
    }

    pub fn spec(&self) -> &DiffSpec {
        match &self.inner {
            Inner::DataFusion(d) => &d.spec,
            Inner::Postgres(d) => &d.spec,
        }
    }

    /// The folder holding this diff's staging files (removed when the diff is dropped).
    pub fn staging_dir(&self) -> &Path {
        match &self.inner {
            Inner::DataFusion(d) => d.staging.path(),
            Inner::Postgres(d) => d.staging.path(),
        }
    }

    /// The changes, in batches of about `batch_rows`, as delivery should send them.
    pub fn changes(&self) -> Result<ChangeReader, EngineError> {
        let (path, rows) = match &self.inner {
            Inner::DataFusion(d) => (d.changes_path(), d.options.batch_rows),
            Inner::Postgres(d) => (d.changes_path(), d.options.batch_rows),
        };
        let file = File::open(path).map_err(|e| EngineError::Diff(format!("staging: {e}")))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err)?;
        let reader = builder
            .with_batch_size(rows.max(1))
            .build()
            .map_err(parquet_err)?;
        Ok(ChangeReader { reader })
    }

    /// Step 5, after delivery: commits the new snapshot — the old one plus exactly the
    /// changes whose keys are not in `rejected`; rejected keys keep their old state and
    /// differ again on the next run. Returns the committed manifest.
    ///
    /// The DataFusion engine writes the new version to `snapshots`; the warehouse engine
    /// commits inside the warehouse in one transaction and does not use `snapshots`.
    pub async fn commit(
        self,
        snapshots: &SnapshotStore,
        rejected: &HashSet<String>,
    ) -> Result<Manifest, EngineError> {
        match self.inner {
            Inner::DataFusion(d) => d.commit(snapshots, rejected).await,
            Inner::Postgres(d) => d.commit(rejected).await,
        }
    }
}

impl DataFusionDiff {
    fn changes_path(&self) -> PathBuf {
        self.staging.path().join("changes.parquet")
    }

    /// `rel` (`new` or `old`) without the duplicated keys, as SQL.
    fn clean(&self, rel: &str, columns: &str) -> String {
        let k = quote(change::KEY);
        if self.has_dups {
            format!("(select {columns} from {rel} x left anti join dups d on x.{k} = d.{k})")
        } else {
            format!("(select {columns} from {rel})")
        }
    }

    /// Lets the next queries' joins hold `build_bytes` in memory (a hash join) when that is
    /// under `1/share` of the memory limit; otherwise they sort-merge, spilling.
    async fn prefer_hash_join(&self, build_bytes: u64, share: u64) -> Result<(), EngineError> {
        let prefer = self
            .options
            .memory_limit
            .is_none_or(|limit| build_bytes < limit as u64 / share);
        self.ctx
            .sql(&format!(
                "set datafusion.optimizer.prefer_hash_join = {prefer}"
            ))
            .await
            .map_err(df_err)?;
        Ok(())
    }

    /// Steps 3 and 4: find the changed keys on (key, hash) pairs, fetch their values, and
    /// write them to staging as ChangeBatches.
    async fn write_changes(&mut self, clean_rows: u64) -> Result<(), EngineError> {
        let k = quote(change::KEY);
        let h = quote(HASH);
        let skip_all = self.base.is_none() && self.options.skip_initial_backfill;
        let filter = if skip_all {
            "false".to_string()
        } else if self.options.full_resync {
            "true".to_string()
        } else {
            format!("(n.{k} is null) or (o.{k} is null) or (n.{h} <> o.{h})")
        };
        // The narrow join of (key, hash) pairs. A hash join holds one side in memory; when
        // that may not fit the memory limit, a sort-merge join sorts both sides, spilling.
        let old_rows = self.base.as_ref().map_or(0, |m| m.rows);
        let avg_key = self.key_bytes / self.staged_rows.max(1);
        let build_bytes = old_rows.max(self.staged_rows) * (avg_key + HASH_JOIN_BYTES_PER_ROW);
        self.prefer_hash_join(build_bytes, 2).await?;
        let pairs = format!("{k}, {h}");
        let changed = if skip_all {
            Vec::new()
        } else {
            collect(
                &self.ctx,
                &format!(
                    "select coalesce(n.{k}, o.{k}) as k, \
                            case when o.{k} is null then 1 when n.{k} is null then 3 else 2 end as op, \
                            n.{h} as nh \
                     from {} n full outer join {} o on n.{k} = o.{k} \
                     where {filter}",
                    self.clean("new", &pairs),
                    self.clean("old", &pairs)
                ),
            )
            .await?
        };
        // The changed keys are few (or, on a full resync, all): DataFusion gets them as an
        // in-memory table it can build a hash join from, and streams the tables past it.
        let changed_schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("op", DataType::Int64, true),
            Field::new("nh", DataType::UInt64, true),
        ]));
        let changed: Vec<RecordBatch> = changed
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| {
                RecordBatch::try_new(
                    Arc::clone(&changed_schema),
                    vec![
                        Arc::clone(b.column(0)),
                        cast(b.column(1), &DataType::Int64).map_err(arrow_err)?,
                        Arc::clone(b.column(2)),
                    ],
                )
                .map_err(arrow_err)
            })
            .collect::<Result<_, _>>()?;
        let changed_rows: usize = changed.iter().map(RecordBatch::num_rows).sum();
        let table =
            MemTable::try_new(Arc::clone(&changed_schema), vec![changed]).map_err(df_err)?;
        self.ctx
            .register_table("changed", Arc::new(table))
            .map_err(df_err)?;
        // Many changes (a first run, a full resync) may not fit as a build side either.
        let changed_bytes = changed_rows as u64 * (avg_key + HASH_JOIN_BYTES_PER_ROW);
        self.prefer_hash_join(changed_bytes, 4).await?;
        let config = format!(
            "set datafusion.optimizer.hash_join_single_partition_threshold_rows = {}",
            changed_rows.max(1024 * 128)
        );
        self.ctx.sql(&config).await.map_err(df_err)?;
        self.ctx
            .sql(&format!(
                "set datafusion.optimizer.hash_join_single_partition_threshold = {}",
                (changed_rows * 64).max(1 << 20)
            ))
            .await
            .map_err(df_err)?;
        let mut select = vec!["c.k".to_string(), "c.op".to_string(), "c.nh".to_string()];
        for col in &self.columns {
            select.push(format!(
                "n.{} as {}",
                quote(col),
                quote(&format!("__n_{col}"))
            ));
        }
        for col in &self.columns {
            select.push(format!(
                "o.{} as {}",
                quote(col),
                quote(&format!("__o_{col}"))
            ));
        }
        let sql = format!(
            "select {} from changed c \
             left join new n on c.k = n.{k} and c.op <> 3 \
             left join old o on c.k = o.{k} and c.op <> 1",
            select.join(", ")
        );
        let mut stream = self
            .ctx
            .sql(&sql)
            .await
            .map_err(df_err)?
            .execute_stream()
            .await
            .map_err(df_err)?;

        let mut out = ChangeWriter::create(
            &self.changes_path(),
            &self.new_schema,
            &self.columns,
            self.options.full_resync,
        )?;
        let n_cols = self.columns.len();
        let new_types: Vec<DataType> = self.new_schema.fields()[2..]
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df_err)?;
            let rows = batch.num_rows();
            let ops = cast(batch.column(1), &DataType::UInt8).map_err(arrow_err)?;
            let new_cols: Vec<ArrayRef> = (0..n_cols)
                .map(|i| Arc::clone(batch.column(3 + i)))
                .collect();
            let old_cols: Vec<ArrayRef> = (0..n_cols)
                .map(|i| {
                    let old = batch.column(3 + n_cols + i);
                    cast(old, &new_types[i]).unwrap_or_else(|_| new_null_array(&new_types[i], rows))
                })
                .collect();
            out.write(
                batch.column(0).as_string::<i32>(),
                ops.as_primitive::<UInt8Type>(),
                batch.column(2).as_primitive::<UInt64Type>(),
                &new_cols,
                &old_cols,
                &mut self.report,
            )?;
        }
        out.finish()?;
        if !skip_all {
            self.report.unchanged =
                clean_rows.saturating_sub(self.report.inserts + self.report.updates);
        }
        Ok(())
    }

    /// Step 5 on DataFusion: writes the new snapshot version and commits it.
    async fn commit(
        self,
        snapshots: &SnapshotStore,
        rejected: &HashSet<String>,
    ) -> Result<Manifest, EngineError> {
        let k = quote(change::KEY);
        let h = quote(HASH);
        self.ctx
            .register_parquet(
                "changes",
                self.changes_path().to_string_lossy().as_ref(),
                ParquetReadOptions::default(),
            )
            .await
            .map_err(df_err)?;
        let rejected_batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                change::KEY,
                DataType::Utf8,
                false,
            )])),
            vec![Arc::new(StringArray::from_iter_values(rejected.iter()))],
        )
        .map_err(arrow_err)?;
        let rejected_table = MemTable::try_new(rejected_batch.schema(), vec![vec![rejected_batch]])
            .map_err(df_err)?;
        self.ctx
            .register_table("rejected", Arc::new(rejected_table))
            .map_err(df_err)?;
        // The hash joins below hold their left side in memory: the rejected keys here, the
        // accepted changes next (never the snapshot). When the changes themselves may not
        // fit (a first run, a full resync), a sort-merge join spills instead.
        self.ctx
            .sql(&format!(
                "create view accepted as select c.* from rejected r right anti join changes c on r.{k} = c.{k}"
            ))
            .await
            .map_err(df_err)?;
        let changes_bytes = std::fs::metadata(self.changes_path()).map_or(u64::MAX, |m| m.len());
        self.prefer_hash_join(changes_bytes, 4).await?;
        let cols: Vec<String> = self.columns.iter().map(|c| quote(c)).collect();
        let cols = if cols.is_empty() {
            String::new()
        } else {
            format!(", {}", cols.join(", "))
        };
        let accepted_rows = format!(
            "select {k}, {h}{cols} from accepted where {op} <> {delete}",
            op = quote(change::OP),
            delete = Op::Delete.code()
        );
        let new_rows = if self.base.is_none() && self.options.skip_initial_backfill {
            format!(
                "select {k}, {h}{cols} from {}",
                self.clean("new", &format!("{k}, {h}{cols}"))
            )
        } else if self.base.is_none() {
            accepted_rows
        } else {
            format!(
                "select o.{k}, o.{h}{cols} from accepted a right anti join old o on a.{k} = o.{k} \
                 union all {accepted_rows}"
            )
        };
        let version = self.base.as_ref().map_or(1, |m| m.version + 1);
        let url = snapshots.version_url(&self.spec.sync, version);
        self.ctx.register_object_store(
            &url::Url::parse(&url).map_err(|e| EngineError::Snapshot(e.to_string()))?,
            Arc::clone(snapshots.object_store()),
        );
        let written = self
            .ctx
            .sql(&new_rows)
            .await
            .map_err(df_err)?
            .write_parquet(
                &url,
                DataFrameWriteOptions::new().with_single_file_output(false),
                Some(snapshot_options(&self.ctx)),
            )
            .await
            .map_err(df_err)?;
        let rows = written
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_primitive_opt::<UInt64Type>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        let manifest = Manifest {
            sync: self.spec.sync.clone(),
            version,
            parent: self.base.as_ref().map(|m| m.version),
            rows,
            key_columns: self.spec.key_columns.clone(),
            columns: self.columns.clone(),
            committed_at: now_rfc3339(),
        };
        snapshots.commit(&manifest).await?;
        Ok(manifest)
    }
}

/// How snapshot files are written. A run reads the last snapshot's key and hash columns whole
/// and then picks rows out of every column, so reading fast matters more than the last few
/// percent of size: LZ4 (raw) instead of DataFusion's default zstd, and no dictionary on the
/// key and hash columns, whose values are all different.
fn snapshot_options(ctx: &SessionContext) -> datafusion::config::TableParquetOptions {
    let mut options = datafusion::config::TableParquetOptions {
        global: ctx.copied_config().options().execution.parquet.clone(),
        ..Default::default()
    };
    options.global.compression = Some("lz4_raw".into());
    for column in [change::KEY, HASH] {
        options.column_specific_options.insert(
            column.to_string(),
            datafusion::config::ParquetColumnOptions {
                dictionary_enabled: Some(false),
                ..Default::default()
            },
        );
    }
    options
}

/// Reads staged changes back as ChangeBatches.
pub struct ChangeReader {
    reader: datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader,
}

impl std::fmt::Debug for ChangeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeReader").finish_non_exhaustive()
    }
}

impl Iterator for ChangeReader {
    type Item = Result<ChangeBatch, EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = match self.reader.next()? {
            Ok(b) => b,
            Err(e) => return Some(Err(arrow_err(e))),
        };
        // Drop the trailing hash column: delivery sees the canonical ChangeBatch.
        let indices: Vec<usize> = (0..batch.num_columns() - 1).collect();
        Some(
            batch.project(&indices).map_err(arrow_err).and_then(|b| {
                ChangeBatch::try_new(b).map_err(|e| EngineError::Diff(e.to_string()))
            }),
        )
    }
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = ebb_warehouse::period::civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
