//! Models on a lake of real files: compile, order, run, contracts and tests.

use std::path::Path;

use arrow::array::{Array, Int64Array};
use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use ebb_core::project::{Project, ProjectSource, SourceFile, load};
use ebb_engine::EngineError;
use ebb_engine::models::Models;

const EBB_YML: &str = "\
name: shop
warehouses:
  lake: { type: lake, path: data }
sources:
  app:
    tables:
      orders: { path: orders.csv }
      customers: { path: customers.csv }
";

const ORDERS: &str = "order_id,customer_id,status,amount\n1,10,paid,12.50\n2,10,paid,7.25\n3,11,open,100.00\n4,12,void,\n5,99,paid,3.00\n";
const CUSTOMERS: &str = "customer_id,email\n10,a@x.io\n11,b@x.io\n12,\n12,dup@x.io\n";

/// Writes `files` (path, text) under `root` and loads the project, which must be valid.
fn project(root: &Path, files: &[(&str, &str)]) -> Project {
    let mut source = ProjectSource {
        root: root.to_path_buf(),
        files: Vec::new(),
    };
    for (path, text) in files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, text).unwrap();
        if !path.starts_with("data/") {
            source.files.push(SourceFile {
                path: path.into(),
                text: text.to_string(),
            });
        }
    }
    let env = |_: &str| None;
    let loaded = load(&source, &env);
    assert_eq!(loaded.errors(), 0, "{:#?}", loaded.diagnostics);
    loaded.project
}

fn base_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ebb.yml", EBB_YML),
        ("data/orders.csv", ORDERS),
        ("data/customers.csv", CUSTOMERS),
        (
            "models/stg_orders.sql",
            "-- typed orders\nselect order_id, customer_id, status, cast(amount as decimal(10,2)) as amount\nfrom {{ source('app', 'orders') }};\n",
        ),
        (
            "models/paid_orders.sql",
            "select * from {{ ref('stg_orders') }} where status = 'paid' -- trailing comment",
        ),
        ("models/paid_orders.yml", "materialized: ephemeral\n"),
        (
            "models/revenue_by_customer.sql",
            "select customer_id, sum(amount) as revenue, count(*) as orders\nfrom {{ ref('paid_orders') }}\ngroup by customer_id",
        ),
        (
            "models/revenue_by_customer.yml",
            "materialized: parquet\nprimary_key: customer_id\ncolumns:\n  - { name: customer_id, type: bigint, tests: [not_null, unique] }\n  - { name: revenue, type: 'decimal(20,2)' }\n  - { name: orders, type: bigint }\n",
        ),
    ]
}

async fn collect_i64(models: &Models<'_>, sql_model: &str, column: usize) -> Vec<i64> {
    let batches = models.show(sql_model, 1000).await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let col = b
            .column(column)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        out.extend((0..col.len()).map(|i| col.value(i)));
    }
    out.sort_unstable();
    out
}

/// The customer ids stored in the materialized `revenue_by_customer` (not recomputed).
async fn stored_customers(models: &Models<'_>, project: &Project) -> Vec<i64> {
    use ebb_warehouse::Warehouse;
    use futures::TryStreamExt;
    let warehouse = models
        .warehouse(project.model("revenue_by_customer").unwrap())
        .unwrap();
    let relation = models.relation_or_subquery("revenue_by_customer").unwrap();
    let batches: Vec<RecordBatch> = warehouse
        .query(&format!("select customer_id from {relation} order by 1"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    batches
        .iter()
        .flat_map(|b| {
            let col = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            (0..col.len()).map(|i| col.value(i)).collect::<Vec<_>>()
        })
        .collect()
}

fn table(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

#[tokio::test]
async fn ephemeral_models_are_inlined_and_everything_runs_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let project = project(tmp.path(), &base_files());
    let models = Models::open(&project).await.unwrap();

    let order: Vec<&str> = models
        .graph()
        .order()
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        order,
        vec!["stg_orders", "paid_orders", "revenue_by_customer"]
    );

    let sql = models.compile("revenue_by_customer").unwrap();
    assert!(
        sql.starts_with("with __ebb_ephemeral_paid_orders as ("),
        "{sql}"
    );
    assert!(
        !sql.contains("\"paid_orders\""),
        "the ephemeral model must be inlined: {sql}"
    );
    assert!(
        sql.contains("-- trailing comment\n"),
        "a comment must not swallow SQL: {sql}"
    );

    for m in ["stg_orders", "paid_orders", "revenue_by_customer"] {
        models.run(m).await.unwrap_or_else(|e| panic!("{m}: {e}"));
    }
    let rows = models.show("revenue_by_customer", 100).await.unwrap();
    let mut lines: Vec<String> = table(&rows).lines().map(str::to_string).collect();
    lines.sort();
    let expected = [
        "| 10          | 19.75   | 2      |",
        "| 99          | 3.00    | 1      |",
    ];
    for e in expected {
        assert!(
            lines.iter().any(|l| l == e),
            "missing {e} in\n{}",
            table(&rows)
        );
    }
    assert_eq!(
        collect_i64(&models, "revenue_by_customer", 0).await,
        vec![10, 99]
    );
}

#[tokio::test]
async fn parquet_models_are_replaced_atomically_and_seen_by_a_new_session() {
    let tmp = tempfile::tempdir().unwrap();
    let project = project(tmp.path(), &base_files());
    let dir = tmp.path().join("data/_ebb_models/revenue_by_customer");
    {
        let models = Models::open(&project).await.unwrap();
        let first = models.run("revenue_by_customer").await.unwrap();
        assert_eq!(first.rows, Some(2));
        let second = models.run("revenue_by_customer").await.unwrap();
        assert_ne!(first.location, second.location);
        let current = std::fs::read_to_string(dir.join("CURRENT")).unwrap();
        assert!(second.location.contains(current.trim()));
        // The earlier run's files are gone; only the live run and the pointer remain.
        let entries: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(entries.len(), 2, "{entries:?}");
    }
    // Change the source: a new session reads the materialized files, not the new data.
    std::fs::write(
        tmp.path().join("data/orders.csv"),
        "order_id,customer_id,status,amount\n1,50,paid,1.00\n",
    )
    .unwrap();
    let models = Models::open(&project).await.unwrap();
    assert_eq!(stored_customers(&models, &project).await, vec![10, 99]);
    models.run("revenue_by_customer").await.unwrap();
    assert_eq!(stored_customers(&models, &project).await, vec![50]);
}

#[tokio::test]
async fn a_contract_violation_fails_the_model_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = base_files();
    files.retain(|(p, _)| *p != "models/revenue_by_customer.yml");
    files.push((
        "models/revenue_by_customer.yml",
        "materialized: parquet\ncolumns:\n  - { name: customer_id, type: text }\n  - { name: revenue, type: 'decimal(20,2)' }\n  - { name: refunds, type: bigint }\n",
    ));
    let project = project(tmp.path(), &files);
    let models = Models::open(&project).await.unwrap();
    let err = models.run("revenue_by_customer").await.unwrap_err();
    let EngineError::Contract { model, violations } = &err else {
        panic!("expected a contract error, got {err}");
    };
    assert_eq!(model, "revenue_by_customer");
    let messages: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        vec![
            "column \"customer_id\" is declared text but the model returns bigint",
            "column \"refunds\" is declared (bigint) but the model does not return it",
        ]
    );
    assert!(
        !tmp.path()
            .join("data/_ebb_models/revenue_by_customer")
            .exists(),
        "nothing may be written for a model that breaks its contract"
    );
}

