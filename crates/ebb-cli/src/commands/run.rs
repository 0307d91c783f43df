//! `ebb run`: the whole project, once — every model, then every enabled sync in order —
//! and a summary of what was read, what changed and what the destinations accepted.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use ebb_sync::{RunOptions, RunStatus, SyncOutcome, SyncRunner};

use crate::commands::sync::run_one;
use crate::{Outcome, project_dir, state};

const EXAMPLES: &str = "\
Examples:
  ebb run -P models --sandbox     the example project, destinations emulated in-process
  ebb run -P models --dry-run     what would be sent, nothing written
  python3 models/generate.py --mutate && ebb run -P models --sandbox
                                  change some rows; the second run sends only the changes

`--sandbox` starts, inside this process, an emulator for every destination whose URL is on
this machine (127.0.0.1 / localhost): a Standard Webhooks receiver, HubSpot, Salesforce, Braze.
What they received is kept under .ebb/sandbox/ in the project.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The project folder (the one holding ebb.yml).
    #[arg(short = 'P', long = "project", default_value = ".")]
    project: PathBuf,
    /// Emulate every destination whose URL is on this machine, inside this process.
    #[arg(long)]
    sandbox: bool,
    /// Diff and plan only: counts and sample payloads, nothing sent or committed.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: Args) -> Result<Outcome> {
    let Some(project) = project_dir::load_valid(&args.project)? else {
        return Ok(Outcome::Problems);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let started = Instant::now();
        let name = project
            .config
            .as_ref()
            .map_or("project", |c| c.name.value.as_str());
        say!("ebb run: {name} ({})", args.project.display());
        let sandbox = if args.sandbox {
            Some(crate::sandbox::start(&project).await?)
        } else {
            None
        };
        let store = state::open(&project).await?;
        let runner = SyncRunner::open(&project, store.dead_letters()).await?;

        // Every model, in dependency order, so the warehouse holds today's truth.
        let built = crate::commands::models::build_all(runner.models()).await;
        for model in &built.ok {
            runner.mark_built(model);
        }
        if !built.failed.is_empty() {
            eprintln!(
                "error: {} model{} failed; syncs reading them are skipped",
                built.failed.len(),
                if built.failed.len() == 1 { "" } else { "s" }
            );
        }

        // Identity spaces next: their `<name>_resolved` and `<name>_golden` outputs are
        // models that syncs and metrics can read.
        let mut identity_failed = 0;
        if built.failed.is_empty() {
            for identity in &project.identities {
                say!("");
                match crate::commands::identity::run_identity(runner.models(), &identity.name).await
                {
                    Ok(Outcome::Success) => {}
                    Ok(_) | Err(_) => identity_failed += 1,
                }
            }
        }

        let options = RunOptions {
            dry_run: args.dry_run,
            full_resync: false,
            samples: if args.dry_run { 2 } else { 0 },
        };
        let mut outcomes: Vec<(String, Option<SyncOutcome>)> = Vec::new();
        for sync in runner.ordered_syncs() {
            if !sync.config.enabled {
                say!("{}: disabled, skipped", sync.name);
                continue;
            }
            say!("");
            let outcome = run_one(&runner, &store, &sync.name, &options).await;
            outcomes.push((sync.name.clone(), outcome));
        }
        if !project.metrics.is_empty() {
            say!("");
            metrics_headline(runner.models()).await;
        }
        summary(&outcomes, &built, started);
        say!("");
        say!("Where to look next:");
        say!(
            "  ebb sync list -P {0}            the syncs and their schedules",
            args.project.display()
        );
        say!(
            "  ebb runs list -P {0}            every run with its counts",
            args.project.display()
        );
        if args.sandbox {
            say!(
                "  {}/.ebb/sandbox/        what the emulated destinations now hold",
                args.project.display()
            );
        }
        say!(
            "  {}/.ebb/snapshots/      what each sync last delivered (Parquet)",
            args.project.display()
        );
        if let Some(sandbox) = sandbox {
            sandbox.shutdown().await?;
        }
        let ok = built.failed.is_empty()
            && identity_failed == 0
            && outcomes
                .iter()
                .all(|(_, o)| o.as_ref().is_some_and(|o| o.status == RunStatus::Succeeded));
        Ok(if ok {
            Outcome::Success
        } else {
            Outcome::Problems
        })
    })
}

/// The project's first simple metric, all time, and how to ask more.
async fn metrics_headline(models: &ebb_engine::models::Models<'_>) {
    use ebb_engine::metrics::{MetricQuery, MetricsLayer};
    let layer = MetricsLayer::new(models);
    let names: Vec<String> = layer
        .graph()
        .metrics()
        .map(|m| m.name.value.clone())
        .collect();
    let Some(first) = names.first() else {
        return;
    };
    let query = MetricQuery {
        metrics: vec![first.clone()],
        group_by: Vec::new(),
        grain: None,
        filter: None,
        order: Vec::new(),
        limit: None,
    };
    match layer.collect(&query).await {
        Ok((_, batches)) => {
            let value = batches
                .iter()
                .find(|b| b.num_rows() > 0)
                .and_then(|b| {
                    arrow::util::display::array_value_to_string(b.column(b.num_columns() - 1), 0)
                        .ok()
                })
                .unwrap_or_else(|| "no rows".into());
            say!(
                "Metrics: {} defined; {first} (all time) = {value}",
                names.len()
            );
            say!(
                "  ebb metrics query --metrics {first} --grain month    by month; `ebb metrics list` for all"
            );
        }
        Err(err) => say!(
            "Metrics: {} defined; {first} could not be computed: {err}",
            names.len()
        ),
    }
}

fn summary(
    outcomes: &[(String, Option<SyncOutcome>)],
    built: &crate::commands::models::Built,
    started: Instant,
) {
    say!("");
    say!(
        "Summary: {} models built ({} failed), {} syncs, {:.1}s",
        built.ok.len(),
        built.failed.len(),
        outcomes.len(),
        started.elapsed().as_secs_f64()
    );
    say!(
        "  {:<20} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7}  status",
        "sync",
        "rows read",
        "changes",
        "inserts",
        "updates",
        "deletes",
        "accepted",
        "rejected",
        "time"
    );
    for (name, outcome) in outcomes {
        match outcome {
            Some(o) => {
                let d = &o.diff;
                let (accepted, rejected) = o
                    .delivery
                    .as_ref()
                    .map_or((0, 0), |r| (r.accepted, r.rejected));
                say!(
                    "  {:<20} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6.1}s  {}",
                    name,
                    d.rows_read,
                    d.changes(),
                    d.inserts,
                    d.updates,
                    d.deletes,
                    accepted,
                    rejected,
                    o.elapsed.as_secs_f64(),
                    if o.dry_run {
                        "dry run"
                    } else {
                        o.status.as_str()
                    }
                );
            }
            None => say!("  {name:<20} {:>9}  failed (see the error above)", "-"),
        }
    }
}
