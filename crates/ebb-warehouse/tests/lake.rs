//! The lake on local files: every file format, globs, Hive partitions, Parquet models.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use ebb_core::config::project::{FileFormat, Materialized};
use ebb_warehouse::lake::{LakeOptions, LakeWarehouse, MODELS_DIR};
use ebb_warehouse::{SourceTable, Warehouse, WarehouseError};

use crate::support::{lines, table};

pub fn write_parquet(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

pub fn orders(ids: &[i64], status: &[&str]) -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "order_id",
            Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef,
        ),
        (
            "status",
            Arc::new(StringArray::from(status.to_vec())) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn source(table: &str, path: &str, format: Option<FileFormat>) -> SourceTable {
    SourceTable {
        source: "shop".into(),
        table: table.into(),
        path: Some(path.into()),
        format,
        schema: None,
        identifier: None,
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn csv_parquet_ndjson_globs_and_hive_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "customers.csv", "customer_id,email\n1,a@x.io\n2,\n");
    write(
        root,
        "events.ndjson",
        "{\"id\": 1, \"kind\": \"click\"}\n{\"id\": 2, \"kind\": null}\n",
    );
    write(root, "logs/2026-11-01.csv", "line\nfirst\n");
    write(root, "logs/2026-11-02.csv", "line\nsecond\n");
    write(root, "logs/notes.txt", "not a log\n");
    write_parquet(
        &root.join("orders.parquet"),
        &orders(&[10, 11], &["paid", "open"]),
    );
    write_parquet(
        &root.join("sales/year=2026/month=10/part.parquet"),
        &orders(&[1], &["paid"]),
    );
    write_parquet(
        &root.join("sales/year=2026/month=11/part.parquet"),
        &orders(&[2, 3], &["paid", "void"]),
    );

    let w = LakeWarehouse::open(root.to_str().unwrap(), root, LakeOptions::default()).unwrap();
    w.attach_sources(&[
        source("customers", "customers.csv", None),
        source("events", "events.ndjson", Some(FileFormat::Ndjson)),
        source("logs", "logs/*.csv", None),
        source("orders", "orders.parquet", None),
        source("sales", "sales/", Some(FileFormat::Parquet)),
    ])
    .await
    .unwrap();

    let got = table(&w, "select * from shop.customers order by customer_id").await;
    assert_eq!(
        lines(&got),
        vec![
            "+-------------+--------+",
            "| customer_id | email  |",
            "+-------------+--------+",
            "| 1           | a@x.io |",
            "| 2           |        |",
            "+-------------+--------+",
        ]
    );
    let got = table(&w, "select id, kind from shop.events where kind is null").await;
    assert!(got.contains("| 2  |      |"), "{got}");
    let got = table(&w, "select line from shop.logs order by line").await;
    assert_eq!(
        lines(&got),
        vec![
            "+--------+",
            "| line   |",
            "+--------+",
            "| first  |",
            "| second |",
            "+--------+"
        ]
    );
    let got = table(&w, "select * from shop.orders order by order_id").await;
    assert!(got.contains("| 11       | open   |"), "{got}");
    let got = table(
        &w,
        "select year, month, count(*) as n from shop.sales group by year, month order by month",
    )
    .await;
    assert_eq!(
        lines(&got),
        vec![
            "+------+-------+---+",
            "| year | month | n |",
            "+------+-------+---+",
            "| 2026 | 10    | 1 |",
            "| 2026 | 11    | 2 |",
            "+------+-------+---+",
        ]
    );
    // Partition columns prune: the filter reads only month=11.
    let got = table(
        &w,
        "select order_id from shop.sales where month = '11' order by 1",
    )
    .await;
    assert!(
        got.contains("| 2        |")
            && got.contains("| 3        |")
            && !got.contains("| 1        |"),
        "{got}"
    );

    let err = w
        .attach_sources(&[source("missing", "nope/*.csv", None)])
        .await;
    // An empty glob either fails here or reads as an empty table; it must never panic.
    if let Err(e) = err {
        assert!(matches!(e, WarehouseError::Source { .. }), "{e:?}");
    }
}

#[tokio::test]
async fn parquet_models_are_replaced_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_parquet(
        &root.join("orders.parquet"),
        &orders(&[1, 2, 3], &["paid", "paid", "open"]),
    );
    let w = LakeWarehouse::open(root.to_str().unwrap(), root, LakeOptions::default()).unwrap();
    w.attach_sources(&[source("orders", "orders.parquet", None)])
        .await
        .unwrap();

    let first = w
        .materialize(
            "paid",
            "select order_id from shop.orders where status = 'paid'",
            Materialized::Parquet,
        )
        .await
        .unwrap();
    assert_eq!(first.rows, Some(2));
    let current =
        |root: &Path| std::fs::read_to_string(root.join(MODELS_DIR).join("paid/CURRENT")).unwrap();
    let run1 = current(root);
    assert!(
        first.location.ends_with(&format!("{run1}/")),
        "{}",
        first.location
    );

    // A failing run leaves the live result alone.
    let err = w
        .materialize(
            "paid",
            "select no_such_column from shop.orders",
            Materialized::Parquet,
        )
        .await;
    assert!(err.is_err());
    assert_eq!(current(root), run1);
    assert!(
        table(&w, "select count(*) as n from paid")
            .await
            .contains("| 2 |")
    );

    let second = w
        .materialize(
            "paid",
            "select order_id from shop.orders",
            Materialized::Parquet,
        )
        .await
        .unwrap();
    assert_eq!(second.rows, Some(3));
    let run2 = current(root);
    assert_ne!(run1, run2);
    // The old run's files are gone; only CURRENT and the live run remain.
    let mut entries: Vec<String> = std::fs::read_dir(root.join(MODELS_DIR).join("paid"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            !std::fs::read_dir(root.join(MODELS_DIR).join("paid").join(name))
                .is_ok_and(|mut d| d.next().is_none())
        })
        .collect();
    entries.sort();
    assert_eq!(entries, vec!["CURRENT".to_string(), run2.clone()]);
    assert!(
        table(&w, "select count(*) as n from paid")
            .await
            .contains("| 3 |")
    );

    // A second warehouse on the same folder (a later `ebb` process) finds the live run.
    let again = LakeWarehouse::open(root.to_str().unwrap(), root, LakeOptions::default()).unwrap();
    assert!(again.attach_materialized("paid").await.unwrap());
    assert!(
        table(&again, "select count(*) as n from paid")
            .await
            .contains("| 3 |")
    );
    assert!(!again.attach_materialized("unknown").await.unwrap());
}

