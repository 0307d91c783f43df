//! Driver for the metrics benchmark (`benchmarks/metrics/run.py`).
//!
//! ```text
//! metrics_bench DATA_DIR     DATA_DIR holds events.parquet
//! ```
//!
//! Builds a project around the Parquet file (a lake source, a view model over it, a
//! semantic model with `revenue = sum(amount)`), runs the metric query
//! `--metrics revenue --group-by event__product --grain month` through the metrics layer,
//! reads every row, and prints one JSON line: `{"seconds", "rows", "checksum", "sql"}`.
//! Opening the project is not timed; compiling and running the query is.

use std::time::Instant;

use ebb_core::config::metrics::Grain;
use ebb_core::project::{ProjectSource, SourceFile, load};
use ebb_engine::metrics::{MetricQuery, MetricsLayer};
use ebb_engine::models::Models;

const EBB_YML: &str = "name: bench
version: 1
warehouses:
  lake:
    type: lake
    path: DATA
default_warehouse: lake
sources:
  bench:
    tables:
      events:
        path: events.parquet
        format: parquet
defaults:
  materialized: view
";

const METRICS_YML: &str = "semantic_models:
  - name: events
    model: events
    defaults: { agg_time_dimension: ts }
    entities:
      - { name: event, type: primary, expr: id }
    dimensions:
      - { name: ts, type: time, type_params: { time_granularity: day } }
      - { name: product, type: categorical }
    measures:
      - { name: revenue, agg: sum, expr: amount }
metrics:
  - { name: revenue, type: simple, type_params: { measure: revenue } }
";

#[tokio::main]
async fn main() {
    let data = std::env::args()
        .nth(1)
        .expect("usage: metrics_bench DATA_DIR");
    let data = std::fs::canonicalize(&data).expect("the data folder exists");
    let root = tempfile::tempdir().unwrap();
    let source = ProjectSource {
        root: root.path().to_path_buf(),
        files: vec![
            SourceFile {
                path: "ebb.yml".into(),
                text: EBB_YML.replace("DATA", &data.display().to_string()),
            },
            SourceFile {
                path: "models/events.sql".into(),
                text: "select * from {{ source('bench', 'events') }}".into(),
            },
            SourceFile {
                path: "metrics/bench.yml".into(),
                text: METRICS_YML.into(),
            },
        ],
    };
    let env = |_: &str| None;
    let loaded = load(&source, &env);
    assert_eq!(loaded.errors(), 0, "{:#?}", loaded.diagnostics);
    let models = Models::open(&loaded.project).await.unwrap();
    let layer = MetricsLayer::new(&models);
    let query = MetricQuery {
        metrics: vec!["revenue".into()],
        group_by: vec!["event__product".into()],
        grain: Some(Grain::Month),
        ..MetricQuery::default()
    };
    let started = Instant::now();
    let (compiled, batches) = layer.collect(&query).await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let mut rows = 0;
    let mut checksum = 0.0;
    for b in &batches {
        rows += b.num_rows();
        let values = b
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .expect("revenue is a double");
        checksum += values.iter().flatten().sum::<f64>();
    }
    println!(
        "{}",
        serde_json::json!({"seconds": seconds, "rows": rows, "checksum": checksum, "sql": compiled.sql})
    );
}
