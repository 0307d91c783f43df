//! The real `psql` against `ebb metrics serve`: the same numbers as the metrics layer that
//! `ebb metrics query` prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use ebb_engine::metrics::{MetricQuery, MetricsLayer};
use ebb_engine::models::Models;
use ebb_server::pgwire::MetricsServer;

use super::common::load_project;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &dst.join(&*name));
        } else {
            std::fs::copy(&path, dst.join(&*name)).unwrap();
        }
    }
}

fn psql() -> PathBuf {
    let pg15 = PathBuf::from("/usr/lib/postgresql/15/bin/psql");
    if pg15.exists() {
        pg15
    } else {
        PathBuf::from("psql")
    }
}

/// Runs `sql` through psql: unaligned rows, `|`-separated fields.
fn run_psql(port: u16, sql: &str) -> Vec<Vec<String>> {
    let out = Command::new(psql())
        .args(["-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1"])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "analyst",
            "-d",
            "metrics",
        ])
        .args(["-c", sql])
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

/// The metrics layer's rows as text, numbers as f64 (what the CLI prints).
async fn layer_rows(layer: &MetricsLayer<'_, '_>, query: &MetricQuery) -> Vec<Vec<String>> {
    let (_, batches) = layer.collect(query).await.unwrap();
    let mut rows = Vec::new();
    for batch in &batches {
        let cols: Vec<Vec<String>> = batch
            .columns()
            .iter()
            .map(|c| {
                if c.data_type().is_numeric() {
                    let f = cast(c, &DataType::Float64).unwrap();
                    let f = f.as_primitive::<Float64Type>();
                    (0..f.len())
                        .map(|i| {
                            if f.is_null(i) {
                                String::new()
                            } else {
                                f.value(i).to_string()
                            }
                        })
                        .collect()
                } else {
                    let fmt =
                        ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).unwrap();
                    (0..c.len())
                        .map(|i| {
                            if c.is_null(i) {
                                String::new()
                            } else {
                                fmt.value(i).to_string()
                            }
                        })
                        .collect()
                }
            })
            .collect();
        for r in 0..batch.num_rows() {
            rows.push(cols.iter().map(|c| c[r].clone()).collect());
        }
    }
    rows
}

