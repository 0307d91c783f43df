//! `ebb sync run|list`: reverse-ETL syncs (`syncs/NAME.yml`), one at a time.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use ebb_sync::{Progress, RunOptions, RunStatus, SyncOutcome, SyncRunner};
use indicatif::{ProgressBar, ProgressStyle};

use crate::state::{self, Store};
use crate::{Outcome, project_dir};

const EXAMPLES: &str = "\
Examples:
  ebb sync list -P models                       every sync, its model, destination and mode
  ebb sync run -P models crm_companies          find what changed and send only that
  ebb sync run -P models crm_companies --dry-run  counts and sample payloads, nothing sent
  ebb sync run -P models crm_companies --full-resync  send every row once more

A run builds the sync's model, diffs it against what was last delivered (.ebb/snapshots/),
delivers the changes, and commits only what the destination accepted. Refused records wait
in the dead-letter queue (`ebb dlq list`) and are retried on the next run.";

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
    /// Run a sync: build its model, diff, deliver the changes, commit what was accepted.
    Run {
        /// The sync (the file name under syncs/, without .yml).
        name: String,
        /// Diff and plan only: print counts and sample payloads, send and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Send every row again, whatever was delivered before (once).
        #[arg(long)]
        full_resync: bool,
        /// Sample payloads to print with --dry-run.
        #[arg(long, default_value_t = 3)]
        samples: usize,
    },
    /// List the project's syncs.
    List,
}

pub fn run(args: Args) -> Result<Outcome> {
    let Some(project) = project_dir::load_valid(&args.project)? else {
        return Ok(Outcome::Problems);
    };
    match args.command {
        Verb::List => {
            list(&project);
            Ok(Outcome::Success)
        }
        Verb::Run {
            name,
            dry_run,
            full_resync,
            samples,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let store = state::open(&project).await?;
                let runner = SyncRunner::open(&project, store.dead_letters()).await?;
                let options = RunOptions {
                    dry_run,
                    full_resync,
                    samples: if dry_run { samples } else { 0 },
                };
                let outcome = run_one(&runner, &store, &name, &options).await;
                Ok(match outcome {
                    Some(o) if o.status == RunStatus::Succeeded => Outcome::Success,
                    _ => Outcome::Problems,
                })
            })
        }
    }
}

fn list(project: &ebb_core::project::Project) {
    if project.syncs.is_empty() {
        say!("No syncs. Add one under syncs/ (see docs/project-format.md).");
        return;
    }
    say!(
        "{:<24} {:<20} {:<14} {:<8} schedule",
        "sync",
        "model",
        "destination",
        "mode"
    );
    let default_mode = project
        .config
        .as_ref()
        .map(|c| c.defaults.sync_mode)
        .unwrap_or_default();
    for s in ebb_sync::order_syncs(project) {
        let c = &s.config;
        let schedule = c.schedule.as_ref().map_or("manual".to_string(), |sch| {
            let sch = &sch.value;
            if let Some(cron) = &sch.cron {
                format!("cron {}", cron.value)
            } else if let Some(every) = &sch.every {
                format!("every {:?}", every.0)
            } else if let Some(after) = &sch.after {
                format!("after {}", after.value)
            } else {
                "manual".into()
            }
        });
        say!(
            "{:<24} {:<20} {:<14} {:<8} {schedule}{}",
            s.name,
            c.model.as_ref().map_or("-", |m| m.value.as_str()),
            c.destination.value,
            format!("{:?}", c.mode.unwrap_or(default_mode)).to_lowercase(),
            if c.enabled { "" } else { " (disabled)" }
        );
    }
}

/// Runs one sync with a progress bar, records the run, prints its report. `None` when it
/// could not run (the error is printed).
pub async fn run_one(
    runner: &SyncRunner<'_, state::DeadLetterStore>,
    store: &Store,
    name: &str,
    options: &RunOptions,
) -> Option<SyncOutcome> {
    let bar = progress_bar();
    let label = name.to_string();
    let on_progress = |p: Progress| match p {
        Progress::Building { model } => bar.set_message(format!("{label}: building {model}")),
        Progress::Diffed { report } => bar.set_message(format!(
            "{label}: {} rows read, {} changes",
            report.rows_read,
            report.changes()
        )),
        Progress::Delivering { done, total } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(format!("{label}: delivering"));
        }
        Progress::Committing => bar.set_message(format!("{label}: committing")),
    };
    let run_id = if options.dry_run {
        None
    } else {
        store.start_run(runner, name).await
    };
    let result = runner.run(name, options, &on_progress).await;
    bar.finish_and_clear();
    store.finish_run(run_id, &result).await;
    match result {
        Ok(outcome) => {
            print_outcome(&outcome);
            Some(outcome)
        }
        Err(err) => {
            eprintln!("error: {err}");
            None
        }
    }
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// The report of one run: what the diff found, what delivery did.
pub fn print_outcome(o: &SyncOutcome) {
    let d = &o.diff;
    say!(
        "{}{} → {} ({}, {})",
        if o.dry_run { "[dry run] " } else { "" },
        o.sync,
        o.destination,
        format!("{:?}", o.mode).to_lowercase(),
        o.tenant
    );
    say!(
        "  read {} rows: {} inserts, {} updates, {} deletes, {} unchanged",
        d.rows_read,
        d.inserts,
        d.updates,
        d.deletes,
        d.unchanged
    );
    if let Some(marked) = d.marked_synced {
        say!("  first run with skip_initial_backfill: {marked} rows marked as synced, none sent");
    }
    let bad = &d.bad_keys;
    if bad.null_key_rows > 0 || bad.duplicate_keys > 0 {
        say!(
            "  left out: {} rows with a NULL key, {} rows sharing {} duplicated keys (e.g. {})",
            bad.null_key_rows,
            bad.duplicate_rows,
            bad.duplicate_keys,
            bad.sample_duplicates.join(", ")
        );
    }
    if o.dry_run {
        say!("  would send {} records", o.planned);
        for r in &o.samples {
            say!(
                "    {} {}: {}",
                r.op,
                r.id,
                serde_json::Value::Object(r.fields.clone())
            );
        }
        return;
    }
    if let Some(r) = &o.delivery {
        say!(
            "  {:>8} {:>8} {:>9} {:>9} {:>8} {:>9} {:>8}",
            "planned",
            "sent",
            "accepted",
            "rejected",
            "retried",
            "throttled",
            "time"
        );
        say!(
            "  {:>8} {:>8} {:>9} {:>9} {:>8} {:>9} {:>7.1}s",
            r.planned,
            r.sent,
            r.accepted,
            r.rejected,
            r.retried,
            r.throttled,
            o.elapsed.as_secs_f64()
        );
        if let Some(why) = &r.aborted {
            say!("  stopped: {why}");
        }
        if r.rejected > 0 {
            say!(
                "  {} refused record{} wait in the dead-letter queue: `ebb dlq list {}`; they are retried on the next run",
                r.rejected,
                if r.rejected == 1 { "" } else { "s" },
                o.sync
            );
        }
    }
    if o.not_sent > 0 {
        say!(
            "  {} changes were not sent; the next run sends them",
            o.not_sent
        );
    }
    say!("  status: {}", o.status.as_str());
}
