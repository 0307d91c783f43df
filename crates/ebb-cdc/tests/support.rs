//! Helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ebb_cdc::checkpoint::FileCheckpointStore;
use ebb_cdc::pipeline::{Pipeline, PipelineSpec, RunSummary, Status};
use ebb_cdc::sink::DynSink;
use ebb_core::config::pipeline::SnapshotMode;
use ebb_postgres::replication::ReplicationConfig;
use ebb_testkit::TestDatabase;
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// A pipeline spec for `tables` of a test database.
pub fn spec(db: &TestDatabase, name: &str, tables: &[&str], dir: &Path) -> PipelineSpec {
    PipelineSpec {
        name: name.to_string(),
        source: ReplicationConfig::parse(&db.conn_string()).unwrap(),
        publication: format!("{name}_pub"),
        create_publication: true,
        tables: tables.iter().map(|t| format!("public.{t}")).collect(),
        slot: format!("{name}_slot"),
        snapshot: SnapshotMode::Initial,
        max_rows: 1000,
        max_bytes: 8 << 20,
        max_latency: Duration::from_millis(20),
        memory_budget: 64 << 20,
        spill_dir: dir.join("spill"),
        heartbeat: Some(Duration::from_millis(200)),
        lag_warn_bytes: 1 << 30,
        snapshot_workers: 2,
        lag_interval: Duration::from_millis(200),
    }
}

/// A pipeline running in a task, stopped (cleanly) with [`Running::stop`].
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<RunSummary, ebb_cdc::CdcError>>,
}

impl Running {
    pub async fn stop(mut self) -> RunSummary {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap()
    }
}

impl Running {
    /// Waits for the run to end by itself (an error, or `initial_only`).
    pub async fn join(self) -> Result<RunSummary, ebb_cdc::CdcError> {
        self.task.await.unwrap()
    }
}

/// Starts `spec` with these sinks and a file checkpoint store in `dir`.
pub fn start(spec: PipelineSpec, dir: &Path, sinks: Vec<Box<dyn DynSink>>) -> Running {
    start_watched(spec, dir, sinks).0
}

/// [`start`], also returning the pipeline's live status.
pub fn start_watched(
    spec: PipelineSpec,
    dir: &Path,
    sinks: Vec<Box<dyn DynSink>>,
) -> (Running, watch::Receiver<Status>) {
    let store = FileCheckpointStore::new(dir.join("checkpoints"));
    let (tx, rx) = oneshot::channel::<()>();
    let mut p = Pipeline::new(spec, store, sinks);
    let status = p.status();
    let task = tokio::spawn(async move {
        p.run(async move {
            let _ = rx.await;
        })
        .await
    });
    (
        Running {
            stop: Some(tx),
            task,
        },
        status,
    )
}

/// Runs `f` until it returns `Some`, or panics after `limit` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The complete lines of an NDJSON file, parsed.
pub fn ndjson(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until the NDJSON file has at least `n` lines, returns them.
pub async fn wait_lines(path: &Path, n: usize) -> Vec<Value> {
    let path: PathBuf = path.to_path_buf();
    wait_for(
        &format!("{n} lines in {}", path.display()),
        Duration::from_secs(30),
        || {
            let lines = ndjson(&path);
            async move { (lines.len() >= n).then_some(lines) }
        },
    )
    .await
}

/// Applies changes (sorted by `_ebb_lsn`, `_ebb_seq`) into `key -> row`; checks that no
/// change appears twice.
pub fn replay(changes: &[Value], table: &str, columns: &[&str]) -> BTreeMap<String, Vec<Value>> {
    let mut rows: Vec<&Value> = changes
        .iter()
        .filter(|c| c["_ebb_table"] == table)
        .collect();
    rows.sort_by_key(|c| (c["_ebb_lsn"].as_u64(), c["_ebb_seq"].as_u64()));
    let mut seen = std::collections::HashSet::new();
    let mut state = BTreeMap::new();
    for c in rows {
        let key = c["_ebb_key"].as_str().unwrap().to_string();
        let id = (
            c["_ebb_lsn"].as_u64(),
            c["_ebb_seq"].as_u64(),
            c["_ebb_op"].as_str().unwrap().to_string(),
            key.clone(),
        );
        assert!(seen.insert(id.clone()), "change delivered twice: {id:?}");
        match c["_ebb_op"].as_str().unwrap() {
            "delete" => {
                state.remove(&key);
            }
            _ => {
                state.insert(key, columns.iter().map(|col| c[*col].clone()).collect());
            }
        }
    }
    state
}

/// The source table as `key -> row` with the same JSON shapes (ints and text only).
pub async fn table_rows(
    client: &tokio_postgres::Client,
    table: &str,
    key: &str,
    columns: &[&str],
) -> BTreeMap<String, Vec<Value>> {
    let sql = format!(
        "SELECT {key}::text AS k, json_build_array({})::text AS r FROM {table}",
        columns.join(", ")
    );
    let mut out = BTreeMap::new();
    for row in client.query(&sql, &[]).await.unwrap() {
        let k: String = row.get(0);
        let r: String = row.get(1);
        let r: Value = serde_json::from_str(&r).unwrap();
        out.insert(k, r.as_array().unwrap().clone());
    }
    out
}
