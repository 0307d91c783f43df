//! `ebb identity run|explain|history`: identity resolution over a project's models.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use ebb_engine::identity;
use ebb_engine::models::Models;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{Outcome, project_dir};

const EXAMPLES: &str = "\
Examples:
  ebb identity run -P models customers
        resolve identity/customers.yml: match, cluster, assign stable ids, write
        customers_resolved and customers_golden
  ebb identity explain -P models customers crm_contacts:30400058 billing_customers:60004
        the chain of matched pairs that joins two records, or why they are apart
  ebb identity history -P models customers --cluster 42
        what happened to cluster 42 across runs (created, merged, split, removed)

Records are named SOURCE_MODEL:KEY, or by key alone when only one source has it.
Docs: docs/identity.md.";

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
    /// Resolve an identity space and commit its ids, history and output models.
    Run {
        /// The identity space: the file name under identity/, without .yml.
        name: String,
    },
    /// Explain why two records are in one cluster (the rule chain) or apart.
    Explain {
        name: String,
        /// A record: SOURCE_MODEL:KEY.
        a: String,
        /// Another record: SOURCE_MODEL:KEY.
        b: String,
    },
    /// Show the id history of the last committed run.
    History {
        name: String,
        /// Only the events that concern this cluster id.
        #[arg(long)]
        cluster: Option<i64>,
        /// At most this many events (the latest).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

pub fn run(args: Args) -> Result<Outcome> {
    let Some(project) = project_dir::load_valid(&args.project)? else {
        return Ok(Outcome::Problems);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if let Verb::History {
            name,
            cluster,
            limit,
        } = &args.command
        {
            return show_history(&project, name, *cluster, *limit).await;
        }
        let models = match Models::open(&project).await {
            Ok(m) => m,
            Err(err) => return fail(err),
        };
        match args.command {
            Verb::Run { name } => run_identity(&models, &name).await,
            Verb::Explain { name, a, b } => match identity::explain(&models, &name, &a, &b).await {
                Ok(e) => {
                    say!("{}", e.text.trim_end());
                    Ok(Outcome::Success)
                }
                Err(err) => fail(err),
            },
            Verb::History { .. } => Ok(Outcome::Success),
        }
    })
}

fn fail(err: impl std::fmt::Display) -> Result<Outcome> {
    eprintln!("error: {err}");
    Ok(Outcome::Problems)
}

pub async fn run_identity(models: &Models<'_>, name: &str) -> Result<Outcome> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let progress = |step: &str| bar.set_message(format!("{name}: {step}"));
    let result = identity::run(models, name, &progress).await;
    bar.finish_and_clear();
    let run = match result {
        Ok(r) => r,
        Err(err) => return fail(err),
    };
    for w in &run.warnings {
        eprintln!("warning: {w}");
    }
    say!(
        "Identity {} run {}: {} records in {:.2}s (read {:.2}s, resolve {:.2}s)",
        run.name,
        run.run,
        run.records,
        run.elapsed.as_secs_f64(),
        run.read_time.as_secs_f64(),
        run.resolve_time.as_secs_f64()
    );
    say!("  rule                          compared      matched    time");
    for r in &run.rules {
        let prior = r
            .prior
            .map(|p| format!("  (EM prior {p:.4})"))
            .unwrap_or_default();
        say!(
            "  {:<28} {:>10} {:>12} {:>6.2}s{prior}",
            r.name,
            r.compared,
            r.matched,
            r.elapsed.as_secs_f64()
        );
    }
    say!(
        "  pairs compared {}, matched {}; {} clusters ({} with more than one record), largest {}",
        run.compared,
        run.matched,
        run.clusters,
        run.multi_record_clusters,
        run.largest_cluster
    );
    let c = &run.changes;
    say!(
        "  ids: {} kept, {} created, {} merged away, {} split, {} removed",
        c.kept,
        c.created,
        c.merged,
        c.split,
        c.removed
    );
    if let Some(e) = &run.evaluation {
        say!(
            "  against the truth table ({} records): precision {:.4}, recall {:.4}, F1 {:.4} (pairs: {} predicted, {} true, {} correct)",
            e.records,
            e.precision(),
            e.recall(),
            e.f1(),
            e.predicted_pairs,
            e.true_pairs,
            e.correct_pairs
        );
    }
    say!("  state and history: {}", run.state_location);
    for o in &run.outputs {
        say!("  output: {o}");
    }
    Ok(Outcome::Success)
}

async fn show_history(
    project: &ebb_core::project::Project,
    name: &str,
    cluster: Option<i64>,
    limit: usize,
) -> Result<Outcome> {
    let state = match identity::history(project, name).await {
        Ok(s) => s,
        Err(err) => return fail(err),
    };
    if state.run == 0 {
        say!("{name} has not run yet: `ebb identity run {name}`");
        return Ok(Outcome::Success);
    }
    let events: Vec<_> = match cluster {
        Some(id) => state.history_of(id),
        None => state.history.iter().collect(),
    };
    if let Some(id) = cluster {
        match state.clusters.get(&id) {
            Some(info) => say!(
                "cluster {id}: {:?}, created in run {}, {} records{}",
                info.status,
                info.created_run,
                info.size,
                info.successor
                    .map(|s| format!(", merged into {s}"))
                    .unwrap_or_default()
            ),
            None => {
                eprintln!("error: no cluster {id} in {name}");
                return Ok(Outcome::Problems);
            }
        }
    }
    say!("run  event    cluster_id  related_ids  records");
    let skip = events.len().saturating_sub(limit);
    for e in events.iter().skip(skip) {
        let related = e
            .related
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        say!(
            "{:<4} {:<8} {:<11} {:<12} {}",
            e.run,
            e.kind,
            e.cluster_id,
            if related.is_empty() { "-" } else { &related },
            e.records
        );
    }
    say!(
        "{} events in {} runs; the tables are Parquet under .ebb/identity/{name}/",
        state.history.len(),
        state.run
    );
    Ok(Outcome::Success)
}
