//! The same models on the Postgres warehouse and on the lake return identical results.
//!
//! The example project (`models/` at the repository root) is copied twice: once as it is (a
//! lake of CSV files) and once with its warehouse switched to a testkit PostgreSQL database
//! holding the same CSVs (one schema per source, column types as the lake infers them;
//! `materialized: parquet` becomes `table`, since Postgres keeps tables, not files). Every
//! model runs on both, and every model's full result is compared canonically: rows sorted,
//! decimals by value (not declared precision), timestamps in UTC, NULL apart from `""`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use ebb_core::project::{Project, ProjectSource, SourceFile, load};
use ebb_engine::models::Models;
use ebb_warehouse::lake::{LakeOptions, LakeWarehouse};
use ebb_warehouse::{SourceTable, Warehouse};
use futures::{SinkExt, TryStreamExt};

/// The example project, at the repository root.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// Copies the example's project files and CSVs (not earlier runs' output) to `dst`.
pub(crate) fn copy_example(dst: &Path) {
    fn walk(src: &Path, dst: &Path, top: bool) {
        std::fs::create_dir_all(dst).unwrap();
        for entry in std::fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            if path.is_dir() {
                if name.starts_with('.') || name.starts_with('_') {
                    continue;
                }
                walk(&path, &dst.join(&*name), false);
            } else if !top || name.ends_with(".yml") {
                std::fs::copy(&path, dst.join(&*name)).unwrap();
            }
        }
    }
    walk(&example(), dst, true);
}

/// Loads the project under `root`, which must be valid.
pub(crate) fn load_project(root: &Path) -> Project {
    let mut source = ProjectSource {
        root: root.to_path_buf(),
        files: Vec::new(),
    };
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                stack.push(path);
            } else if ProjectSource::wants(&rel) {
                source.files.push(SourceFile {
                    text: std::fs::read_to_string(&path).unwrap(),
                    path: rel,
                });
            }
        }
    }
    source.files.sort_by(|a, b| a.path.cmp(&b.path));
    let env = |_: &str| None;
    let loaded = load(&source, &env);
    assert_eq!(loaded.errors(), 0, "{:#?}", loaded.diagnostics);
    loaded.project
}

/// Points the copy at `url`: the `lake` warehouse becomes a postgres one, its sources lose
/// their file paths, Parquet models become tables.
pub(crate) fn switch_to_postgres(root: &Path, url: &str) {
    let path = root.join("ebb.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = Vec::new();
    let mut switched = 0;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "type: lake" {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push(format!("{indent}type: postgres"));
            if lines
                .peek()
                .is_some_and(|l| l.trim_start().starts_with("path:"))
            {
                lines.next();
            }
            out.push(format!("{indent}url: {url}"));
            switched += 1;
        } else if ["path:", "format:"]
            .iter()
            .any(|k| line.trim_start().starts_with(k))
        {
            // Source tables' files: a postgres source is a table (schema = the source's name).
        } else {
            out.push(line.to_string());
        }
    }
    assert_eq!(
        switched, 1,
        "ebb.yml of the example should declare one lake warehouse"
    );
    std::fs::write(&path, out.join("\n") + "\n").unwrap();

    for entry in std::fs::read_dir(root.join("models")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.contains("materialized: parquet") {
                std::fs::write(
                    &path,
                    text.replace("materialized: parquet", "materialized: table"),
                )
                .unwrap();
            }
        }
    }
}

/// The PostgreSQL type holding what the lake infers as `ty`.
pub(crate) fn pg_type(ty: &DataType) -> String {
    match ty {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(p, s) => format!("numeric({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        other => panic!("the golden test has no PostgreSQL type for {other}"),
    }
}

/// Creates every source table of the lake project in `client`'s database, with the types
/// the lake infers, and loads the same CSV files into them.
pub(crate) async fn load_sources(project: &Project, client: &tokio_postgres::Client) {
    let config = project.config.as_ref().unwrap();
    let lake = LakeWarehouse::open("data", &project.root, LakeOptions::default()).unwrap();
    for (source, s) in config.sources.iter() {
        client
            .batch_execute(&format!("create schema \"{}\"", source.value))
            .await
            .unwrap();
        for (table, t) in s.tables.iter() {
            let path = t.path.as_ref().unwrap().value.clone();
            lake.attach_sources(&[SourceTable {
                source: source.value.clone(),
                table: table.value.clone(),
                path: Some(path.clone()),
                format: t.format,
                schema: None,
                identifier: None,
            }])
            .await
            .unwrap();
            let qualified = format!("\"{}\".\"{}\"", source.value, table.value);
            let schema = lake
                .schema(&format!("select * from {qualified}"))
                .await
                .unwrap();
            let columns: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| format!("\"{}\" {}", f.name(), pg_type(f.data_type())))
                .collect();
            client
                .batch_execute(&format!(
                    "create table {qualified} ({})",
                    columns.join(", ")
                ))
                .await
                .unwrap();
            let data = std::fs::read(project.root.join("data").join(&path)).unwrap();
            let sink = client
                .copy_in(&format!(
                    "copy {qualified} from stdin (format csv, header true)"
                ))
                .await
                .unwrap();
            let mut sink = std::pin::pin!(sink);
            sink.send(bytes::Bytes::from(data)).await.unwrap();
            sink.as_mut().finish().await.unwrap();
        }
    }
}

