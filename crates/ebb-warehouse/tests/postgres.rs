//! The Postgres warehouse against a private testkit cluster.

use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, TimeUnit};
use ebb_core::config::project::Materialized;
use ebb_testkit::{PgCluster, TestDatabase};
use ebb_warehouse::postgres::PgWarehouse;
use ebb_warehouse::{Relation, SourceTable, Warehouse, WarehouseError};
use futures::StreamExt;

use crate::support::{collect, lines, query_error, table};

/// A fresh database with `setup` run in it, and a warehouse on it.
async fn warehouse(
    setup: &str,
    schema: Option<&str>,
    pool: Option<u32>,
) -> (TestDatabase, PgWarehouse) {
    let db = PgCluster::shared().fresh_database().await;
    if !setup.is_empty() {
        db.connect().await.batch_execute(setup).await.unwrap();
    }
    let w = PgWarehouse::open(&db.url(), schema, pool).unwrap();
    (db, w)
}

fn source(source: &str, table: &str) -> SourceTable {
    SourceTable {
        source: source.into(),
        table: table.into(),
        path: None,
        format: None,
        schema: None,
        identifier: None,
    }
}

const TYPES: &str = "
create schema app;
create table app.accounts (
    id bigint, n integer, name text, amount numeric(12,2), score numeric(3,2),
    day date, at timestamp, at_tz timestamptz, active boolean, ratio double precision
);
insert into app.accounts values
    (1, 10, 'Ada', 1234.50, 4.25, '2026-11-03', '2026-11-03 10:15:00', '2026-11-03 10:15:00+02', true, 0.5),
    (2, -3, '', -0.01, 1.00, '1999-12-31', '2000-01-01 00:00:00.123456', '2000-01-01 00:00:00Z', false, -1e300),
    (3, null, null, null, null, null, null, null, null, null);
";

#[tokio::test]
async fn every_example_type_and_null_arrives_as_arrow() {
    let (_db, w) = warehouse(TYPES, None, None).await;
    w.attach_sources(&[source("app", "accounts")])
        .await
        .unwrap();
    let accounts = w.relation_sql(&Relation::Source {
        source: "app".into(),
        table: "accounts".into(),
    });
    assert_eq!(accounts, "\"app\".\"accounts\"");

    let sql = format!("select * from {accounts} order by id");
    let schema = w.schema(&sql).await.unwrap();
    let types: Vec<(&str, &DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("id", &DataType::Int64),
            ("n", &DataType::Int32),
            ("name", &DataType::Utf8),
            ("amount", &DataType::Decimal128(12, 2)),
            ("score", &DataType::Decimal128(3, 2)),
            ("day", &DataType::Date32),
            ("at", &DataType::Timestamp(TimeUnit::Microsecond, None)),
            (
                "at_tz",
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            ),
            ("active", &DataType::Boolean),
            ("ratio", &DataType::Float64),
        ]
    );

    let got = table(&w, &sql).await;
    assert_eq!(
        lines(&got),
        vec![
            "+----+----+------+---------+-------+------------+----------------------------+----------------------+--------+--------+",
            "| id | n  | name | amount  | score | day        | at                         | at_tz                | active | ratio  |",
            "+----+----+------+---------+-------+------------+----------------------------+----------------------+--------+--------+",
            "| 1  | 10 | Ada  | 1234.50 | 4.25  | 2026-11-03 | 2026-11-03T10:15:00        | 2026-11-03T08:15:00Z | true   | 0.5    |",
            "| 2  | -3 |      | -0.01   | 1.00  | 1999-12-31 | 2000-01-01T00:00:00.123456 | 2000-01-01T00:00:00Z | false  | -1e300 |",
            "| 3  |    |      |         |       |            |                            |                      |        |        |",
            "+----+----+------+---------+-------+------------+----------------------------+----------------------+--------+--------+",
        ],
        "{got}"
    );
    // NULL and the empty string stay apart.
    let batches = collect(&w, &sql).await.unwrap();
    let name = batches[0].column(2);
    assert!(!name.is_null(1) && name.is_null(2));
}

#[tokio::test]
async fn expressions_keep_their_declared_types() {
    let (_db, w) = warehouse(TYPES, None, None).await;
    let sql = "select cast(sum(amount) as decimal(14,2)) as total, sum(amount) as raw_sum, \
               count(*) as n, avg(n) as avg_n, cast(max(at_tz) as timestamp) as last_at, \
               point(1, 2) as p from app.accounts;";
    let schema = w.schema(sql).await.unwrap();
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(
        types,
        vec![
            &DataType::Decimal128(14, 2),
            // An unconstrained numeric is its exact text (ebb-postgres's mapping).
            &DataType::Utf8,
            &DataType::Int64,
            &DataType::Utf8,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
            // A type ebb has no binary decoder for is read as text.
            &DataType::Utf8,
        ]
    );
    let got = table(&w, sql).await;
    assert!(
        got.contains(
            "| 1234.49 | 1234.49 | 3 | 3.5000000000000000 | 2026-11-03T08:15:00 | (1,2) |"
        ),
        "{got}"
    );
}

