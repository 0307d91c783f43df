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
//! This is the DataFusion engine (lakes, and any warehouse whose rows stream in). Snapshots
//! are Parquet on object_store ([`snapshot`]).

pub mod canonical;
pub mod snapshot;

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

/// Options every sync has.
#[derive(Debug, Clone)]
pub struct DiffOptions {
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
        runtime = runtime.with_memory_limit(limit, 1.0);
    }
    let runtime = runtime.build_arc().map_err(df_err)?;
    let mut config = SessionConfig::new();
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    config.options_mut().sql_parser.map_string_types_to_utf8view = false;
    // Parquet statistics leave NaN out of min/max, and DataFusion 55 reads a column whose
    // min equals its max as that constant: a column of NaN and inf came back as all inf.
    // ebb's staging and snapshot files are never pruned by statistics, so write none.
    config.options_mut().execution.parquet.statistics_enabled = Some("none".into());
    config.options_mut().execution.collect_statistics = false;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// Diffs the rows of `input` (the model's result) against the sync's last committed
/// snapshot. Nothing is committed until [`PendingDiff::commit`].
pub async fn diff(
    mut input: SendableRecordBatchStream,
    spec: DiffSpec,
    snapshots: &SnapshotStore,
    options: DiffOptions,
) -> Result<PendingDiff, EngineError> {
    if spec.key_columns.is_empty() {
        return Err(EngineError::Diff(format!(
            "sync \"{}\" has no primary key; set `primary_key` on the sync or its model",
            spec.sync
        )));
    }
    let mut columns = spec.columns.clone();
    columns.sort();
    columns.dedup();
    let staging = match &options.staging_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| EngineError::Diff(format!("staging folder {}: {e}", dir.display())))?;
            tempfile::Builder::new().prefix("ebb-diff-").tempdir_in(dir)
        }
        None => tempfile::Builder::new().prefix("ebb-diff-").tempdir(),
    }
    .map_err(|e| EngineError::Diff(format!("staging folder: {e}")))?;
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
    let new_path = staging.path().join("new.parquet");
    let file = File::create(&new_path).map_err(|e| EngineError::Diff(format!("staging: {e}")))?;
    let mut writer =
        ArrowWriter::try_new(file, Arc::clone(&new_schema), Some(staging_properties()))
            .map_err(parquet_err)?;
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
        let keep = is_not_null(&key).map_err(arrow_err)?;
        report.bad_keys.null_key_rows += (keep.len() - keep.true_count()) as u64;
        let mut cols: Vec<ArrayRef> = vec![Arc::new(key), Arc::new(hash)];
        cols.extend(column_indices.iter().map(|i| Arc::clone(batch.column(*i))));
        let cols = cols
            .iter()
            .map(|c| arrow::compute::filter(c.as_ref(), &keep))
            .collect::<Result<Vec<_>, _>>()
            .map_err(arrow_err)?;
        let staged = RecordBatch::try_new(Arc::clone(&new_schema), cols).map_err(arrow_err)?;
        writer.write(&staged).map_err(parquet_err)?;
    }
    writer.close().map_err(parquet_err)?;
    ctx.register_parquet(
        "new",
        new_path.to_string_lossy().as_ref(),
        ParquetReadOptions::default(),
    )
    .await
    .map_err(df_err)?;

    // The last committed snapshot, or an empty one.
    let base = if options.full_resync && options.skip_initial_backfill {
        return Err(EngineError::Diff(
            "`full_resync` and `skip_initial_backfill` contradict each other; use one".into(),
        ));
    } else {
        snapshots.current(&spec.sync).await?
    };
    report.base_version = base.as_ref().map(|m| m.version);
    register_old(&ctx, snapshots, base.as_ref(), &new_schema).await?;

    // 2. Duplicate keys.
    ctx.sql(&format!(
        "create view dups as select {k} from new group by {k} having count(*) > 1",
        k = quote(change::KEY)
    ))
    .await
    .map_err(df_err)?;
    let counts = collect(
        &ctx,
        &format!(
            "select cast(count(*) as bigint), cast(coalesce(sum(n), 0) as bigint) from \
             (select count(*) as n from new group by {k} having count(*) > 1) d",
            k = quote(change::KEY)
        ),
    )
    .await?;
    if let Some(b) = counts.first() {
        report.bad_keys.duplicate_keys = b
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0) as u64;
        report.bad_keys.duplicate_rows = b
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0) as u64;
    }
    if report.bad_keys.duplicate_keys > 0 {
        let sample = collect(
            &ctx,
            &format!(
                "select {k} from dups order by 1 limit 5",
                k = quote(change::KEY)
            ),
        )
        .await?;
        for b in sample {
            let keys = b.column(0).as_string::<i32>();
            report
                .bad_keys
                .sample_duplicates
                .extend((0..keys.len()).map(|i| keys.value(i).to_string()));
        }
    }

    let mut pending = PendingDiff {
        ctx,
        spec,
        columns,
        base,
        staging,
        new_schema,
        report,
        options,
    };

    if pending.base.is_none() && pending.options.skip_initial_backfill {
        let clean_rows = pending
            .count("select count(*) from new n left anti join dups d on n._ebb_key = d._ebb_key")
            .await?;
        pending.report.marked_synced = Some(clean_rows);
        pending.report.unchanged = clean_rows;
        pending.write_changes().await?; // no changes: an empty file
        return Ok(pending);
    }
    pending.write_changes().await?;
    Ok(pending)
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

