//! The metrics layer against hand-written SQL for the same question, on both engines.
//!
//! Each case is a metric query and an oracle: SQL written by hand over the models' results
//! (the relations `ebb models run` built), computing the same numbers a different way —
//! every measure aggregated on its own and joined at the end, windows as joins on month
//! numbers, offsets as self-joins. Both run on the lake (DataFusion) and on PostgreSQL
//! (the same project with its warehouse switched, as in the golden test); results are
//! compared row by row, numbers to a relative 1e-9.
//!
//! Two data sets: the example project (`models/`), and a generated shop (orders, customers,
//! visits) with NULLs, orphan keys and several seeds, where medians and percentiles are also
//! checked against values computed in Rust from the generated rows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use ebb_core::config::metrics::Grain;
use ebb_core::project::Project;
use ebb_engine::metrics::{MetricQuery, MetricsLayer, metric_per_entity};
use ebb_engine::models::Models;
use ebb_warehouse::Warehouse;
use futures::TryStreamExt;

use crate::golden::{copy_example, load_project, load_sources, run_all, switch_to_postgres};

/// A value as compared: text for dimensions, a number for metrics.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Text(String),
    Num(f64),
}

fn cells(batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in batches {
        let mut columns: Vec<Vec<Cell>> = Vec::new();
        for (col, field) in batch.columns().iter().zip(batch.schema().fields()) {
            let numeric = col.data_type().is_numeric()
                || (matches!(col.data_type(), DataType::Utf8)
                    && field.metadata().get("ebb.pg_type").map(String::as_str) == Some("numeric"));
            let values: Vec<Cell> = if numeric {
                let f = cast(col, &DataType::Float64).unwrap();
                let f = f.as_primitive::<Float64Type>();
                (0..f.len())
                    .map(|i| {
                        if f.is_null(i) {
                            Cell::Null
                        } else {
                            Cell::Num(f.value(i))
                        }
                    })
                    .collect()
            } else {
                let formatter = ArrayFormatter::try_new(col.as_ref(), &options).unwrap();
                (0..col.len())
                    .map(|i| {
                        if col.is_null(i) {
                            Cell::Null
                        } else {
                            Cell::Text(formatter.value(i).to_string())
                        }
                    })
                    .collect()
            };
            columns.push(values);
        }
        for r in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[r].clone()).collect());
        }
    }
    rows
}

/// Rows keyed by their first `dims` cells.
fn keyed(rows: Vec<Vec<Cell>>, dims: usize) -> BTreeMap<String, Vec<Cell>> {
    let mut out = BTreeMap::new();
    for row in rows {
        let key = format!("{:?}", &row[..dims]);
        assert!(
            out.insert(key.clone(), row).is_none(),
            "two rows for group {key}"
        );
    }
    out
}

fn close(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::Num(x), Cell::Num(y)) => {
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0) || (x.is_nan() && y.is_nan())
        }
        _ => a == b,
    }
}

/// A query and the SQL that answers it by hand. `{model}` in the oracle is replaced by the
/// model's relation on the warehouse under test.
struct Case {
    name: &'static str,
    query: MetricQuery,
    oracle: String,
}

fn q(metrics: &[&str], group_by: &[&str], grain: Option<Grain>) -> MetricQuery {
    MetricQuery {
        metrics: metrics.iter().map(|s| s.to_string()).collect(),
        group_by: group_by.iter().map(|s| s.to_string()).collect(),
        grain,
        ..MetricQuery::default()
    }
}

async fn run_sql(models: &Models<'_>, any_model: &str, sql: &str) -> Vec<RecordBatch> {
    let model = models.project().model(any_model).unwrap();
    models
        .warehouse(model)
        .unwrap()
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
}

/// Replaces `{model}` with each model's relation.
fn fill(models: &Models<'_>, oracle: &str) -> String {
    let mut out = oracle.to_string();
    for m in &models.project().models {
        let placeholder = format!("{{{}}}", m.name);
        if out.contains(&placeholder) {
            out = out.replace(&placeholder, &models.relation_or_subquery(&m.name).unwrap());
        }
    }
    out
}

