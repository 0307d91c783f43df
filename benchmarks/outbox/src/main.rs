//! Outbox throughput of the state store: events appended per second by concurrent writers
//! (each event its own transaction, as a run's `finish_run` or a CDC webhook event is), and
//! events relayed per second (`claim_events` + `mark_relayed` in batches, as `ebb serve`'s
//! relay does), on the Postgres
//! store and on the SQLite store, beside a hand-written Postgres outbox (plain autocommit
//! `INSERT`s; relay by `UPDATE .. WHERE id IN (SELECT .. FOR UPDATE SKIP LOCKED)`) on the
//! same cluster in the same run.
//!
//! Four phases per side: append only, relay of that backlog, appenders and one relay
//! together until every event is relayed ("append+relay"), and append in transactions of
//! 100 events (`append_events`; a multi-row `INSERT` for the hand-written one). The private PostgreSQL cluster
//! runs with `fsync = on` and SQLite with `synchronous = FULL`, so every side pays for
//! durable commits. Prints a short table and writes `benchmarks/results/outbox.json`.
//!
//! `cargo run --release -p ebb-bench-outbox -- [--events N] [--writers N] [--batch N]`

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use ebb_state::StateStore;
use ebb_testkit::{PgCluster, TestDatabase};

const NAME: &str = "outbox";

#[derive(Debug, Clone, Copy)]
struct Args {
    events: usize,
    writers: usize,
    batch: usize,
}

fn args() -> Result<Args> {
    let mut out = Args {
        events: 4_000,
        writers: 4,
        batch: 500,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--events" => out.events = value.parse()?,
            "--writers" => out.writers = value.parse()?,
            "--batch" => out.batch = value.parse()?,
            _ => bail!("unknown argument {arg}; use --events N --writers N --batch N"),
        }
    }
    if out.writers == 0 || out.batch == 0 {
        bail!("--writers and --batch must be at least 1");
    }
    Ok(out)
}

/// A `run.finished`-sized payload (about 300 bytes of JSON).
fn payload(writer: usize, i: usize) -> serde_json::Value {
    serde_json::json!({
        "run_id": writer * 1_000_000 + i,
        "tenant": "acme",
        "sync": format!("sync_{}", i % 50),
        "kind": "sync",
        "trigger": "schedule",
        "status": "succeeded",
        "counts": {"planned": i, "inserted": i / 2, "updated": i / 3, "deleted": 0,
                   "accepted": i, "rejected": 0, "retried": 1, "skipped_bad_keys": 0},
        "error": null,
        "started_at": 1_764_000_000_000_i64 + i as i64,
        "finished_at": 1_764_000_060_000_i64 + i as i64,
    })
}

/// One side of the comparison.
trait Outbox: Send + Sync + 'static {
    fn append(&self, writer: usize, i: usize) -> impl Future<Output = Result<()>> + Send;
    /// Appends events `i..i + n` in one transaction.
    fn append_batch(
        &self,
        writer: usize,
        i: usize,
        n: usize,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Relays one batch; how many events it relayed.
    fn relay_batch(&self, batch: usize) -> impl Future<Output = Result<usize>> + Send;
}

impl Outbox for StateStore {
    async fn append(&self, writer: usize, i: usize) -> Result<()> {
        self.append_event("acme", "run.finished", &payload(writer, i))
            .await?;
        Ok(())
    }

    async fn append_batch(&self, writer: usize, i: usize, n: usize) -> Result<()> {
        let payloads: Vec<_> = (i..i + n).map(|k| payload(writer, k)).collect();
        self.append_events("acme", "run.finished", &payloads)
            .await?;
        Ok(())
    }

    async fn relay_batch(&self, batch: usize) -> Result<usize> {
        // What `ebb serve`'s relay does: claim a batch under the relay lease, then mark it.
        let events = self
            .claim_events("bench-relay", batch, std::time::Duration::from_secs(60))
            .await?;
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        self.mark_relayed(&ids).await?;
        Ok(ids.len())
    }
}

