//! End-to-end CDC pipeline benchmark (`benchmarks/cdc/run.sh`): the whole `ebb-cdc`
//! pipeline (replication stream → ChangeBatches → sink, checkpoints) beside `pg_recvlogical`
//! on the same WAL.
//!
//! 1. **Throughput**: a mixed workload (60 % inserts, 30 % updates, 10 % deletes, 1,000
//!    changes per transaction, a 12-column table) is written once; then, each on its own slot
//!    over that WAL, `pg_recvlogical` (pgoutput v2, to /dev/null), the pipeline into the null
//!    sink, and the pipeline into the Parquet lake (a local folder) read all of it. A pipeline
//!    run ends when every change is delivered and the sinks have durably committed.
//! 2. **Latency** at a fixed rate of 10,000 rows/s (100-row transactions every 10 ms): each
//!    row carries `clock_timestamp()` from its insert; the time it reaches the sink (the
//!    pipeline with `max_latency: 10ms`), or reaches `pg_recvlogical`'s output (test_decoding,
//!    read from its stdout pipe), minus that timestamp. Both read the same WAL at the same
//!    time. p50 / p99 / max over every row.
//!
//! `EBB_BENCH_ROWS` (default 2,000,000 changes) and `EBB_BENCH_LATENCY_SECONDS` (default 20)
//! shrink it. Writes `benchmarks/results/cdc.json`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{TimeUnit, TimestampMicrosecondType};
use ebb_cdc::changes::{Delivery, Truncation};
use ebb_cdc::checkpoint::FileCheckpointStore;
use ebb_cdc::pipeline::{Pipeline, PipelineSpec};
use ebb_cdc::position::Position;
use ebb_cdc::sink::{DiscardSink, DynSink, ParquetLakeSink, Sink};
use ebb_cdc::{CdcError, Lsn};
use ebb_core::config::pipeline::SnapshotMode;
use ebb_postgres::replication::ReplicationConfig;
use ebb_testkit::{PgCluster, TestDatabase};

const SCHEMA: &str = "
CREATE TABLE bench (
    id bigint PRIMARY KEY, qty int, amount numeric(12,2), name text, email text,
    created_at timestamptz, active bool, score float8, status text, external_id bigint,
    updated_at timestamptz, note text
);
CREATE TABLE lat (id bigint PRIMARY KEY, ts timestamptz NOT NULL, note text);
CREATE PUBLICATION bench_pub FOR TABLE bench;
CREATE PUBLICATION lat_pub FOR TABLE lat;
CREATE PROCEDURE workload(transactions int) LANGUAGE plpgsql AS $$
DECLARE base bigint := 0;
BEGIN
    FOR t IN 1..transactions LOOP
        INSERT INTO bench
        SELECT base + g, g % 100, (g * 7 % 100000) / 100.0, 'customer-' || (base + g),
               'user' || (base + g) || '@example.com', now(), g % 2 = 0, g / 7.0, 'active',
               base + g + 1000000000, now(), 'a short note about this row'
        FROM generate_series(1, 600) g;
        UPDATE bench SET qty = qty + 1, status = 'updated', updated_at = now()
        WHERE id > base + 300 AND id <= base + 600;
        DELETE FROM bench WHERE id > base AND id <= base + 100;
        base := base + 600;
        COMMIT;
    END LOOP;
END $$;
";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spec(db: &TestDatabase, name: &str, publication: &str, dir: &std::path::Path) -> PipelineSpec {
    PipelineSpec {
        name: name.to_string(),
        source: ReplicationConfig::parse(&db.conn_string()).unwrap(),
        publication: publication.to_string(),
        create_publication: false,
        tables: Vec::new(),
        slot: name.to_string(),
        snapshot: SnapshotMode::Never,
        max_rows: 10_000,
        max_bytes: 8 << 20,
        max_latency: Duration::from_millis(100),
        memory_budget: 64 << 20,
        spill_dir: dir.join("spill"),
        heartbeat: Some(Duration::from_secs(10)),
        lag_warn_bytes: u64::MAX,
        snapshot_workers: 2,
        lag_interval: Duration::from_secs(5),
    }
}

async fn current_lsn(client: &tokio_postgres::Client) -> Lsn {
    client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap()
}

