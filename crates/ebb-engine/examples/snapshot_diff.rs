//! Driver for the snapshot-diff benchmark (`benchmarks/snapshot_diff/run.py`).
//!
//! ```text
//! snapshot_diff prepare OLD.parquet SNAPSHOT_DIR   commit OLD as the sync's snapshot
//! snapshot_diff diff NEW.parquet SNAPSHOT_DIR      diff NEW against it, read every change
//! ```
//!
//! Each phase is its own process so its peak memory can be measured alone. `diff` prints one
//! JSON line: `{"seconds", "inserts", "updates", "deletes", "unchanged", "peak_rss_bytes"}`.
//! `EBB_DIFF_MEMORY_LIMIT` (bytes) sets the diff's memory limit (default: DiffOptions').
//! `RUST_LOG=ebb_engine=debug` prints the diff's phases with their times, on stderr.

use std::time::Instant;

use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use ebb_engine::diff::{DiffOptions, DiffSpec, SnapshotStore, diff};

const KEY: &str = "id";

fn spec(columns: Vec<String>) -> DiffSpec {
    DiffSpec {
        sync: "bench".into(),
        key_columns: vec![KEY.into()],
        columns,
    }
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

async fn input(
    path: &str,
) -> anyhow::Result<(
    datafusion::physical_plan::SendableRecordBatchStream,
    Vec<String>,
)> {
    let mut config = SessionConfig::new();
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let ctx = SessionContext::new_with_config(config);
    let df = ctx
        .read_parquet(path, ParquetReadOptions::default())
        .await?;
    let columns = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != KEY)
        .collect();
    Ok((df.execute_stream().await?, columns))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    let (verb, file, dir) = match args.as_slice() {
        [_, verb, file, dir] => (verb.as_str(), file.as_str(), dir.as_str()),
        _ => anyhow::bail!("usage: snapshot_diff prepare|diff FILE.parquet SNAPSHOT_DIR"),
    };
    let store = SnapshotStore::local(std::path::Path::new(dir))?;
    let staging = std::path::Path::new(dir).join("staging");
    let mut options = DiffOptions {
        staging_dir: Some(staging),
        ..DiffOptions::default()
    };
    if let Ok(limit) = std::env::var("EBB_DIFF_MEMORY_LIMIT") {
        options.memory_limit = Some(limit.parse()?);
    }
    match verb {
        "prepare" => {
            let (stream, columns) = input(file).await?;
            let options = DiffOptions {
                skip_initial_backfill: true,
                ..options
            };
            let pending = diff(stream, spec(columns), &store, options).await?;
            pending.commit(&store, &Default::default()).await?;
        }
        "diff" => {
            let started = Instant::now();
            let (stream, columns) = input(file).await?;
            let pending = diff(stream, spec(columns), &store, options).await?;
            let mut changes = 0u64;
            for batch in pending.changes()? {
                changes += batch?.num_rows() as u64;
            }
            let seconds = started.elapsed().as_secs_f64();
            let r = pending.report();
            assert_eq!(changes, r.changes());
            println!(
                "{{\"seconds\": {seconds:.3}, \"inserts\": {}, \"updates\": {}, \"deletes\": {}, \"unchanged\": {}, \"peak_rss_bytes\": {}}}",
                r.inserts,
                r.updates,
                r.deletes,
                r.unchanged,
                peak_rss()
            );
        }
        other => anyhow::bail!("unknown verb {other}; use prepare or diff"),
    }
    Ok(())
}
