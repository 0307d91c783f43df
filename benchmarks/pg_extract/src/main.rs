//! Postgres → Arrow extract rate: ebb's Postgres warehouse streaming `select * from t` as
//! Arrow batches (binary COPY), beside `psql -c "\copy t to /dev/null"` (text, and binary)
//! of the same table, in one run.
//!
//! Starts a private PostgreSQL cluster through the test kit, creates a deterministic
//! 5M-row, 12-column table with `generate_series` (the types the example project uses),
//! warms the cache, then alternates the extracts `--runs` times and reports the median.
//! Two diagnostics go to the report's `params`: the same COPY read by `tokio-postgres` and
//! thrown away (the transport's share), and `psql \copy (select * from t)` in binary (what
//! the query form of COPY costs the server). Prints a short table and writes
//! `benchmarks/results/pg_extract.json`.
//!
//! `cargo run --release -p ebb-bench-pg-extract -- [--rows N] [--runs N]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use ebb_testkit::{PgCluster, TestDatabase};
use ebb_warehouse::Warehouse;
use ebb_warehouse::postgres::PgWarehouse;
use futures::StreamExt;

const NAME: &str = "pg_extract";
const COLUMNS: usize = 12;

struct Args {
    rows: u64,
    runs: usize,
}

fn args() -> Result<Args> {
    let mut out = Args {
        rows: 5_000_000,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--rows" => out.rows = value.parse()?,
            "--runs" => out.runs = value.parse()?,
            _ => bail!("unknown argument {arg}; use --rows N --runs N"),
        }
    }
    Ok(out)
}

/// 12 columns of the example project's types; every value is a function of the row number.
fn create_table_sql(rows: u64) -> String {
    format!(
        "create table t as
         select g::bigint                                            as id,
                (g % 5000)::integer                                   as account_id,
                'Customer ' || g                                      as name,
                'user' || g || '@example' || (g % 97) || '.com'       as email,
                (array['active','trialing','past_due','canceled'])[1 + g % 4] as status,
                ((g * 7919) % 1000000 / 100.0)::numeric(12,2)          as amount,
                (g % 1000) / 7.0::double precision                    as score,
                g % 3 = 0                                             as is_active,
                date '2020-01-01' + (g % 2000)::integer               as signup_date,
                timestamp '2020-01-01' + g * interval '17 seconds'    as created_at,
                timestamptz '2020-01-01 00:00:00+00' + g * interval '23 seconds' as updated_at,
                case when g % 10 = 0 then null else md5(g::text) end  as note
         from generate_series(1::bigint, {rows}) g"
    )
}

/// One timed extract.
#[derive(Debug, Clone, Copy)]
struct Sample {
    seconds: f64,
    rows: u64,
}

async fn ebb_extract(warehouse: &PgWarehouse) -> Result<(Sample, u64)> {
    let started = Instant::now();
    let mut stream = warehouse.query("select * from t").await?;
    let (mut rows, mut arrow_bytes) = (0u64, 0u64);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        arrow_bytes += batch.get_array_memory_size() as u64;
    }
    Ok((
        Sample {
            seconds: started.elapsed().as_secs_f64(),
            rows,
        },
        arrow_bytes,
    ))
}

/// The same COPY read with `tokio-postgres` and thrown away, not decoded: the transport's
/// share of ebb's time (a diagnostic, reported in `params`).
async fn transport_only(client: &tokio_postgres::Client) -> Result<f64> {
    let started = Instant::now();
    let copy = client
        .copy_out("COPY (select * from t) TO STDOUT (FORMAT binary)")
        .await?;
    let mut copy = std::pin::pin!(copy);
    let mut bytes = 0usize;
    while let Some(chunk) = copy.next().await {
        bytes += chunk?.len();
    }
    std::hint::black_box(bytes);
    Ok(started.elapsed().as_secs_f64())
}

