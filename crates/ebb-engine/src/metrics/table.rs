//! Each metric as a DataFusion table, so plain SQL can ask for metrics (this is what
//! `ebb metrics serve` answers psql and BI tools with).
//!
//! Table `revenue` has one column per reference the metric can be grouped by
//! (`metric_time__day` … `metric_time__year`, `account__region`, `account`, …) and one column
//! named after the metric. A scan groups by exactly the dimension columns the query reads:
//! `select account__region, revenue from revenue` is the metric query
//! `--metrics revenue --group-by account__region`, computed by the metrics compiler on the
//! models' warehouse (so the numbers are the CLI's), and whatever SQL sits above the scan
//! (`where`, `order by`, an outer `sum(...)`) runs in DataFusion over that result.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::TableType;
use datafusion::physical_plan::ExecutionPlan;
use ebb_core::config::metrics::MetricType;
use ebb_warehouse::Warehouse;

use super::semantic::SemanticGraph;
use super::{MetricQuery, MetricsError, MetricsLayer};
use crate::EngineError;

/// The group-by references every measure behind `metric` can use.
pub fn dimensions_of(graph: &SemanticGraph<'_>, metric: &str) -> Result<Vec<String>, MetricsError> {
    let mut models = BTreeSet::new();
    collect_models(graph, metric, &mut models, &mut Vec::new())?;
    let mut out: Option<Vec<String>> = None;
    for m in models {
        let here = graph.reachable(m);
        out = Some(match out {
            None => here,
            Some(prev) => prev.into_iter().filter(|d| here.contains(d)).collect(),
        });
    }
    Ok(out.unwrap_or_default())
}

fn collect_models(
    graph: &SemanticGraph<'_>,
    metric: &str,
    out: &mut BTreeSet<usize>,
    stack: &mut Vec<String>,
) -> Result<(), MetricsError> {
    if stack.iter().any(|s| s == metric) {
        return Err(MetricsError::Query(format!(
            "metrics depend on each other in a cycle through \"{metric}\""
        )));
    }
    stack.push(metric.to_string());
    let def = graph.metric(metric)?;
    let p = &def.type_params.value;
    match def.kind.value {
        MetricType::Simple | MetricType::Cumulative => {
            if let Some(m) = &p.measure {
                out.insert(graph.measure(&m.value.name)?.0);
            }
        }
        MetricType::Ratio | MetricType::Derived => {
            for input in p
                .numerator
                .iter()
                .chain(p.denominator.iter())
                .chain(p.metrics.iter())
            {
                collect_models(graph, &input.value.name, out, stack)?;
            }
        }
    }
    stack.pop();
    Ok(())
}

/// A metric as a table. Holds the layer for the life of the process (a server's).
#[derive(Debug)]
pub struct MetricTable {
    layer: &'static MetricsLayer<'static, 'static>,
    metric: String,
    /// Dimension columns, then the metric.
    schema: SchemaRef,
}

impl MetricTable {
    /// The table for `metric`, its column types taken from the warehouse's plan of the query
    /// over every dimension.
    pub async fn new(
        layer: &'static MetricsLayer<'static, 'static>,
        metric: &str,
    ) -> Result<MetricTable, EngineError> {
        let dims = dimensions_of(layer.graph(), metric)?;
        let (time, other): (Vec<String>, Vec<String>) = dims
            .into_iter()
            .partition(|d| d.starts_with("metric_time__"));
        let mut group_by = vec!["metric_time__day".to_string()];
        group_by.extend(other.iter().cloned());
        let query = MetricQuery {
            metrics: vec![metric.to_string()],
            group_by,
            ..MetricQuery::default()
        };
        let (compiled, warehouse) = layer.compile(&query)?;
        let planned = warehouse.schema(&compiled.sql).await?;
        let mut fields = Vec::new();
        for t in &time {
            fields.push(Field::new(t, DataType::Date32, true));
        }
        for (i, d) in other.iter().enumerate() {
            // Column 0 is metric_time__day.
            let ty = planned.field(i + 1).data_type().clone();
            fields.push(Field::new(d, ty, true));
        }
        let metric_ty = planned
            .field(planned.fields().len() - 1)
            .data_type()
            .clone();
        fields.push(Field::new(metric, metric_ty, true));
        Ok(MetricTable {
            layer,
            metric: metric.to_string(),
            schema: Arc::new(Schema::new(fields)),
        })
    }
}

#[async_trait]
impl TableProvider for MetricTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let metric_idx = self.schema.fields().len() - 1;
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..=metric_idx).collect(),
        };
        let group_by: Vec<String> = wanted
            .iter()
            .filter(|&&i| i != metric_idx)
            .map(|&i| self.schema.field(i).name().clone())
            .collect();
        let query = MetricQuery {
            metrics: vec![self.metric.clone()],
            group_by: group_by.clone(),
            ..MetricQuery::default()
        };
        let (_, batches) = self
            .layer
            .collect(&query)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let out_schema = Arc::new(self.schema.project(&wanted)?);
        let mut out = Vec::new();
        for batch in batches {
            let mut columns: Vec<ArrayRef> = Vec::new();
            for &i in &wanted {
                let source = if i == metric_idx {
                    batch.num_columns() - 1
                } else {
                    let name = self.schema.field(i).name();
                    group_by.iter().position(|g| g == name).unwrap_or(0)
                };
                let want = self.schema.field(i).data_type();
                let col = batch.column(source);
                columns.push(if col.data_type() == want {
                    Arc::clone(col)
                } else {
                    cast(col, want)?
                });
            }
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            out.push(RecordBatch::try_new_with_options(
                Arc::clone(&out_schema),
                columns,
                &options,
            )?);
        }
        let exec: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[out], out_schema, None)?;
        Ok(exec)
    }
}
