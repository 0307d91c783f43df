//! Private PostgreSQL clusters for tests.
//!
//! A cluster is `initdb`'d into a temporary directory and listens on a free port on
//! 127.0.0.1 and on a unix socket in that directory. It has `wal_level = logical`, 32
//! replication slots and WAL senders, `fsync = off`, and trusts the superuser `postgres`
//! (also for replication connections). When the tests run as root, the server runs as an
//! unprivileged user (see `server_user`).
//!
//! [`PgCluster::shared`] starts one cluster per test process on first use; tests isolate
//! themselves with [`PgCluster::fresh_database`]. [`PgCluster::builder`] starts a private
//! cluster with extra settings, stopped when dropped.

mod binaries;
mod config;
mod database;
mod error;
mod server_user;
mod startup;
mod watchdog;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;

pub use binaries::BIN_DIR_ENV;
pub use database::TestDatabase;
pub use error::PgClusterError;

use server_user::ServerUser;
use startup::ClusterPaths;
use watchdog::ClusterProcesses;

/// The address every test cluster listens on.
const HOST: &str = "127.0.0.1";
/// The superuser `initdb` creates.
const SUPERUSER: &str = "postgres";

/// A running PostgreSQL cluster that belongs to this test process.
///
/// Dropping it stops the server and deletes its files. The [shared](Self::shared) one is
/// never dropped; its watchdog does the same when the process exits.
#[derive(Debug)]
pub struct PgCluster {
    port: u16,
    version: u32,
    bin_dir: PathBuf,
    paths: ClusterPaths,
    next_database: AtomicU64,
    /// Dropped before `_dir`: stops the server and removes the directory.
    _processes: ClusterProcesses,
    /// Removes the directory if the cluster failed before its watchdog ran.
    _dir: TempDir,
}

impl PgCluster {
    /// The cluster shared by all tests of this process, started on first use.
    ///
    /// # Panics
    ///
    /// If the cluster cannot start, with the reason and what to do (e.g. how to install
    /// PostgreSQL). Every test that asks panics with the same message; startup is tried once.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<Result<PgCluster, PgClusterError>> = OnceLock::new();
        match SHARED.get_or_init(|| Self::builder().start()) {
            Ok(cluster) => cluster,
            Err(err) => panic!("could not start the shared test PostgreSQL cluster: {err:?}"),
        }
    }

    /// A builder for a private cluster with its own settings.
    pub fn builder() -> PgClusterBuilder {
        PgClusterBuilder::default()
    }

    /// The TCP port on [`host`](Self::host).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server listens on: `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The directory of the server's unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.paths.root
    }

    /// The data directory (`PGDATA`); it holds `postmaster.pid`.
    pub fn data_dir(&self) -> &Path {
        &self.paths.data
    }

    /// The directory of the PostgreSQL programs this cluster runs, where tests find `psql`
    /// and `pg_recvlogical` of the same version.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server's major version, e.g. 15.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Creates a database no other test uses (`ebb_test_<pid>_<n>`).
    ///
    /// # Panics
    ///
    /// If the database cannot be created (this is for tests), with the reason.
    pub async fn fresh_database(&self) -> TestDatabase {
        self.try_fresh_database()
            .await
            .unwrap_or_else(|err| panic!("{err:?}"))
    }

    async fn try_fresh_database(&self) -> Result<TestDatabase, PgClusterError> {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("ebb_test_{}_{n}", std::process::id());
        let admin = TestDatabase::new("postgres", self.port)
            .try_connect()
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|source| PgClusterError::Sql {
                action: format!("create database {name}"),
                port: self.port,
                source,
            })?;
        Ok(TestDatabase::new(name, self.port))
    }
}

/// Builds a private cluster: [`PgCluster::builder`]`.setting(..).start()`.
#[derive(Debug, Clone, Default)]
pub struct PgClusterBuilder {
    settings: Vec<(String, String)>,
}

impl PgClusterBuilder {
    /// Adds a `postgresql.conf` setting; it overrides the defaults and earlier calls.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Creates and starts the cluster, returning once it accepts connections.
    ///
    /// Blocks (`initdb` and startup take about a second); fine to call from async tests.
    pub fn start(self) -> Result<PgCluster, PgClusterError> {
        for (name, value) in &self.settings {
            config::validate_setting(name, value)?;
        }
        let bin_dir = binaries::find_bin_dir()?;
        let user = ServerUser::for_this_process()?;

        let dir = tempfile::Builder::new()
            .prefix("ebb-pg-")
            .tempdir()
            .map_err(PgClusterError::io(
                "create a temporary directory for the cluster",
            ))?;
        user.take_ownership(dir.path())?;
        let paths = ClusterPaths::new(dir.path());
        // From here on, dropping `processes` stops whatever was started and removes `dir`.
        let mut processes = ClusterProcesses::start_watchdog(
            &bin_dir.join("pg_ctl"),
            &paths.data,
            &paths.root,
            &user,
        )?;

        startup::initdb(&bin_dir, &paths.data, &paths.root, &user)?;
        startup::configure(&paths.data, &paths.root, &self.settings)?;
        let started =
            startup::start_postmaster(&bin_dir, &paths.data, &paths.log, &user, &mut processes)?;

        Ok(PgCluster {
            port: started.port,
            version: started.version,
            bin_dir,
            paths,
            next_database: AtomicU64::new(0),
            _processes: processes,
            _dir: dir,
        })
    }
}
