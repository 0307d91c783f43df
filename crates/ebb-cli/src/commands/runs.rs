//! `ebb runs list|show` and `ebb dlq list|retry`: what the state store remembers.

use std::path::PathBuf;

use anyhow::Result;
use ebb_state::{Run, RunFilter};
use ebb_sync::{RunOptions, RunStatus, SyncRunner};

use crate::{Outcome, project_dir, state};

const RUNS_EXAMPLES: &str = "\
Examples:
  ebb runs list -P models                    the latest runs of every sync, newest first
  ebb runs list -P models --sync crm_companies --limit 5
  ebb runs show -P models 12                 one run: counts, timings and its log";

const DLQ_EXAMPLES: &str = "\
Examples:
  ebb dlq list -P models                     every refused record, with the destination's reason
  ebb dlq list -P models crm_companies       one sync's
  ebb dlq retry -P models crm_companies      send them again now (a sync run does it too)";

#[derive(Debug, clap::Args)]
#[command(after_help = RUNS_EXAMPLES)]
pub struct RunsArgs {
    /// The project folder (the one holding ebb.yml).
    #[arg(short = 'P', long = "project", default_value = ".", global = true)]
    project: PathBuf,
    #[command(subcommand)]
    command: RunsVerb,
}

#[derive(Debug, clap::Subcommand)]
enum RunsVerb {
    /// Runs, newest first.
    List {
        /// Only this sync's runs.
        #[arg(long)]
        sync: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One run with its counts and log.
    Show { id: i64 },
}

#[derive(Debug, clap::Args)]
#[command(after_help = DLQ_EXAMPLES)]
pub struct DlqArgs {
    /// The project folder (the one holding ebb.yml).
    #[arg(short = 'P', long = "project", default_value = ".", global = true)]
    project: PathBuf,
    #[command(subcommand)]
    command: DlqVerb,
}

#[derive(Debug, clap::Subcommand)]
enum DlqVerb {
    /// Refused records waiting for the next run, with the destination's reason.
    List {
        /// Only this sync's.
        sync: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Run the sync now: its dead letters are sent first (with any new changes).
    Retry { sync: String },
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn when(ms: Option<i64>) -> String {
    ms.map_or("-".into(), |ms| {
        let secs = ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil(days);
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    })
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn duration(run: &Run) -> String {
    match (run.started_at, run.finished_at) {
        (Some(s), Some(f)) => format!("{:.1}s", (f - s) as f64 / 1000.0),
        (Some(_), None) => "running".into(),
        _ => "-".into(),
    }
}

pub fn runs(args: RunsArgs) -> Result<Outcome> {
    let Some(project) = project_dir::load_valid(&args.project)? else {
        return Ok(Outcome::Problems);
    };
    runtime()?.block_on(async {
        let store = state::open(&project).await?;
        let store = store.inner();
        match args.command {
            RunsVerb::List { sync, limit } => {
                let filter = RunFilter {
                    sync,
                    ..RunFilter::default()
                };
                let page = store.list_runs(&filter, None, limit).await?;
                if page.items.is_empty() {
                    say!("No runs yet. Start one with `ebb sync run NAME` or `ebb run`.");
                    return Ok(Outcome::Success);
                }
                say!(
                    "{:>5}  {:<20} {:<10} {:<19} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
                    "id",
                    "sync",
                    "status",
                    "started (UTC)",
                    "time",
                    "inserts",
                    "updates",
                    "deletes",
                    "accepted",
                    "rejected"
                );
                for r in &page.items {
                    let c = &r.counts;
                    say!(
                        "{:>5}  {:<20} {:<10} {:<19} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
                        r.id,
                        r.sync,
                        r.status.as_str(),
                        when(r.started_at),
                        duration(r),
                        c.inserted,
                        c.updated,
                        c.deleted,
                        c.accepted,
                        c.rejected
                    );
                }
                if page.next_cursor.is_some() {
                    say!("(more: raise --limit)");
                }
                Ok(Outcome::Success)
            }
            RunsVerb::Show { id } => {
                let Some(r) = store.get_run(id).await? else {
                    eprintln!("error: no run {id}; `ebb runs list` shows the ids");
                    return Ok(Outcome::Problems);
                };
                let c = &r.counts;
                say!("run {}: {} ({}, tenant {})", r.id, r.sync, r.kind.as_str(), r.tenant);
                say!("  status    {}", r.status.as_str());
                say!("  trigger   {}", r.trigger.as_str());
                say!("  created   {}", when(Some(r.created_at)));
                say!("  started   {}", when(r.started_at));
                say!("  finished  {}  ({})", when(r.finished_at), duration(&r));
                say!(
                    "  counts    planned {}, inserted {}, updated {}, deleted {}, accepted {}, rejected {}, retried {}, bad keys {}",
                    c.planned,
                    c.inserted,
                    c.updated,
                    c.deleted,
                    c.accepted,
                    c.rejected,
                    c.retried,
                    c.skipped_bad_keys
                );
                if let Some(e) = &r.error {
                    say!("  error     {e}");
                }
                let log = store.run_log(id).await?;
                if !log.is_empty() {
                    say!("  log:");
                }
                for line in log {
                    say!(
                        "    {} {:<5} {}",
                        when(Some(line.at)),
                        line.level.as_str(),
                        line.message
                    );
                    if let Some(sample) = line.sample {
                        say!("      {sample}");
                    }
                }
                Ok(Outcome::Success)
            }
        }
    })
}

pub fn dlq(args: DlqArgs) -> Result<Outcome> {
    let Some(project) = project_dir::load_valid(&args.project)? else {
        return Ok(Outcome::Problems);
    };
    runtime()?.block_on(async {
        let store = state::open(&project).await?;
        match args.command {
            DlqVerb::List { sync, limit } => {
                let tenants: Vec<String> = {
                    let mut t: Vec<String> = project
                        .syncs
                        .iter()
                        .filter(|s| sync.as_ref().is_none_or(|n| *n == s.name))
                        .map(|s| {
                            s.config.tenant.as_ref().map_or_else(
                                || ebb_sync::DEFAULT_TENANT.to_string(),
                                |t| t.value.clone(),
                            )
                        })
                        .collect();
                    t.sort();
                    t.dedup();
                    t
                };
                let mut shown = 0;
                for tenant in &tenants {
                    let page = store
                        .inner()
                        .dlq_list(tenant, sync.as_deref(), None, limit)
                        .await?;
                    for l in &page.items {
                        if shown == 0 {
                            say!(
                                "{:<20} {:<16} {:<8} {:>8}  reason",
                                "sync",
                                "record",
                                "op",
                                "failures"
                            );
                        }
                        shown += 1;
                        say!(
                            "{:<20} {:<16} {:<8} {:>8}  {}{}",
                            l.sync,
                            l.record.key,
                            l.record.op.as_str(),
                            l.failures,
                            l.reason,
                            l.field
                                .as_ref()
                                .map(|f| format!(" (field {f})"))
                                .unwrap_or_default()
                        );
                    }
                }
                if shown == 0 {
                    say!("The dead-letter queue is empty.");
                }
                Ok(Outcome::Success)
            }
            DlqVerb::Retry { sync } => {
                let runner = SyncRunner::open(&project, store.dead_letters()).await?;
                let options = RunOptions::default();
                let outcome =
                    crate::commands::sync::run_one(&runner, &store, &sync, &options).await;
                Ok(match outcome {
                    Some(o) if o.status == RunStatus::Succeeded => Outcome::Success,
                    _ => Outcome::Problems,
                })
            }
        }
    })
}