#[tokio::test]
async fn a_large_result_streams_in_bounded_batches() {
    let (_db, w) = warehouse("", None, None).await;
    let rows = 300_000;
    let mut stream = w
        .query(&format!(
            "select g as id, md5(g::text) as h from generate_series(1, {rows}) g"
        ))
        .await
        .unwrap();
    let (mut batches, mut total, mut largest, mut sum) = (0, 0, 0, 0i64);
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap();
        batches += 1;
        total += batch.num_rows();
        largest = largest.max(batch.num_rows());
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int32Array>()
            .unwrap();
        sum += ids.iter().flatten().map(i64::from).sum::<i64>();
    }
    assert_eq!(total, rows);
    assert_eq!(sum, (rows as i64) * (rows as i64 + 1) / 2);
    assert!(
        batches >= 10,
        "{batches} batches: the result was not streamed"
    );
    assert!(largest <= 16 * 1024, "a batch of {largest} rows");
}

#[tokio::test]
async fn dropping_a_stream_cancels_the_query_and_the_pool_recovers() {
    let (db, w) = warehouse("", None, Some(1)).await;
    let sql = "select g as id, repeat('x', 100) as pad from generate_series(1, 50000000) g";
    let mut stream = w.query(sql).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.num_rows() > 0);
    drop(stream);

    // The only pooled connection was given up: the next query opens a new one at once.
    let got = table(&w, "select 42 as answer").await;
    assert!(got.contains("| 42 "), "{got}");

    // And the server stops producing rows nobody reads.
    let admin = db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running: i64 = admin
            .query_one(
                "select count(*) from pg_stat_activity where query like 'COPY (%generate_series(1, 50000000)%' and state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if running == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned COPY is still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_pool_never_opens_more_connections_than_its_size() {
    let (_db, w) = warehouse("", None, Some(2)).await;
    let w = std::sync::Arc::new(w);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let w = std::sync::Arc::clone(&w);
        tasks.push(tokio::spawn(async move {
            let batches = collect(
                &*w,
                "select pg_backend_pid() as pid, pg_sleep(0.05)::text as s",
            )
            .await
            .unwrap();
            batches[0]
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int32Array>()
                .unwrap()
                .value(0)
        }));
    }
    let mut pids = std::collections::BTreeSet::new();
    for t in tasks {
        pids.insert(t.await.unwrap());
    }
    assert!(
        !pids.is_empty() && pids.len() <= 2,
        "backends used: {pids:?}"
    );
}

#[tokio::test]
async fn errors_carry_the_servers_message() {
    let (_db, w) = warehouse(TYPES, None, None).await;

    let err = query_error(&w, "select id,\n  nme from app.accounts").await;
    let text = err.to_string();
    assert!(matches!(err, WarehouseError::Query(_)), "{err:?}");
    assert!(text.contains("column \"nme\" does not exist"), "{text}");
    assert!(text.contains("SQLSTATE 42703"), "{text}");
    assert!(text.contains("line 2, column 3"), "{text}");
    assert!(
        text.contains("hint: Perhaps you meant") || text.contains("SQLSTATE"),
        "{text}"
    );

    let err = w.schema("selec 1").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("syntax error at or near \"selec\" (SQLSTATE 42601)"),
        "{err}"
    );

    // An error after rows were sent ends the stream with it.
    let mut stream = w
        .query("select 1 / (50000 - g) as x from generate_series(1, 100000) g")
        .await
        .unwrap();
    let mut failure = None;
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            failure = Some(WarehouseError::from(e));
            break;
        }
    }
    let failure = failure.expect("division by zero must fail the stream");
    assert!(
        failure
            .to_string()
            .contains("division by zero (SQLSTATE 22012)"),
        "{failure}"
    );

    let err = w
        .attach_sources(&[source("app", "accounts"), source("app", "invoices")])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, WarehouseError::Source { .. }), "{err:?}");
    assert!(
        text.starts_with("source app.invoices: table or view \"app\".\"invoices\" does not exist"),
        "{text}"
    );
    assert!(text.contains("`identifier:`"), "{text}");

    let bad =
        PgWarehouse::open("postgres://u@127.0.0.1:1/db?connect_timeout=2", None, None).unwrap();
    let err = bad.schema("select 1").await.unwrap_err();
    assert!(matches!(err, WarehouseError::Connection(_)), "{err:?}");
    assert!(err.to_string().contains("u@127.0.0.1:1/db"), "{err}");

    let err = PgWarehouse::open("postgres://u:secret@host:notaport/db", None, None).unwrap_err();
    assert!(matches!(err, WarehouseError::Config(_)), "{err:?}");
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn sources_follow_schema_and_identifier() {
    let (_db, w) = warehouse(
        "create schema raw; create table raw.accounts_v2 (id int); insert into raw.accounts_v2 values (7);",
        None,
        None,
    )
    .await;
    let mut t = source("app", "accounts");
    t.schema = Some("raw".into());
    t.identifier = Some("accounts_v2".into());
    w.attach_sources(&[t]).await.unwrap();
    let rel = w.relation_sql(&Relation::Source {
        source: "app".into(),
        table: "accounts".into(),
    });
    assert_eq!(rel, "\"raw\".\"accounts_v2\"");
    assert!(
        table(&w, &format!("select * from {rel}"))
            .await
            .contains("| 7  |")
    );
}