/// Runs every model in dependency order.
pub(crate) async fn run_all(models: &Models<'_>) {
    for model in models.graph().order() {
        models
            .run(&model.name)
            .await
            .unwrap_or_else(|e| panic!("{} on {}: {e}", model.name, kind(models, &model.name)));
    }
}

fn kind(models: &Models<'_>, name: &str) -> &'static str {
    let model = models.project().model(name).unwrap();
    models.warehouse(model).unwrap().kind()
}

/// A model's whole result: column names, and rows rendered canonically, sorted.
async fn result(models: &Models<'_>, name: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let model = models.project().model(name).unwrap();
    let relation = models.relation_or_subquery(name).unwrap();
    let batches: Vec<RecordBatch> = models
        .warehouse(model)
        .unwrap()
        .query(&format!("select * from {relation}"))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut names = Vec::new();
    let mut rows = Vec::new();
    for batch in &batches {
        names = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let columns: Vec<Vec<String>> = batch
            .columns()
            .iter()
            .zip(batch.schema().fields())
            .map(|(c, f)| canonical(c, f.metadata().get("ebb.pg_type").map(String::as_str)))
            .collect();
        for r in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[r].clone()).collect());
        }
    }
    rows.sort();
    (names, rows)
}

/// Values in a form that compares equal across warehouses.
fn canonical(column: &ArrayRef, pg_type: Option<&str>) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let render = |array: &ArrayRef| -> Vec<String> {
        let formatter = ArrayFormatter::try_new(array.as_ref(), &options).unwrap();
        (0..array.len())
            .map(|i| formatter.value(i).to_string())
            .collect()
    };
    let nulls = |values: Vec<String>, array: &ArrayRef| -> Vec<String> {
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| if array.is_null(i) { "NULL".into() } else { v })
            .collect()
    };
    match column.data_type() {
        // Exact numeric text (PostgreSQL numeric without a typmod) is a number.
        DataType::Utf8 if pg_type == Some("numeric") => nulls(
            render(column).into_iter().map(|v| number(&v)).collect(),
            column,
        ),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(column, &DataType::Utf8).unwrap();
            let text = text
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            (0..text.len())
                .map(|i| {
                    if text.is_null(i) {
                        "NULL".into()
                    } else {
                        format!("{:?}", text.value(i))
                    }
                })
                .collect()
        }
        DataType::Decimal128(..)
        | DataType::Decimal256(..)
        | DataType::Float32
        | DataType::Float64 => nulls(
            render(column).into_iter().map(|v| number(&v)).collect(),
            column,
        ),
        DataType::Timestamp(_, None) => {
            render(&cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None)).unwrap())
        }
        DataType::Timestamp(_, Some(_)) => render(
            &cast(
                column,
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            )
            .unwrap(),
        ),
        DataType::Date64 => render(&cast(column, &DataType::Date32).unwrap()),
        _ => render(column),
    }
}

/// A decimal number without trailing zeros: `12.50` → `12.5`, `-0.00` → `0`.
fn number(text: &str) -> String {
    let mut t = text.to_string();
    if t.contains('.') && !t.contains(['e', 'E']) {
        while t.ends_with('0') {
            t.pop();
        }
        if t.ends_with('.') {
            t.pop();
        }
    }
    if t == "-0" { "0".into() } else { t }
}

/// The first difference between two results, or `None` when they are identical.
fn first_difference(
    lake: &(Vec<String>, Vec<Vec<String>>),
    pg: &(Vec<String>, Vec<Vec<String>>),
) -> Option<String> {
    if lake.0 != pg.0 {
        return Some(format!(
            "columns differ: lake {:?}, postgres {:?}",
            lake.0, pg.0
        ));
    }
    if lake.1.len() != pg.1.len() {
        return Some(format!(
            "{} rows on the lake, {} on postgres",
            lake.1.len(),
            pg.1.len()
        ));
    }
    for (i, (a, b)) in lake.1.iter().zip(&pg.1).enumerate() {
        if let Some(c) = (0..a.len()).find(|&c| a[c] != b[c]) {
            return Some(format!(
                "sorted row {i}, column \"{}\": lake {} vs postgres {}\n  lake row:     {a:?}\n  postgres row: {b:?}",
                lake.0[c], a[c], b[c]
            ));
        }
    }
    None
}

