//! `ebb cdc run` as a process: clean shutdown on SIGINT, and the crash test — SIGKILL at
//! random moments under a continuous mixed workload, after which the NDJSON file and the
//! Parquet lake hold every committed change exactly once and replay to the source table.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, UInt8Type, UInt64Type};
use ebb_testkit::PgCluster;
use serde_json::Value;

fn project(dir: &Path, url: &str) {
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    std::fs::write(dir.join("ebb.yml"), "name: crash\n").unwrap();
    std::fs::write(
        dir.join("pipelines/accounts.yml"),
        format!(
            "source: {{url: '{url}'}}\n\
             publication: {{name: accounts_pub, create: true}}\n\
             tables: [accounts]\n\
             sinks:\n  - ndjson: {{path: out/accounts.ndjson}}\n  - parquet: {{path: lake, roll_interval: 200ms}}\n\
             batch: {{max_latency: 20ms}}\n\
             heartbeat: 1s\n"
        ),
    )
    .unwrap();
}

/// The `ebb` process, killed when the test ends however it ends.
struct Ebb(Child);

impl Drop for Ebb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path) -> Ebb {
    Ebb(Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["cdc", "run", "accounts", "-P"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap())
}

fn ndjson(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A change: (commit LSN, seq, op, key, balance).
type Change = (u64, u64, String, String, Option<i64>);

fn ndjson_changes(path: &Path) -> Vec<Change> {
    ndjson(path)
        .iter()
        .map(|l| {
            (
                l["_ebb_lsn"].as_u64().unwrap(),
                l["_ebb_seq"].as_u64().unwrap(),
                l["_ebb_op"].as_str().unwrap().to_string(),
                l["_ebb_key"].as_str().unwrap().to_string(),
                l["balance"].as_i64(),
            )
        })
        .collect()
}

fn lake_changes(lake: &Path) -> Vec<Change> {
    let mut out = Vec::new();
    let manifest = lake.join("_manifest");
    let Ok(entries) = std::fs::read_dir(&manifest) else {
        return out;
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    for entry in files {
        let entry: Value = serde_json::from_slice(&std::fs::read(entry).unwrap()).unwrap();
        for f in entry["files"].as_array().unwrap() {
            let bytes = std::fs::read(lake.join(f["path"].as_str().unwrap())).unwrap();
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
                bytes::Bytes::from(bytes),
                4096,
            )
            .unwrap();
            for b in reader {
                let b = b.unwrap();
                let op = b
                    .column_by_name("_ebb_op")
                    .unwrap()
                    .as_primitive::<UInt8Type>();
                let key = b.column_by_name("_ebb_key").unwrap().as_string::<i32>();
                let seq = b
                    .column_by_name("_ebb_seq")
                    .unwrap()
                    .as_primitive::<UInt64Type>();
                let lsn = b
                    .column_by_name("_ebb_lsn")
                    .unwrap()
                    .as_primitive::<UInt64Type>();
                let bal = b
                    .column_by_name("balance")
                    .unwrap()
                    .as_primitive::<Int32Type>();
                for r in 0..b.num_rows() {
                    let op = ["", "insert", "update", "delete", "upsert"][op.value(r) as usize];
                    out.push((
                        lsn.value(r),
                        seq.value(r),
                        op.to_string(),
                        key.value(r).to_string(),
                        (!bal.is_null(r)).then(|| i64::from(bal.value(r))),
                    ));
                }
            }
        }
    }
    out
}

/// Checks that no change appears twice, and replays them into `key -> balance`.
fn replay(changes: &[Change], what: &str) -> BTreeMap<String, Option<i64>> {
    let mut sorted = changes.to_vec();
    sorted.sort_by_key(|c| (c.0, c.1));
    let mut seen = HashSet::new();
    let mut state = BTreeMap::new();
    for c in &sorted {
        assert!(
            seen.insert((c.0, c.1, c.2.clone(), c.3.clone())),
            "{what}: change delivered twice: {c:?}"
        );
        if c.2 == "delete" {
            state.remove(&c.3);
        } else {
            state.insert(c.3.clone(), c.4);
        }
    }
    state
}

async fn source(client: &tokio_postgres::Client) -> BTreeMap<String, Option<i64>> {
    client
        .query("SELECT id::text, balance::int8 FROM accounts", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, Option<i64>>(1)))
        .collect()
}

fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for `child` to exit, killing it after `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ebb did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_and_duplicates_nothing() {
    let db = PgCluster::shared().fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance int, note text);
             INSERT INTO accounts SELECT g, g, 'initial' FROM generate_series(1, 1000) g;",
        )
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    project(&dir, &db.url());
    let out = dir.join("out/accounts.ndjson");
    let lake = dir.join("lake");

    // First run: the copy completes, then the workload starts.
    let mut child = spawn(&dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    while ndjson(&out).len() < 1000 {
        assert!(Instant::now() < deadline, "the initial copy did not arrive");
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "ebb exited during the copy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let db = db.clone();
        tokio::spawn(async move {
            let client = db.connect().await;
            let mut next_id = 1001;
            let mut transactions = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = fastrand::i32(1..next_id);
                let sql = match fastrand::u8(0..10) {
                    0..=3 => {
                        next_id += 5;
                        format!(
                            "INSERT INTO accounts SELECT g, g, 'new' FROM generate_series({}, {}) g",
                            next_id - 5,
                            next_id - 1
                        )
                    }
                    4..=7 => format!(
                        "UPDATE accounts SET balance = balance + 1, note = 'upd' WHERE id BETWEEN {id} AND {}",
                        id + 3
                    ),
                    _ => format!("DELETE FROM accounts WHERE id = {id}"),
                };
                client.batch_execute(&sql).await.unwrap();
                transactions += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            transactions
        })
    };

    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..1500))).await;
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        child = spawn(&dir);
    }
    stop.store(true, Ordering::Relaxed);
    let transactions = load.await.unwrap();
    assert!(
        transactions > 50,
        "the workload ran: {transactions} transactions"
    );

    // The last run catches up, then stops cleanly.
    let want = source(&client).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = replay(&ndjson_changes(&out), "ndjson");
        if got == want {
            break;
        }
        if let Some(code) = child.0.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read as _;
            child
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("ebb exited with {code:?}: {err}");
        }
        if Instant::now() >= deadline {
            let diff: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(*v))
                .take(5)
                .map(|(k, v)| (k.clone(), *v, got.get(k).copied()))
                .collect();
            let extra: Vec<_> = got
                .keys()
                .filter(|k| !want.contains_key(*k))
                .take(5)
                .collect();
            let lines: Vec<_> = ndjson_changes(&out)
                .into_iter()
                .filter(|c| diff.first().is_some_and(|d| d.0 == c.3))
                .collect();
            let _ = child.0.kill();
            let _ = child.0.wait();
            let mut err = String::new();
            use std::io::Read as _;
            child
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            let max_lsn = ndjson_changes(&out).iter().map(|c| c.0).max();
            let slot: String = client
                .query_one("SELECT confirmed_flush_lsn::text || ' ' || pg_current_wal_lsn()::text || ' ' || active FROM pg_replication_slots WHERE slot_name = 'ebb_accounts'", &[])
                .await
                .unwrap()
                .get(0);
            panic!(
                "stderr: {err}\nmax lsn {max_lsn:?} slot {slot}\nndjson did not catch up: {} rows vs {}; differ (key, want, got): {diff:?}; extra: {extra:?}; changes of the first: {lines:?}",
                got.len(),
                want.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    interrupt(&child.0);
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(30)), Some(0));

    let ndjson_all = ndjson_changes(&out);
    let lake_all = lake_changes(&lake);
    assert_eq!(replay(&ndjson_all, "ndjson"), want);
    assert_eq!(replay(&lake_all, "lake"), want);
    // Both sinks hold the same changes (the clean stop committed the lake).
    let mut a = ndjson_all.clone();
    let mut b = lake_all.clone();
    a.sort();
    b.sort();
    assert_eq!(a.len(), b.len());
    assert!(a == b, "the NDJSON file and the lake differ");

    // `ebb cdc status` shows the slot; `ebb cdc drop` removes it.
    let status = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["cdc", "status", "-P"])
        .arg(&dir)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&status.stdout);
    assert!(printed.contains("ebb_accounts"), "{printed}");
    let dropped = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["cdc", "drop", "accounts", "-P"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(dropped.status.code(), Some(0));
    let slots: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'ebb_accounts'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0);
}

/// A field of `/proc/PID/status` in KiB (`VmHWM`: the peak resident set size).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

async fn wal_lsn(client: &tokio_postgres::Client, sql: &str) -> Option<u64> {
    let text: Option<String> = client.query_one(sql, &[]).await.ok()?.get(0);
    let (hi, lo) = text?
        .split_once('/')
        .map(|(h, l)| (h.to_string(), l.to_string()))?;
    Some((u64::from_str_radix(&hi, 16).ok()? << 32) | u64::from_str_radix(&lo, 16).ok()?)
}

/// One transaction of 10 million rows (`EBB_BIG_TX_ROWS` to change) streams through the real
/// `ebb cdc run` with the process's peak RSS under 512 MiB: PostgreSQL streams it before it
/// commits (pgoutput v2), ebb spills it beyond its 64 MiB budget and replays it from disk at
/// commit into ChangeBatches. The sink is the null sink (`discard`), so that the test measures
/// the pipeline, and its run is a few minutes in a debug build; the Parquet lake's own memory
/// is bounded by `roll_bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_million_row_transaction_streams_through_in_bounded_memory() {
    let rows: u64 = std::env::var("EBB_BIG_TX_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let cluster = PgCluster::builder()
        .setting("max_wal_size", "4GB")
        .start()
        .unwrap();
    let db = cluster.fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute("CREATE TABLE big (id bigint)")
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    std::fs::write(dir.join("ebb.yml"), "name: big\n").unwrap();
    std::fs::write(
        dir.join("pipelines/big.yml"),
        format!(
            "source: {{url: '{}'}}\n\
             publication: {{name: big_pub, create: true}}\n\
             tables: [big]\n\
             sinks:\n  - discard: {{}}\n\
             streaming: {{memory_budget: 64MiB}}\n\
             heartbeat: 1s\n",
            db.url()
        ),
    )
    .unwrap();
    let mut child = Ebb(Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["cdc", "run", "big", "-P"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap());
    let pid = child.0.id();
    let alive = |child: &mut Ebb| {
        assert!(child.0.try_wait().unwrap().is_none(), "ebb exited early");
    };
    let confirmed_sql =
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'ebb_big'";
    // Streaming has started once a first change is confirmed.
    client
        .batch_execute("INSERT INTO big VALUES (0)")
        .await
        .unwrap();
    let first = wal_lsn(&client, "SELECT pg_current_wal_lsn()::text")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while wal_lsn(&client, confirmed_sql)
        .await
        .is_none_or(|c| c < first)
    {
        assert!(Instant::now() < deadline, "the first change did not arrive");
        alive(&mut child);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "INSERT INTO big SELECT g FROM generate_series(1, {rows}) g"
        ))
        .await
        .unwrap();
    let end = wal_lsn(&client, "SELECT pg_current_wal_lsn()::text")
        .await
        .unwrap();
    let inserted = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let confirmed = wal_lsn(&client, confirmed_sql).await;
        if confirmed.is_some_and(|c| c >= end) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the transaction did not stream through in 15 minutes"
        );
        alive(&mut child);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed();
    let peak_kib = proc_status_kib(pid, "VmHWM");
    // The pipeline's metrics file (rewritten every second) says how much it spilled.
    let spilled_now = || -> u64 {
        std::fs::read_to_string(dir.join(".ebb/cdc/big.prom"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("ebb_cdc_spilled_bytes_total{pipeline=\"big\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut spilled = spilled_now();
    while rows >= 5_000_000 && spilled == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        spilled = spilled_now();
    }
    interrupt(&child.0);
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(60)), Some(0));
    let mut err = String::new();
    use std::io::Read as _;
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    eprintln!(
        "{rows} rows in one transaction: inserted in {:.1} s, through ebb after {:.1} s, peak RSS {:.0} MiB, spilled {:.0} MiB",
        inserted.as_secs_f64(),
        elapsed.as_secs_f64(),
        peak_kib as f64 / 1024.0,
        spilled as f64 / 1048576.0
    );
    // Every row went through the pipeline into the sink, once.
    assert!(
        err.contains(&format!("big: stopped; {} changes delivered", rows + 1)),
        "{err}"
    );
    assert!(
        peak_kib < 512 * 1024,
        "peak RSS {peak_kib} KiB is over 512 MiB"
    );
    // Each change is about 30 bytes of pgoutput: millions of them exceed the 64 MiB budget.
    if rows >= 5_000_000 {
        assert!(spilled > 0, "the transaction spilled ({spilled} bytes)");
    }
}