#[tokio::test]
async fn views_and_tables_are_replaced_whole() {
    let (db, w) = warehouse(TYPES, Some("analytics"), None).await;
    assert_eq!(
        w.relation_sql(&Relation::Model("m".into())),
        "\"analytics\".\"m\""
    );

    // A view, then the same view with other columns (CREATE OR REPLACE cannot do that).
    let done = w
        .materialize("m", "select id from app.accounts", Materialized::View)
        .await
        .unwrap();
    assert_eq!(done.location, "view \"analytics\".\"m\"");
    assert_eq!(done.rows, None);
    w.materialize(
        "m",
        "select name, id from app.accounts;",
        Materialized::View,
    )
    .await
    .unwrap();
    let got = table(&w, "select * from analytics.m order by id").await;
    assert!(got.starts_with("+------+----+\n| name | id |"), "{got}");

    // The view becomes a table; a view reads it.
    let done = w
        .materialize(
            "m",
            "select id, amount from app.accounts where id < 3",
            Materialized::Table,
        )
        .await
        .unwrap();
    assert_eq!(done.rows, Some(2));
    assert_eq!(done.location, "table \"analytics\".\"m\"");
    w.materialize("m_ids", "select id from analytics.m", Materialized::View)
        .await
        .unwrap();

    // A failing rebuild leaves the old table in place (and no half-built table behind).
    let err = w
        .materialize(
            "m",
            "select id, 1 / 0 as boom from app.accounts",
            Materialized::Table,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("division by zero"), "{err}");
    let got = table(&w, "select count(*) as n from analytics.m").await;
    assert!(got.contains("| 2 |"), "{got}");
    let leftovers: i64 = db
        .connect()
        .await
        .query_one(
            "select count(*) from pg_class where relname like '%__ebb_new'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);

    // A successful rebuild replaces it.
    let done = w
        .materialize(
            "m",
            "select id, amount from app.accounts",
            Materialized::Table,
        )
        .await
        .unwrap();
    assert_eq!(done.rows, Some(3));
    let got = table(&w, "select count(*) as n from analytics.m").await;
    assert!(got.contains("| 3 |"), "{got}");

    // Parquet is a lake's; ephemeral creates nothing.
    let err = w
        .materialize("p", "select 1", Materialized::Parquet)
        .await
        .unwrap_err();
    assert!(matches!(err, WarehouseError::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("materialized: table"), "{err}");
    w.materialize("e", "select 1", Materialized::Ephemeral)
        .await
        .unwrap();
    let err = query_error(&w, "select * from analytics.e").await;
    assert!(err.to_string().contains("does not exist"), "{err}");

    // A model's SQL error points into the model's SQL.
    let err = w
        .materialize("bad", "select\n  idd from app.accounts", Materialized::View)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("line 2, column 3"), "{err}");
}

#[tokio::test]
async fn whole_table_reads_return_what_select_star_returns() {
    let (_db, w) = warehouse(
        "create table plain (id int, note text); insert into plain values (1, 'a'), (2, null);
         alter table plain drop column note; alter table plain add column late text;
         update plain set late = 'x' where id = 2;
         create table parent (id int); insert into parent values (1);
         create table child () inherits (parent); insert into child values (2);
         create view v as select * from plain;",
        None,
        None,
    )
    .await;
    let got = table(&w, "select * from plain").await;
    assert_eq!(
        lines(&got),
        vec![
            "+----+------+",
            "| id | late |",
            "+----+------+",
            "| 1  |      |",
            "| 2  | x    |",
            "+----+------+"
        ]
    );
    // `COPY parent` would miss the child's row: select * must not.
    let got = table(&w, "SELECT * FROM public.\"parent\"").await;
    assert!(got.contains("| 1  |") && got.contains("| 2  |"), "{got}");
    let got = table(&w, "select * from v").await;
    assert!(got.contains("| 2  | x    |"), "{got}");
}
