//! A sync that reads a metric per entity (`metric: { name: mrr, entity: account }`): its rows
//! are each account's MRR, computed by the metrics layer, then diffed, delivered and
//! committed exactly like a model's rows. Run on the lake (DataFusion diff) and on a Postgres
//! warehouse (the diff runs inside Postgres); the expected values are computed here in Rust
//! from the rows the test wrote.

use std::collections::BTreeMap;
use std::path::Path;

use ebb_core::project::{Project, ProjectSource, SourceFile, load};
use ebb_delivery::MemoryDeadLetters;
use ebb_sandbox::webhook::WebhookReceiver;
use ebb_sync::{RunOptions, RunStatus, SyncError, SyncRunner};
use ebb_testkit::{PgCluster, TestDatabase};

const SECRET: &str = "whsec_L0eGefLzfEu8fI7tbSD7Sw7HVMUV5lTG";

/// (subscription, account, status, mrr)
type Sub = (&'static str, &'static str, &'static str, f64);

const FIRST: &[Sub] = &[
    ("s1", "a1", "active", 100.5),
    ("s2", "a1", "active", 49.5),
    ("s3", "a2", "active", 300.0),
    ("s4", "a2", "canceled", 999.0),
    ("s5", "a3", "active", 20.0),
];

/// a1 changes, a2 stays, a3 loses its only subscription, a4 is new.
const SECOND: &[Sub] = &[
    ("s1", "a1", "active", 100.5),
    ("s2", "a1", "active", 59.5),
    ("s3", "a2", "active", 300.0),
    ("s4", "a2", "canceled", 999.0),
    ("s6", "a4", "active", 70.25),
];

/// Each account's MRR: the active subscriptions' sum.
fn expected_mrr(subs: &[Sub]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (_, account, status, mrr) in subs {
        let value = if *status == "active" { *mrr } else { 0.0 };
        *out.entry(account.to_string()).or_insert(0.0) += value;
    }
    out
}

const METRICS_YML: &str = "\
semantic_models:
  - name: subscriptions
    model: subscriptions
    defaults: { agg_time_dimension: started_at }
    entities:
      - { name: subscription, type: primary, expr: subscription_id }
      - { name: account, type: foreign, expr: account_id }
    dimensions:
      - { name: started_at, type: time, type_params: { time_granularity: day } }
      - { name: status, type: categorical }
    measures:
      - { name: mrr, agg: sum, expr: active_mrr }
      - { name: subscription_count, agg: count, expr: subscription_id }
metrics:
  - { name: mrr, type: simple, type_params: { measure: mrr } }
  - { name: subscription_count, type: simple, type_params: { measure: subscription_count } }
";

/// The staging view reads the source; the semantic model reads a model built on it, so the
/// sync must build what its metric reads (and what that is built on).
const STG_SQL: &str = "select subscription_id, account_id, status, cast(mrr as double precision) as mrr, \
     date '2025-01-01' as started_at from {{ source('app', 'subscriptions') }}";
const SUBSCRIPTIONS_SQL: &str = "select subscription_id, account_id, status, started_at, \
     case when status = 'active' then mrr else 0 end as active_mrr from {{ ref('stg_subscriptions') }}";

const SYNC_YML: &str = "\
metric: { name: mrr, entity: account }
destination: hooks
mode: mirror
mapping:
  - { from: account, to: account_id }
  - { from: mrr, to: mrr }
";

enum Warehouse {
    Lake,
    Postgres(TestDatabase),
}

impl Warehouse {
    fn ebb_yml(&self, hooks_url: &str) -> String {
        let warehouse = match self {
            Warehouse::Lake => "{ type: lake, path: data }".to_string(),
            Warehouse::Postgres(db) => format!("{{ type: postgres, url: \"{}\" }}", db.url()),
        };
        let table = match self {
            Warehouse::Lake => "{ path: subscriptions.csv, format: csv }",
            Warehouse::Postgres(_) => "{}",
        };
        format!(
            "name: shop\nwarehouses:\n  wh: {warehouse}\ndefault_warehouse: wh\n\
             sources:\n  app:\n    warehouse: wh\n    tables:\n      subscriptions: {table}\n\
             destinations:\n  hooks:\n    type: webhook\n    url: {hooks_url}\n    secret: {SECRET}\n\
             defaults: {{ materialized: view }}\n"
        )
    }

    /// Replaces the source table's rows.
    async fn write(&self, root: &Path, subs: &[Sub]) {
        match self {
            Warehouse::Lake => {
                let mut csv = String::from("subscription_id,account_id,status,mrr\n");
                for (id, account, status, mrr) in subs {
                    csv.push_str(&format!("{id},{account},{status},{mrr}\n"));
                }
                std::fs::create_dir_all(root.join("data")).unwrap();
                std::fs::write(root.join("data/subscriptions.csv"), csv).unwrap();
            }
            Warehouse::Postgres(db) => {
                let client = db.connect().await;
                let mut sql = String::from(
                    "create schema if not exists app;
                     create table if not exists app.subscriptions (
                         subscription_id text primary key, account_id text, status text,
                         mrr numeric(12, 2));
                     truncate app.subscriptions;",
                );
                for (id, account, status, mrr) in subs {
                    sql.push_str(&format!(
                        "insert into app.subscriptions values ('{id}', '{account}', '{status}', {mrr});"
                    ));
                }
                client.batch_execute(&sql).await.unwrap();
            }
        }
    }
}

fn write_project(root: &Path, warehouse: &Warehouse, hooks_url: &str) {
    let files = [
        ("ebb.yml", warehouse.ebb_yml(hooks_url)),
        ("models/stg_subscriptions.sql", STG_SQL.to_string()),
        ("models/subscriptions.sql", SUBSCRIPTIONS_SQL.to_string()),
        ("metrics/subscriptions.yml", METRICS_YML.to_string()),
        ("syncs/account_mrr.yml", SYNC_YML.to_string()),
    ];
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// Loads the project as `ebb check` does; it must have no errors.
fn load_project(root: &Path) -> Project {
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
    let loaded = load(&source, &|_: &str| None);
    assert_eq!(loaded.errors(), 0, "{:#?}", loaded.diagnostics);
    loaded.project
}

/// The latest value the receiver holds per account (a delete removes it), and the ops of
/// the changes from `from` on.
fn receiver_state(
    receiver: &WebhookReceiver,
    from: usize,
) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let mut state = BTreeMap::new();
    let mut ops = BTreeMap::new();
    for (i, change) in receiver.changes().iter().enumerate() {
        let key = change["key"].as_str().unwrap().to_string();
        let op = change["op"].as_str().unwrap().to_string();
        if op == "delete" {
            state.remove(&key);
        } else {
            assert_eq!(change["fields"]["account_id"].as_str(), Some(key.as_str()));
            let mrr = change["fields"]["mrr"]
                .as_f64()
                .unwrap_or_else(|| panic!("mrr is a number: {change}"));
            state.insert(key.clone(), mrr);
        }
        if i >= from {
            assert!(
                ops.insert(key, op).is_none(),
                "one change per account a run"
            );
        }
    }
    (state, ops)
}

fn assert_close(got: &BTreeMap<String, f64>, want: &BTreeMap<String, f64>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, v) in want {
        assert!((got[k] - v).abs() < 1e-9, "{k}: got {}, want {v}", got[k]);
    }
}