/// `ebb_period_start` (what the metrics layer groups time by on the lake) gives the same
/// dates as DataFusion's own `CAST(date_trunc(grain, CAST(t AS TIMESTAMP)) AS DATE)`, for
/// dates and timestamps of every unit, with and without a time zone, before and after 1970.
#[tokio::test]
async fn period_start_agrees_with_date_trunc() {
    use arrow::array::{
        Date32Array, TimestampMicrosecondArray, TimestampMillisecondArray,
        TimestampNanosecondArray, TimestampSecondArray,
    };
    use datafusion::datasource::MemTable;

    let tmp = tempfile::tempdir().unwrap();
    let wh = LakeWarehouse::open("lake", tmp.path(), LakeOptions::default()).unwrap();
    // Seconds spread over 1700..2260 (inside the nanosecond range), with NULLs, month and
    // year edges, and negative values.
    let mut seconds: Vec<Option<i64>> = vec![None, Some(0), Some(-1), Some(-86_400), Some(86_399)];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        seconds.push(Some((x % 17_600_000_000) as i64 - 8_500_000_000));
    }
    // The first and last second of each month of 1999..2001.
    for y in 1999..=2001 {
        for m in 1..=12 {
            let first = chrono_days(y, m) * 86_400;
            seconds.push(Some(first));
            seconds.push(Some(first - 1));
        }
    }
    let s = |f: fn(i64) -> i64| seconds.iter().map(|v| v.map(f)).collect::<Vec<_>>();
    let batch = RecordBatch::try_from_iter([
        (
            "s",
            Arc::new(TimestampSecondArray::from(s(|v| v))) as ArrayRef,
        ),
        (
            "ms",
            Arc::new(TimestampMillisecondArray::from(s(|v| v * 1000 + 999))),
        ),
        (
            "us",
            Arc::new(TimestampMicrosecondArray::from(s(|v| v * 1_000_000 + 1))),
        ),
        (
            "ns",
            Arc::new(TimestampNanosecondArray::from(s(|v| v * 1_000_000_000))),
        ),
        (
            "ny",
            Arc::new(
                TimestampMicrosecondArray::from(s(|v| v * 1_000_000))
                    .with_timezone("America/New_York"),
            ),
        ),
        (
            "ist",
            Arc::new(TimestampMillisecondArray::from(s(|v| v * 1000)).with_timezone("+05:30")),
        ),
        (
            "d",
            Arc::new(Date32Array::from(
                seconds
                    .iter()
                    .map(|v| v.map(|v| v.div_euclid(86_400) as i32))
                    .collect::<Vec<_>>(),
            )),
        ),
    ])
    .unwrap();
    let rows = batch.num_rows();
    let mem = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
    wh.context().register_table("t", Arc::new(mem)).unwrap();
    for grain in ["day", "week", "month", "quarter", "year"] {
        for col in ["s", "ms", "us", "ns", "ny", "ist", "d"] {
            let sql = format!(
                "SELECT count(*) AS n, \
                   count(*) FILTER (WHERE ebb_period_start('{grain}', {col}) \
                     IS DISTINCT FROM CAST(date_trunc('{grain}', CAST({col} AS TIMESTAMP)) AS DATE)) AS bad \
                 FROM t"
            );
            let out = wh
                .context()
                .sql(&sql)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let n = out[0]
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0);
            let bad = out[0]
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0);
            assert_eq!(n as usize, rows);
            assert_eq!(bad, 0, "{grain} of {col}: {bad} of {rows} rows differ");
        }
    }
    // A grain it does not know is an error that names the grains it does.
    let err = wh
        .context()
        .sql("SELECT ebb_period_start('fortnight', us) FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("use day, week, month, quarter or year"),
        "{err}"
    );
}

/// Days from 1970-01-01 to the first of month `m` of year `y`, by counting.
fn chrono_days(y: i32, m: u32) -> i64 {
    let leap = |y: i32| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_len = |y: i32, m: u32| match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let mut days: i64 = 0;
    for yy in 1970..y {
        days += if leap(yy) { 366 } else { 365 };
    }
    for mm in 1..m {
        days += month_len(y, mm);
    }
    days
}
