//! `ebb doctor`: checks this machine and a project — can ebb reach what the project names,
//! with the settings it needs — and says what to fix, one line per finding.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use ebb_core::Severity;
use ebb_core::config::project::{DestinationConfig, StateConfig, WarehouseConfig};
use ebb_core::project::{self, Project};
use ebb_core::yaml::ProcessEnv;

use crate::{Outcome, project_dir};

const EXAMPLES: &str = "\
Examples:
  ebb doctor                 this folder's project and the machine
  ebb doctor -P models       the example project

Each line is `ok`, `warn` or `FAIL`, with what to do about it. Exit 1 when something fails.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The project folder (the one holding ebb.yml).
    #[arg(short = 'P', long = "project", default_value = ".")]
    project: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Default)]
struct Report {
    fails: usize,
    warns: usize,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: impl std::fmt::Display) {
        let tag = match level {
            Level::Ok => "  ok  ",
            Level::Warn => {
                self.warns += 1;
                " warn "
            }
            Level::Fail => {
                self.fails += 1;
                " FAIL "
            }
        };
        say!("{tag} {what}: {detail}");
    }
}

pub fn run(args: Args) -> Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut r = Report::default();
        say!("Machine");
        machine(&mut r);
        say!("Project {}", args.project.display());
        let project = match project_dir::read(&args.project) {
            Err(err) => {
                r.line(Level::Fail, "project", err);
                None
            }
            Ok((source, read_problems)) => {
                let loaded = project::load(&source, &ProcessEnv);
                let errors = loaded
                    .diagnostics
                    .iter()
                    .chain(read_problems.iter())
                    .filter(|d| d.severity == Severity::Error)
                    .count();
                if errors == 0 {
                    r.line(
                        Level::Ok,
                        "project files",
                        format!(
                            "{} models, {} syncs, {} pipelines, {} metric files, {} identity spaces",
                            loaded.project.models.len(),
                            loaded.project.syncs.len(),
                            loaded.project.pipelines.len(),
                            loaded.project.metrics.len(),
                            loaded.project.identities.len()
                        ),
                    );
                } else {
                    r.line(
                        Level::Fail,
                        "project files",
                        format!(
                            "{errors} problem{}; `ebb check {}` lists them with file:line and the fix",
                            if errors == 1 { "" } else { "s" },
                            args.project.display()
                        ),
                    );
                }
                Some(loaded.project)
            }
        };
        if let Some(project) = &project {
            check_project(project, &mut r).await;
        }
        say!("");
        say!(
            "{} failed, {} warning{}",
            r.fails,
            r.warns,
            if r.warns == 1 { "" } else { "s" }
        );
        Ok(if r.fails == 0 {
            Outcome::Success
        } else {
            Outcome::Problems
        })
    })
}

