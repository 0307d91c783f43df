//! Where ebb's models run and its sources live.
//!
//! A [`Warehouse`] runs SQL where the data is and streams results back as Arrow record
//! batches, in bounded memory. Two implementations:
//! - [`lake::LakeWarehouse`]: Parquet, CSV and NDJSON files on `object_store` (a local folder,
//!   the embedded default, or `s3://bucket/prefix`), queried by DataFusion.
//! - [`postgres::PgWarehouse`]: a PostgreSQL database; model SQL runs inside it and results
//!   stream back through binary `COPY`, decoded by `ebb-postgres`.
//!
//! # Layout
//! - `lib.rs`: the [`Warehouse`] trait, [`Relation`], [`SourceTable`], [`WarehouseError`],
//!   and [`AnyWarehouse`], the one place an implementation is picked from config.
//! - [`lake`]: the lake on DataFusion + object_store.
//! - [`postgres`]: the Postgres warehouse (pool, COPY stream, type mapping).

pub mod lake;
pub mod period;
pub mod postgres;

use std::future::Future;
use std::path::Path;

use arrow::datatypes::SchemaRef;
use datafusion::physical_plan::SendableRecordBatchStream;
use ebb_core::config::project::{FileFormat, Materialized, WarehouseConfig};

/// A table or model as SQL refers to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Relation {
    /// A model, `{{ ref('name') }}`.
    Model(String),
    /// A raw table, `{{ source('source', 'table') }}`.
    Source { source: String, table: String },
}

/// A source table the warehouse must be able to read.
#[derive(Debug, Clone)]
pub struct SourceTable {
    pub source: String,
    pub table: String,
    /// Lake: file or glob relative to the warehouse root.
    pub path: Option<String>,
    pub format: Option<FileFormat>,
    /// Postgres: schema and table name.
    pub schema: Option<String>,
    pub identifier: Option<String>,
}

/// What materializing a model did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Materialization {
    /// Rows written, when the model was written out (table, parquet); `None` for views.
    pub rows: Option<u64>,
    /// Where it lives: a qualified table or view name, or the files' location.
    pub location: String,
}

/// Where models run. Every method may be called concurrently from several tasks.
///
/// Queries stream: [`Warehouse::query`] returns as soon as the first batch can be produced
/// and holds only a bounded number of batches in memory, so a model of any size can be read
/// through it.
pub trait Warehouse: Send + Sync {
    /// `"lake"` or `"postgres"`.
    fn kind(&self) -> &'static str;

    /// How `relation` is written in this warehouse's SQL (quoted, schema-qualified).
    fn relation_sql(&self, relation: &Relation) -> String;

    /// Makes `tables` readable under [`Relation::Source`] names.
    fn attach_sources(
        &self,
        tables: &[SourceTable],
    ) -> impl Future<Output = Result<(), WarehouseError>> + Send;

