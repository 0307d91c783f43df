//! `ebb serve` (the HTTP API, scheduler and workers) and `ebb tokens` (the API tokens it
//! accepts).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use ebb_core::project::Project;
use ebb_server::api::auth::Scope;
use ebb_server::serve::{ServeOptions, Server, termination};
use ebb_server::worker::Leases;
use ebb_state::StateStore;

use crate::{Outcome, project_dir};

const SERVE_EXAMPLES: &str = "\
Examples:
  ebb serve -P models                        API on 127.0.0.1:8080, 2 workers, SQLite state
  ebb serve -P models --listen 0.0.0.0:8080 --state-url postgres://ebb@db/ebb --workers 4
  ebb tokens create -P models --tenant default --scope syncs:read --scope syncs:write
  curl -H \"Authorization: Bearer $TOKEN\" localhost:8080/v1/syncs

Run any number of `ebb serve` processes on one Postgres state store: each run goes to one
of them, and a dead process's runs are taken over when their lease expires.";

const TOKENS_EXAMPLES: &str = "\
Examples:
  ebb tokens create -P models --tenant acme --scope admin
  ebb tokens list -P models --tenant acme
  ebb tokens revoke -P models --tenant acme 3";

/// Where the state store is: `--state-url`, else `state:` in ebb.yml.
#[derive(Debug, clap::Args)]
pub struct StoreArg {
    /// A Postgres URL (`postgres://...`) or a SQLite file; default: `state:` in ebb.yml.
    #[arg(long = "state-url", env = "EBB_STATE_URL", global = true)]
    state_url: Option<String>,
}

impl StoreArg {
    async fn open(&self, project: &Project) -> Result<StateStore> {
        match &self.state_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                StateStore::open_postgres(url, None)
                    .await
                    .context("cannot open the state store given by --state-url")
            }
            Some(path) => StateStore::open_sqlite(path)
                .await
                .with_context(|| format!("cannot open the SQLite state store {path}")),
            None => Ok(crate::state::open(project).await?.inner().clone()),
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(after_help = SERVE_EXAMPLES)]
pub struct ServeArgs {
    /// The project folder (the one holding ebb.yml).
    #[arg(short = 'P', long = "project", default_value = ".")]
    project: PathBuf,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080", env = "EBB_LISTEN")]
    listen: String,
    /// Runs this process executes at once.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// The name this process's leases carry (default: HOSTNAME-PID).
    #[arg(long)]
    worker_id: Option<String>,
    /// Seconds without a heartbeat after which another process takes a run over.
    #[arg(long, default_value_t = 30)]
    lease_seconds: u64,
    /// Seconds a run in flight may take to finish at shutdown before it is handed back.
    #[arg(long, default_value_t = 30)]
    grace_seconds: u64,
    /// Don't fire schedules in this process (it still runs what others queue).
    #[arg(long)]
    no_scheduler: bool,
    #[command(flatten)]
    store: StoreArg,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn serve(args: ServeArgs) -> Result<Outcome> {
    let Some(project) = project_dir::load_valid(&args.project)? else {
        return Ok(Outcome::Problems);
    };
    runtime()?.block_on(async {
        let store = args.store.open(&project).await?;
        let options = ServeOptions {
            listen: args.listen.clone(),
            workers: args.workers,
            worker_id: args.worker_id.clone(),
            leases: Leases {
                lease: Duration::from_secs(args.lease_seconds.max(1)),
                grace: Duration::from_secs(args.grace_seconds),
                ..Leases::default()
            },
            scheduler: !args.no_scheduler,
        };
        let location = store.location();
        let server = Server::bind(project, store, options).await?;
        let addr = server.local_addr()?;
        // Tests and scripts read this line to learn the port (`--listen 127.0.0.1:0`).
        say!(
            "ebb serve listening on http://{addr} (state store: {location}; {} workers)",
            args.workers.max(1)
        );
        server.run(termination()).await?;
        say!("ebb serve stopped");
        Ok(Outcome::Success)
    })
}

#[derive(Debug, clap::Args)]
#[command(after_help = TOKENS_EXAMPLES)]
pub struct TokensArgs {
    /// The project folder (the one holding ebb.yml).
    #[arg(short = 'P', long = "project", default_value = ".", global = true)]
    project: PathBuf,
    #[command(flatten)]
    store: StoreArg,
    #[command(subcommand)]
    command: TokensVerb,
}

#[derive(Debug, clap::Subcommand)]
enum TokensVerb {
    /// Create a token; its plaintext is printed once and stored only as a hash.
    Create {
        #[arg(long, default_value = "default")]
        tenant: String,
        /// syncs:read, syncs:write, runs:read, runs:write, dlq:read, dlq:write,
        /// events:read, metrics:read or admin (all of them); repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// A tenant's tokens (never their plaintext).
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Revoke a token.
    Revoke {
        #[arg(long, default_value = "default")]
        tenant: String,
        id: i64,
    },
}

pub fn tokens(args: TokensArgs) -> Result<Outcome> {
    let Some(project) = project_dir::load_valid(&args.project)? else {
        return Ok(Outcome::Problems);
    };
    runtime()?.block_on(async {
        let store = args.store.open(&project).await?;
        match args.command {
            TokensVerb::Create { tenant, scopes } => {
                if let Some(bad) = scopes.iter().find(|s| Scope::parse(s).is_none()) {
                    eprintln!(
                        "error: unknown scope \"{bad}\"; scopes are: {}",
                        Scope::ALL
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    return Ok(Outcome::Usage);
                }
                let token = store.create_token(&tenant, &scopes).await?;
                store
                    .audit(
                        &tenant,
                        "cli",
                        "token.create",
                        &format!("token:{}", token.id),
                        &serde_json::json!({"scopes": scopes}),
                    )
                    .await?;
                eprintln!(
                    "token {} for tenant {tenant} ({}); shown once:",
                    token.id,
                    scopes.join(", ")
                );
                say!("{}", token.plaintext);
            }
            TokensVerb::List { tenant } => {
                let tokens = store.list_tokens(&tenant).await?;
                if tokens.is_empty() {
                    say!("No tokens for tenant {tenant}.");
                }
                for t in tokens {
                    say!(
                        "{:>4}  {}  {}",
                        t.id,
                        if t.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "live   "
                        },
                        t.scopes.join(",")
                    );
                }
            }
            TokensVerb::Revoke { tenant, id } => {
                if !store.revoke_token(&tenant, id).await? {
                    eprintln!("error: tenant {tenant} has no live token {id}");
                    return Ok(Outcome::Problems);
                }
                store
                    .audit(
                        &tenant,
                        "cli",
                        "token.revoke",
                        &format!("token:{id}"),
                        &serde_json::json!({}),
                    )
                    .await?;
                say!("token {id} revoked");
            }
        }
        Ok(Outcome::Success)
    })
}
