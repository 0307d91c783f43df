//! `ebb models run|compile|show|test`: a project's SQL models on their warehouses.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use arrow::util::pretty::pretty_format_batches;
use ebb_engine::models::Models;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{Outcome, project_dir};

const EXAMPLES: &str = "\
Examples:
  ebb models run -P models                     run every model of the example project
  ebb models run -P models --select stg_users+ a model and everything built on it
  ebb models compile -P models account_health  the SQL that runs, refs resolved
  ebb models show -P models account_health     the first rows, as a table
  ebb models test -P models                    run the column tests

Selectors: name, name+ (and downstream), +name (and upstream), +name+.";

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
    /// Build models in dependency order (views, tables, Parquet files).
    Run {
        /// Which models: name, name+, +name, +name+ (repeatable). Default: all.
        #[arg(short, long)]
        select: Vec<String>,
    },
    /// Print the SQL a model runs, with refs and sources resolved.
    Compile { model: String },
    /// Print a model's first rows as a table.
    Show {
        model: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Run the column tests (not_null, unique, accepted_values, relationships).
    Test {
        #[arg(short, long)]
        select: Vec<String>,
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
        let models = match Models::open(&project).await {
            Ok(m) => m,
            Err(err) => {
                eprintln!("error: {err}");
                return Ok(Outcome::Problems);
            }
        };
        match args.command {
            Verb::Run { select } => run_models(&models, &select).await,
            Verb::Compile { model } => match models.compile(&model) {
                Ok(sql) => {
                    say!("{sql}");
                    Ok(Outcome::Success)
                }
                Err(err) => fail(err),
            },
            Verb::Show { model, limit } => match models.show(&model, limit).await {
                Ok(batches) => {
                    say!("{}", pretty_format_batches(&batches)?);
                    Ok(Outcome::Success)
                }
                Err(err) => fail(err),
            },
            Verb::Test { select } => test_models(&models, &select).await,
        }
    })
}

fn fail(err: impl std::fmt::Display) -> Result<Outcome> {
    eprintln!("error: {err}");
    Ok(Outcome::Problems)
}

fn spinner(label: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(label);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

async fn run_models(models: &Models<'_>, select: &[String]) -> Result<Outcome> {
    let picked = match models.graph().select(select) {
        Ok(p) => p,
        Err(err) => return fail(err),
    };
    let built = build(models, &picked).await;
    Ok(if built.failed.is_empty() {
        Outcome::Success
    } else {
        Outcome::Problems
    })
}

/// What building models did.
#[derive(Debug, Default)]
pub struct Built {
    pub ok: Vec<String>,
    /// Models that failed or were skipped because an upstream model failed.
    pub failed: BTreeSet<String>,
}

/// Builds every model of the project in dependency order (see [`build`]).
pub async fn build_all(models: &Models<'_>) -> Built {
    let picked: Vec<_> = models.graph().order().to_vec();
    build(models, &picked).await
}

/// Builds `picked` in order, a line per model; a model whose upstream failed is skipped.
pub async fn build(models: &Models<'_>, picked: &[&ebb_core::project::Model]) -> Built {
    let started = Instant::now();
    let total = picked.len();
    say!("Running {total} model{}", if total == 1 { "" } else { "s" });
    let width = picked.iter().map(|m| m.name.len()).max().unwrap_or(10);
    let mut built = Built::default();
    let mut skipped = 0;
    for (i, model) in picked.iter().enumerate() {
        let n = format!("[{:>2}/{total}]", i + 1);
        let how = format!("{:?}", models.materialized(model)).to_lowercase();
        if let Some(bad) = models
            .graph()
            .upstream(&model.name)
            .find(|u| built.failed.contains(*u))
        {
            say!(
                "  {n} {:<width$}  {how:<9}  SKIPPED (upstream {bad} failed)",
                model.name
            );
            built.failed.insert(model.name.clone());
            skipped += 1;
            continue;
        }
        let bar = spinner(format!("{n} {}", model.name));
        let result = models.run(&model.name).await;
        bar.finish_and_clear();
        match result {
            Ok(run) => {
                let rows = run
                    .rows
                    .map(|r| format!("{r} rows"))
                    .unwrap_or_else(|| "ok".into());
                say!(
                    "  {n} {:<width$}  {how:<9}  {rows:<12} {:.2}s",
                    model.name,
                    run.elapsed.as_secs_f64()
                );
                built.ok.push(model.name.clone());
            }
            Err(err) => {
                say!("  {n} {:<width$}  {how:<9}  FAILED", model.name);
                eprintln!("error: {err}");
                built.failed.insert(model.name.clone());
            }
        }
    }
    let errors = built.failed.len() - skipped;
    say!(
        "Done in {:.2}s: {} ok, {errors} failed, {skipped} skipped",
        started.elapsed().as_secs_f64(),
        built.ok.len()
    );
    built
}

async fn test_models(models: &Models<'_>, select: &[String]) -> Result<Outcome> {
    let picked = match models.graph().select(select) {
        Ok(p) => p,
        Err(err) => return fail(err),
    };
    let (mut passed, mut failed) = (0, 0);
    for model in picked {
        let outcomes = match models.test(&model.name).await {
            Ok(o) => o,
            Err(err) => {
                eprintln!("error: {err}");
                failed += 1;
                continue;
            }
        };
        for o in outcomes {
            let label = format!("{}.{} {}", o.spec.model, o.spec.column, o.spec.name());
            if o.failures == 0 {
                passed += 1;
                say!("  PASS  {label}");
            } else {
                failed += 1;
                say!(
                    "  FAIL  {label}: {} failing row{}",
                    o.failures,
                    if o.failures == 1 { "" } else { "s" }
                );
                if let Ok(table) = pretty_format_batches(&o.sample) {
                    for line in table.to_string().lines() {
                        say!("        {line}");
                    }
                }
                say!("        find them all with: {}", o.sql.replace('\n', " "));
            }
        }
    }
    say!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        Outcome::Success
    } else {
        Outcome::Problems
    })
}