    /// Runs a query and streams its result.
    fn query(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<SendableRecordBatchStream, WarehouseError>> + Send;

    /// The schema a query would return, without running it.
    fn schema(&self, sql: &str) -> impl Future<Output = Result<SchemaRef, WarehouseError>> + Send;

    /// Makes model `name` available to later queries as `how` says: a view, a table, Parquet
    /// files. When it returns `Ok`, the new result has replaced the old one entirely; on error
    /// the previous result is still in place.
    fn materialize(
        &self,
        name: &str,
        sql: &str,
        how: Materialized,
    ) -> impl Future<Output = Result<Materialization, WarehouseError>> + Send;
}

/// Why a warehouse operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// The warehouse's configuration is wrong (a bad path or URL): fix the project.
    #[error("{0}")]
    Config(String),
    /// A source table could not be read or registered.
    #[error("source {source_name}.{table}: {message}")]
    Source {
        source_name: String,
        table: String,
        message: String,
    },
    /// The SQL failed: a syntax error, an unknown column, a type mismatch.
    #[error("{0}")]
    Query(String),
    /// The materialization asked for is not possible on this warehouse.
    #[error("{0}")]
    Unsupported(String),
    #[error("storage: {0}")]
    Storage(#[from] object_store::Error),
    /// The warehouse could not be reached, refused the login, or the connection broke: may
    /// succeed on a retry (or after fixing the URL's host, user or password).
    #[error("{0}")]
    Connection(String),
}

impl From<datafusion::error::DataFusionError> for WarehouseError {
    fn from(err: datafusion::error::DataFusionError) -> Self {
        match err {
            // A warehouse's own error that travelled through a record batch stream.
            datafusion::error::DataFusionError::External(e) => match e.downcast::<WarehouseError>()
            {
                Ok(e) => *e,
                Err(e) => WarehouseError::Query(
                    datafusion::error::DataFusionError::External(e).strip_backtrace(),
                ),
            },
            err => WarehouseError::Query(err.strip_backtrace()),
        }
    }
}

/// Quotes an SQL identifier: `my table` → `"my table"`, doubling inner quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A warehouse of any kind, built from a project's config: the one place ebb picks an
/// implementation at run time.
#[derive(Debug)]
pub enum AnyWarehouse {
    Lake(lake::LakeWarehouse),
    Postgres(postgres::PgWarehouse),
}

impl AnyWarehouse {
    /// Opens the warehouse `config` describes. Relative lake paths are under `project_root`.
    pub fn open(
        name: &str,
        config: &WarehouseConfig,
        project_root: &Path,
    ) -> Result<AnyWarehouse, WarehouseError> {
        match config {
            WarehouseConfig::Lake { path } => Ok(AnyWarehouse::Lake(lake::LakeWarehouse::open(
                path,
                project_root,
                lake::LakeOptions::default(),
            )?)),
            WarehouseConfig::Postgres {
                url,
                schema,
                pool_size,
            } => postgres::PgWarehouse::open(url.expose(), schema.as_deref(), *pool_size)
                .map(AnyWarehouse::Postgres)
                .map_err(|e| match e {
                    WarehouseError::Config(message) => {
                        WarehouseError::Config(format!("warehouse \"{name}\": {message}"))
                    }
                    e => e,
                }),
        }
    }

    pub fn as_lake(&self) -> Option<&lake::LakeWarehouse> {
        match self {
            AnyWarehouse::Lake(lake) => Some(lake),
            AnyWarehouse::Postgres(_) => None,
        }
    }
}

impl Warehouse for AnyWarehouse {
    fn kind(&self) -> &'static str {
        match self {
            AnyWarehouse::Lake(w) => w.kind(),
            AnyWarehouse::Postgres(w) => w.kind(),
        }
    }

    fn relation_sql(&self, relation: &Relation) -> String {
        match self {
            AnyWarehouse::Lake(w) => w.relation_sql(relation),
            AnyWarehouse::Postgres(w) => w.relation_sql(relation),
        }
    }

    async fn attach_sources(&self, tables: &[SourceTable]) -> Result<(), WarehouseError> {
        match self {
            AnyWarehouse::Lake(w) => w.attach_sources(tables).await,
            AnyWarehouse::Postgres(w) => w.attach_sources(tables).await,
        }
    }

    async fn query(&self, sql: &str) -> Result<SendableRecordBatchStream, WarehouseError> {
        match self {
            AnyWarehouse::Lake(w) => w.query(sql).await,
            AnyWarehouse::Postgres(w) => w.query(sql).await,
        }
    }

    async fn schema(&self, sql: &str) -> Result<SchemaRef, WarehouseError> {
        match self {
            AnyWarehouse::Lake(w) => w.schema(sql).await,
            AnyWarehouse::Postgres(w) => w.schema(sql).await,
        }
    }

    async fn materialize(
        &self,
        name: &str,
        sql: &str,
        how: Materialized,
    ) -> Result<Materialization, WarehouseError> {
        match self {
            AnyWarehouse::Lake(w) => w.materialize(name, sql, how).await,
            AnyWarehouse::Postgres(w) => w.materialize(name, sql, how).await,
        }
    }
}
