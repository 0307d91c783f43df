//! The lake: Parquet, CSV and NDJSON files on `object_store`, queried by DataFusion.
//!
//! Sources are registered as listing tables from a file or glob under the warehouse root,
//! with Hive-style partitions (`year=2026/month=11/...`) read from the paths as columns. Each
//! source gets its own SQL schema (`"app"."accounts"`), models live in the default schema
//! (`"account_health"`), so a model may share a name with a source table.
//!
//! Models materialized as Parquet are written to `<root>/_ebb_models/<name>/<run>/` and a
//! one-line `CURRENT` file names the run that is live. The pointer is a single object `put`
//! (atomic on every object store), so readers see the old files or the new ones, never a mix.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{Array, UInt64Array};
use arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::file_format::FileFormat as DfFileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use ebb_core::config::project::{FileFormat, Materialized};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::{Materialization, Relation, SourceTable, Warehouse, WarehouseError, quote_ident};

/// The folder under the lake root where Parquet-materialized models are written.
pub const MODELS_DIR: &str = "_ebb_models";

/// Tuning for a lake session.
#[derive(Debug, Clone)]
pub struct LakeOptions {
    /// Memory DataFusion may use before it spills to disk; `None` for no limit.
    pub memory_limit: Option<usize>,
    /// Rows read to infer a CSV or NDJSON file's column types.
    pub infer_rows: usize,
}

impl Default for LakeOptions {
    fn default() -> Self {
        LakeOptions {
            memory_limit: Some(4 << 30),
            infer_rows: 10_000,
        }
    }
}

/// A lake of files under one root: a local folder or `s3://bucket/prefix`.
pub struct LakeWarehouse {
    ctx: SessionContext,
    /// The root as a URL that ends with `/` (`file:///abs/data/`, `s3://bucket/prefix/`).
    root: Url,
    store: Arc<dyn ObjectStore>,
    options: LakeOptions,
}

impl std::fmt::Debug for LakeWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeWarehouse")
            .field("root", &self.root.as_str())
            .finish_non_exhaustive()
    }
}

