//! The semantic metrics layer: metric definitions (`metrics/*.yml`, shaped like dbt
//! MetricFlow) compiled to one SQL statement per query, run on the warehouse the models live
//! in — DataFusion over the lake, or pushed down into PostgreSQL.
//!
//! A query is metrics × group-by references (`metric_time__month`, `account__region`,
//! `account`) × a filter × order × limit ([`MetricQuery`]). The compiler aggregates every
//! measure inside its own semantic model before anything is combined, and joins a model
//! only toward an entity that is primary (or unique) there, so a dimension join can never
//! repeat a measure's rows: see [`compile`] for the SQL's shape. Filters are parsed into an
//! AST and re-rendered ([`filter`]); they are never pasted into the SQL as text.
//!
//! # Layout
//! - [`semantic`]: the index of semantic models, measures and metrics, and how a dimension
//!   reference is reached through entities.
//! - [`filter`]: `--where` and metric filters: parse, check, render.
//! - [`derived`]: a derived metric's arithmetic expression.
//! - [`compile`]: query → SQL, for the [`Dialect`]s of DataFusion and PostgreSQL.
//! - [`run`]: [`MetricsLayer`], queries on a project's warehouses, and
//!   [`per_entity_query`] / [`metric_per_entity`] for syncs that read a metric.
//! - [`table`]: each metric as a DataFusion table (for SQL clients, e.g. `ebb metrics serve`).

pub mod compile;
pub mod derived;
pub mod filter;
pub mod run;
pub mod semantic;
pub mod table;

pub use compile::{CompiledQuery, OutputColumn};
pub use filter::{Filter, FilterError};
pub use run::{MetricsLayer, metric_per_entity, per_entity_query};
pub use semantic::SemanticGraph;

use ebb_core::config::metrics::Grain;

/// A question for the metrics layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricQuery {
    /// Metric names, in output order.
    pub metrics: Vec<String>,
    /// Group-by references: `metric_time[__grain]`, `entity__dimension[__grain]`, `entity`.
    pub group_by: Vec<String>,
    /// The grain of `metric_time`; when set and no group-by names `metric_time`, it is added
    /// as the first column (`metric_time__month`).
    pub grain: Option<Grain>,
    /// A condition over dimensions (`account__region = 'EMEA' and invoice__status = 'paid'`).
    pub filter: Option<String>,
    /// Output columns to sort by; `-name` or `name desc` for descending. Default: the
    /// group-by columns, ascending.
    pub order: Vec<String>,
    pub limit: Option<u64>,
}

/// The SQL dialect a query is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    DataFusion,
    Postgres,
}

impl Dialect {
    /// The dialect of a warehouse kind (`Warehouse::kind`).
    pub fn for_warehouse(kind: &str) -> Dialect {
        match kind {
            "postgres" => Dialect::Postgres,
            _ => Dialect::DataFusion,
        }
    }
}

/// Why a metric query could not be compiled. Every message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The query names something that does not exist or cannot be combined.
    #[error("{0}")]
    Query(String),
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// A valid definition the compiler does not handle yet.
    #[error("not supported yet: {0}")]
    Unsupported(String),
}
