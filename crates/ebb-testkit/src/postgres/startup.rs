//! Creating a cluster: `initdb`, configuration, starting the postmaster, waiting until it
//! accepts connections.

use std::fs::File;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::server_user::ServerUser;
use super::watchdog::ClusterProcesses;
use super::{HOST, PgClusterError, SUPERUSER, config};

/// How long a started server may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often readiness is checked while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Starts tried when the chosen free port was taken by someone else before the server bound it.
const PORT_ATTEMPTS: usize = 3;
/// Server log lines quoted in a startup error.
const LOG_TAIL_LINES: usize = 30;

/// Runs `initdb` into `data_dir` as `user`: superuser `postgres`, trust auth, UTF8, C locale.
pub(crate) fn initdb(
    bin_dir: &Path,
    data_dir: &Path,
    cluster_dir: &Path,
    user: &ServerUser,
) -> Result<(), PgClusterError> {
    let mut command = Command::new(bin_dir.join("initdb"));
    command
        .arg("--pgdata")
        .arg(data_dir)
        .args(["--username", SUPERUSER, "--auth=trust", "--encoding=UTF8"])
        .args(["--locale=C", "--no-sync"])
        .stdin(Stdio::null())
        .current_dir(cluster_dir)
        .env("LC_ALL", "C");
    let output = user
        .apply(&mut command)
        .output()
        .map_err(PgClusterError::io(format!(
            "run {}",
            bin_dir.join("initdb").display()
        )))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(PgClusterError::CommandFailed {
        command: format!(
            "{} --pgdata {}{}",
            bin_dir.join("initdb").display(),
            data_dir.display(),
            user.describe()
        ),
        status: output.status,
        output: text,
    })
}

/// Appends the test settings to `postgresql.conf` and replaces `pg_hba.conf`.
pub(crate) fn configure(
    data_dir: &Path,
    socket_dir: &Path,
    settings: &[(String, String)],
) -> Result<(), PgClusterError> {
    let conf_path = data_dir.join("postgresql.conf");
    File::options()
        .append(true)
        .open(&conf_path)
        .and_then(|mut conf| {
            conf.write_all(config::postgresql_conf(socket_dir, settings).as_bytes())
        })
        .map_err(PgClusterError::io(format!("write {}", conf_path.display())))?;
    let hba_path = data_dir.join("pg_hba.conf");
    std::fs::write(&hba_path, config::PG_HBA_CONF)
        .map_err(PgClusterError::io(format!("write {}", hba_path.display())))
}

/// A running server: its port and major version.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    pub(crate) port: u16,
    pub(crate) version: u32,
}

/// Starts the postmaster on a free loopback port and waits until it accepts connections.
///
/// The port is found free by binding it and released before the server binds it; if someone
/// else takes it in between, the server exits and another port is tried.
pub(crate) fn start_postmaster(
    bin_dir: &Path,
    data_dir: &Path,
    log_path: &Path,
    user: &ServerUser,
    processes: &mut ClusterProcesses,
) -> Result<Started, PgClusterError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port()?;
        let postmaster = spawn_postmaster(bin_dir, data_dir, log_path, user, port)?;
        match wait_until_ready(processes.set_postmaster(postmaster), port) {
            Ok(version) => return Ok(Started { port, version }),
            Err(NotReady::Exited(_)) if attempt < PORT_ATTEMPTS && port_taken(port) => {
                processes.forget_exited_postmaster();
            }
            Err(not_ready) => {
                return Err(PgClusterError::Startup {
                    reason: not_ready.to_string(),
                    log_tail: log_tail(log_path),
                });
            }
        }
    }
}

fn spawn_postmaster(
    bin_dir: &Path,
    data_dir: &Path,
    log_path: &Path,
    user: &ServerUser,
    port: u16,
) -> Result<Child, PgClusterError> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(PgClusterError::io(format!("open {}", log_path.display())))?;
    let log_for_stdout = log
        .try_clone()
        .map_err(PgClusterError::io(format!("open {}", log_path.display())))?;
    let postgres = bin_dir.join("postgres");
    let mut command = Command::new(&postgres);
    command
        .arg("-D")
        .arg(data_dir)
        .arg("-p")
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(log_for_stdout)
        .stderr(log)
        .current_dir(data_dir)
        .env("LC_ALL", "C");
    user.apply(&mut command)
        .spawn()
        .map_err(PgClusterError::io(format!("start {}", postgres.display())))
}

/// Why a started server is not usable.
#[derive(Debug)]
enum NotReady {
    Exited(std::process::ExitStatus),
    TimedOut { last_error: String },
    Io(std::io::Error),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited(status) => write!(f, "the server exited ({status}) while starting"),
            Self::TimedOut { last_error } => write!(
                f,
                "the server did not accept connections within {}s (last attempt: {last_error})",
                STARTUP_TIMEOUT.as_secs()
            ),
            Self::Io(err) => write!(f, "could not check the server process: {err}"),
        }
    }
}

/// Polls with a real connection until the server answers a query, returning its major
/// version; stops early if the postmaster exits.
///
/// Runs its own runtime on a scoped thread, so that it works whether or not the caller is
/// inside a tokio runtime (`PgCluster::shared()` is called from `#[tokio::test]`s).
fn wait_until_ready(postmaster: &mut Child, port: u16) -> Result<u32, NotReady> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(NotReady::Io)?;
                runtime.block_on(poll_ready(postmaster, port))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

async fn poll_ready(postmaster: &mut Child, port: u16) -> Result<u32, NotReady> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let conn_string =
        format!("host={HOST} port={port} user={SUPERUSER} dbname=postgres connect_timeout=5");
    loop {
        let last_error = match server_version(&conn_string).await {
            Ok(version) => return Ok(version),
            Err(err) => err,
        };
        if let Some(status) = postmaster.try_wait().map_err(NotReady::Io)? {
            return Err(NotReady::Exited(status));
        }
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut { last_error });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn server_version(conn_string: &str) -> Result<u32, String> {
    let (client, connection) = tokio_postgres::connect(conn_string, tokio_postgres::NoTls)
        .await
        .map_err(|err| error_chain(&err))?;
    let connection = tokio::spawn(connection);
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|err| error_chain(&err))?;
    drop(client);
    let _ = connection.await;
    let version_num: i32 = row.get(0);
    u32::try_from(version_num / 10_000).map_err(|_| format!("odd server_version_num {version_num}"))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cause = err.source();
    }
    text
}

fn free_port() -> Result<u16, PgClusterError> {
    TcpListener::bind((HOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(PgClusterError::io(format!("find a free port on {HOST}")))
}

fn port_taken(port: u16) -> bool {
    TcpListener::bind((HOST, port)).is_err()
}

fn log_tail(log_path: &Path) -> String {
    match std::fs::read_to_string(log_path) {
        Ok(log) => {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(err) => format!("(could not read it: {err})"),
    }
}

/// Paths inside a cluster's directory.
#[derive(Debug, Clone)]
pub(crate) struct ClusterPaths {
    /// The temporary directory everything lives in; also the unix socket directory.
    pub(crate) root: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) log: PathBuf,
}

impl ClusterPaths {
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            data: root.join("data"),
            log: root.join("server.log"),
        }
    }
}