impl LakeWarehouse {
    /// Opens the lake at `path`: `s3://bucket/prefix` (credentials and endpoint from the
    /// `AWS_*` environment variables), an absolute folder, or a folder relative to
    /// `project_root`.
    pub fn open(
        path: &str,
        project_root: &Path,
        options: LakeOptions,
    ) -> Result<LakeWarehouse, WarehouseError> {
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = options.memory_limit {
            runtime = runtime.with_memory_limit(limit, 1.0);
        }
        let runtime = runtime.build_arc()?;
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("datafusion", "public");
        // Plain Utf8 strings, as the Postgres warehouse returns them: results compare equal
        // across warehouses, and the field notes measured them faster for diffs.
        config.options_mut().sql_parser.map_string_types_to_utf8view = false;
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = false;
        // DataFusion 55 reads a Parquet column whose min equals its max as that constant,
        // but Parquet statistics leave NaN out: a column of NaN and inf reads as all inf.
        // Not collecting file statistics turns that path off.
        config.options_mut().execution.collect_statistics = false;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_udf(crate::period::udf());

        let (root, store): (Url, Arc<dyn ObjectStore>) = if let Some(rest) =
            path.strip_prefix("s3://")
        {
            let bucket = rest.split('/').next().unwrap_or_default();
            if bucket.is_empty() {
                return Err(WarehouseError::Config(format!(
                    "lake path \"{path}\" has no bucket; write s3://bucket/prefix"
                )));
            }
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| WarehouseError::Config(format!("lake {path}: {e}")))?;
            let store: Arc<dyn ObjectStore> = Arc::new(s3);
            let bucket_url = Url::parse(&format!("s3://{bucket}"))
                .map_err(|e| WarehouseError::Config(format!("lake {path}: {e}")))?;
            ctx.register_object_store(&bucket_url, Arc::clone(&store));
            let root = Url::parse(&format!("{}/", path.trim_end_matches('/')))
                .map_err(|e| WarehouseError::Config(format!("lake {path}: {e}")))?;
            (root, store)
        } else if path.contains("://") {
            return Err(WarehouseError::Config(format!(
                "lake path \"{path}\": only local folders and s3:// are supported"
            )));
        } else {
            let dir = project_root.join(path);
            std::fs::create_dir_all(&dir).map_err(|e| {
                WarehouseError::Config(format!("lake folder {}: {e}", dir.display()))
            })?;
            let dir = dir.canonicalize().map_err(|e| {
                WarehouseError::Config(format!("lake folder {}: {e}", dir.display()))
            })?;
            let root = Url::from_directory_path(&dir).map_err(|()| {
                WarehouseError::Config(format!("lake folder {} is not absolute", dir.display()))
            })?;
            let store: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
            (root, store)
        };
        Ok(LakeWarehouse {
            ctx,
            root,
            store,
            options,
        })
    }

    /// The DataFusion session, for callers that build plans directly.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The root URL, ending with `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    fn store_path(&self, rel: &str) -> StorePath {
        let full = format!("{}{}", self.root.path().trim_start_matches('/'), rel);
        StorePath::from(full.as_str())
    }

    fn format_for(&self, format: FileFormat) -> (Arc<dyn DfFileFormat>, &'static str) {
        match format {
            FileFormat::Csv => (
                Arc::new(
                    CsvFormat::default()
                        .with_has_header(true)
                        .with_schema_infer_max_rec(self.options.infer_rows),
                ),
                ".csv",
            ),
            FileFormat::Parquet => (Arc::new(ParquetFormat::default()), ".parquet"),
            FileFormat::Ndjson => (
                Arc::new(JsonFormat::default().with_schema_infer_max_rec(self.options.infer_rows)),
                ".json",
            ),
        }
    }

    /// Registers the files at `location` (a URL, may end in a glob or `/`) as `name`.
    async fn register_listing(
        &self,
        name: TableReference,
        location: &str,
        format: FileFormat,
    ) -> datafusion::error::Result<()> {
        let url = listing_url(location)?;
        let (file_format, default_ext) = self.format_for(format);
        // A single file or a glob filters by its own extension; a folder by the format's.
        let last = location.rsplit('/').next().unwrap_or_default();
        let extension = match last.rsplit_once('.') {
            Some((_, ext)) if !ext.contains('*') && !last.is_empty() => format!(".{ext}"),
            _ => default_ext.to_string(),
        };
        let options = ListingOptions::new(file_format).with_file_extension(extension);
        let state = self.ctx.state();
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .infer_partitions_from_path(&state)
            .await?
            .infer_schema(&state)
            .await?;
        let table = ListingTable::try_new(config)?;
        self.ctx.deregister_table(name.clone())?;
        self.ctx.register_table(name, Arc::new(table))?;
        Ok(())
    }

    /// Registers a model materialized as Parquet by an earlier run, if there is one.
    /// Returns whether it was found.
    pub async fn attach_materialized(&self, name: &str) -> Result<bool, WarehouseError> {
        let pointer = self.store_path(&format!("{MODELS_DIR}/{name}/CURRENT"));
        let run = match self.store.get(&pointer).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(err) => return Err(err.into()),
        };
        let run = String::from_utf8_lossy(&run).trim().to_string();
        let location = format!("{}{MODELS_DIR}/{name}/{run}/", self.root);
        self.register_listing(TableReference::bare(name), &location, FileFormat::Parquet)
            .await?;
        Ok(true)
    }

    /// Deletes the runs of a Parquet model other than the live one.
    async fn collect_old_runs(&self, name: &str, live: &str) -> Result<(), WarehouseError> {
        use futures::TryStreamExt;
        let prefix = self.store_path(&format!("{MODELS_DIR}/{name}/"));
        let live_prefix = format!("{prefix}/{live}/");
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        for meta in objects {
            let path = meta.location.to_string();
            if !path.starts_with(&live_prefix) && !path.ends_with("/CURRENT") {
                self.store.delete(&meta.location).await?;
            }
        }
        // A local folder keeps the emptied run directories; remove them too.
        if let Ok(dir) = self.root.join(&format!("{MODELS_DIR}/{name}/"))
            && let Ok(dir) = dir.to_file_path()
            && let Ok(entries) = std::fs::read_dir(&dir)
        {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy() != live && entry.path().is_dir() {
                    // Only empty ones: remove_dir refuses a folder that still has files.
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
        Ok(())
    }
}

/// The listing for `location`. `ListingTableUrl::parse` reads a glob only in a plain path,
/// and the lake's locations are URLs (`file://`, `s3://`): split the glob off by hand.
fn listing_url(location: &str) -> datafusion::error::Result<ListingTableUrl> {
    match location.find(['*', '?', '[']) {
        None => ListingTableUrl::parse(location),
        Some(first) => {
            let split = location[..first].rfind('/').map_or(0, |s| s + 1);
            let (base, glob) = location.split_at(split);
            ListingTableUrl::parse(base)?.with_glob(glob)
        }
    }
}

fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("run-{nanos}-{}", std::process::id())
}

