//! `ebb cdc run|status|drop`: change data capture pipelines (`pipelines/NAME.yml`, or
//! `pipelines:` in `ebb.yml`).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ebb_cdc::checkpoint::FileCheckpointStore;
use ebb_cdc::pipeline::{Pipeline, PipelineSpec, drop_pipeline, pipeline_status};
use ebb_core::project::Project;

use crate::{Outcome, project_dir};

const EXAMPLES: &str = "\
Examples:
  ebb cdc run orders            stream pipelines/orders.yml until Ctrl-C
  ebb cdc status                slots, lag and checkpoints of every pipeline
  ebb cdc drop orders           drop the slot and the checkpoint (sinks keep their data)

After `drop`, the next `run` creates a new slot and copies the tables again (snapshot: initial):
the recovery from an invalidated slot.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The project folder (the one holding ebb.yml).
    #[arg(short = 'P', long = "project", default_value = ".", global = true)]
    project: PathBuf,
    #[command(subcommand)]
    command: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Run a pipeline: initial copy, then stream until Ctrl-C (or SIGTERM).
    Run { name: String },
    /// Show each pipeline's slot, lag and last checkpoint.
    Status { name: Option<String> },
    /// Drop a pipeline's replication slot and checkpoint.
    Drop { name: String },
}

fn spec_of(project: &Project, name: &str) -> Result<PipelineSpec> {
    let Some(p) = project.pipeline(name) else {
        let names: Vec<&str> = project.pipelines.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "no pipeline named {name:?} (pipelines: {})",
            if names.is_empty() {
                "none; add pipelines/<name>.yml or `pipelines:` in ebb.yml".to_string()
            } else {
                names.join(", ")
            }
        );
    };
    Ok(PipelineSpec::from_config(name, &p.config, &project.root)?)
}

fn store(project: &Project) -> FileCheckpointStore {
    FileCheckpointStore::new(project.root.join(".ebb/cdc"))
}

pub fn run(args: Args) -> Result<Outcome> {
    let Some(project) = project_dir::load_valid(&args.project)? else {
        return Ok(Outcome::Problems);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match args.command {
            Verb::Run { name } => run_pipeline(&project, &name).await,
            Verb::Status { name } => status(&project, name.as_deref()).await,
            Verb::Drop { name } => {
                let spec = spec_of(&project, &name)?;
                let existed = drop_pipeline(&spec, &store(&project)).await?;
                if existed {
                    say!("dropped slot {} and the checkpoint of {name}", spec.slot);
                } else {
                    say!(
                        "slot {} did not exist; checkpoint of {name} removed",
                        spec.slot
                    );
                }
                Ok(Outcome::Success)
            }
        }
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run_pipeline(project: &Project, name: &str) -> Result<Outcome> {
    let spec = spec_of(project, name)?;
    let config = &project.pipeline(name).expect("spec_of found it").config;
    let mut sinks = Vec::new();
    for s in &config.sinks.value {
        sinks.push(ebb_cdc::sink::build(&s.value, &project.root)?);
    }
    let mut pipeline = Pipeline::new(spec.clone(), store(project), sinks);
    let mut status = pipeline.status();
    let live = std::io::stderr().is_terminal();
    let metrics_file = project.root.join(".ebb/cdc").join(format!("{name}.prom"));
    let pipeline_name = name.to_string();
    let printer = tokio::spawn(async move {
        let started = Instant::now();
        let (mut last_rows, mut last_at) = (0u64, Instant::now());
        let mut rate = 0.0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if status.has_changed().is_err() {
                break;
            }
            let s = status.borrow_and_update().clone();
            let dt = last_at.elapsed().as_secs_f64();
            if dt > 0.0 {
                rate = (s.rows - last_rows) as f64 / dt;
            }
            (last_rows, last_at) = (s.rows, Instant::now());
            // Metrics for a node exporter's textfile collector, replaced atomically.
            let text = ebb_cdc::metrics::render(&pipeline_name, &s);
            let tmp = metrics_file.with_extension("prom.tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, &metrics_file);
            }
            let lag = s.lag_bytes.map_or("?".to_string(), |b| {
                format!(
                    "{:.1} MiB{}",
                    b as f64 / 1048576.0,
                    if s.lag_warning { " (HIGH)" } else { "" }
                )
            });
            let line = format!(
                "{} | {} rows, {rate:.0}/s | last {} | flushed {} | lag {lag} | {}s",
                s.phase,
                s.rows,
                s.last_lsn,
                s.flush_lsn,
                started.elapsed().as_secs()
            );
            if live {
                eprint!("\r\x1b[2K{line}");
            }
        }
    });
    let result = pipeline.run(shutdown_signal()).await;
    printer.abort();
    if live {
        eprintln!();
    }
    match result {
        Ok(summary) => {
            eprintln!(
                "{name}: stopped; {} changes delivered, flushed to {}",
                summary.rows, summary.flush_lsn
            );
            Ok(Outcome::Success)
        }
        Err(e) => {
            eprintln!("error: pipeline {name}: {e}");
            Ok(Outcome::Problems)
        }
    }
}

async fn status(project: &Project, only: Option<&str>) -> Result<Outcome> {
    let names: Vec<&str> = match only {
        Some(n) => vec![n],
        None => project.pipelines.iter().map(|p| p.name.as_str()).collect(),
    };
    if names.is_empty() {
        say!(
            "this project has no pipelines (add pipelines/<name>.yml, or `pipelines:` in ebb.yml)"
        );
        return Ok(Outcome::Success);
    }
    say!(
        "{:<20} {:<24} {:<8} {:<10} {:>12} {:<16} {:<16}",
        "pipeline",
        "slot",
        "active",
        "wal",
        "lag",
        "confirmed",
        "checkpoint"
    );
    let mut outcome = Outcome::Success;
    for name in names {
        let spec = spec_of(project, name)?;
        match pipeline_status(&spec, &store(project)).await {
            Ok(st) => {
                let (active, wal, lag, confirmed) = match &st.slot {
                    Some(s) => (
                        if s.active { "yes" } else { "no" }.to_string(),
                        s.wal_status.clone().unwrap_or_default(),
                        s.lag_bytes.map_or("?".into(), |b| format!("{b} B")),
                        s.confirmed_flush_lsn.map_or("-".into(), |l| l.to_string()),
                    ),
                    None => ("-".into(), "no slot".into(), "-".into(), "-".into()),
                };
                let checkpoint = st.checkpoint.as_ref().map_or("-".into(), |c| {
                    ebb_cdc::Lsn(c.position.flush_lsn).to_string()
                });
                say!(
                    "{name:<20} {:<24} {active:<8} {wal:<10} {lag:>12} {confirmed:<16} {checkpoint:<16}",
                    spec.slot
                );
            }
            Err(e) => {
                eprintln!("error: pipeline {name}: {e}");
                outcome = Outcome::Problems;
            }
        }
    }
    Ok(outcome)
}
