//! `ebb metrics list|query|compile|serve`: the project's semantic metrics.

use std::path::PathBuf;

use anyhow::Result;
use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use ebb_core::config::metrics::{Grain, MetricType};
use ebb_engine::metrics::{MetricQuery, MetricsLayer};
use ebb_engine::models::Models;

use crate::{Outcome, project_dir};

const EXAMPLES: &str = "\
Examples:
  ebb metrics list -P models
  ebb metrics query -P models --metrics revenue --grain month
  ebb metrics query -P models --metrics revenue,mrr --group-by account__region
  ebb metrics compile -P models --metrics revenue_growth --grain month
  ebb metrics serve -P models --listen 127.0.0.1:5433   then: psql -h 127.0.0.1 -p 5433

Docs: docs/metrics.md (definitions, query syntax, joins, the SQL endpoint).";

const QUERY_EXAMPLES: &str = "\
Examples:
  ebb metrics query -P models --metrics revenue --grain month
  ebb metrics query -P models --metrics revenue,mrr --group-by account__region --format csv
  ebb metrics query -P models --metrics revenue_3m --grain month --order -revenue_3m --limit 5
  ebb metrics query -P models --metrics revenue,invoice_count --group-by account__segment \\
      --where \"account__region = 'EMEA' and invoice__status in ('paid', 'open')\"
  ebb metrics query -P models --metrics mrr --group-by account --format json

Group by metric_time (at --grain, or metric_time__week), entity__dimension (account__region),
a time dimension at a grain (account__created_at__year), or an entity (account).
--where accepts dimension references, literals, = <> < <= > >=, AND/OR/NOT, IN, BETWEEN,
IS [NOT] NULL, LIKE/ILIKE; nothing else.";

const COMPILE_EXAMPLES: &str = "\
Examples:
  ebb metrics compile -P models --metrics revenue --grain month
  ebb metrics compile -P models --metrics avg_invoice --group-by account__region \\
      --where \"invoice__status = 'paid'\"";

const LIST_EXAMPLES: &str = "\
Examples:
  ebb metrics list -P models                 every metric, its type and description
  ebb metrics list -P models --dimensions    and what each can be grouped by";

const SERVE_EXAMPLES: &str = "\
Examples:
  ebb metrics serve -P models
  ebb metrics serve -P models --listen 0.0.0.0:5433
  psql -h 127.0.0.1 -p 5433 -c 'select metric_time__month, revenue from revenue order by 1'
  psql -h 127.0.0.1 -p 5433 -c 'select account__region, sum(revenue) from revenue group by 1'

Each metric is a table named after it, with a column per dimension it can be grouped by; a
query groups by exactly the columns it reads.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The project folder (the one holding ebb.yml).
    #[arg(short = 'P', long = "project", default_value = ".", global = true)]
    project: PathBuf,
    #[command(subcommand)]
    command: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// List the metrics (and, with --dimensions, what each can be grouped by).
    #[command(after_help = LIST_EXAMPLES)]
    List {
        #[arg(long)]
        dimensions: bool,
    },
    /// Compute metrics, grouped and filtered, and print them.
    #[command(after_help = QUERY_EXAMPLES)]
    Query {
        #[command(flatten)]
        query: QueryArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print the SQL a query runs (in the dialect of the warehouse it runs on).
    #[command(after_help = COMPILE_EXAMPLES)]
    Compile {
        #[command(flatten)]
        query: QueryArgs,
    },
    /// Serve the metrics over the PostgreSQL wire protocol, for psql and BI tools.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:5433")]
        listen: String,
    },
}