impl Warehouse for LakeWarehouse {
    fn kind(&self) -> &'static str {
        "lake"
    }

    fn relation_sql(&self, relation: &Relation) -> String {
        match relation {
            Relation::Model(name) => quote_ident(name),
            Relation::Source { source, table } => {
                format!("{}.{}", quote_ident(source), quote_ident(table))
            }
        }
    }

    async fn attach_sources(&self, tables: &[SourceTable]) -> Result<(), WarehouseError> {
        let catalog = self
            .ctx
            .catalog("datafusion")
            .ok_or_else(|| WarehouseError::Config("the default catalog is missing".into()))?;
        for t in tables {
            if catalog.schema(&t.source).is_none() {
                catalog
                    .register_schema(&t.source, Arc::new(MemorySchemaProvider::new()))
                    .map_err(WarehouseError::from)?;
            }
            let Some(path) = &t.path else {
                return Err(WarehouseError::Source {
                    source_name: t.source.clone(),
                    table: t.table.clone(),
                    message: "a lake table needs a `path`".into(),
                });
            };
            let format = t.format.unwrap_or_else(|| format_from_extension(path));
            let location = format!("{}{}", self.root, path.trim_start_matches('/'));
            self.register_listing(
                TableReference::partial(t.source.as_str(), t.table.as_str()),
                &location,
                format,
            )
            .await
            .map_err(|e| WarehouseError::Source {
                source_name: t.source.clone(),
                table: t.table.clone(),
                message: format!("{} ({location})", e.strip_backtrace()),
            })?;
        }
        Ok(())
    }

    async fn query(&self, sql: &str) -> Result<SendableRecordBatchStream, WarehouseError> {
        let df = self.ctx.sql(sql).await?;
        Ok(df.execute_stream().await?)
    }

    async fn schema(&self, sql: &str) -> Result<SchemaRef, WarehouseError> {
        let df = self.ctx.sql(sql).await?;
        Ok(Arc::new(df.schema().as_arrow().clone()))
    }

    async fn materialize(
        &self,
        name: &str,
        sql: &str,
        how: Materialized,
    ) -> Result<Materialization, WarehouseError> {
        match how {
            Materialized::Ephemeral => Ok(Materialization {
                rows: None,
                location: "ephemeral (inlined where it is used)".into(),
            }),
            Materialized::View => {
                let df = self.ctx.sql(sql).await?;
                let view = df.into_view();
                self.ctx.deregister_table(name)?;
                self.ctx.register_table(name, view)?;
                Ok(Materialization {
                    rows: None,
                    location: format!("view {}", quote_ident(name)),
                })
            }
            Materialized::Table => Err(WarehouseError::Unsupported(format!(
                "model \"{name}\": a lake has no tables; use `materialized: parquet`"
            ))),
            Materialized::Parquet => {
                let run = run_id();
                let location = format!("{}{MODELS_DIR}/{name}/{run}/", self.root);
                let df = self.ctx.sql(sql).await?;
                let written = df
                    .write_parquet(&location, DataFrameWriteOptions::new(), None)
                    .await?;
                let rows = written
                    .first()
                    .and_then(|b| b.column(0).as_any().downcast_ref::<UInt64Array>())
                    .filter(|a| !a.is_empty())
                    .map(|a| a.value(0));
                let pointer = self.store_path(&format!("{MODELS_DIR}/{name}/CURRENT"));
                self.store
                    .put(&pointer, run.clone().into_bytes().into())
                    .await?;
                self.register_listing(TableReference::bare(name), &location, FileFormat::Parquet)
                    .await?;
                self.collect_old_runs(name, &run).await?;
                Ok(Materialization { rows, location })
            }
        }
    }
}

/// The format a path's extension implies (CSV when it says nothing).
pub fn format_from_extension(path: &str) -> FileFormat {
    match path.rsplit('.').next().unwrap_or_default() {
        "parquet" => FileFormat::Parquet,
        "ndjson" | "jsonl" | "json" => FileFormat::Ndjson,
        _ => FileFormat::Csv,
    }
}