/// Runs every case on `models`; returns the failures (empty when all agree).
async fn check_cases(models: &Models<'_>, any_model: &str, cases: &[Case]) -> Vec<String> {
    let layer = MetricsLayer::new(models);
    let mut failures = Vec::new();
    for case in cases {
        let dims = case.query.group_by.len()
            + usize::from(
                case.query.grain.is_some()
                    && !case
                        .query
                        .group_by
                        .iter()
                        .any(|g| g.starts_with("metric_time")),
            );
        let (compiled, got) = match layer.collect(&case.query).await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: the query failed: {e}", case.name));
                continue;
            }
        };
        let expected = run_sql(models, any_model, &fill(models, &case.oracle)).await;
        let got = keyed(cells(&got), dims);
        let expected = keyed(cells(&expected), dims);
        assert!(
            !expected.is_empty(),
            "{}: the oracle returned no rows",
            case.name
        );
        let mut problems = Vec::new();
        for (key, want) in &expected {
            match got.get(key) {
                None => problems.push(format!("group {key} missing")),
                Some(row) => {
                    if row.len() != want.len() {
                        problems.push(format!("{} columns, oracle has {}", row.len(), want.len()));
                    } else if let Some(c) = (dims..row.len()).find(|&c| !close(&row[c], &want[c])) {
                        problems.push(format!(
                            "group {key}, column {}: {:?}, oracle {:?}",
                            compiled.columns[c].name, row[c], want[c]
                        ));
                    }
                }
            }
        }
        for (key, row) in &got {
            if !expected.contains_key(key) && row[dims..].iter().any(|c| *c != Cell::Null) {
                problems.push(format!("extra group {key}: {row:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({} problems), first: {}\n--- compiled:\n{}",
                case.name,
                problems.len(),
                problems[0],
                compiled.sql
            ));
        }
    }
    failures
}

const MONTH: &str = "CAST(date_trunc('month', CAST(issued_at AS TIMESTAMP)) AS DATE)";