#[tokio::test]
async fn the_example_models_agree_on_postgres_and_on_the_lake() {
    let tmp = tempfile::tempdir().unwrap();
    let lake_root = tmp.path().join("lake");
    let pg_root = tmp.path().join("postgres");
    copy_example(&lake_root);
    copy_example(&pg_root);

    let db = ebb_testkit::PgCluster::shared().fresh_database().await;
    let lake_project = load_project(&lake_root);
    load_sources(&lake_project, &db.connect().await).await;
    switch_to_postgres(&pg_root, &db.url());
    let pg_project = load_project(&pg_root);

    let lake = Models::open(&lake_project).await.unwrap();
    let pg = Models::open(&pg_project).await.unwrap();
    assert_eq!(kind(&pg, "account_health"), "postgres");
    assert_eq!(kind(&lake, "account_health"), "lake");
    run_all(&lake).await;
    run_all(&pg).await;

    let mut differences = BTreeMap::new();
    let mut compared = 0;
    for model in lake.graph().order() {
        let on_lake = result(&lake, &model.name).await;
        let on_pg = result(&pg, &model.name).await;
        assert!(
            !on_lake.1.is_empty(),
            "{} is empty: the comparison would prove nothing",
            model.name
        );
        eprintln!(
            "golden: {:<22} {:>5} rows x {:>2} columns",
            model.name,
            on_lake.1.len(),
            on_lake.0.len()
        );
        if let Some(diff) = first_difference(&on_lake, &on_pg) {
            differences.insert(model.name.clone(), diff);
        }
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} models compared");
    assert!(
        differences.is_empty(),
        "models differ between the lake and postgres:\n{}",
        differences
            .iter()
            .map(|(m, d)| format!("- {m}: {d}"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The column tests agree too.
    for model in lake.graph().order() {
        let on_lake: Vec<(String, u64)> = lake
            .test(&model.name)
            .await
            .unwrap()
            .iter()
            .map(|o| (format!("{}.{}", o.spec.column, o.spec.name()), o.failures))
            .collect();
        let on_pg: Vec<(String, u64)> = pg
            .test(&model.name)
            .await
            .unwrap()
            .iter()
            .map(|o| (format!("{}.{}", o.spec.column, o.spec.name()), o.failures))
            .collect();
        assert_eq!(on_lake, on_pg, "tests of {}", model.name);
    }
}

#[test]
fn the_canonical_form_tells_null_from_empty_and_ignores_decimal_scale() {
    use std::sync::Arc;

    use arrow::array::{
        Decimal128Array, StringArray, TimestampMicrosecondArray, TimestampNanosecondArray,
    };

    let text: ArrayRef = Arc::new(StringArray::from(vec![Some(""), None, Some("NULL")]));
    assert_eq!(canonical(&text, None), vec!["\"\"", "NULL", "\"NULL\""]);

    let a: ArrayRef = Arc::new(
        Decimal128Array::from(vec![Some(1250), Some(-1), None])
            .with_precision_and_scale(12, 2)
            .unwrap(),
    );
    let b: ArrayRef = Arc::new(
        Decimal128Array::from(vec![Some(12500), Some(-10), None])
            .with_precision_and_scale(14, 3)
            .unwrap(),
    );
    assert_eq!(canonical(&a, None), canonical(&b, None));
    assert_eq!(canonical(&a, None), vec!["12.5", "-0.01", "NULL"]);
    let exact: ArrayRef = Arc::new(StringArray::from(vec![
        Some("12.500"),
        Some("-0.010"),
        None,
    ]));
    assert_eq!(canonical(&exact, Some("numeric")), canonical(&a, None));

    let micros: ArrayRef =
        Arc::new(TimestampMicrosecondArray::from(vec![1_000_000]).with_timezone("UTC"));
    let nanos: ArrayRef =
        Arc::new(TimestampNanosecondArray::from(vec![1_000_000_000]).with_timezone("+00:00"));
    assert_eq!(canonical(&micros, None), canonical(&nanos, None));
    let later: ArrayRef =
        Arc::new(TimestampMicrosecondArray::from(vec![1_000_001]).with_timezone("UTC"));
    assert_ne!(canonical(&micros, None), canonical(&later, None));

    let lake = (vec!["a".to_string()], vec![vec!["1".to_string()]]);
    let pg = (vec!["a".to_string()], vec![vec!["2".to_string()]]);
    let diff = first_difference(&lake, &pg).unwrap();
    assert!(
        diff.starts_with("sorted row 0, column \"a\": lake 1 vs postgres 2"),
        "{diff}"
    );
    assert_eq!(first_difference(&lake, &lake), None);
}