/// The hand-written Postgres outbox: one client per writer, one for the relay.
struct RawPg {
    writers: Vec<tokio::sync::Mutex<tokio_postgres::Client>>,
    relay: tokio_postgres::Client,
}

impl RawPg {
    async fn new(db: &TestDatabase, writers: usize) -> Result<RawPg> {
        let relay = db.connect().await;
        relay
            .batch_execute(
                "CREATE TABLE raw_outbox (
                     id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                     tenant text NOT NULL, topic text NOT NULL, payload jsonb NOT NULL,
                     created_at bigint NOT NULL, relayed_at bigint);
                 CREATE INDEX raw_outbox_unrelayed ON raw_outbox (id) WHERE relayed_at IS NULL;",
            )
            .await?;
        let mut clients = Vec::new();
        for _ in 0..writers {
            clients.push(tokio::sync::Mutex::new(db.connect().await));
        }
        Ok(RawPg {
            writers: clients,
            relay,
        })
    }
}

impl Outbox for RawPg {
    async fn append(&self, writer: usize, i: usize) -> Result<()> {
        let client = self.writers[writer].lock().await;
        client
            .execute(
                "INSERT INTO raw_outbox (tenant, topic, payload, created_at)
                 VALUES ('acme', 'run.finished', $1::text::jsonb,
                         (extract(epoch from now()) * 1000)::bigint)",
                &[&payload(writer, i).to_string()],
            )
            .await?;
        Ok(())
    }

    async fn append_batch(&self, writer: usize, i: usize, n: usize) -> Result<()> {
        let payloads: Vec<String> = (i..i + n).map(|k| payload(writer, k).to_string()).collect();
        let client = self.writers[writer].lock().await;
        client
            .execute(
                "INSERT INTO raw_outbox (tenant, topic, payload, created_at)
                 SELECT 'acme', 'run.finished', p::jsonb, (extract(epoch from now()) * 1000)::bigint
                 FROM unnest($1::text[]) AS t(p)",
                &[&payloads],
            )
            .await?;
        Ok(())
    }

    /// Read a batch, then mark it relayed: the same at-least-once steps as ebb's relay.
    async fn relay_batch(&self, batch: usize) -> Result<usize> {
        let rows = self
            .relay
            .query(
                "SELECT id, payload::text FROM raw_outbox WHERE relayed_at IS NULL
                 ORDER BY id LIMIT $1",
                &[&(batch as i64)],
            )
            .await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        self.relay
            .execute(
                "UPDATE raw_outbox SET relayed_at = (extract(epoch from now()) * 1000)::bigint
                 WHERE id = ANY($1)",
                &[&ids],
            )
            .await?;
        Ok(ids.len())
    }
}

#[derive(Debug, Clone, Copy)]
struct Rates {
    append: f64,
    append_batched: f64,
    relay: f64,
    both: f64,
}