fn example_cases() -> Vec<Case> {
    let mut cases = vec![
        Case {
            name: "sum by month",
            query: q(&["revenue"], &[], Some(Grain::Month)),
            oracle: format!(
                "SELECT {MONTH}, CAST(SUM(paid_amount_usd) AS DOUBLE PRECISION) FROM {{fct_invoices}} GROUP BY {MONTH}"
            ),
        },
        Case {
            name: "each aggregation over invoices, by plan",
            query: q(
                &[
                    "invoice_count",
                    "invoiced_accounts",
                    "paid_invoices",
                    "median_invoice",
                    "p90_invoice",
                    "largest_invoice",
                    "smallest_invoice",
                ],
                &["invoice__plan"],
                None,
            ),
            oracle: "SELECT plan, COUNT(invoice_id), COUNT(DISTINCT account_id), \
                     SUM(CASE WHEN is_paid THEN 1 ELSE 0 END), \
                     percentile_cont(0.5) WITHIN GROUP (ORDER BY CAST(amount_usd AS DOUBLE PRECISION)), \
                     percentile_cont(0.9) WITHIN GROUP (ORDER BY CAST(amount_usd AS DOUBLE PRECISION)), \
                     CAST(MAX(amount_usd) AS DOUBLE PRECISION), CAST(MIN(amount_usd) AS DOUBLE PRECISION) \
                     FROM {fct_invoices} GROUP BY plan"
                .into(),
        },
        Case {
            name: "average and sum_boolean over tickets, by priority",
            query: q(&["csat", "open_tickets", "ticket_count"], &["ticket__priority"], None),
            oracle: "SELECT priority, AVG(CAST(csat AS DOUBLE PRECISION)), \
                     SUM(CASE WHEN is_open THEN 1 ELSE 0 END), COUNT(ticket_id) \
                     FROM {stg_support_tickets} GROUP BY priority"
                .into(),
        },
        Case {
            // Four measures from four semantic models, one of them (accounts) on the one side of
            // every join: a single join of all four would multiply each by the others' rows.
            name: "measures of four models by a joined dimension (no fan-out)",
            query: q(
                &["revenue", "ticket_count", "mrr", "account_count"],
                &["account__region"],
                None,
            ),
            oracle: "WITH r AS (SELECT a.region, SUM(i.paid_amount_usd) AS v FROM {fct_invoices} i \
                       LEFT JOIN {dim_accounts} a ON i.account_id = a.account_id GROUP BY a.region), \
                     t AS (SELECT a.region, COUNT(t.ticket_id) AS v FROM {stg_support_tickets} t \
                       LEFT JOIN {dim_accounts} a ON t.account_id = a.account_id GROUP BY a.region), \
                     s AS (SELECT a.region, SUM(s.active_mrr_usd) AS v FROM {stg_subscriptions} s \
                       LEFT JOIN {dim_accounts} a ON s.account_id = a.account_id GROUP BY a.region), \
                     c AS (SELECT region, COUNT(account_id) AS v FROM {dim_accounts} GROUP BY region), \
                     k AS (SELECT region FROM r UNION SELECT region FROM t UNION SELECT region FROM s \
                       UNION SELECT region FROM c) \
                     SELECT k.region, CAST(r.v AS DOUBLE PRECISION), t.v, CAST(s.v AS DOUBLE PRECISION), c.v \
                     FROM k LEFT JOIN r ON (r.region IS NOT DISTINCT FROM k.region) \
                     LEFT JOIN t ON (t.region IS NOT DISTINCT FROM k.region) \
                     LEFT JOIN s ON (s.region IS NOT DISTINCT FROM k.region) \
                     LEFT JOIN c ON (c.region IS NOT DISTINCT FROM k.region)"
                .into(),
        },
        Case {
            name: "ratio metrics by the invoice's own region",
            query: q(&["avg_invoice", "collection_rate", "revenue_per_account"], &["invoice__region"], None),
            oracle: "SELECT region, CAST(SUM(amount_usd) AS DOUBLE PRECISION) / COUNT(invoice_id), \
                     CAST(SUM(paid_amount_usd) AS DOUBLE PRECISION) / CAST(SUM(amount_usd) AS DOUBLE PRECISION), \
                     CAST(SUM(paid_amount_usd) AS DOUBLE PRECISION) / COUNT(DISTINCT account_id) \
                     FROM {fct_invoices} GROUP BY region"
                .into(),
        },
        Case {
            name: "derived with a one-month offset",
            query: q(&["revenue_growth"], &[], Some(Grain::Month)),
            oracle: format!(
                "WITH m AS (SELECT {MONTH} AS p, SUM(paid_amount_usd) AS v FROM {{fct_invoices}} GROUP BY {MONTH}) \
                 SELECT cur.p, CAST(cur.v AS DOUBLE PRECISION) - CAST(prev.v AS DOUBLE PRECISION) \
                 FROM m cur LEFT JOIN m prev ON prev.p = CAST(cur.p - INTERVAL '1 month' AS DATE)"
            ),
        },
        Case {
            name: "derived without offset, through a join",
            query: q(&["arr"], &["account__segment"], None),
            oracle: "SELECT a.segment, CAST(SUM(s.active_mrr_usd) AS DOUBLE PRECISION) * 12 \
                     FROM {stg_subscriptions} s LEFT JOIN {dim_accounts} a ON s.account_id = a.account_id \
                     GROUP BY a.segment"
                .into(),
        },
        Case {
            name: "cumulative, 3-month window",
            query: q(&["revenue_3m"], &[], Some(Grain::Month)),
            oracle: format!(
                "WITH m AS (SELECT DISTINCT {MONTH} AS p FROM {{fct_invoices}}), \
                 i AS (SELECT {MONTH} AS p, paid_amount_usd AS v FROM {{fct_invoices}}) \
                 SELECT m.p, CAST(SUM(i.v) AS DOUBLE PRECISION) FROM m JOIN i \
                 ON i.p <= m.p AND i.p >= CAST(m.p - INTERVAL '2 month' AS DATE) GROUP BY m.p"
            ),
        },
        Case {
            name: "cumulative, month to date, by day",
            query: q(&["revenue_mtd"], &["metric_time__day"], None),
            oracle: "WITH d AS (SELECT DISTINCT CAST(issued_at AS DATE) AS p FROM {fct_invoices}) \
                     SELECT d.p, CAST(SUM(i.paid_amount_usd) AS DOUBLE PRECISION) FROM d JOIN {fct_invoices} i \
                     ON CAST(i.issued_at AS DATE) <= d.p \
                     AND CAST(date_trunc('month', CAST(i.issued_at AS TIMESTAMP)) AS DATE) = CAST(date_trunc('month', CAST(d.p AS TIMESTAMP)) AS DATE) \
                     GROUP BY d.p"
                .into(),
        },
        Case {
            name: "cumulative, all time, by quarter and account region",
            query: q(&["revenue_all_time"], &["account__region"], Some(Grain::Quarter)),
            oracle: "WITH i AS (SELECT CAST(date_trunc('quarter', CAST(f.issued_at AS TIMESTAMP)) AS DATE) AS p, \
                       a.region, f.paid_amount_usd AS v FROM {fct_invoices} f \
                       LEFT JOIN {dim_accounts} a ON f.account_id = a.account_id), \
                     k AS (SELECT DISTINCT p, region FROM i) \
                     SELECT k.p, k.region, CAST(SUM(i.v) AS DOUBLE PRECISION) FROM k JOIN i \
                     ON i.p <= k.p AND (i.region IS NOT DISTINCT FROM k.region) GROUP BY k.p, k.region"
                .into(),
        },
        Case {
            name: "metric filter through a join, and a two-hop dimension",
            query: q(&["emea_revenue"], &["subscription__plan"], None),
            oracle: "SELECT s.plan, CAST(SUM(f.paid_amount_usd) AS DOUBLE PRECISION) FROM {fct_invoices} f \
                     LEFT JOIN {dim_accounts} a ON f.account_id = a.account_id \
                     LEFT JOIN {stg_subscriptions} s ON f.subscription_id = s.subscription_id \
                     WHERE a.region = 'EMEA' GROUP BY s.plan"
                .into(),
        },
        Case {
            name: "dimension reached through two entities",
            query: q(&["invoice_count"], &["subscription__account__industry"], None),
            oracle: "SELECT a.industry, COUNT(f.invoice_id) FROM {fct_invoices} f \
                     LEFT JOIN {stg_subscriptions} s ON f.subscription_id = s.subscription_id \
                     LEFT JOIN {dim_accounts} a ON s.account_id = a.account_id GROUP BY a.industry"
                .into(),
        },
        Case {
            name: "entity as the group",
            query: q(&["mrr"], &["account"], None),
            oracle: "SELECT account_id, CAST(SUM(active_mrr_usd) AS DOUBLE PRECISION) FROM {stg_subscriptions} GROUP BY account_id"
                .into(),
        },
        Case {
            name: "time dimension of a joined model at a grain",
            query: q(&["invoice_count"], &["account__created_at__year"], None),
            oracle: "SELECT CAST(date_trunc('year', CAST(a.created_at AS TIMESTAMP)) AS DATE), COUNT(f.invoice_id) \
                     FROM {fct_invoices} f LEFT JOIN {dim_accounts} a ON f.account_id = a.account_id GROUP BY 1"
                .into(),
        },
    ];
    let mut filtered = q(
        &["revenue", "invoice_count"],
        &["account__segment"],
        Some(Grain::Year),
    );
    filtered.filter = Some(
        "account__region in ('EMEA', 'NA') and not invoice__status = 'void' and metric_time >= '2025-03-01'"
            .into(),
    );
    cases.push(Case {
        name: "--where over joined and local dimensions and metric_time",
        query: filtered,
        oracle:
            "SELECT CAST(date_trunc('year', CAST(f.issued_at AS TIMESTAMP)) AS DATE), a.segment, \
                 CAST(SUM(f.paid_amount_usd) AS DOUBLE PRECISION), COUNT(f.invoice_id) \
                 FROM {fct_invoices} f LEFT JOIN {dim_accounts} a ON f.account_id = a.account_id \
                 WHERE a.region IN ('EMEA', 'NA') AND f.status <> 'void' \
                 AND CAST(f.issued_at AS DATE) >= DATE '2025-03-01' GROUP BY 1, 2"
                .into(),
    });
    cases
}