#[derive(Debug, clap::Args)]
struct QueryArgs {
    /// Metrics to compute, comma-separated.
    #[arg(long, short, value_delimiter = ',', required = true)]
    metrics: Vec<String>,
    /// Group by these, comma-separated: metric_time, entity__dimension, entity.
    #[arg(long, short, value_delimiter = ',')]
    group_by: Vec<String>,
    /// Group by metric_time at this grain.
    #[arg(long, value_enum)]
    grain: Option<GrainArg>,
    /// A condition over dimensions, e.g. "account__region = 'EMEA'".
    #[arg(long = "where", short = 'w')]
    filter: Option<String>,
    /// Sort by these output columns, comma-separated; `-name` sorts descending.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    order: Vec<String>,
    /// At most this many rows.
    #[arg(long)]
    limit: Option<u64>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum GrainArg {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

impl QueryArgs {
    fn to_query(&self) -> MetricQuery {
        MetricQuery {
            metrics: self
                .metrics
                .iter()
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect(),
            group_by: self
                .group_by
                .iter()
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .collect(),
            grain: self.grain.map(|g| match g {
                GrainArg::Day => Grain::Day,
                GrainArg::Week => Grain::Week,
                GrainArg::Month => Grain::Month,
                GrainArg::Quarter => Grain::Quarter,
                GrainArg::Year => Grain::Year,
            }),
            filter: self.filter.clone(),
            order: self.order.clone(),
            limit: self.limit,
        }
    }
}

pub fn run(args: Args) -> Result<Outcome> {
    let Some(project) = project_dir::load_valid(&args.project)? else {
        return Ok(Outcome::Problems);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let models = match Models::open(&project).await {
            Ok(m) => m,
            Err(err) => return fail(err),
        };
        let layer = MetricsLayer::new(&models);
        match args.command {
            Verb::List { dimensions } => {
                list(&layer, dimensions);
                Ok(Outcome::Success)
            }
            Verb::Compile { query } => match layer.compile(&query.to_query()) {
                Ok((compiled, warehouse)) => {
                    use ebb_warehouse::Warehouse as _;
                    say!("-- runs on the {} warehouse", warehouse.kind());
                    say!("{}", compiled.sql);
                    Ok(Outcome::Success)
                }
                Err(err) => fail(err),
            },
            Verb::Query { query, format } => match layer.collect(&query.to_query()).await {
                Ok((_, batches)) => {
                    print(&batches, format)?;
                    Ok(Outcome::Success)
                }
                Err(err) => fail(err),
            },
            Verb::Serve { listen } => {
                drop(layer);
                drop(models);
                match ebb_server::pgwire::serve(&project, &listen).await {
                    Ok(()) => Ok(Outcome::Success),
                    Err(err) => fail(err),
                }
            }
        }
    })
}

fn fail(err: impl std::fmt::Display) -> Result<Outcome> {
    eprintln!("error: {err}");
    Ok(Outcome::Problems)
}

fn list(layer: &MetricsLayer<'_, '_>, dimensions: bool) {
    let graph = layer.graph();
    let metrics: Vec<_> = graph.metrics().collect();
    if metrics.is_empty() {
        say!("No metrics: define them in metrics/*.yml (see docs/metrics.md).");
        return;
    }
    let width = metrics
        .iter()
        .map(|m| m.name.value.len())
        .max()
        .unwrap_or(8);
    for m in metrics {
        let kind = match m.kind.value {
            MetricType::Simple => "simple",
            MetricType::Ratio => "ratio",
            MetricType::Derived => "derived",
            MetricType::Cumulative => "cumulative",
        };
        let about = m
            .description
            .as_deref()
            .or(m.label.as_deref())
            .unwrap_or("");
        say!("{:<width$}  {kind:<10}  {about}", m.name.value);
        if dimensions {
            match ebb_engine::metrics::table::dimensions_of(graph, &m.name.value) {
                Ok(dims) => say!("{:<width$}  group by: {}", "", dims.join(", ")),
                Err(err) => say!("{:<width$}  group by: ({err})", ""),
            }
        }
    }
}

fn print(batches: &[RecordBatch], format: Format) -> Result<()> {
    use std::io::Write as _;
    let text = match format {
        Format::Table => format!("{}\n", pretty_format_batches(batches)?),
        Format::Csv => to_csv(batches)?,
        Format::Json => to_json(batches)?,
    };
    if std::io::stdout().lock().write_all(text.as_bytes()).is_err() {
        std::process::exit(0);
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn to_csv(batches: &[RecordBatch]) -> Result<String> {
    let (names, rows) = ebb_server::json::rows(batches)?;
    let mut out = names
        .iter()
        .map(|n| csv_field(n))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .map(|v| match v {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => csv_field(s),
                other => other.to_string(),
            })
            .collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    Ok(out)
}

fn to_json(batches: &[RecordBatch]) -> Result<String> {
    let (names, rows) = ebb_server::json::rows(batches)?;
    let array: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|row| serde_json::Value::Object(names.iter().cloned().zip(row).collect()))
        .collect();
    Ok(format!("{}\n", serde_json::to_string_pretty(&array)?))
}
