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
use ebb_engine::diff::{DiffOptions, DiffSpec, SnapshotStore, diff};
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
    let report = pending.report().clone();
    assert_eq!(report.changes(), observed.len() as u64);
    pending.commit(store, &rejected).await.unwrap();
    (
        observed,
        report.bad_keys.null_key_rows,
        report.bad_keys.duplicate_keys,
    )
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
        proptest::option::of(prop_oneof![Just(i64::MIN / 2), -2_000_000i64..2_000_000]),
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
fn edit_strategy() -> impl Strategy<Value = (Vec<Row>, Vec<usize>, Vec<(usize, Row)>)> {
    (
        proptest::collection::vec(row_strategy(), 0..12),
        proptest::collection::vec(0usize..100, 0..8),
        proptest::collection::vec((0usize..100, row_strategy()), 0..12),
    )
}

fn edited(
    base: &[Row],
    (added, dropped, changed): &(Vec<Row>, Vec<usize>, Vec<(usize, Row)>),
) -> Vec<Row> {
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