fn same(a: &[Vec<String>], b: &[Vec<String>]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} rows vs {}", a.len(), b.len()));
    }
    for (x, y) in a.iter().zip(b) {
        if x.len() != y.len() {
            return Err(format!("{x:?} vs {y:?}"));
        }
        for (u, v) in x.iter().zip(y) {
            let equal = match (u.parse::<f64>(), v.parse::<f64>()) {
                (Ok(p), Ok(q)) => (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0),
                _ => u == v,
            };
            if !equal {
                return Err(format!("{x:?} vs {y:?}"));
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_gets_the_numbers_the_cli_prints() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&example(), tmp.path());
    let project = load_project(tmp.path());
    let server = MetricsServer::bind(project.clone(), "127.0.0.1:0")
        .await
        .unwrap();
    let port = server.local_addr().unwrap().port();
    assert!(server.metrics().iter().any(|m| m == "revenue"));
    let task = tokio::spawn(server.run());

    let models = Models::open(&project).await.unwrap();
    let layer = MetricsLayer::new(&models);
    let query = |metrics: &[&str], group_by: &[&str]| MetricQuery {
        metrics: metrics.iter().map(|s| s.to_string()).collect(),
        group_by: group_by.iter().map(|s| s.to_string()).collect(),
        ..MetricQuery::default()
    };
    let cases = [
        (
            "select metric_time__month, revenue from revenue order by 1",
            query(&["revenue"], &["metric_time__month"]),
        ),
        (
            "select account__region, mrr from mrr order by account__region nulls last",
            query(&["mrr"], &["account__region"]),
        ),
        (
            "select metric_time__quarter, account__segment, revenue_per_account from revenue_per_account order by 1, 2",
            query(
                &["revenue_per_account"],
                &["metric_time__quarter", "account__segment"],
            ),
        ),
        (
            "select metric_time__month, revenue_growth from revenue_growth order by 1",
            query(&["revenue_growth"], &["metric_time__month"]),
        ),
        (
            "select invoice_count from invoice_count",
            query(&["invoice_count"], &[]),
        ),
    ];
    let mut failures = Vec::new();
    for (sql, q) in &cases {
        let sql = sql.to_string();
        let via_psql = tokio::task::spawn_blocking(move || run_psql(port, &sql))
            .await
            .unwrap();
        let via_layer = layer_rows(&layer, q).await;
        assert!(!via_layer.is_empty());
        if let Err(e) = same(&via_psql, &via_layer) {
            failures.push(format!("{q:?}: {e}"));
        }
    }
    // SQL on top of the tables: a filter and an outer aggregate.
    let total = tokio::task::spawn_blocking(move || {
        run_psql(
            port,
            "select sum(revenue) from revenue where account__region = 'EMEA'",
        )
    })
    .await
    .unwrap();
    let emea = layer_rows(&layer, &query(&["emea_revenue"], &[])).await;
    if let Err(e) = same(&total, &emea) {
        failures.push(format!("sum over EMEA: {e}"));
    }
    task.abort();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `POST /v1/metrics/query` of `ebb serve`: the same numbers as the metrics layer (and so as
/// `ebb metrics query` and psql).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_metrics_query_gets_the_numbers_the_cli_prints() {
    use ebb_server::serve::{ServeOptions, Server};
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&example(), tmp.path());
    let project = load_project(tmp.path());
    let store = ebb_state::StateStore::open_sqlite(tmp.path().join(".ebb/state.db"))
        .await
        .unwrap();
    let token = store
        .create_token("acme", &["metrics:read".to_string()])
        .await
        .unwrap()
        .plaintext;
    let options = ServeOptions {
        listen: "127.0.0.1:0".into(),
        scheduler: false,
        ..ServeOptions::default()
    };
    let server = Server::bind(project.clone(), store, options).await.unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let task = tokio::spawn(server.run(std::future::pending()));

    let models = Models::open(&project).await.unwrap();
    let layer = MetricsLayer::new(&models);
    let cases = [
        serde_json::json!({"metrics": ["revenue", "mrr"], "group_by": ["account__region"], "grain": "month"}),
        serde_json::json!({"metrics": ["revenue_per_account"], "group_by": ["account__segment"], "grain": "quarter"}),
        serde_json::json!({"metrics": ["revenue"], "where": "account__region = 'EMEA'", "order": ["-revenue"], "limit": 3, "group_by": ["account__plan"]}),
        serde_json::json!({"metrics": ["invoice_count"]}),
    ];
    let client = reqwest::Client::new();
    let mut failures = Vec::new();
    for body in &cases {
        let answer: serde_json::Value = client
            .post(format!("{base}/v1/metrics/query"))
            .bearer_auth(&token)
            .json(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = answer["rows"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}: {answer}"));
        let via_http: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| match v {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect();
        let strings = |key: &str| -> Vec<String> {
            body[key].as_array().map_or(Vec::new(), |a| {
                a.iter().map(|v| v.as_str().unwrap().to_string()).collect()
            })
        };
        let query = MetricQuery {
            metrics: strings("metrics"),
            group_by: strings("group_by"),
            grain: body["grain"].as_str().map(|g| match g {
                "month" => ebb_core::config::metrics::Grain::Month,
                _ => ebb_core::config::metrics::Grain::Quarter,
            }),
            filter: body["where"].as_str().map(str::to_string),
            order: strings("order"),
            limit: body["limit"].as_u64(),
        };
        let via_layer = layer_rows(&layer, &query).await;
        assert!(!via_layer.is_empty(), "{body}");
        if let Err(e) = same(&via_http, &via_layer) {
            failures.push(format!("{body}: {e}"));
        }
    }
    task.abort();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