/// Runs the pipeline over the slot until `changes` are delivered, then stops it cleanly
/// (which commits every sink). Returns the seconds it took.
async fn pipeline_run(
    spec: PipelineSpec,
    dir: &std::path::Path,
    sink: Box<dyn DynSink>,
    changes: u64,
) -> f64 {
    let store = FileCheckpointStore::new(dir.join(format!("checkpoints-{}", spec.name)));
    let started = Instant::now();
    let mut p = Pipeline::new(spec, store, vec![sink]);
    let mut status = p.status();
    let summary = p
        .run(async move {
            let _ = status.wait_for(|s| s.rows >= changes).await;
        })
        .await
        .expect("the pipeline runs");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary.rows, changes, "every change delivered");
    seconds
}

fn recvlogical(cluster: &PgCluster, db: &str, slot: &str, end: Lsn) -> f64 {
    let started = Instant::now();
    let out = Command::new(cluster.bin_dir().join("pg_recvlogical"))
        .args(["-h", cluster.host(), "-p", &cluster.port().to_string()])
        .args([
            "-U",
            "postgres",
            "-d",
            db,
            "--slot",
            slot,
            "--start",
            "--no-loop",
        ])
        .args(["-f", "/dev/null", "--endpos", &end.to_string()])
        .args(["-o", "proto_version=2", "-o", "publication_names=bench_pub"])
        .args(["-o", "streaming=on"])
        .output()
        .expect("run pg_recvlogical");
    assert!(
        out.status.success(),
        "pg_recvlogical failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed().as_secs_f64()
}

/// A sink that records, for each row, now minus the row's `ts` (its insert time).
#[derive(Clone, Default)]
struct LatencySink {
    samples: Arc<Mutex<Vec<f64>>>,
}

fn now_micros() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

impl Sink for LatencySink {
    fn name(&self) -> String {
        "latency".into()
    }
    async fn open(&mut self) -> Result<Option<Position>, CdcError> {
        Ok(None)
    }
    async fn write(&mut self, delivery: &Delivery) -> Result<(), CdcError> {
        let now = now_micros();
        let batch = delivery.changes.batch();
        let Some(ts) = batch.column_by_name("ts") else {
            return Ok(());
        };
        let ts = arrow::compute::cast(
            ts,
            &arrow::datatypes::DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .unwrap();
        let ts = ts.as_primitive::<TimestampMicrosecondType>();
        let mut samples = self.samples.lock().unwrap();
        for i in 0..ts.len() {
            if ts.is_valid(i) {
                samples.push((now - ts.value(i)) as f64 / 1000.0);
            }
        }
        Ok(())
    }
    async fn truncate(&mut self, _t: &Truncation) -> Result<(), CdcError> {
        Ok(())
    }
    async fn commit(&mut self, position: &Position, _force: bool) -> Result<Position, CdcError> {
        Ok(position.clone())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// `pg_recvlogical` with test_decoding, its stdout read line by line: each INSERT line's
/// `ts` against the time the line arrived.
fn recvlogical_latency(
    cluster: &PgCluster,
    db: &str,
    slot: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<f64>> {
    let mut child = Command::new(cluster.bin_dir().join("pg_recvlogical"))
        .args(["-h", cluster.host(), "-p", &cluster.port().to_string()])
        .args(["-U", "postgres", "-d", db, "--slot", slot, "--start"])
        .args(["-f", "-", "-o", "include-xids=0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run pg_recvlogical");
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        let reader = BufReader::new(stdout);
        let watchdog = {
            let stop = stop.clone();
            let pid = child.id();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = Command::new("kill").arg(pid.to_string()).status();
            })
        };
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let now = now_micros();
            // table public.lat: INSERT: id[bigint]:1 ts[timestamp with time zone]:'2026-…+00' note[text]:…
            let Some(rest) = line.split("ts[timestamp with time zone]:'").nth(1) else {
                continue;
            };
            let Some(text) = rest.split('\'').next() else {
                continue;
            };
            if let Some(ts) = parse_pg_timestamp(text) {
                samples.push((now - ts) as f64 / 1000.0);
            }
        }
        let _ = child.wait();
        let _ = watchdog.join();
        samples
    })
}

/// `2026-11-29 03:04:05.123456+00` (the session runs in UTC) → µs since the epoch.
fn parse_pg_timestamp(text: &str) -> Option<i64> {
    let text = text.strip_suffix("+00")?;
    let (date, time) = text.split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, mi, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let micros: i64 = format!("{frac:0<6}")[..6].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + s) * 1_000_000) + micros)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = env_u64("EBB_BENCH_ROWS", 2_000_000);
    let latency_seconds = env_u64("EBB_BENCH_LATENCY_SECONDS", 20);
    let transactions = rows.div_ceil(1000);
    let changes = transactions * 1000;

    let cluster = PgCluster::builder()
        .setting("max_wal_size", "4GB")
        .setting("checkpoint_timeout", "30min")
        .setting("timezone", "UTC")
        .start()
        .expect("start the benchmark cluster");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = runtime.block_on(cluster.fresh_database());
    let client = runtime.block_on(db.connect());
    runtime.block_on(client.batch_execute(SCHEMA)).unwrap();
    let work = tempfile::tempdir().unwrap();

    // 1. Throughput over the same WAL.
    for slot in ["recv", "ebb_null", "ebb_parquet"] {
        runtime
            .block_on(client.batch_execute(&format!(
                "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
            )))
            .unwrap();
    }
    let start_lsn = runtime.block_on(current_lsn(&client));
    eprintln!("generating {changes} row changes in {transactions} transactions …");
    runtime
        .block_on(client.batch_execute(&format!("CALL workload({transactions})")))
        .unwrap();
    let end = runtime.block_on(current_lsn(&client));
    let wal_mb = (end.0 - start_lsn.0) as f64 / 1e6;
    eprintln!("{wal_mb:.0} MB of WAL");

    let recv_s = recvlogical(&cluster, db.name(), "recv", end);
    eprintln!("pg_recvlogical: {recv_s:.2} s");
    let null_s = runtime.block_on(pipeline_run(
        spec(&db, "ebb_null", "bench_pub", work.path()),
        work.path(),
        Box::new(DiscardSink::default()),
        changes,
    ));
    eprintln!("ebb → null sink: {null_s:.2} s");
    let lake = ParquetLakeSink::open_url("lake", work.path()).unwrap();
    let parquet_s = runtime.block_on(pipeline_run(
        spec(&db, "ebb_parquet", "bench_pub", work.path()),
        work.path(),
        Box::new(lake),
        changes,
    ));
    eprintln!("ebb → Parquet lake: {parquet_s:.2} s");
    runtime
        .block_on(
            client.batch_execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots",
            ),
        )
        .unwrap();

    // 2. Latency at 10k rows/s.
    runtime
        .block_on(client.batch_execute(
            "SELECT pg_create_logical_replication_slot('recv_lat', 'test_decoding');
             SELECT pg_create_logical_replication_slot('ebb_lat', 'pgoutput');",
        ))
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let recv_lat = recvlogical_latency(&cluster, db.name(), "recv_lat", stop.clone());
    let sink = LatencySink::default();
    let samples = sink.samples.clone();
    let mut lat_spec = spec(&db, "ebb_lat", "lat_pub", work.path());
    lat_spec.max_latency = Duration::from_millis(10);
    let target_rows = latency_seconds * 10_000;
    let (ebb_p50, ebb_p99, ebb_max, recv_p50, recv_p99, recv_max, sent_rate) =
        runtime.block_on(async {
            let store = FileCheckpointStore::new(work.path().join("checkpoints-lat"));
            let mut p = Pipeline::new(lat_spec, store, vec![Box::new(sink) as Box<dyn DynSink>]);
            let mut status = p.status();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let run = tokio::spawn(async move {
                p.run(async move {
                    let _ = rx.await;
                })
                .await
            });
            let _ = status.wait_for(|s| s.phase == "streaming").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            // 100 rows every 10 ms.
            let writer = db.connect().await;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let started = Instant::now();
            let mut next = 0u64;
            while next < target_rows {
                tick.tick().await;
                writer
                    .batch_execute(&format!(
                        "INSERT INTO lat SELECT g, clock_timestamp(), 'row' FROM generate_series({}, {}) g",
                        next + 1,
                        next + 100
                    ))
                    .await
                    .unwrap();
                next += 100;
            }
            let sent_rate = next as f64 / started.elapsed().as_secs_f64();
            let _ = status.wait_for(|s| s.rows >= next).await;
            let _ = tx.send(());
            run.await.unwrap().unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let mut ebb = samples.lock().unwrap().clone();
            let mut recv = recv_lat.join().unwrap();
            ebb.sort_by(f64::total_cmp);
            recv.sort_by(f64::total_cmp);
            eprintln!("latency samples: ebb {}, pg_recvlogical {}", ebb.len(), recv.len());
            (
                percentile(&ebb, 0.5),
                percentile(&ebb, 0.99),
                ebb.last().copied().unwrap_or(f64::NAN),
                percentile(&recv, 0.5),
                percentile(&recv, 0.99),
                recv.last().copied().unwrap_or(f64::NAN),
                sent_rate,
            )
        });

    let recv_rate = changes as f64 / recv_s;
    let null_rate = changes as f64 / null_s;
    let parquet_rate = changes as f64 / parquet_s;
    println!();
    println!(
        "CDC pipeline, {changes} mixed changes ({wal_mb:.0} MB WAL); latency at {sent_rate:.0} rows/s"
    );
    println!(
        "{:<34} {:>12} {:>14} {:>8}",
        "measure", "ebb", "pg_recvlogical", "ratio"
    );
    println!(
        "{:<34} {:>12.0} {:>14.0} {:>7.2}x   (higher is better, target >= 0.90x)",
        "changes/s, null sink",
        null_rate,
        recv_rate,
        null_rate / recv_rate
    );
    println!(
        "{:<34} {:>12.0} {:>14.0} {:>7.2}x   (higher is better)",
        "changes/s, Parquet lake",
        parquet_rate,
        recv_rate,
        parquet_rate / recv_rate
    );
    println!(
        "{:<34} {:>12.1} {:>14.1} {:>7.2}x   (lower is better)",
        "latency p50 (ms), 10k rows/s",
        ebb_p50,
        recv_p50,
        ebb_p50 / recv_p50
    );
    println!(
        "{:<34} {:>12.1} {:>14.1} {:>7.2}x   (lower is better, target p99 < 100 ms)",
        "latency p99 (ms), 10k rows/s",
        ebb_p99,
        recv_p99,
        ebb_p99 / recv_p99
    );
    println!(
        "{:<34} {:>12.1} {:>14.1}",
        "latency max (ms), 10k rows/s", ebb_max, recv_max
    );
    println!(
        "(pg_recvlogical: pgoutput v2 to /dev/null for throughput; test_decoding read from its stdout for latency)"
    );

    let report = serde_json::json!({
        "benchmark": "cdc",
        "started_at": SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs(),
        "machine": {"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "params": {"changes": changes, "wal_mb": wal_mb, "latency_rows_per_s": sent_rate,
                   "latency_seconds": latency_seconds, "max_latency_ms": 10},
        "rows": [
            {"measure": "changes/s, null sink", "unit": "changes/s", "ebb": null_rate, "peer": recv_rate,
             "peer_name": "pg_recvlogical", "ratio": null_rate / recv_rate, "better": "higher"},
            {"measure": "changes/s, Parquet lake", "unit": "changes/s", "ebb": parquet_rate, "peer": recv_rate,
             "peer_name": "pg_recvlogical", "ratio": parquet_rate / recv_rate, "better": "higher"},
            {"measure": "latency p50", "unit": "ms", "ebb": ebb_p50, "peer": recv_p50,
             "peer_name": "pg_recvlogical (test_decoding)", "ratio": ebb_p50 / recv_p50, "better": "lower"},
            {"measure": "latency p99", "unit": "ms", "ebb": ebb_p99, "peer": recv_p99,
             "peer_name": "pg_recvlogical (test_decoding)", "ratio": ebb_p99 / recv_p99, "better": "lower"},
        ],
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benchmarks/results");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(
            dir.join("cdc.json"),
            serde_json::to_string_pretty(&report).unwrap(),
        );
    }
}
