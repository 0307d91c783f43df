//! Running metric queries on a project's warehouses.
//!
//! The models a query reads are used the way `ebb models show` reads them: each model's
//! compiled SQL is inlined as a subquery, so a query needs no earlier `ebb models run`, and
//! the warehouse's planner sees through to the sources. Every model a query reads must live
//! in one warehouse; the query is compiled in that warehouse's dialect and runs there
//! through [`Warehouse::query`]: DataFusion for the lake, PostgreSQL itself (pushdown) for a
//! Postgres warehouse.

use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use ebb_warehouse::{AnyWarehouse, Warehouse};
use futures::TryStreamExt;

use super::compile::{CompiledQuery, compile};
use super::{Dialect, MetricQuery, MetricsError, SemanticGraph};
use crate::EngineError;
use crate::models::Models;

/// A project's metrics over its models' warehouses.
#[derive(Debug)]
pub struct MetricsLayer<'m, 'p> {
    models: &'m Models<'p>,
    graph: SemanticGraph<'p>,
}

impl<'m, 'p> MetricsLayer<'m, 'p> {
    pub fn new(models: &'m Models<'p>) -> MetricsLayer<'m, 'p> {
        MetricsLayer {
            graph: SemanticGraph::new(models.project()),
            models,
        }
    }

    pub fn graph(&self) -> &SemanticGraph<'p> {
        &self.graph
    }

    pub fn models(&self) -> &'m Models<'p> {
        self.models
    }

    /// The SQL for `query` and the warehouse it runs on.
    pub fn compile(
        &self,
        query: &MetricQuery,
    ) -> Result<(CompiledQuery, &'m AnyWarehouse), EngineError> {
        // First pass: which models the query reads, hence which warehouse and dialect.
        let probe = compile(&self.graph, query, Dialect::DataFusion, &|m| {
            Ok(m.to_string())
        })?;
        let mut warehouse: Option<(&str, &'m AnyWarehouse)> = None;
        for name in &probe.models {
            let model = self.models.project().model(name).ok_or_else(|| {
                MetricsError::Query(format!(
                    "a semantic model describes model \"{name}\", which does not exist; run `ebb check`"
                ))
            })?;
            let w = self.models.warehouse(model)?;
            match warehouse {
                None => warehouse = Some((name, w)),
                Some((first, other)) if !std::ptr::eq(other, w) => {
                    return Err(MetricsError::Query(format!(
                        "the query reads models \"{first}\" and \"{name}\", which live in different warehouses; \
                         a metric query runs in one warehouse"
                    ))
                    .into());
                }
                Some(_) => {}
            }
        }
        let (_, warehouse) =
            warehouse.ok_or_else(|| MetricsError::Query("the query reads no model".into()))?;
        let dialect = Dialect::for_warehouse(warehouse.kind());
        let models = self.models;
        let relation = |name: &str| -> Result<String, MetricsError> {
            models
                .compile(name)
                .map(|sql| format!("(\n{sql}\n)"))
                .map_err(|e| MetricsError::Query(format!("model \"{name}\": {e}")))
        };
        let compiled = compile(&self.graph, query, dialect, &relation)?;
        Ok((compiled, warehouse))
    }

    /// Runs `query`, streaming its rows.
    pub async fn query(
        &self,
        query: &MetricQuery,
    ) -> Result<(CompiledQuery, SendableRecordBatchStream), EngineError> {
        let (compiled, warehouse) = self.compile(query)?;
        let stream = warehouse.query(&compiled.sql).await?;
        Ok((compiled, stream))
    }

    /// Runs `query` and collects its rows.
    pub async fn collect(
        &self,
        query: &MetricQuery,
    ) -> Result<(CompiledQuery, Vec<RecordBatch>), EngineError> {
        let (compiled, stream) = self.query(query).await?;
        let batches = stream
            .try_collect()
            .await
            .map_err(|e| EngineError::Warehouse(e.into()))?;
        Ok((compiled, batches))
    }
}

/// The query behind a sync with `metric: { name, entity }`: `metric` grouped by `entity`
/// alone, so one row per entity key. Its columns: the entity's key (named after the entity),
/// then the metric (named after it). A metric that needs `metric_time` (cumulative windows,
/// offsets) is refused when compiled.
pub fn per_entity_query(metric: &str, entity: &str) -> MetricQuery {
    MetricQuery {
        metrics: vec![metric.to_string()],
        group_by: vec![entity.to_string()],
        ..MetricQuery::default()
    }
}

/// One row per `entity` with `metric`'s value for it (e.g. each account's MRR): what a sync
/// with `metric: { name, entity }` sends (see [`per_entity_query`]). Columns: the entity's
/// key (named after the entity), then the metric (named after it).
pub async fn metric_per_entity(
    models: &Models<'_>,
    metric: &str,
    entity: &str,
) -> Result<SendableRecordBatchStream, EngineError> {
    let layer = MetricsLayer::new(models);
    let (_, stream) = layer.query(&per_entity_query(metric, entity)).await?;
    Ok(stream)
}
