//! The snapshot diff against a straightforward in-memory reference, on random tables and
//! random edits (NULLs, duplicate and NULL keys, unicode, extreme floats), plus the commit
//! protocol: rejected rows are retried on the next run.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use ebb_core::change::Op;
use ebb_engine::diff::{DiffOptions, DiffSpec, PendingDiff, SnapshotStore, diff};
use proptest::prelude::*;

/// One source row: the key, then name, amount, flag, price, seen_at.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: Option<i64>,
    name: Option<String>,
    amount: Option<f64>,
    flag: Option<bool>,
    price: Option<i128>,
    seen_at: Option<i64>,
}

const COLUMNS: [&str; 5] = ["amount", "flag", "name", "price", "seen_at"];

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("flag", DataType::Boolean, true),
        Field::new("price", DataType::Decimal128(18, 2), true),
        Field::new(
            "seen_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("unmapped", DataType::Int64, true),
    ]))
}

fn batch(rows: &[Row], unmapped: i64) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.amount).collect::<Vec<_>>(),
        )),
        Arc::new(BooleanArray::from(
            rows.iter().map(|r| r.flag).collect::<Vec<_>>(),
        )),
        Arc::new(
            Decimal128Array::from(rows.iter().map(|r| r.price).collect::<Vec<_>>())
                .with_precision_and_scale(18, 2)
                .unwrap(),
        ),
        Arc::new(
            TimestampMicrosecondArray::from(rows.iter().map(|r| r.seen_at).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        Arc::new(Int64Array::from(vec![unmapped; rows.len()])),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

fn stream(rows: &[Row], unmapped: i64) -> SendableRecordBatchStream {
    // Two batches, to exercise batch boundaries.
    let all = batch(rows, unmapped);
    let half = all.num_rows() / 2;
    let parts = vec![
        Ok(all.slice(0, half)),
        Ok(all.slice(half, all.num_rows() - half)),
    ];
    Box::pin(RecordBatchStreamAdapter::new(
        schema(),
        futures::stream::iter(parts),
    ))
}

/// A value as the reference compares it: floats canonical (-0 = 0, one NaN).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum V {
    Null,
    Text(String),
    Float(u64),
    Bool(bool),
    Dec(i128),
    Ts(i64),
}

fn canon_f(f: f64) -> u64 {
    if f == 0.0 {
        0.0f64.to_bits()
    } else if f.is_nan() {
        0x7ff8_0000_0000_0000
    } else {
        f.to_bits()
    }
}

impl Row {
    /// The mapped values in canonical column order (amount, flag, name, price, seen_at).
    fn values(&self) -> Vec<V> {
        vec![
            self.amount.map_or(V::Null, |f| V::Float(canon_f(f))),
            self.flag.map_or(V::Null, V::Bool),
            self.name.clone().map_or(V::Null, V::Text),
            self.price.map_or(V::Null, V::Dec),
            self.seen_at.map_or(V::Null, V::Ts),
        ]
    }
}

fn value_at(array: &dyn Array, row: usize) -> V {
    if array.is_null(row) {
        return V::Null;
    }
    match array.data_type() {
        DataType::Utf8 => V::Text(array.as_string::<i32>().value(row).to_string()),
        DataType::Float64 => V::Float(canon_f(
            array
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(row),
        )),
        DataType::Boolean => V::Bool(array.as_boolean().value(row)),
        DataType::Decimal128(..) => V::Dec(
            array
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(row),
        ),
        DataType::Timestamp(..) => V::Ts(
            array
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .value(row),
        ),
        other => panic!("unexpected type {other}"),
    }
}

/// One expected or observed change: (key, op, changed columns, the values sent).
type Change = (String, Op, Option<BTreeSet<String>>, Vec<V>);

/// The reference diff: delivered state `old` (key → values) against `new` rows.
fn reference(old: &BTreeMap<i64, Vec<V>>, new: &[Row]) -> (Vec<Change>, u64, u64) {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    let mut null_keys = 0;
    for r in new {
        match r.id {
            Some(id) => *counts.entry(id).or_default() += 1,
            None => null_keys += 1,
        }
    }
    let dups: BTreeSet<i64> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| *k)
        .collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for r in new {
        let Some(id) = r.id else { continue };
        if dups.contains(&id) {
            continue;
        }
        seen.insert(id);
        let values = r.values();
        match old.get(&id) {
            None => out.push((id.to_string(), Op::Insert, None, values)),
            Some(before) if *before != values => {
                let changed: BTreeSet<String> = COLUMNS
                    .iter()
                    .zip(before.iter().zip(&values))
                    .filter(|(_, (a, b))| a != b)
                    .map(|(c, _)| c.to_string())
                    .collect();
                out.push((id.to_string(), Op::Update, Some(changed), values));
            }
            Some(_) => {}
        }
    }
    for (id, before) in old {
        if !seen.contains(id) && !dups.contains(id) {
            out.push((id.to_string(), Op::Delete, None, before.clone()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    (out, null_keys, dups.len() as u64)
}

fn spec() -> DiffSpec {
    DiffSpec {
        sync: "contacts".into(),
        key_columns: vec!["id".into()],
        // Deliberately out of order: the canonical order is by name.
        columns: vec![
            "seen_at".into(),
            "name".into(),
            "amount".into(),
            "flag".into(),
            "price".into(),
        ],
    }
}

/// Runs one diff and commits it with `reject` (keys the destination refused). Returns the
/// observed changes and the report's bad-key counts.
async fn run(
    store: &SnapshotStore,
    rows: &[Row],
    unmapped: i64,
    reject: &dyn Fn(&str) -> bool,
) -> (Vec<Change>, u64, u64) {
    let pending = diff(
        stream(rows, unmapped),
        spec(),
        store,
        DiffOptions::default(),
    )
    .await
    .unwrap();
    deliver(pending, store, reject).await
}

/// Reads every change of `pending` and commits it with the keys `reject` refuses.
async fn deliver(
    pending: PendingDiff,
    store: &SnapshotStore,
    reject: &dyn Fn(&str) -> bool,
) -> (Vec<Change>, u64, u64) {
    let (observed, rejected) = observe(&pending, reject);
    let report = pending.report().clone();
    pending.commit(store, &rejected).await.unwrap();
    (
        observed,
        report.bad_keys.null_key_rows,
        report.bad_keys.duplicate_keys,
    )
}

/// Every change of `pending`, sorted by key, and the keys of those `reject` refuses.
fn observe(pending: &PendingDiff, reject: &dyn Fn(&str) -> bool) -> (Vec<Change>, HashSet<String>) {
    let mut observed = Vec::new();
    let mut rejected = HashSet::new();
    for cb in pending.changes().unwrap() {
        let cb = cb.unwrap();
        let entity = cb.entity();
        for row in 0..cb.num_rows() {
            let values: Vec<V> = COLUMNS
                .iter()
                .map(|c| value_at(entity.column_by_name(c).unwrap().as_ref(), row))
                .collect();
            let changed = cb.changed(row).map(|c| c.into_iter().collect());
            observed.push((cb.key(row).to_string(), cb.op(row), changed, values));
            if reject(cb.key(row)) {
                rejected.insert(cb.key(row).to_string());
            }
        }
    }
    observed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(pending.report().changes(), observed.len() as u64);
    (observed, rejected)
}

/// Applies observed changes that were not rejected to the delivered state.
fn apply(state: &mut BTreeMap<i64, Vec<V>>, changes: &[Change], reject: &dyn Fn(&str) -> bool) {
    for (key, op, _, values) in changes {
        if reject(key) {
            continue;
        }
        let id: i64 = key.parse().unwrap();
        match op {
            Op::Delete => {
                state.remove(&id);
            }
            _ => {
                state.insert(id, values.clone());
            }
        }
    }
}

fn row_strategy() -> impl Strategy<Value = Row> {
    row_strategy_with(prop_oneof![Just(i64::MIN / 2), -2_000_000i64..2_000_000].boxed())
}

fn row_strategy_with(seen_at: BoxedStrategy<i64>) -> impl Strategy<Value = Row> {
    let name = prop_oneof![
        Just(None),
        Just(Some(String::new())),
        Just(Some("Zoë Müller".to_string())),
        Just(Some("José, \"Pepe\" Núñez".to_string())),
        "[a-zł😀]{0,6}".prop_map(Some),
    ];
    let amount = prop_oneof![
        Just(None),
        Just(Some(0.0)),
        Just(Some(-0.0)),
        Just(Some(f64::NAN)),
        Just(Some(f64::INFINITY)),
        Just(Some(f64::MAX)),
        Just(Some(f64::MIN_POSITIVE)),
        (-1000i32..1000).prop_map(|i| Some(f64::from(i) / 8.0)),
    ];
    (
        prop_oneof![9 => (0i64..40).prop_map(Some), 1 => Just(None)],
        name,
        amount,
        proptest::option::of(any::<bool>()),
        proptest::option::of(prop_oneof![
            Just(i128::from(i64::MAX)),
            -100_000i128..100_000
        ]),
        proptest::option::of(seen_at),
    )
        .prop_map(|(id, name, amount, flag, price, seen_at)| Row {
            id,
            name,
            amount,
            flag,
            price,
            seen_at,
        })
}

/// An edit of a table: change some rows' values, drop some, add some.
type Edit = (Vec<Row>, Vec<usize>, Vec<(usize, Row)>);

fn edit_strategy() -> impl Strategy<Value = Edit> {
    edit_strategy_with(row_strategy().boxed())
}

fn edit_strategy_with(rows: BoxedStrategy<Row>) -> impl Strategy<Value = Edit> {
    (
        proptest::collection::vec(rows.clone(), 0..12),
        proptest::collection::vec(0usize..100, 0..8),
        proptest::collection::vec((0usize..100, rows), 0..12),
    )
}

fn edited(base: &[Row], (added, dropped, changed): &Edit) -> Vec<Row> {
    let mut rows = base.to_vec();
    for (at, row) in changed {
        if !rows.is_empty() {
            let i = at % rows.len();
            // Keep the key: this is an update of the same entity.
            rows[i] = Row {
                id: rows[i].id,
                ..row.clone()
            };
        }
    }
    for at in dropped {
        if !rows.is_empty() {
            rows.remove(at % rows.len());
        }
    }
    rows.extend(added.iter().cloned());
    rows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn diff_equals_the_reference_across_runs(
        first in proptest::collection::vec(row_strategy(), 0..40),
        edit in edit_strategy(),
        reject_mod in 2u64..5,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let tmp = tempfile::tempdir().unwrap();
            let store = SnapshotStore::local(tmp.path()).unwrap();
            let mut state: BTreeMap<i64, Vec<V>> = BTreeMap::new();
            let none = |_: &str| false;

            // Run 1: everything is new.
            let (observed, null_keys, dups) = run(&store, &first, 1, &none).await;
            let (expected, exp_null, exp_dups) = reference(&state, &first);
            prop_assert_eq!(&observed, &expected);
            prop_assert_eq!((null_keys, dups), (exp_null, exp_dups));
            apply(&mut state, &observed, &none);

            // Run 2: edited rows; the destination rejects some keys. An unmapped column
            // changes everywhere and must not cause any change.
            let second = edited(&first, &edit);
            let reject = move |k: &str| k.parse::<u64>().unwrap_or(0) % reject_mod == 0;
            let (observed, _, _) = run(&store, &second, 2, &reject).await;
            let (expected, _, _) = reference(&state, &second);
            prop_assert_eq!(&observed, &expected);
            apply(&mut state, &observed, &reject);

            // Run 3: same rows again: exactly the rejected changes come back.
            let (observed, _, _) = run(&store, &second, 3, &none).await;
            let (expected, _, _) = reference(&state, &second);
            prop_assert_eq!(&observed, &expected);
            let retried: BTreeSet<&str> = observed.iter().map(|c| c.0.as_str()).collect();
            let rejected_before: BTreeSet<&str> = expected.iter().map(|c| c.0.as_str()).filter(|k| reject(k)).collect();
            prop_assert_eq!(retried, rejected_before);
            Ok(())
        })?;
    }
}

fn row(id: i64, name: &str, amount: f64) -> Row {
    Row {
        id: Some(id),
        name: Some(name.into()),
        amount: Some(amount),
        flag: None,
        price: None,
        seen_at: None,
    }
}

#[tokio::test]
async fn skip_initial_backfill_and_full_resync() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SnapshotStore::local(tmp.path()).unwrap();
    let rows = vec![row(1, "a", 1.0), row(2, "b", 2.0), row(3, "c", 3.0)];
    let options = DiffOptions {
        skip_initial_backfill: true,
        ..DiffOptions::default()
    };
    let pending = diff(stream(&rows, 0), spec(), &store, options)
        .await
        .unwrap();
    assert_eq!(pending.report().marked_synced, Some(3));
    assert_eq!(pending.changes().unwrap().count(), 0);
    let manifest = pending.commit(&store, &HashSet::new()).await.unwrap();
    assert_eq!((manifest.version, manifest.rows), (1, 3));

    // A normal run afterwards sends only what changed.
    let changed = vec![row(1, "a", 1.0), row(2, "B", 2.0)];
    let pending = diff(stream(&changed, 0), spec(), &store, DiffOptions::default())
        .await
        .unwrap();
    let r = pending.report().clone();
    assert_eq!((r.inserts, r.updates, r.deletes, r.unchanged), (0, 1, 1, 1));
    pending.commit(&store, &HashSet::new()).await.unwrap();

    // A full resync sends every row again, as upserts.
    let options = DiffOptions {
        full_resync: true,
        ..DiffOptions::default()
    };
    let pending = diff(stream(&changed, 0), spec(), &store, options)
        .await
        .unwrap();
    let ops: Vec<Op> = pending
        .changes()
        .unwrap()
        .flat_map(|cb| {
            let cb = cb.unwrap();
            (0..cb.num_rows())
                .map(move |i| cb.op(i))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ops, vec![Op::Upsert, Op::Upsert]);
    let manifest = pending.commit(&store, &HashSet::new()).await.unwrap();
    assert_eq!((manifest.version, manifest.parent), (3, Some(2)));
    // Versions older than the parent are collected.
    let left: Vec<String> = std::fs::read_dir(tmp.path().join("contacts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        left,
        vec![
            "CURRENT",
            "v000002",
            "v000002.json",
            "v000003",
            "v000003.json"
        ]
    );
}

#[tokio::test]
async fn bad_keys_are_reported_and_never_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SnapshotStore::local(tmp.path()).unwrap();
    let mut rows = vec![
        row(1, "a", 1.0),
        row(2, "b", 2.0),
        row(2, "b2", 2.5),
        row(3, "c", 3.0),
    ];
    rows.push(Row {
        id: None,
        ..row(0, "nokey", 0.0)
    });
    let pending = diff(stream(&rows, 0), spec(), &store, DiffOptions::default())
        .await
        .unwrap();
    let bad = pending.report().bad_keys.clone();
    assert_eq!(
        (bad.null_key_rows, bad.duplicate_keys, bad.duplicate_rows),
        (1, 1, 2)
    );
    assert_eq!(bad.sample_duplicates, vec!["2".to_string()]);
    let keys: Vec<String> = pending
        .changes()
        .unwrap()
        .flat_map(|cb| {
            let cb = cb.unwrap();
            (0..cb.num_rows())
                .map(move |i| cb.key(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        keys.into_iter().collect::<BTreeSet<_>>(),
        ["1", "3"].map(String::from).into()
    );
}

#[tokio::test]
async fn a_mapped_column_the_model_lacks_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SnapshotStore::local(tmp.path()).unwrap();
    let mut s = spec();
    s.columns.push("lifetime_value".into());
    let err = diff(
        stream(&[row(1, "a", 1.0)], 0),
        s,
        &store,
        DiffOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("maps column \"lifetime_value\", which the model does not return"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Both engines on a Postgres warehouse: the warehouse-native diff (snapshots in
// `ebb_state`) and DataFusion over the streamed model must both equal the reference.

mod on_postgres {
    use super::*;
    use ebb_engine::diff::postgres::{encoding_sql, key_sql, prepare_warehouse};
    use ebb_engine::diff::{DiffEngine, diff_model};
    use ebb_warehouse::AnyWarehouse;
    use ebb_warehouse::postgres::PgWarehouse;

    const MODEL: &str = "select * from src";

    /// Timestamps Postgres can hold, with both ends and the infinities.
    fn pg_seen_at() -> BoxedStrategy<i64> {
        prop_oneof![
            Just(8_000_000_000_000_000_000i64),
            Just(-200_000_000_000_000_000i64),
            Just(i64::MAX),
            Just(i64::MIN),
            -2_000_000i64..2_000_000,
        ]
        .boxed()
    }

    fn pg_rows() -> BoxedStrategy<Row> {
        row_strategy_with(pg_seen_at()).boxed()
    }

    fn price_text(u: i128) -> String {
        let sign = if u < 0 { "-" } else { "" };
        let a = u.abs();
        format!("{sign}{}.{:02}", a / 100, a % 100)
    }

    async fn create_source(client: &tokio_postgres::Client) {
        client
            .batch_execute(
                "create table src (id bigint, name text, amount float8, flag bool, \
                 price numeric(20,2), seen_at timestamptz, unmapped bigint)",
            )
            .await
            .unwrap();
    }

    /// Replaces the rows of `src`.
    async fn load(client: &tokio_postgres::Client, rows: &[Row], unmapped: i64) {
        let ids: Vec<Option<i64>> = rows.iter().map(|r| r.id).collect();
        let names: Vec<Option<String>> = rows.iter().map(|r| r.name.clone()).collect();
        let amounts: Vec<Option<f64>> = rows.iter().map(|r| r.amount).collect();
        let flags: Vec<Option<bool>> = rows.iter().map(|r| r.flag).collect();
        let prices: Vec<Option<String>> = rows.iter().map(|r| r.price.map(price_text)).collect();
        let seen: Vec<Option<i64>> = rows.iter().map(|r| r.seen_at).collect();
        client.batch_execute("truncate src").await.unwrap();
        client
            .execute(
                "insert into src \
                 select id, name, amount, flag, price::numeric(20,2), \
                   case when seen = 9223372036854775807 then 'infinity'::timestamptz \
                        when seen = -9223372036854775807 - 1 then '-infinity'::timestamptz \
                        else to_timestamp(0) + (seen / 1000000) * interval '1 second' \
                             + (seen % 1000000) * interval '1 microsecond' end, \
                   $7 \
                 from unnest($1::int8[], $2::text[], $3::float8[], $4::bool[], $5::text[], $6::int8[]) \
                   as t(id, name, amount, flag, price, seen)",
                &[&ids, &names, &amounts, &flags, &prices, &seen, &unmapped],
            )
            .await
            .unwrap();
    }

    fn options(engine: DiffEngine) -> DiffOptions {
        DiffOptions {
            engine,
            ..DiffOptions::default()
        }
    }

    async fn run_on(
        warehouse: &AnyWarehouse,
        store: &SnapshotStore,
        engine: DiffEngine,
        reject: &dyn Fn(&str) -> bool,
    ) -> (Vec<Change>, u64, u64) {
        let pending = diff_model(warehouse, MODEL, spec(), store, options(engine))
            .await
            .unwrap();
        let resolved = if engine == DiffEngine::Auto {
            DiffEngine::Warehouse
        } else {
            engine
        };
        assert_eq!(pending.engine(), resolved);
        deliver(pending, store, reject).await
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        #[test]
        fn both_engines_equal_the_reference(
            first in proptest::collection::vec(pg_rows(), 0..40),
            edit in edit_strategy_with(pg_rows()),
            reject_mod in 2u64..5,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let db = ebb_testkit::PgCluster::shared().fresh_database().await;
                let client = db.connect().await;
                create_source(&client).await;
                let warehouse = AnyWarehouse::Postgres(PgWarehouse::open(&db.url(), None, Some(2)).unwrap());
                let tmp = tempfile::tempdir().unwrap();
                let store = SnapshotStore::local(tmp.path()).unwrap();
                let mut state: BTreeMap<i64, Vec<V>> = BTreeMap::new();
                let none = |_: &str| false;
                let engines = [DiffEngine::Auto, DiffEngine::DataFusion];

                // Run 1: everything is new.
                load(&client, &first, 1).await;
                let (expected, exp_null, exp_dups) = reference(&state, &first);
                for engine in engines {
                    let (observed, null_keys, dups) = run_on(&warehouse, &store, engine, &none).await;
                    prop_assert_eq!(&observed, &expected, "engine {:?}", engine);
                    prop_assert_eq!((null_keys, dups), (exp_null, exp_dups));
                }
                apply(&mut state, &expected, &none);

                // Run 2: edited rows; some keys rejected; the unmapped column changes.
                let second = edited(&first, &edit);
                load(&client, &second, 2).await;
                let reject = move |k: &str| k.parse::<u64>().unwrap_or(0) % reject_mod == 0;
                let (expected, _, _) = reference(&state, &second);
                for engine in engines {
                    let (observed, _, _) = run_on(&warehouse, &store, engine, &reject).await;
                    prop_assert_eq!(&observed, &expected, "engine {:?}", engine);
                }
                apply(&mut state, &expected, &reject);

                // Run 3: the same rows: exactly the rejected changes come back.
                load(&client, &second, 3).await;
                let (expected, _, _) = reference(&state, &second);
                let rejected_before: BTreeSet<&str> =
                    expected.iter().map(|c| c.0.as_str()).filter(|k| reject(k)).collect();
                for engine in engines {
                    let (observed, _, _) = run_on(&warehouse, &store, engine, &none).await;
                    prop_assert_eq!(&observed, &expected, "engine {:?}", engine);
                    let retried: BTreeSet<&str> = observed.iter().map(|c| c.0.as_str()).collect();
                    prop_assert_eq!(&retried, &rejected_before);
                }
                Ok(())
            })?;
        }
    }

    /// The canonical encoding written in SQL is byte for byte the one the DataFusion engine
    /// hashes, for every type the warehouse-native diff accepts, edge values and NULLs
    /// included; keys are the same text; the row digest is sha256's first 8 bytes.
    #[tokio::test]
    async fn the_sql_encoding_is_the_canonical_encoding() {
        use arrow::array::BinaryArray;
        use sha2::Digest;

        let db = ebb_testkit::PgCluster::shared().fresh_database().await;
        let client = db.connect().await;
        client
            .batch_execute(
                "create type mood as enum ('sad', 'ok', 'happy');
                 create table t (
                   i2 int2, i4 int4, i8 int8, o oid, f4 float4, f8 float8,
                   d2 numeric(10,2), d38 numeric(38,5), dneg numeric(12,-2), dn numeric,
                   tx text, vc varchar(20), bp char(5), ch \"char\", nm name, by bytea, u uuid,
                   dt date, tm time, ts timestamp, tz timestamptz,
                   js json, jb jsonb, b bool, e mood);
                 insert into t values
                   (-32768, -2147483648, -9223372036854775808, 0, '-0', '-0',
                    -99999999.99, -999999999999999999999999999999999.99999, -123400, 'NaN',
                    '', '', '', 'a', 'n', '\\x', '00000000-0000-0000-0000-000000000000',
                    '-infinity', '00:00', '-infinity', '-infinity',
                    '[]', '{}', false, 'sad'),
                   (32767, 2147483647, 9223372036854775807, 4294967295, 'NaN', 'NaN',
                    99999999.99, 999999999999999999999999999999999.99999, 99999999999900, 1.10,
                    'Zoë 😀 \"q\" \\ x', 'ünïcode', 'ab', 'Z', 'name', '\\x00ff10',
                    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
                    'infinity', '24:00', 'infinity', 'infinity',
                    '{\"a\": [1, 2.50]}', '{\"b\": 1, \"a\": \"x\"}', true, 'happy'),
                   (7, 7, 7, 7, 1.5e-40, 1e308, 0.01, 0.00001, 100, 123456789012345678901234567890.123,
                    e'tab\\there\\nnl', 'x', 'abcde', ' ', 'x', '\\x01', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
                    '4713-01-01 BC', '12:34:56.789012', '294000-01-01 00:00:00', '1969-12-31 23:59:59.999999+00',
                    'null', '[1, \"two\", null]', null, 'ok'),
                   (-1, 0, -1, 1, 'Infinity', '-Infinity', -0.01, -0.00001, 0, -0.000,
                    '-', 'y', 'a', 'a', 'y', '\\x', '12345678-1234-1234-1234-123456789abc',
                    '1970-01-01', '00:00:00.000001', '1970-01-01 00:00:00', '2000-02-29 12:00:00-08',
                    '\"s\"', '3', true, null),
                   (null, null, null, null, null, null, null, null, null, null,
                    null, null, null, null, null, null, null,
                    null, null, null, null, null, null, null, null);",
            )
            .await
            .unwrap();
        let pg = PgWarehouse::open(&db.url(), None, Some(2)).unwrap();
        prepare_warehouse(&pg).await.unwrap();
        let columns = pg.columns("select * from t").await.unwrap();
        let mut select = Vec::new();
        for c in &columns {
            select.push(format!("\"{}\"", c.name));
        }
        for c in &columns {
            select.push(encoding_sql(c, &format!("t.\"{}\"", c.name)).unwrap());
        }
        let key_columns: Vec<_> = columns
            .iter()
            .filter(|c| key_sql(&[(*c, "x".into())]).is_ok())
            .collect();
        for c in &key_columns {
            select.push(key_sql(&[(*c, format!("t.\"{}\"", c.name))]).unwrap());
        }
        let pair = [
            (&columns[0], "t.i2".to_string()),
            (&columns[10], "t.tx".to_string()),
            (&columns[16], "t.u".to_string()),
        ];
        select.push(key_sql(&pair).unwrap());
        select.push(format!(
            "substr(sha256({}), 1, 8)",
            columns
                .iter()
                .map(|c| encoding_sql(c, &format!("t.\"{}\"", c.name)).unwrap())
                .collect::<Vec<_>>()
                .join(" || ")
        ));
        let sql = format!("select {} from t", select.join(", "));
        let batches: Vec<RecordBatch> = {
            use futures::TryStreamExt;
            ebb_warehouse::Warehouse::query(&pg, &sql)
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap()
        };
        let n = columns.len();
        let mut checked = 0;
        for b in &batches {
            for row in 0..b.num_rows() {
                let mut whole = Vec::new();
                for (i, c) in columns.iter().enumerate() {
                    let mut expected = Vec::new();
                    ebb_engine::diff::canonical::encode_value(
                        b.column(i).as_ref(),
                        row,
                        &mut expected,
                    )
                    .unwrap();
                    let got = b
                        .column(n + i)
                        .as_any()
                        .downcast_ref::<BinaryArray>()
                        .unwrap();
                    assert_eq!(
                        got.value(row),
                        expected.as_slice(),
                        "column {} ({}) row {row}",
                        c.name,
                        c.ty
                    );
                    whole.extend_from_slice(&expected);
                    checked += 1;
                }
                for (j, c) in key_columns.iter().enumerate() {
                    let i = columns.iter().position(|x| x.name == c.name).unwrap();
                    // Infinite and BC dates display differently (documented): not usable as keys.
                    if c.name == "dt" && row < 3 {
                        continue;
                    }
                    let expected = ebb_engine::diff::canonical::key_strings(
                        &[b.column(i).as_ref()],
                        b.num_rows(),
                    )
                    .unwrap();
                    let got = b.column(2 * n + j).as_string::<i32>();
                    assert_eq!(
                        got.is_null(row)
                            .then_some(())
                            .map_or(Some(got.value(row)), |_| None),
                        expected
                            .is_null(row)
                            .then_some(())
                            .map_or(Some(expected.value(row)), |_| None),
                        "key of column {} row {row}",
                        c.name
                    );
                }
                let composite = ebb_engine::diff::canonical::key_strings(
                    &[
                        b.column(0).as_ref(),
                        b.column(10).as_ref(),
                        b.column(16).as_ref(),
                    ],
                    b.num_rows(),
                )
                .unwrap();
                let got = b.column(2 * n + key_columns.len()).as_string::<i32>();
                assert_eq!(
                    got.is_null(row),
                    composite.is_null(row),
                    "composite key row {row}"
                );
                if !got.is_null(row) {
                    assert_eq!(
                        got.value(row),
                        composite.value(row),
                        "composite key row {row}"
                    );
                }
                let digest = sha2::Sha256::digest(&whole);
                let got = b
                    .column(2 * n + key_columns.len() + 1)
                    .as_any()
                    .downcast_ref::<BinaryArray>()
                    .unwrap();
                assert_eq!(got.value(row), &digest[..8], "row digest {row}");
            }
        }
        assert_eq!(checked, 5 * n);
        // Every column above is a key type except floats, time, timestamps and bytea.
        assert!(key_columns.len() >= 15, "{}", key_columns.len());
    }

    /// `skip_initial_backfill`, `full_resync` and the duplicate sample on both engines.
    #[tokio::test]
    async fn options_on_both_engines() {
        let db = ebb_testkit::PgCluster::shared().fresh_database().await;
        let client = db.connect().await;
        create_source(&client).await;
        let warehouse =
            AnyWarehouse::Postgres(PgWarehouse::open(&db.url(), None, Some(2)).unwrap());
        for engine in [DiffEngine::Warehouse, DiffEngine::DataFusion] {
            let tmp = tempfile::tempdir().unwrap();
            let store = SnapshotStore::local(tmp.path()).unwrap();
            let sync_spec = DiffSpec {
                sync: format!("opts_{engine:?}"),
                ..spec()
            };
            load(
                &client,
                &[
                    row(1, "a", 1.0),
                    row(2, "b", 2.0),
                    row(3, "c", 3.0),
                    row(3, "c2", 3.5),
                ],
                0,
            )
            .await;
            let skip = DiffOptions {
                skip_initial_backfill: true,
                ..options(engine)
            };
            let pending = diff_model(&warehouse, MODEL, sync_spec.clone(), &store, skip)
                .await
                .unwrap();
            assert_eq!(pending.engine(), engine);
            assert_eq!(pending.report().marked_synced, Some(2), "{engine:?}");
            assert_eq!(
                pending.report().bad_keys.sample_duplicates,
                vec!["3".to_string()]
            );
            assert_eq!(pending.changes().unwrap().count(), 0);
            let manifest = pending.commit(&store, &HashSet::new()).await.unwrap();
            assert_eq!((manifest.version, manifest.rows), (1, 2), "{engine:?}");

            // A normal run sends only what changed; the duplicate key 3 is still left out.
            load(
                &client,
                &[row(1, "a", 1.0), row(2, "B", 2.0), row(4, "d", 4.0)],
                0,
            )
            .await;
            let pending = diff_model(
                &warehouse,
                MODEL,
                sync_spec.clone(),
                &store,
                options(engine),
            )
            .await
            .unwrap();
            let r = pending.report().clone();
            assert_eq!(
                (r.inserts, r.updates, r.deletes, r.unchanged),
                (1, 1, 0, 1),
                "{engine:?}"
            );
            let changed: Vec<Option<Vec<String>>> = pending
                .changes()
                .unwrap()
                .flat_map(|cb| {
                    let cb = cb.unwrap();
                    (0..cb.num_rows())
                        .map(move |i| cb.changed(i))
                        .collect::<Vec<_>>()
                })
                .collect();
            assert!(
                changed.contains(&Some(vec!["name".to_string()])),
                "{changed:?}"
            );
            // Key 4 is rejected: it stays out of the snapshot.
            let rejected: HashSet<String> = ["4".to_string()].into();
            let manifest = pending.commit(&store, &rejected).await.unwrap();
            assert_eq!((manifest.version, manifest.rows), (2, 2), "{engine:?}");

            // A full resync sends every row again, as upserts, and key 4 for the first time.
            let resync = DiffOptions {
                full_resync: true,
                ..options(engine)
            };
            let pending = diff_model(&warehouse, MODEL, sync_spec.clone(), &store, resync)
                .await
                .unwrap();
            let mut sent: Vec<(String, Op)> = pending
                .changes()
                .unwrap()
                .flat_map(|cb| {
                    let cb = cb.unwrap();
                    (0..cb.num_rows())
                        .map(move |i| (cb.key(i).to_string(), cb.op(i)))
                        .collect::<Vec<_>>()
                })
                .collect();
            sent.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                sent,
                vec![
                    ("1".to_string(), Op::Upsert),
                    ("2".to_string(), Op::Upsert),
                    ("4".to_string(), Op::Upsert)
                ],
                "{engine:?}"
            );
            let manifest = pending.commit(&store, &HashSet::new()).await.unwrap();
            assert_eq!(
                (manifest.version, manifest.parent, manifest.rows),
                (3, Some(2), 3)
            );

            // Afterwards nothing is left to send.
            let pending = diff_model(
                &warehouse,
                MODEL,
                sync_spec.clone(),
                &store,
                options(engine),
            )
            .await
            .unwrap();
            assert_eq!(pending.report().changes(), 0, "{engine:?}");
        }
    }

    /// Two runs diffed from the same version: the second commit is refused, not merged.
    #[tokio::test]
    async fn a_stale_commit_is_refused_in_the_warehouse() {
        let db = ebb_testkit::PgCluster::shared().fresh_database().await;
        let client = db.connect().await;
        create_source(&client).await;
        let warehouse =
            AnyWarehouse::Postgres(PgWarehouse::open(&db.url(), None, Some(2)).unwrap());
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapshotStore::local(tmp.path()).unwrap();
        load(&client, &[row(1, "a", 1.0)], 0).await;
        let first = diff_model(
            &warehouse,
            MODEL,
            spec(),
            &store,
            options(DiffEngine::Warehouse),
        )
        .await
        .unwrap();
        first.commit(&store, &HashSet::new()).await.unwrap();
        load(&client, &[row(1, "b", 1.0)], 0).await;
        let a = diff_model(
            &warehouse,
            MODEL,
            spec(),
            &store,
            options(DiffEngine::Warehouse),
        )
        .await
        .unwrap();
        let changes_a = a.report().changes();
        a.commit(&store, &HashSet::new()).await.unwrap();
        assert_eq!(changes_a, 1);
        // A diff based on version 2, then another run commits version 3 in between.
        load(&client, &[row(1, "c", 1.0)], 0).await;
        let stale = diff_model(
            &warehouse,
            MODEL,
            spec(),
            &store,
            options(DiffEngine::Warehouse),
        )
        .await
        .unwrap();
        let err = {
            // Another run of the same sync commits first (it re-stages, then commits).
            let other = diff_model(
                &warehouse,
                MODEL,
                spec(),
                &store,
                options(DiffEngine::Warehouse),
            )
            .await
            .unwrap();
            other.commit(&store, &HashSet::new()).await.unwrap();
            stale.commit(&store, &HashSet::new()).await.unwrap_err()
        };
        assert!(
            err.to_string().contains("another run committed first"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unsupported_types_are_clear_errors() {
        let db = ebb_testkit::PgCluster::shared().fresh_database().await;
        let client = db.connect().await;
        client
            .batch_execute("create table iv (id bigint, span interval)")
            .await
            .unwrap();
        let warehouse =
            AnyWarehouse::Postgres(PgWarehouse::open(&db.url(), None, Some(2)).unwrap());
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapshotStore::local(tmp.path()).unwrap();
        let spec = DiffSpec {
            sync: "iv".into(),
            key_columns: vec!["id".into()],
            columns: vec!["span".into()],
        };
        let err = diff_model(
            &warehouse,
            "select * from iv",
            spec,
            &store,
            options(DiffEngine::Auto),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("mapped column \"span\" has type interval")
                && err.to_string().contains("cast it to text"),
            "{err}"
        );
    }
}

/// Under a memory limit too small for a hash join of the (key, hash) pairs, the diff takes
/// the sort-merge join (spilling) and the exact duplicate check, with the same results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tight_memory_limit_takes_the_spilling_path() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SnapshotStore::local(&tmp.path().join("snapshots")).unwrap();
    let n = 800_000i64;
    let first: Vec<Row> = (0..n).map(|i| row(i, "x", i as f64)).collect();
    let options = DiffOptions {
        memory_limit: Some(64 << 20),
        staging_dir: Some(tmp.path().join("staging")),
        ..DiffOptions::default()
    };
    let pending = diff(stream(&first, 0), spec(), &store, options.clone())
        .await
        .unwrap();
    assert_eq!(pending.report().inserts, n as u64);
    pending.commit(&store, &HashSet::new()).await.unwrap();

    // Every 100th row updated, every 400th deleted, 1,000 inserted, one key duplicated.
    let mut second: Vec<Row> = first
        .iter()
        .filter(|r| r.id.unwrap() % 400 != 1)
        .map(|r| {
            if r.id.unwrap() % 100 == 2 {
                row(r.id.unwrap(), "y", r.amount.unwrap())
            } else {
                r.clone()
            }
        })
        .collect();
    second.extend((n..n + 1000).map(|i| row(i, "new", 0.0)));
    second.push(row(5, "dup", 5.0));
    let pending = diff(stream(&second, 0), spec(), &store, options.clone())
        .await
        .unwrap();
    let r = pending.report().clone();
    assert_eq!(
        (r.inserts, r.updates, r.deletes, r.bad_keys.duplicate_keys),
        (1000, 8000, 2000, 1)
    );
    assert_eq!(r.bad_keys.sample_duplicates, vec!["5".to_string()]);
    assert_eq!(
        pending
            .changes()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum::<usize>(),
        11000
    );
    // The commit, under the same limit: the old snapshot streams past the accepted changes.
    let manifest = pending.commit(&store, &HashSet::new()).await.unwrap();
    assert_eq!(manifest.rows, n as u64 - 2000 + 1000);
    // Diffing the same rows again sends nothing.
    let pending = diff(stream(&second, 0), spec(), &store, options)
        .await
        .unwrap();
    let r = pending.report();
    assert_eq!((r.inserts, r.updates, r.deletes), (0, 0, 0));
}

/// One diff with `options`, read in full and committed if `commit`: the changes, the report, and
/// whether it ran against the snapshot's in-memory index (the fast path stages only its
/// candidates; the join path stages every new row).
async fn run_with(
    store: &SnapshotStore,
    rows: &[Row],
    options: DiffOptions,
    commit: bool,
) -> (Vec<Change>, ebb_engine::diff::DiffReport, bool) {
    let pending = diff(stream(rows, 0), spec(), store, options).await.unwrap();
    let by_index = pending.staging_dir().join("candidates.parquet").exists();
    assert_ne!(
        by_index,
        pending.staging_dir().join("new.parquet").exists(),
        "one path or the other"
    );
    let report = pending.report().clone();
    let (changes, _) = observe(&pending, &|_| false);
    if commit {
        pending.commit(store, &HashSet::new()).await.unwrap();
    }
    (changes, report, by_index)
}

/// Rows whose state is what `reference` compares: a committed run's rows, keyed.
fn state_of(rows: &[Row]) -> BTreeMap<i64, Vec<V>> {
    rows.iter().map(|r| (r.id.unwrap(), r.values())).collect()
}

/// Duplicated keys on the index path: a new key seen twice (the first row a candidate
/// insert), an updated delivered key seen twice (the first row a candidate update), an
/// unchanged delivered key seen twice, and a key seen three times. None is sent, none of
/// the delivered ones is deleted, and the report counts them as the join path does.
#[tokio::test]
async fn duplicate_keys_on_the_index_path() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SnapshotStore::local(tmp.path()).unwrap();
    let first: Vec<Row> = (0..10).map(|i| row(i, "a", i as f64)).collect();
    let (_, report, by_index) = run_with(&store, &first, DiffOptions::default(), true).await;
    assert_eq!((report.inserts, by_index), (10, false), "a first run joins");

    let mut second = first.clone();
    second[3] = row(3, "changed", 3.0);
    second.push(row(3, "changed again", 3.0)); // updated, then duplicated
    second.push(row(4, "a", 4.0)); // unchanged, then duplicated
    second.push(row(20, "new", 0.0)); // inserted, then duplicated
    second.push(row(20, "new", 0.0));
    second.push(row(21, "new", 0.0)); // three times
    second.push(row(21, "new", 1.0));
    second.push(row(21, "new", 2.0));
    second.push(row(22, "new", 0.0)); // a clean insert
    second[7] = row(7, "changed", 7.0); // a clean update
    second.remove(9); // a clean delete
    second.push(Row {
        id: None,
        ..row(0, "nokey", 0.0)
    });
    let (changes, report, by_index) = run_with(&store, &second, DiffOptions::default(), true).await;
    assert!(by_index);
    let (expected, null_keys, dup_keys) = reference(&state_of(&first), &second);
    assert_eq!(changes, expected);
    let keys: Vec<(&str, Op)> = changes.iter().map(|c| (c.0.as_str(), c.1)).collect();
    assert_eq!(
        keys,
        vec![("22", Op::Insert), ("7", Op::Update), ("9", Op::Delete)]
    );
    let bad = &report.bad_keys;
    assert_eq!(
        (bad.null_key_rows, bad.duplicate_keys),
        (null_keys, dup_keys)
    );
    assert_eq!((bad.duplicate_keys, bad.duplicate_rows), (4, 9));
    assert_eq!(bad.sample_duplicates, ["20", "21", "3", "4"]);
    assert_eq!(
        (
            report.inserts,
            report.updates,
            report.deletes,
            report.unchanged
        ),
        (1, 1, 1, 6)
    );
}

/// The same run diffed by index (no memory limit) and by the spilling join (a limit too
/// small for the index) gives the same changes and the same report. Under a limit that fits
/// the index but not all the new keys, the duplicate check ends with the exact `GROUP BY`
/// over the insert candidates, with the same result again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_the_join_and_the_overflow_agree() {
    let n = 800_000i64;
    let first: Vec<Row> = (0..n).map(|i| row(i, "x", i as f64)).collect();
    let mut second: Vec<Row> = first
        .iter()
        .filter(|r| r.id.unwrap() % 97 != 1)
        .map(|r| {
            let id = r.id.unwrap();
            if id % 50 == 2 {
                row(id, "y", r.amount.unwrap())
            } else {
                r.clone()
            }
        })
        .collect();
    second.extend((n..n + 120_000).map(|i| row(i, "new", 0.0)));
    // Duplicates among the new keys, late in the stream (past the new-key budget) and early,
    // of a delivered key and of an updated one.
    for id in [n + 119_990, n + 119_999, n + 5, 10, 52] {
        second.push(row(id, "dup", 1.0));
    }
    let (expected, _, exp_dups) = reference(&state_of(&first), &second);

    // The first run, committed once and copied for each case.
    let template = tempfile::tempdir().unwrap();
    let store = SnapshotStore::local(template.path()).unwrap();
    run_with(&store, &first, DiffOptions::default(), true).await;

    // The index of 800,000 keys takes 38.4 MB (48 bytes a key) and may take half the limit:
    // 64 MiB is too small (the join); 80 MiB fits it and leaves room for about 62,000 of the
    // 120,000 new keys.
    let mut results = Vec::new();
    for (limit, by_index_expected) in [
        (None, true),
        (Some(64 << 20), false),
        (Some(80 << 20), true),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(template.path(), tmp.path());
        let store = SnapshotStore::local(tmp.path()).unwrap();
        let options = DiffOptions {
            memory_limit: limit,
            staging_dir: Some(tmp.path().join("staging")),
            ..DiffOptions::default()
        };
        let (changes, report, by_index) = run_with(&store, &second, options.clone(), true).await;
        assert_eq!(by_index, by_index_expected, "limit {limit:?}");
        assert!(
            changes == expected,
            "limit {limit:?}: changes differ from the reference"
        );
        assert_eq!(report.bad_keys.duplicate_keys, exp_dups);
        // Committed under the same limit: the same rows are now delivered, so the same
        // model rows diffed again send nothing.
        let (again, _, _) = run_with(&store, &second, options, false).await;
        assert!(again.is_empty(), "limit {limit:?}: {} changes", again.len());
        results.push(report);
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
    assert_eq!(
        results[0].bad_keys.sample_duplicates,
        ["10", "52", "800005", "919990", "919999"]
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A snapshot the index cannot hold (here one edited by hand to hold a key twice) sends the
/// run to the join path after the model's rows have started streaming into the index path's
/// hashing: every row still reaches the join, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_the_index_refuses_falls_back_with_every_row() {
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let tmp = tempfile::tempdir().unwrap();
    let store = SnapshotStore::local(tmp.path()).unwrap();
    let n = 50_000i64;
    let first: Vec<Row> = (0..n).map(|i| row(i, "a", i as f64)).collect();
    run_with(&store, &first, DiffOptions::default(), true).await;

    // Every snapshot file rewritten with its last row's key replaced by its first row's.
    let mut files = Vec::new();
    let mut dirs = vec![tmp.path().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    assert!(!files.is_empty());
    let mut replaced = Vec::new();
    for path in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        if batch.num_rows() < 2 {
            continue;
        }
        let keys = batch.column(0).as_string::<i32>();
        let last = batch.num_rows() - 1;
        replaced.push(keys.value(last).parse::<i64>().unwrap());
        let edited: StringArray = (0..batch.num_rows())
            .map(|i| Some(keys.value(if i == last { 0 } else { i })))
            .collect();
        let mut columns = batch.columns().to_vec();
        columns[0] = Arc::new(edited);
        let batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None)
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }
    assert!(!replaced.is_empty());

    // The same rows again: the keys missing from the edited snapshot come back as inserts,
    // and every row was read.
    let (changes, report, by_index) = run_with(&store, &first, DiffOptions::default(), false).await;
    assert!(!by_index, "the index refuses a snapshot with a key twice");
    assert_eq!(report.rows_read, n as u64);
    let mut inserted: Vec<i64> = changes
        .iter()
        .filter(|c| c.1 == Op::Insert)
        .map(|c| c.0.parse().unwrap())
        .collect();
    inserted.sort_unstable();
    replaced.sort_unstable();
    assert_eq!(inserted, replaced);
}