async fn append_all<O: Outbox>(side: &Arc<O>, args: Args, round: usize) -> Result<()> {
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let side = Arc::clone(side);
        let each = args.events / args.writers;
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                side.append(w, round * 10_000_000 + i).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Events per batch in the batched append phase.
const APPEND_BATCH: usize = 100;

async fn append_all_batched<O: Outbox>(side: &Arc<O>, args: Args) -> Result<()> {
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let side = Arc::clone(side);
        let each = args.events / args.writers;
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while i < each {
                let n = APPEND_BATCH.min(each - i);
                side.append_batch(w, 30_000_000 + i, n).await?;
                i += n;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn relay_until(side: &Arc<impl Outbox>, total: usize, batch: usize) -> Result<()> {
    let mut relayed = 0;
    while relayed < total {
        let n = side.relay_batch(batch).await?;
        if n == 0 {
            tokio::task::yield_now().await;
        }
        relayed += n;
    }
    Ok(())
}

async fn measure<O: Outbox>(side: O, args: Args) -> Result<Rates> {
    let side = Arc::new(side);
    let total = args.events / args.writers * args.writers;
    // Warm-up: a few events through every path.
    for i in 0..50 {
        side.append(0, 9_000_000 + i).await?;
    }
    relay_until(&side, 50, args.batch).await?;

    let start = Instant::now();
    append_all(&side, args, 1).await?;
    let append = total as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    relay_until(&side, total, args.batch).await?;
    let relay = total as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let relay_side = Arc::clone(&side);
    let relay_task = tokio::spawn(async move { relay_until(&relay_side, total, args.batch).await });
    append_all(&side, args, 2).await?;
    relay_task.await??;
    let both = total as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    append_all_batched(&side, args).await?;
    let append_batched = total as f64 / start.elapsed().as_secs_f64();
    relay_until(&side, total, args.batch).await?;
    Ok(Rates {
        append,
        append_batched,
        relay,
        both,
    })
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("unix:{secs}")
}

fn memory_gib() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((kib / 1024.0 / 1024.0 * 10.0).round() / 10.0)
}

fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../results")
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = args()?;
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; numbers mean nothing (use cargo run --release)");
    }
    eprintln!("starting a private PostgreSQL cluster (fsync on) ...");
    let cluster = PgCluster::builder().setting("fsync", "on").start()?;

    eprintln!("ebb state store on Postgres ...");
    let db = cluster.fresh_database().await;
    let pg = measure(StateStore::open_postgres(&db.url(), None).await?, args).await?;
    eprintln!("  {pg:?}");

    eprintln!("hand-written Postgres outbox ...");
    let raw_db = cluster.fresh_database().await;
    let raw = measure(RawPg::new(&raw_db, args.writers).await?, args).await?;
    eprintln!("  {raw:?}");

    eprintln!("ebb state store on SQLite ...");
    let dir = tempfile::tempdir()?;
    let sqlite = measure(
        StateStore::open_sqlite(dir.path().join("state.db")).await?,
        args,
    )
    .await?;
    eprintln!("  {sqlite:?}");

    let mut lines = Vec::new();
    let mut report_rows = Vec::new();
    for (measure, ebb, raw_v, sqlite_v) in [
        ("append", pg.append, raw.append, sqlite.append),
        (
            "append, 100 a transaction",
            pg.append_batched,
            raw.append_batched,
            sqlite.append_batched,
        ),
        ("relay", pg.relay, raw.relay, sqlite.relay),
        ("append+relay", pg.both, raw.both, sqlite.both),
    ] {
        lines.push(format!(
            "{:<26}{:>12.0}{:>12.0}{:>12.0}{:>10.2}x{:>10.2}x",
            measure,
            ebb,
            raw_v,
            sqlite_v,
            ebb / raw_v,
            ebb / sqlite_v
        ));
        for (peer, peer_name) in [
            (raw_v, "hand-written postgres outbox"),
            (sqlite_v, "ebb sqlite store"),
        ] {
            report_rows.push(serde_json::json!({
                "measure": measure, "unit": "events/s", "ebb": ebb, "peer": peer,
                "peer_name": peer_name, "ratio": ebb / peer, "better": "higher",
            }));
        }
    }
    println!(
        "outbox, {} events, {} writers, relay batches of {}, durable commits    (higher is better)",
        args.events, args.writers, args.batch
    );
    println!(
        "{:<26}{:>12}{:>12}{:>12}{:>11}{:>11}",
        "events/s", "ebb pg", "raw pg", "ebb sqlite", "pg/raw", "pg/sqlite"
    );
    for line in &lines {
        println!("{line}");
    }

    let report = serde_json::json!({
        "benchmark": NAME,
        "started_at": utc_now(),
        "machine": {
            "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "memory_gib": memory_gib(),
        },
        "params": {
            "events": args.events,
            "writers": args.writers,
            "relay_batch": args.batch,
            "postgres_version": cluster.version(),
            "postgres_fsync": "on",
            "sqlite_synchronous": "FULL",
            "payload_bytes": payload(0, 0).to_string().len(),
            "append_batch": APPEND_BATCH,
        },
        "rows": report_rows,
    });
    let out = results_dir();
    std::fs::create_dir_all(&out)?;
    let path = out.join(format!("{NAME}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("report: {}", path.display());
    Ok(())
}