fn machine(r: &mut Report) {
    let bin = Path::new("/usr/lib/postgresql");
    let versions: Vec<String> = std::fs::read_dir(bin)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("bin/initdb").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if versions.is_empty() && which("initdb").is_none() {
        r.line(
            Level::Warn,
            "PostgreSQL server binaries",
            "not found; the test suite and CDC tests start private clusters with them: `apt-get install postgresql`",
        );
    } else {
        r.line(
            Level::Ok,
            "PostgreSQL server binaries",
            format!("found ({})", versions.join(", ")),
        );
    }
    match which("python3") {
        Some(p) => r.line(Level::Ok, "python3", p.display()),
        None => r.line(
            Level::Warn,
            "python3",
            "not found; the example's data generator (models/generate.py) needs Python 3.11+",
        ),
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

async fn check_project(project: &Project, r: &mut Report) {
    let Some(config) = &project.config else {
        return;
    };
    for (name, w) in config.warehouses.iter() {
        let what = format!("warehouse {}", name.value);
        match &w.value {
            WarehouseConfig::Lake { path } => {
                if path.starts_with("s3://") {
                    r.line(
                        Level::Ok,
                        &what,
                        format!("{path} (S3; credentials from the environment)"),
                    );
                } else {
                    let dir = project.root.join(path);
                    if dir.is_dir() {
                        r.line(Level::Ok, &what, format!("lake folder {}", dir.display()));
                    } else {
                        r.line(
                            Level::Fail,
                            &what,
                            format!("{} is not a folder; create it or fix `path`", dir.display()),
                        );
                    }
                }
            }
            WarehouseConfig::Postgres { url, .. } => {
                postgres(r, &what, url.expose(), false).await;
            }
        }
    }
    for p in &project.pipelines {
        postgres(
            r,
            &format!("pipeline {} source", p.name),
            p.config.source.url.expose(),
            true,
        )
        .await;
    }
    for (name, d) in config.destinations.iter() {
        destination(r, &name.value, &d.value).await;
    }
    match &config.state {
        StateConfig::Sqlite { path } => {
            let file = project.root.join(path);
            let dir = file.parent().unwrap_or(&project.root).to_path_buf();
            let probe = std::fs::create_dir_all(&dir).and_then(|_| tempfile_in(&dir));
            match probe {
                Ok(()) => r.line(
                    Level::Ok,
                    "state store",
                    format!("SQLite {}", file.display()),
                ),
                Err(err) => r.line(
                    Level::Fail,
                    "state store",
                    format!(
                        "cannot write in {}: {err}; fix the folder's permissions or `state.path`",
                        dir.display()
                    ),
                ),
            }
        }
        StateConfig::Postgres { url, .. } => postgres(r, "state store", url.expose(), false).await,
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(".ebb-doctor-probe");
    std::fs::write(&probe, b"ok")?;
    std::fs::remove_file(probe)
}

/// Connects, and for CDC sources checks `wal_level`, the role's replication right and
/// free replication slots.
async fn postgres(r: &mut Report, what: &str, url: &str, cdc: bool) {
    let connect = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await;
    let client = match connect {
        Err(_) => {
            r.line(
                Level::Fail,
                what,
                "no answer within 5 s; is the server up and the host/port right?",
            );
            return;
        }
        Ok(Err(err)) => {
            let mut msg = err.to_string();
            if let Some(db) = err.as_db_error() {
                msg = format!("{} ({})", db.message(), db.code().code());
            }
            r.line(
                Level::Fail,
                what,
                format!("cannot connect: {msg}; check the URL, the password and pg_hba.conf"),
            );
            return;
        }
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        }
    };
    let version = client
        .query_one("show server_version", &[])
        .await
        .map(|row| row.get::<_, String>(0))
        .unwrap_or_else(|_| "?".into());
    r.line(Level::Ok, what, format!("connected (PostgreSQL {version})"));
    if !cdc {
        return;
    }
    let setting = |name: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(&format!("show {name}"), &[])
                .await
                .map(|row| row.get::<_, String>(0))
                .unwrap_or_default()
        }
    };
    let wal_level = setting("wal_level").await;
    if wal_level == "logical" {
        r.line(Level::Ok, &format!("{what} wal_level"), "logical");
    } else {
        r.line(
            Level::Fail,
            &format!("{what} wal_level"),
            format!("is {wal_level:?}; CDC needs `wal_level = logical` in postgresql.conf, then a restart"),
        );
    }
    let can_replicate = client
        .query_one(
            "select rolreplication or rolsuper from pg_roles where rolname = current_user",
            &[],
        )
        .await
        .map(|row| row.get::<_, bool>(0))
        .unwrap_or(false);
    if can_replicate {
        r.line(Level::Ok, &format!("{what} role"), "may replicate");
    } else {
        r.line(
            Level::Fail,
            &format!("{what} role"),
            "lacks REPLICATION; run `ALTER ROLE <user> WITH REPLICATION` as a superuser",
        );
    }
    let slots = client
        .query_one(
            "select current_setting('max_replication_slots')::int - (select count(*) from pg_replication_slots)::int",
            &[],
        )
        .await
        .map(|row| row.get::<_, i32>(0))
        .unwrap_or(0);
    if slots > 0 {
        r.line(
            Level::Ok,
            &format!("{what} replication slots"),
            format!("{slots} free"),
        );
    } else {
        r.line(
            Level::Fail,
            &format!("{what} replication slots"),
            "none free; raise max_replication_slots or drop an unused slot (`ebb cdc drop NAME`)",
        );
    }
}

async fn destination(r: &mut Report, name: &str, config: &DestinationConfig) {
    let what = format!("destination {name} ({})", config.kind());
    match config {
        DestinationConfig::Postgres { url, .. } => {
            postgres(r, &what, url.expose(), false).await;
            return;
        }
        DestinationConfig::Parquet { path } => {
            r.line(Level::Ok, &what, format!("files under {path}"));
            return;
        }
        _ => {}
    }
    let Some(url) = config.url() else {
        r.line(Level::Ok, &what, "the vendor's public API (not probed)");
        return;
    };
    let Ok(parsed) = url::Url::parse(url) else {
        r.line(Level::Fail, &what, format!("{url:?} is not a URL"));
        return;
    };
    let host = parsed.host_str().unwrap_or_default().to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let local = host == "127.0.0.1" || host == "localhost" || host == "::1";
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next());
    let reachable = match addr {
        Some(addr) => {
            tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
                .await
                .is_ok_and(|c| c.is_ok())
        }
        None => false,
    };
    if reachable {
        r.line(Level::Ok, &what, format!("{host}:{port} answers"));
    } else if local {
        r.line(
            Level::Warn,
            &what,
            format!("nothing listens on {host}:{port}; start the receiver, or run with `ebb run --sandbox` to emulate it in-process"),
        );
    } else {
        r.line(
            Level::Fail,
            &what,
            format!("cannot reach {host}:{port}; check the URL, DNS and any proxy"),
        );
    }
}