/// Staging files carry no statistics (see [`session`]).
fn staging_properties() -> datafusion::parquet::file::properties::WriterProperties {
    datafusion::parquet::file::properties::WriterProperties::builder()
        .set_statistics_enabled(datafusion::parquet::file::properties::EnabledStatistics::None)
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
            .field("sync", &self.spec.sync)
            .field("report", &self.report)
            .field("staging", &self.staging.path())
            .finish_non_exhaustive()
    }
}

impl PendingDiff {
    pub fn report(&self) -> &DiffReport {
        &self.report
    }

    pub fn spec(&self) -> &DiffSpec {
        &self.spec
    }

    fn changes_path(&self) -> PathBuf {
        self.staging.path().join("changes.parquet")
    }

    async fn count(&self, sql: &str) -> Result<u64, EngineError> {
        let batches = collect(&self.ctx, sql).await?;
        Ok(batches
            .first()
            .map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .value(0) as u64
            })
            .unwrap_or(0))
    }

    /// The schema of the staged changes: a ChangeBatch over the mapped columns, plus the
    /// new row hash (for the commit).
    fn changes_schema(&self) -> SchemaRef {
        let entity = Schema::new(self.new_schema.fields()[2..].to_vec());
        let mut fields: Vec<Arc<Field>> = change::schema_for(&entity)
            .fields()
            .iter()
            .cloned()
            .collect();
        fields.push(Arc::new(Field::new(HASH, DataType::UInt64, true)));
        Arc::new(Schema::new(fields))
    }

    /// Steps 3 and 4: find the changed keys on (key, hash) pairs, fetch their values, and
    /// write them to staging as ChangeBatches.
    async fn write_changes(&mut self) -> Result<(), EngineError> {
        let k = quote(change::KEY);
        let h = quote(HASH);
        let skip_all = self.base.is_none() && self.options.skip_initial_backfill;
        let filter = if self.options.full_resync {
            "true".to_string()
        } else {
            format!("(n.{k} is null) or (o.{k} is null) or (n.{h} <> o.{h})")
        };
        let filter = if skip_all {
            "false".to_string()
        } else {
            filter
        };
        self.ctx
            .sql(&format!(
                "create view changed as \
                 select coalesce(n.{k}, o.{k}) as k, \
                        case when o.{k} is null then 1 when n.{k} is null then 3 else 2 end as op, \
                        n.{h} as nh \
                 from (select n.{k}, n.{h} from new n left anti join dups d on n.{k} = d.{k}) n \
                 full outer join (select o.{k}, o.{h} from old o left anti join dups d on o.{k} = d.{k}) o \
                 on n.{k} = o.{k} \
                 where {filter}"
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

        let schema = self.changes_schema();
        let file = File::create(self.changes_path())
            .map_err(|e| EngineError::Diff(format!("staging: {e}")))?;
        let mut writer =
            ArrowWriter::try_new(file, Arc::clone(&schema), Some(staging_properties()))
                .map_err(parquet_err)?;
        let n_cols = self.columns.len();
        let new_types: Vec<DataType> = self.new_schema.fields()[2..]
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let mut seq: u64 = 0;
        let mut changed_rows = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df_err)?;
            let rows = batch.num_rows();
            let keys = batch.column(0).as_string::<i32>();
            let ops = cast(batch.column(1), &DataType::UInt8).map_err(arrow_err)?;
            let ops = ops.as_primitive::<UInt8Type>();
            let hashes = batch.column(2).as_primitive::<UInt64Type>();
            let new_cols: Vec<&ArrayRef> = (0..n_cols).map(|i| batch.column(3 + i)).collect();
            let old_cols: Vec<ArrayRef> = (0..n_cols)
                .map(|i| {
                    let old = batch.column(3 + n_cols + i);
                    cast(old, &new_types[i]).unwrap_or_else(|_| new_null_array(&new_types[i], rows))
                })
                .collect();

            let mut keep = Vec::with_capacity(rows);
            let mut out_ops = Vec::with_capacity(rows);
            let mut out_keys = Vec::with_capacity(rows);
            let mut out_seqs = Vec::with_capacity(rows);
            let mut out_changed: Vec<Option<Vec<String>>> = Vec::with_capacity(rows);
            let mut is_delete = Vec::with_capacity(rows);
            for row in 0..rows {
                let op = match ops.value(row) {
                    1 if self.options.full_resync => Op::Upsert,
                    1 => Op::Insert,
                    3 => Op::Delete,
                    _ if self.options.full_resync => Op::Upsert,
                    _ => Op::Update,
                };
                let changed = if op == Op::Update {
                    let mut names = Vec::new();
                    for (i, name) in self.columns.iter().enumerate() {
                        if !canonical::same_value(
                            new_cols[i].as_ref(),
                            row,
                            old_cols[i].as_ref(),
                            row,
                        )
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
                out_seqs.push(seq);
                seq += 1;
                out_changed.push(changed);
                match op {
                    Op::Insert => self.report.inserts += 1,
                    Op::Delete => self.report.deletes += 1,
                    Op::Update | Op::Upsert => self.report.updates += 1,
                }
            }
            let keep = BooleanArray::from(keep);
            let mask = BooleanArray::from(is_delete);
            let mut entity_cols: Vec<ArrayRef> = Vec::with_capacity(n_cols);
            for i in 0..n_cols {
                let n = arrow::compute::filter(new_cols[i].as_ref(), &keep).map_err(arrow_err)?;
                let o = arrow::compute::filter(old_cols[i].as_ref(), &keep).map_err(arrow_err)?;
                entity_cols
                    .push(arrow::compute::kernels::zip::zip(&mask, &o, &n).map_err(arrow_err)?);
            }
            let kept_hashes = arrow::compute::filter(hashes, &keep).map_err(arrow_err)?;
            if out_ops.is_empty() {
                continue;
            }
            changed_rows += out_ops.len() as u64;
            let entity = RecordBatch::try_new(
                Arc::new(Schema::new(self.new_schema.fields()[2..].to_vec())),
                entity_cols,
            )
            .map_err(arrow_err)?;
            let cb = ChangeBatch::from_parts(&out_ops, &out_keys, &out_seqs, &out_changed, &entity)
                .map_err(arrow_err)?;
            let mut cols = cb.into_batch().columns().to_vec();
            cols.push(kept_hashes);
            let staged = RecordBatch::try_new(Arc::clone(&schema), cols).map_err(arrow_err)?;
            writer.write(&staged).map_err(parquet_err)?;
        }
        writer.close().map_err(parquet_err)?;
        let clean_rows = self
            .count(&format!(
                "select count(*) from new n left anti join dups d on n.{k} = d.{k}"
            ))
            .await?;
        if !skip_all {
            self.report.unchanged =
                clean_rows.saturating_sub(self.report.inserts + self.report.updates);
        }
        let _ = changed_rows;
        Ok(())
    }

    /// The changes, in batches of about `batch_rows`, as delivery should send them.
    pub fn changes(&self) -> Result<ChangeReader, EngineError> {
        let file = File::open(self.changes_path())
            .map_err(|e| EngineError::Diff(format!("staging: {e}")))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err)?;
        let reader = builder
            .with_batch_size(self.options.batch_rows.max(1))
            .build()
            .map_err(parquet_err)?;
        Ok(ChangeReader { reader })
    }

    /// Step 5: commits the new snapshot — the old one plus exactly the changes whose keys are
    /// not in `rejected`. Returns the committed manifest.
    pub async fn commit(
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
        self.ctx
            .sql(&format!(
                "create view accepted as select c.* from changes c left anti join rejected r on c.{k} = r.{k}"
            ))
            .await
            .map_err(df_err)?;
        let cols: Vec<String> = self.columns.iter().map(|c| quote(c)).collect();
        let cols = if cols.is_empty() {
            String::new()
        } else {
            format!(", {}", cols.join(", "))
        };
        let new_rows = if self.base.is_none() && self.options.skip_initial_backfill {
            format!("select n.{k}, n.{h}{cols} from new n left anti join dups d on n.{k} = d.{k}")
        } else {
            format!(
                "select o.{k}, o.{h}{cols} from old o left anti join accepted a on o.{k} = a.{k} \
                 union all \
                 select {k}, {h}{cols} from accepted where {op} <> {delete}",
                op = quote(change::OP),
                delete = Op::Delete.code()
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
                None,
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

    /// The folder holding this diff's staging files (removed when the diff is dropped).
    pub fn staging_dir(&self) -> &Path {
        self.staging.path()
    }
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
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_788), (2026, 12, 1));
    }
}