async fn run_once(root: &Path) -> ebb_sync::SyncOutcome {
    // A new project and runner each time, like separate `ebb run` invocations.
    let project = load_project(root);
    let runner = SyncRunner::open(&project, MemoryDeadLetters::new())
        .await
        .unwrap();
    runner
        .run("account_mrr", &RunOptions::default(), &|_| {})
        .await
        .unwrap()
}

async fn a_metric_sync_sends_each_entitys_value_then_only_changes(warehouse: Warehouse) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let receiver = WebhookReceiver::start(SECRET).await;
    write_project(root, &warehouse, &receiver.url());
    warehouse.write(root, FIRST).await;

    let first = run_once(root).await;
    assert_eq!(first.status, RunStatus::Succeeded);
    let d = &first.diff;
    assert_eq!((d.rows_read, d.inserts, d.updates, d.deletes), (3, 3, 0, 0));
    let (state, ops) = receiver_state(&receiver, 0);
    assert_close(&state, &expected_mrr(FIRST));
    assert!(ops.values().all(|op| op == "upsert"), "{ops:?}");

    // The data changes: one account's MRR moves, one account goes, one appears.
    warehouse.write(root, SECOND).await;
    let sent = receiver.changes().len();
    let second = run_once(root).await;
    assert_eq!(second.status, RunStatus::Succeeded);
    let d = &second.diff;
    assert_eq!(
        (d.rows_read, d.inserts, d.updates, d.deletes, d.unchanged),
        (3, 1, 1, 1, 1)
    );
    let (state, ops) = receiver_state(&receiver, sent);
    assert_close(&state, &expected_mrr(SECOND));
    let want: BTreeMap<String, String> = [("a1", "upsert"), ("a3", "delete"), ("a4", "upsert")]
        .into_iter()
        .map(|(k, o)| (k.to_string(), o.to_string()))
        .collect();
    assert_eq!(ops, want);

    // Nothing changed: nothing is sent.
    let sent = receiver.changes().len();
    let third = run_once(root).await;
    assert_eq!(third.diff.changes(), 0);
    assert_eq!(receiver.changes().len(), sent);
    // Every change was applied once.
    assert!(receiver.applied().values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_metric_sync_sends_each_entitys_value_then_only_changes() {
    a_metric_sync_sends_each_entitys_value_then_only_changes(Warehouse::Lake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_metric_sync_sends_each_entitys_value_then_only_changes() {
    let db = PgCluster::shared().fresh_database().await;
    a_metric_sync_sends_each_entitys_value_then_only_changes(Warehouse::Postgres(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_sync_naming_a_missing_column_says_which() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let receiver = WebhookReceiver::start(SECRET).await;
    write_project(root, &Warehouse::Lake, &receiver.url());
    Warehouse::Lake.write(root, FIRST).await;
    let project = load_project(root);
    // `ebb check` refuses a mapping that names another column; the runner does too, before
    // it reads anything (the project is edited behind the check's back here).
    let mut edited = project.clone();
    edited.syncs[0].config.mapping.value[1].from.value = "arr".into();
    let runner = SyncRunner::open(&edited, MemoryDeadLetters::new())
        .await
        .unwrap();
    let err = runner
        .run("account_mrr", &RunOptions::default(), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::MetricColumn(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "sync \"account_mrr\" reads metric \"mrr\" per account: its rows have the columns \
         \"account\" and \"mrr\"; `mapping.from` names \"arr\", which is not one of them"
    );
    assert!(receiver.changes().is_empty());
}
