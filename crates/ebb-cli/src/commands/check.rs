//! `ebb check`: validate a whole project and report every problem at once.

use std::path::PathBuf;

use anyhow::Result;
use ebb_core::project::{self, Loaded};
use ebb_core::yaml::ProcessEnv;
use ebb_core::{Diagnostic, Severity};

use crate::Outcome;
use crate::project_dir;

const EXAMPLES: &str = "\
Examples:
  ebb check                  check the project in this folder
  ebb check models/          check the example project
  ebb check --format json .  machine-readable, for editors and CI

Exit status: 0 no errors (warnings allowed), 1 problems found, 2 usage error.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The project folder (the one holding ebb.yml).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// How to print problems.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Treat warnings as problems (exit 1 when there are any).
    #[arg(long)]
    deny_warnings: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

pub fn run(args: Args) -> Result<Outcome> {
    let (source, mut read_problems) = match project_dir::read(&args.dir) {
        Ok(ok) => ok,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(Outcome::Usage);
        }
    };
    let mut loaded = project::load(&source, &ProcessEnv);
    loaded.diagnostics.append(&mut read_problems);
    // Show paths as the user can open them: relative to where ebb was run.
    for d in &mut loaded.diagnostics {
        d.file = args.dir.join(&d.file);
    }
    match args.format {
        Format::Text => print_text(&loaded, &args.dir),
        Format::Json => print_json(&loaded),
    }
    let failing = loaded.errors() > 0 || (args.deny_warnings && loaded.warnings() > 0);
    Ok(if failing {
        Outcome::Problems
    } else {
        Outcome::Success
    })
}

fn print_text(loaded: &Loaded, dir: &std::path::Path) {
    for d in &loaded.diagnostics {
        say!("{d}\n");
    }
    let p = &loaded.project;
    let name = p
        .config
        .as_ref()
        .map_or("project".to_string(), |c| c.name.value.clone());
    let semantic: usize = p.metrics.iter().map(|m| m.file.semantic_models.len()).sum();
    let metrics: usize = p.metrics.iter().map(|m| m.file.metrics.len()).sum();
    say!(
        "{name} ({}): {} models, {} syncs, {} semantic models, {} metrics, {} identity spaces",
        dir.display(),
        p.models.len(),
        p.syncs.len(),
        semantic,
        metrics,
        p.identities.len()
    );
    let (errors, warnings) = (loaded.errors(), loaded.warnings());
    if errors == 0 && warnings == 0 {
        say!("no problems found");
    } else {
        let files: std::collections::BTreeSet<_> =
            loaded.diagnostics.iter().map(|d| &d.file).collect();
        say!(
            "{errors} error{}, {warnings} warning{} in {} file{}",
            plural(errors),
            plural(warnings),
            files.len(),
            plural(files.len())
        );
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn print_json(loaded: &Loaded) {
    let diagnostics: Vec<serde_json::Value> = loaded.diagnostics.iter().map(to_json).collect();
    let out = serde_json::json!({
        "project": loaded.project.config.as_ref().map(|c| c.name.value.clone()),
        "errors": loaded.errors(),
        "warnings": loaded.warnings(),
        "diagnostics": diagnostics,
    });
    say!("{out:#}");
}

fn to_json(d: &Diagnostic) -> serde_json::Value {
    serde_json::json!({
        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
        "file": d.file.display().to_string(),
        "line": d.pos.map(|p| p.line),
        "column": d.pos.map(|p| p.column),
        "field": d.field,
        "message": d.message,
        "help": d.help,
    })
}
