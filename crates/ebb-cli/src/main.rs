//! The `ebb` binary: parses the command line and hands each verb to its module in
//! [`commands`]. The work itself lives in the library crates.
//!
//! Exit codes: 0 success, 1 the command ran and found problems (or failed), 2 usage error.

/// `println!` that ends the program quietly when stdout is gone (`ebb ... | head`), instead
/// of panicking on the broken pipe.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod commands;
mod project_dir;
mod sandbox;
mod state;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  ebb init my-project        create a project with a working example
  ebb check my-project       validate every file and reference in it
  ebb run -P my-project --sandbox
                             run it: models, then syncs into emulated destinations
  ebb doctor -P my-project   can this machine reach what the project names?
  ebb help check             more about one command

Docs: docs/project-format.md describes every file of a project.";

/// ebb moves data between your warehouse and the tools your teams use: reverse ETL from
/// SQL models to SaaS APIs, and change data capture from PostgreSQL.
#[derive(Debug, Parser)]
#[command(
    name = "ebb",
    version,
    about = "ebb moves data between your warehouse and the tools your teams use: reverse ETL \
             from SQL models to SaaS APIs, and change data capture from PostgreSQL.",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new project, with a working example of every part.
    Init(commands::init::Args),
    /// Run the whole project once: every model, then every sync, and a summary.
    Run(commands::run::Args),
    /// Validate a project: every file, every field, every reference between them.
    Check(commands::check::Args),
    /// Check this machine and a project: databases reachable, wal_level, credentials,
    /// destinations; says what to fix.
    Doctor(commands::doctor::Args),
    /// Run, compile, show and test the project's SQL models.
    Models(commands::models::Args),
    /// Change data capture: run, inspect and drop PostgreSQL CDC pipelines.
    Cdc(commands::cdc::Args),
    /// Reverse ETL: run a sync (diff the model, send only the changes), or list them.
    Sync(commands::sync::Args),
    /// The runs the state store remembers: list them, show one with its log.
    Runs(commands::runs::RunsArgs),
    /// The dead-letter queue: records a destination refused, and retrying them.
    Dlq(commands::runs::DlqArgs),
    /// Query the semantic metrics: list, query, compile to SQL, serve to psql.
    Metrics(commands::metrics::Args),
    /// Identity resolution: one customer, one stable id, a golden record.
    Identity(commands::identity::Args),
    /// The service: HTTP API under /v1, scheduler and workers sharing one state store.
    Serve(commands::serve::ServeArgs),
    /// API tokens for `ebb serve`: create, list, revoke.
    Tokens(commands::serve::TokensArgs),
}

/// What a command tells the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Problems,
    Usage,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        match o {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Problems => ExitCode::from(1),
            Outcome::Usage => ExitCode::from(2),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Warnings (slot lag, unknown column types, ...) go to stderr; `EBB_LOG=info` for more.
    let filter = tracing_subscriber::EnvFilter::try_from_env("EBB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Init(args) => commands::init::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Doctor(args) => commands::doctor::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Models(args) => commands::models::run(args),
        Command::Cdc(args) => commands::cdc::run(args),
        Command::Sync(args) => commands::sync::run(args),
        Command::Runs(args) => commands::runs::runs(args),
        Command::Dlq(args) => commands::runs::dlq(args),
        Command::Metrics(args) => commands::metrics::run(args),
        Command::Identity(args) => commands::identity::run(args),
        Command::Serve(args) => commands::serve::serve(args),
        Command::Tokens(args) => commands::serve::tokens(args),
    };
    match result {
        Ok(outcome) => outcome.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