/// The example project on the lake and on PostgreSQL, models run on both.
async fn example_on_both(tmp: &Path) -> (Project, Project, ebb_testkit::TestDatabase) {
    let lake_root = tmp.join("lake");
    let pg_root = tmp.join("postgres");
    copy_example(&lake_root);
    copy_example(&pg_root);
    let db = ebb_testkit::PgCluster::shared().fresh_database().await;
    let lake = load_project(&lake_root);
    load_sources(&lake, &db.connect().await).await;
    switch_to_postgres(&pg_root, &db.url());
    (lake, load_project(&pg_root), db)
}

#[tokio::test]
async fn example_metrics_match_hand_written_sql_on_the_lake_and_postgres() {
    let tmp = tempfile::tempdir().unwrap();
    let (lake_project, pg_project, _db) = example_on_both(tmp.path()).await;
    let cases = example_cases();
    let mut failures = Vec::new();
    for (label, project) in [("lake", &lake_project), ("postgres", &pg_project)] {
        let models = Models::open(project).await.unwrap();
        run_all(&models).await;
        for f in check_cases(&models, "fct_invoices", &cases).await {
            failures.push(format!("[{label}] {f}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test]
async fn a_fan_out_join_would_inflate_what_the_metrics_layer_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lake");
    copy_example(&root);
    let project = load_project(&root);
    let models = Models::open(&project).await.unwrap();
    let layer = MetricsLayer::new(&models);
    let (_, batches) = layer
        .collect(&q(&["revenue", "ticket_count"], &["account__region"], None))
        .await
        .unwrap();
    let rows = cells(&batches);
    let total_revenue: f64 = rows
        .iter()
        .map(|r| match r[1] {
            Cell::Num(v) => v,
            _ => 0.0,
        })
        .sum();
    let (_, total) = layer.collect(&q(&["revenue"], &[], None)).await.unwrap();
    let Cell::Num(expected) = cells(&total)[0][0] else {
        panic!("no total")
    };
    assert!(
        (total_revenue - expected).abs() < 1e-6 * expected,
        "revenue over regions {total_revenue} != total {expected}"
    );
    // The naive query joins invoices and tickets through accounts: each invoice repeats once
    // per ticket of its account. It must differ, or this test would prove nothing.
    let naive = run_sql(
        &models,
        "fct_invoices",
        &fill(
            &models,
            "SELECT CAST(SUM(i.paid_amount_usd) AS DOUBLE PRECISION) FROM {dim_accounts} a \
             JOIN {fct_invoices} i ON i.account_id = a.account_id \
             JOIN {stg_support_tickets} t ON t.account_id = a.account_id",
        ),
    )
    .await;
    let Cell::Num(naive) = cells(&naive)[0][0] else {
        panic!("no naive total")
    };
    assert!(
        naive > expected * 2.0,
        "the naive join should inflate revenue ({naive} vs {expected})"
    );
}

#[tokio::test]
async fn metric_per_entity_gives_one_row_per_account() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lake");
    copy_example(&root);
    let project = load_project(&root);
    let models = Models::open(&project).await.unwrap();
    let batches: Vec<RecordBatch> = metric_per_entity(&models, "mrr", "account")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let schema = batches[0].schema();
    assert_eq!(schema.field(0).name(), "account");
    assert_eq!(schema.field(1).name(), "mrr");
    let rows = cells(&batches);
    let expected = cells(
        &run_sql(
            &models,
            "stg_subscriptions",
            &fill(
                &models,
                "SELECT account_id, CAST(SUM(active_mrr_usd) AS DOUBLE PRECISION) FROM {stg_subscriptions} GROUP BY account_id",
            ),
        )
        .await,
    );
    assert_eq!(keyed(rows, 1).len(), keyed(expected, 1).len());
}

#[tokio::test]
async fn bad_queries_are_refused_with_what_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lake");
    copy_example(&root);
    let project = load_project(&root);
    let models = Models::open(&project).await.unwrap();
    let layer = MetricsLayer::new(&models);
    let err = |query: MetricQuery| {
        let e = layer.compile(&query).map(|_| ()).unwrap_err();
        e.to_string()
    };
    assert!(err(q(&["revenu"], &[], None)).contains("did you mean \"revenue\""));
    assert!(err(q(&["revenue"], &["region"], None)).contains("account__region"));
    assert!(err(q(&["revenue"], &["account__regio"], None)).contains("did you mean \"region\""));
    assert!(err(q(&["mrr"], &["invoice__status"], None)).contains("no entity \"invoice\""));
    assert!(err(q(&["revenue_3m"], &[], None)).contains("group by metric_time"));
    let mut injected = q(&["revenue"], &[], None);
    injected.filter = Some("account__region = 'EMEA' or 1=1; drop table x".into());
    assert!(err(injected).contains("filter"));
    let mut function = q(&["revenue"], &[], None);
    function.filter = Some("lower(account__region) = 'emea'".into());
    assert!(err(function).contains("not allowed"));
    let mut unknown = q(&["revenue"], &[], None);
    unknown.filter = Some("account__nope = 1".into());
    assert!(err(unknown).contains("no dimension \"nope\""));
    let mut order = q(&["revenue"], &["account__region"], None);
    order.order = vec!["-mrr".into()];
    assert!(err(order).contains("--order"));
}

// ---- generated data ----------------------------------------------------------------------

struct Shop {
    orders: Vec<Order>,
}

struct Order {
    channel: Option<&'static str>,
    amount: Option<f64>,
}

/// Writes a shop project under `root` from `seed`.
fn write_shop(root: &Path, seed: u64) -> Shop {
    let mut rng = fastrand::Rng::with_seed(seed);
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(root.join("models")).unwrap();
    std::fs::create_dir_all(root.join("metrics")).unwrap();
    let countries = ["DE", "FR", "US", "BR", "JP"];
    let segments = ["smb", "mid", "ent"];
    let n_customers = 40 + rng.usize(..40);
    let mut csv = String::from("customer_id,country,segment,signup_at\n");
    for id in 1..=n_customers {
        let country = if rng.u8(..10) == 0 {
            ""
        } else {
            countries[rng.usize(..countries.len())]
        };
        let _ = writeln!(
            csv,
            "{id},{country},{},2024-{:02}-{:02}",
            segments[rng.usize(..segments.len())],
            1 + rng.u8(..12),
            1 + rng.u8(..28)
        );
    }
    std::fs::write(data.join("customers.csv"), csv).unwrap();

    let channels = ["web", "store", "phone"];
    let mut orders = Vec::new();
    let mut csv = String::from("order_id,customer_id,ordered_at,channel,amount,quantity,is_gift\n");
    for id in 1..=(300 + rng.usize(..300)) {
        // Some orders point at customers that do not exist: their dimensions are NULL.
        let customer = 1 + rng.usize(..n_customers + 5);
        let month = rng.u8(..15);
        let (year, month) = (2025 + u32::from(month) / 12, 1 + u32::from(month) % 12);
        let channel = if rng.u8(..12) == 0 {
            None
        } else {
            Some(channels[rng.usize(..3)])
        };
        let amount = if rng.u8(..15) == 0 {
            None
        } else {
            Some(f64::from(rng.u32(100..100_000)) / 100.0)
        };
        let _ = writeln!(
            csv,
            "{id},{customer},{year}-{month:02}-{:02}T{:02}:{:02}:00,{},{},{},{}",
            1 + rng.u8(..28),
            rng.u8(..24),
            rng.u8(..60),
            channel.unwrap_or(""),
            amount.map(|a| format!("{a:.2}")).unwrap_or_default(),
            1 + rng.u8(..5),
            rng.bool()
        );
        orders.push(Order { channel, amount });
    }
    std::fs::write(data.join("orders.csv"), csv).unwrap();

    let mut csv = String::from("visit_id,customer_id,visited_at,duration_s\n");
    for id in 1..=(200 + rng.usize(..400)) {
        let month = rng.u8(..15);
        let (year, month) = (2025 + u32::from(month) / 12, 1 + u32::from(month) % 12);
        let _ = writeln!(
            csv,
            "{id},{},{year}-{month:02}-{:02}T12:00:00,{}",
            1 + rng.usize(..n_customers),
            1 + rng.u8(..28),
            rng.u32(5..600)
        );
    }
    std::fs::write(data.join("visits.csv"), csv).unwrap();

    std::fs::write(
        root.join("ebb.yml"),
        "name: shop\nversion: 1\nwarehouses:\n  lake:\n    type: lake\n    path: data\n\
         default_warehouse: lake\nsources:\n  shop:\n    warehouse: lake\n    tables:\n\
         \x20     customers:\n        path: customers.csv\n        format: csv\n\
         \x20     orders:\n        path: orders.csv\n        format: csv\n\
         \x20     visits:\n        path: visits.csv\n        format: csv\n\
         defaults:\n  materialized: view\n",
    )
    .unwrap();
    let models = [
        (
            "orders",
            "select cast(order_id as bigint) as order_id, cast(customer_id as bigint) as customer_id, \
             cast(ordered_at as timestamp) as ordered_at, channel, cast(amount as decimal(12, 2)) as amount, \
             cast(quantity as integer) as quantity, cast(is_gift as boolean) as is_gift \
             from {{ source('shop', 'orders') }}",
        ),
        (
            "customers",
            "select cast(customer_id as bigint) as customer_id, country, segment, \
             cast(signup_at as date) as signup_at from {{ source('shop', 'customers') }}",
        ),
        (
            "visits",
            "select cast(visit_id as bigint) as visit_id, cast(customer_id as bigint) as customer_id, \
             cast(visited_at as timestamp) as visited_at, cast(duration_s as double precision) as duration_s \
             from {{ source('shop', 'visits') }}",
        ),
    ];
    for (name, sql) in models {
        std::fs::write(root.join("models").join(format!("{name}.sql")), sql).unwrap();
    }
    std::fs::write(
        root.join("metrics/shop.yml"),
        r#"semantic_models:
  - name: orders
    model: ref('orders')
    defaults: { agg_time_dimension: ordered_at }
    entities:
      - { name: order, type: primary, expr: order_id }
      - { name: customer, type: foreign, expr: customer_id }
    dimensions:
      - { name: ordered_at, type: time, type_params: { time_granularity: day } }
      - { name: channel, type: categorical }
      - { name: is_gift, type: categorical }
    measures:
      - { name: order_total, agg: sum, expr: amount }
      - { name: order_count, agg: count, expr: order_id }
      - { name: amount_count, agg: count, expr: amount }
      - { name: buyers, agg: count_distinct, expr: customer_id }
      - { name: avg_amount, agg: average, expr: amount }
      - { name: min_amount, agg: min, expr: amount }
      - { name: max_amount, agg: max, expr: amount }
      - { name: median_amount, agg: median, expr: amount }
      - { name: p75_amount, agg: percentile, expr: amount, agg_params: { percentile: 0.75 } }
      - { name: p75_amount_disc, agg: percentile, expr: amount, agg_params: { percentile: 0.75, use_discrete_percentile: true } }
      - { name: gifts, agg: sum_boolean, expr: is_gift }
      - { name: units, agg: sum, expr: quantity }
  - name: customers
    model: customers
    defaults: { agg_time_dimension: signup_at }
    entities:
      - { name: customer, type: primary, expr: customer_id }
    dimensions:
      - { name: signup_at, type: time, type_params: { time_granularity: day } }
      - { name: country, type: categorical }
      - { name: segment, type: categorical }
    measures:
      - { name: customer_count, agg: count, expr: customer_id }
  - name: visits
    model: visits
    defaults: { agg_time_dimension: visited_at }
    entities:
      - { name: visit, type: primary, expr: visit_id }
      - { name: customer, type: foreign, expr: customer_id }
    dimensions:
      - { name: visited_at, type: time, type_params: { time_granularity: day } }
    measures:
      - { name: visit_count, agg: count, expr: visit_id }
      - { name: avg_duration, agg: average, expr: duration_s }
metrics:
  - { name: order_total, type: simple, type_params: { measure: order_total } }
  - { name: order_count, type: simple, type_params: { measure: order_count } }
  - { name: amount_count, type: simple, type_params: { measure: amount_count } }
  - { name: buyers, type: simple, type_params: { measure: buyers } }
  - { name: avg_amount, type: simple, type_params: { measure: avg_amount } }
  - { name: min_amount, type: simple, type_params: { measure: min_amount } }
  - { name: max_amount, type: simple, type_params: { measure: max_amount } }
  - { name: median_amount, type: simple, type_params: { measure: median_amount } }
  - { name: p75_amount, type: simple, type_params: { measure: p75_amount } }
  - { name: p75_amount_disc, type: simple, type_params: { measure: p75_amount_disc } }
  - { name: gifts, type: simple, type_params: { measure: gifts } }
  - { name: units, type: simple, type_params: { measure: units } }
  - { name: customer_count, type: simple, type_params: { measure: customer_count } }
  - { name: visit_count, type: simple, type_params: { measure: visit_count } }
  - { name: avg_duration, type: simple, type_params: { measure: avg_duration } }
  - name: web_total
    type: simple
    type_params: { measure: order_total }
    filter: "{{ Dimension('order__channel') }} = 'web'"
  - name: total_per_visit
    type: ratio
    type_params: { numerator: order_total, denominator: visit_count }
  - name: web_share
    type: ratio
    type_params: { numerator: web_total, denominator: order_total }
  - name: total_change
    type: derived
    type_params:
      expr: order_total - previous
      metrics: [order_total, { name: order_total, offset_window: 1 month, alias: previous }]
  - name: units_per_order
    type: derived
    type_params: { expr: units / order_count, metrics: [units, order_count] }
  - { name: total_3m, type: cumulative, type_params: { measure: order_total, window: 3 months } }
  - { name: total_ytd, type: cumulative, type_params: { measure: order_total, grain_to_date: year } }
  - { name: buyers_all_time, type: cumulative, type_params: { measure: buyers } }
"#,
    )
    .unwrap();
    Shop { orders }
}

const OMONTH: &str = "CAST(date_trunc('month', CAST(ordered_at AS TIMESTAMP)) AS DATE)";

fn shop_cases() -> Vec<Case> {
    vec![
        Case {
            name: "every aggregation by channel",
            query: q(
                &[
                    "order_total", "order_count", "amount_count", "buyers", "avg_amount",
                    "min_amount", "max_amount", "median_amount", "p75_amount", "gifts", "units",
                ],
                &["order__channel"],
                None,
            ),
            oracle: "SELECT channel, CAST(SUM(amount) AS DOUBLE PRECISION), COUNT(order_id), COUNT(amount), \
                     COUNT(DISTINCT customer_id), AVG(CAST(amount AS DOUBLE PRECISION)), \
                     CAST(MIN(amount) AS DOUBLE PRECISION), CAST(MAX(amount) AS DOUBLE PRECISION), \
                     percentile_cont(0.5) WITHIN GROUP (ORDER BY CAST(amount AS DOUBLE PRECISION)), \
                     percentile_cont(0.75) WITHIN GROUP (ORDER BY CAST(amount AS DOUBLE PRECISION)), \
                     SUM(CASE WHEN is_gift THEN 1 ELSE 0 END), SUM(quantity) \
                     FROM {orders} GROUP BY channel"
                .into(),
        },
        Case {
            name: "three models by a customer dimension with NULLs and orphans",
            query: q(&["order_total", "visit_count", "customer_count", "total_per_visit"], &["customer__country"], None),
            oracle: "WITH o AS (SELECT c.country, SUM(o.amount) AS v FROM {orders} o \
                       LEFT JOIN {customers} c ON o.customer_id = c.customer_id GROUP BY c.country), \
                     v AS (SELECT c.country, COUNT(v.visit_id) AS v FROM {visits} v \
                       LEFT JOIN {customers} c ON v.customer_id = c.customer_id GROUP BY c.country), \
                     n AS (SELECT country, COUNT(customer_id) AS v FROM {customers} GROUP BY country), \
                     k AS (SELECT country FROM o UNION SELECT country FROM v UNION SELECT country FROM n) \
                     SELECT k.country, CAST(o.v AS DOUBLE PRECISION), v.v, n.v, \
                     CAST(o.v AS DOUBLE PRECISION) / CAST(v.v AS DOUBLE PRECISION) \
                     FROM k LEFT JOIN o ON (o.country IS NOT DISTINCT FROM k.country) \
                     LEFT JOIN v ON (v.country IS NOT DISTINCT FROM k.country) \
                     LEFT JOIN n ON (n.country IS NOT DISTINCT FROM k.country)"
                .into(),
        },
        Case {
            name: "filtered metric, ratio of filtered over all, derived division, by month",
            query: q(&["web_total", "web_share", "units_per_order"], &[], Some(Grain::Month)),
            oracle: format!(
                "SELECT {OMONTH}, CAST(SUM(CASE WHEN channel = 'web' THEN amount END) AS DOUBLE PRECISION), \
                 CAST(SUM(CASE WHEN channel = 'web' THEN amount END) AS DOUBLE PRECISION) / CAST(SUM(amount) AS DOUBLE PRECISION), \
                 CAST(SUM(quantity) AS DOUBLE PRECISION) / CAST(COUNT(order_id) AS DOUBLE PRECISION) \
                 FROM {{orders}} GROUP BY {OMONTH}"
            ),
        },
        Case {
            name: "offset by month within segment",
            query: q(&["total_change"], &["customer__segment"], Some(Grain::Month)),
            oracle:                 "WITH m AS (SELECT CAST(date_trunc('month', CAST(o.ordered_at AS TIMESTAMP)) AS DATE) AS p, c.segment AS s, \
                   SUM(o.amount) AS v FROM {orders} o LEFT JOIN {customers} c ON o.customer_id = c.customer_id GROUP BY 1, 2) \
                 SELECT cur.p, cur.s, CAST(cur.v AS DOUBLE PRECISION) - CAST(prev.v AS DOUBLE PRECISION) \
                 FROM m cur LEFT JOIN m prev ON prev.p = CAST(cur.p - INTERVAL '1 month' AS DATE) \
                 AND (prev.s IS NOT DISTINCT FROM cur.s)"
                .into(),
        },
        Case {
            name: "rolling 3 months and year to date",
            query: q(&["total_3m", "total_ytd"], &[], Some(Grain::Month)),
            oracle: format!(
                "WITH m AS (SELECT DISTINCT {OMONTH} AS p FROM {{orders}}), \
                 o AS (SELECT {OMONTH} AS p, amount AS v FROM {{orders}}) \
                 SELECT m.p, \
                 CAST(SUM(CASE WHEN o.p >= CAST(m.p - INTERVAL '2 month' AS DATE) THEN o.v END) AS DOUBLE PRECISION), \
                 CAST(SUM(CASE WHEN date_trunc('year', CAST(o.p AS TIMESTAMP)) = date_trunc('year', CAST(m.p AS TIMESTAMP)) THEN o.v END) AS DOUBLE PRECISION) \
                 FROM m JOIN o ON o.p <= m.p GROUP BY m.p"
            ),
        },
        Case {
            name: "distinct buyers to date, by week",
            query: q(&["buyers_all_time"], &["metric_time__week"], None),
            oracle: "WITH w AS (SELECT DISTINCT CAST(date_trunc('week', CAST(ordered_at AS TIMESTAMP)) AS DATE) AS p FROM {orders}) \
                     SELECT w.p, COUNT(DISTINCT o.customer_id) FROM w JOIN {orders} o \
                     ON CAST(date_trunc('week', CAST(o.ordered_at AS TIMESTAMP)) AS DATE) <= w.p GROUP BY w.p"
                .into(),
        },
    ]
}

/// Medians and percentiles of the generated amounts, computed in Rust.
fn percentiles(shop: &Shop, channel: Option<&str>) -> (f64, f64, f64) {
    let mut v: Vec<f64> = shop
        .orders
        .iter()
        .filter(|o| o.channel == channel)
        .filter_map(|o| o.amount)
        .collect();
    v.sort_by(f64::total_cmp);
    let cont = |p: f64| {
        let pos = p * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    let disc = v[((0.75 * v.len() as f64).ceil() as usize).max(1) - 1];
    (cont(0.5), cont(0.75), disc)
}

#[tokio::test]
async fn generated_metrics_match_hand_written_sql_on_the_lake_and_postgres() {
    let mut failures = Vec::new();
    for seed in [7_u64, 1234, 98_765] {
        let tmp = tempfile::tempdir().unwrap();
        let lake_root = tmp.path().join("lake");
        let pg_root = tmp.path().join("postgres");
        let shop = write_shop(&lake_root, seed);
        write_shop(&pg_root, seed);
        let db = ebb_testkit::PgCluster::shared().fresh_database().await;
        let lake_project = load_project(&lake_root);
        load_sources(&lake_project, &db.connect().await).await;
        switch_to_postgres(&pg_root, &db.url());
        let pg_project = load_project(&pg_root);
        for (label, project) in [("lake", &lake_project), ("postgres", &pg_project)] {
            let models = Models::open(project).await.unwrap();
            run_all(&models).await;
            for f in check_cases(&models, "orders", &shop_cases()).await {
                failures.push(format!("[seed {seed}, {label}] {f}"));
            }
            // Percentiles against Rust, per channel (NULL channel included).
            let layer = MetricsLayer::new(&models);
            let (_, batches) = layer
                .collect(&q(
                    &["median_amount", "p75_amount", "p75_amount_disc"],
                    &["order__channel"],
                    None,
                ))
                .await
                .unwrap();
            for row in cells(&batches) {
                let channel = match &row[0] {
                    Cell::Text(t) => Some(
                        ["web", "store", "phone"]
                            .into_iter()
                            .find(|c| c == t)
                            .unwrap(),
                    ),
                    _ => None,
                };
                let (median, p75, disc) = percentiles(&shop, channel);
                for (i, want) in [(1, median), (2, p75), (3, disc)] {
                    if !close(&row[i], &Cell::Num(want)) {
                        failures.push(format!(
                            "[seed {seed}, {label}] channel {channel:?} column {i}: {:?}, Rust says {want}",
                            row[i]
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