#[tokio::test]
async fn column_tests_count_exactly_the_failing_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = base_files();
    files.push((
        "models/stg_customers.sql",
        "select * from {{ source('app', 'customers') }}",
    ));
    files.push((
        "models/stg_customers.yml",
        "columns:\n  - { name: customer_id, tests: [unique, not_null] }\n  - { name: email, tests: [not_null] }\n",
    ));
    files.push((
        "models/stg_orders.yml",
        "columns:\n  - name: status\n    tests: [{ accepted_values: { values: [paid, open] } }]\n  - name: customer_id\n    tests: [{ relationships: { to: \"ref('stg_customers')\", field: customer_id } }]\n  - { name: amount, tests: [not_null] }\n",
    ));
    let project = project(tmp.path(), &files);
    let models = Models::open(&project).await.unwrap();
    let mut results: Vec<(String, u64)> = Vec::new();
    for m in ["stg_customers", "stg_orders"] {
        for o in models.test(m).await.unwrap() {
            results.push((
                format!("{}.{} {}", m, o.spec.column, o.spec.name()),
                o.failures,
            ));
            if o.failures > 0 {
                assert!(!o.sample.is_empty(), "failing tests show samples");
            }
        }
    }
    assert_eq!(
        results,
        vec![
            ("stg_customers.customer_id unique".to_string(), 1),
            ("stg_customers.customer_id not_null".to_string(), 0),
            ("stg_customers.email not_null".to_string(), 1),
            (
                "stg_orders.status accepted_values [paid, open]".to_string(),
                1
            ),
            (
                "stg_orders.customer_id relationships -> stg_customers.customer_id".to_string(),
                1
            ),
            ("stg_orders.amount not_null".to_string(), 1),
        ]
    );
}

#[tokio::test]
async fn selectors_pick_upstream_and_downstream() {
    let tmp = tempfile::tempdir().unwrap();
    let project = project(tmp.path(), &base_files());
    let models = Models::open(&project).await.unwrap();
    let names = |sel: &[&str]| -> Vec<String> {
        let sel: Vec<String> = sel.iter().map(|s| s.to_string()).collect();
        models
            .graph()
            .select(&sel)
            .unwrap()
            .iter()
            .map(|m| m.name.clone())
            .collect()
    };
    assert_eq!(
        names(&["paid_orders+"]),
        vec!["paid_orders", "revenue_by_customer"]
    );
    assert_eq!(names(&["+paid_orders"]), vec!["stg_orders", "paid_orders"]);
    assert_eq!(names(&["revenue_by_customer"]), vec!["revenue_by_customer"]);
    assert_eq!(names(&[]).len(), 3);
    let err = models
        .graph()
        .select(&["paid_order".to_string()])
        .unwrap_err();
    assert!(
        err.to_string().contains("did you mean \"paid_orders\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_source_file_names_the_table_and_path() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = base_files();
    files.retain(|(p, _)| *p != "data/customers.csv");
    let project = project(tmp.path(), &files);
    let err = Models::open(&project).await.unwrap_err().to_string();
    assert!(err.contains("app.customers"), "{err}");
    assert!(err.contains("customers.csv"), "{err}");
}