fn psql_extract(psql: &Path, db: &TestDatabase, copy: &str, rows: u64) -> Result<Sample> {
    let started = Instant::now();
    let out = Command::new(psql)
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &db.conn_string(),
            "-c",
            copy,
        ])
        .output()
        .context("running psql")?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("psql {copy}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(Sample { seconds, rows })
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// `YYYY-MM-DDTHH:MM:SS+00:00` for now.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn memory_gib() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 = info
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
    eprintln!("starting a private PostgreSQL cluster ...");
    let cluster = PgCluster::builder()
        .setting("shared_buffers", "1GB")
        .setting("max_parallel_workers_per_gather", "0")
        .start()?;
    let db = cluster.fresh_database().await;
    let client = db.connect().await;
    eprintln!("creating t: {} rows x {COLUMNS} columns ...", args.rows);
    client.batch_execute(&create_table_sql(args.rows)).await?;
    client.batch_execute("vacuum (freeze, analyze) t").await?;
    let heap_bytes: i64 = client
        .query_one("select pg_table_size('t')", &[])
        .await?
        .get(0);
    let psql = cluster.bin_dir().join("psql");
    let warehouse = PgWarehouse::open(&db.url(), None, Some(1))?;

    // Warm the cache and every code path once; check that all sides read every row.
    let (warm, arrow_bytes) = ebb_extract(&warehouse).await?;
    if warm.rows != args.rows {
        bail!("ebb read {} rows of {}", warm.rows, args.rows);
    }
    psql_extract(&psql, &db, "\\copy t to /dev/null", args.rows)?;
    let copy_bytes = |format: &str| -> Result<u64> {
        let out = Command::new(&psql)
            .args(["-X", "-q", "-d", &db.conn_string(), "-c"])
            .arg(format!("\\copy t to pstdout {format}"))
            .output()?;
        Ok(out.stdout.len() as u64)
    };
    let text_bytes = copy_bytes("")?;
    let binary_bytes = copy_bytes("with (format binary)")?;

    let (mut ebb, mut text, mut binary, mut raw) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut query_form = Vec::new();
    for run in 1..=args.runs {
        let (s, _) = ebb_extract(&warehouse).await?;
        ebb.push(s.seconds);
        let t = psql_extract(&psql, &db, "\\copy t to /dev/null", args.rows)?;
        text.push(t.seconds);
        let b = psql_extract(
            &psql,
            &db,
            "\\copy t to /dev/null with (format binary)",
            args.rows,
        )?;
        binary.push(b.seconds);
        let r = transport_only(&client).await?;
        raw.push(r);
        let q = psql_extract(
            &psql,
            &db,
            "\\copy (select * from t) to /dev/null with (format binary)",
            args.rows,
        )?;
        query_form.push(q.seconds);
        eprintln!(
            "run {run}: ebb {:.2} s, psql \\copy text {:.2} s, psql \\copy binary {:.2} s, \
             transport only {r:.2} s",
            s.seconds, t.seconds, b.seconds
        );
    }
    let (ebb_s, text_s, binary_s) = (median(&mut ebb), median(&mut text), median(&mut binary));

    let rows = args.rows as f64;
    let mb = heap_bytes as f64 / 1e6;
    let mut report_rows = Vec::new();
    let mut lines = Vec::new();
    let mut row =
        |measure: &str, unit: &str, ebb: f64, peer: f64, peer_name: &str, better: &str| {
            let ratio = ebb / peer;
            lines.push(format!(
                "{:<28}{:>12.4}{:>12.4}{:>8.2}x  {better}  (peer: {peer_name})",
                format!("{measure} ({unit})"),
                ebb,
                peer,
                ratio
            ));
            report_rows.push(serde_json::json!({
                "measure": measure, "unit": unit, "ebb": ebb, "peer": peer,
                "peer_name": peer_name, "ratio": ratio, "better": better,
            }));
        };
    let text_peer = "psql \\copy (text)";
    let binary_peer = "psql \\copy (binary)";
    row(
        "extract rate",
        "Mrows/s",
        rows / ebb_s / 1e6,
        rows / text_s / 1e6,
        text_peer,
        "higher",
    );
    row(
        "extract rate",
        "MB/s",
        mb / ebb_s,
        mb / text_s,
        text_peer,
        "higher",
    );
    row("extract time", "s", ebb_s, text_s, text_peer, "lower");
    row(
        "extract rate",
        "Mrows/s",
        rows / ebb_s / 1e6,
        rows / binary_s / 1e6,
        binary_peer,
        "higher",
    );
    row("extract time", "s", ebb_s, binary_s, binary_peer, "lower");

    let params = serde_json::json!({
        "rows": args.rows,
        "columns": COLUMNS,
        "runs": args.runs,
        "statistic": "median",
        "postgres_version": cluster.version(),
        "table_heap_bytes": heap_bytes,
        "copy_text_bytes": text_bytes,
        "copy_binary_bytes": binary_bytes,
        "arrow_bytes": arrow_bytes,
        "transport_only_seconds": median(&mut raw),
        "psql_copy_query_binary_seconds": median(&mut query_form),
        "mb_is": "table heap size (pg_table_size) / 1e6, the same for both sides",
    });
    println!(
        "Postgres -> Arrow extract, {} rows x {COLUMNS} cols (heap {:.0} MB), median of {}",
        args.rows, mb, args.runs
    );
    println!(
        "{:<28}{:>12}{:>12}{:>9}  better",
        "measure", "ebb", "peer", "ratio"
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
        "params": params,
        "rows": report_rows,
    });
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{NAME}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("report: {}", path.display());
    drop(warehouse);
    drop(cluster);
    Ok(())
}
