//! Test support for ebb: real services for integration tests, started on demand.
//!
//! Today this is a private PostgreSQL cluster per test binary, built from the PostgreSQL
//! binaries installed on the machine. Tests never share a database: each asks the cluster for
//! a fresh one.
//!
//! ```no_run
//! # async fn example() {
//! use ebb_testkit::PgCluster;
//!
//! let db = PgCluster::shared().fresh_database().await;
//! let client = db.connect().await;
//! client.batch_execute("CREATE TABLE t (id int)").await.unwrap();
//! # }
//! ```
//!
//! A test that needs different server settings (CDC tests lower `logical_decoding_work_mem`)
//! starts its own cluster, which stops when dropped:
//!
//! ```no_run
//! # fn example() -> Result<(), ebb_testkit::PgClusterError> {
//! let cluster = ebb_testkit::PgCluster::builder()
//!     .setting("logical_decoding_work_mem", "64kB")
//!     .start()?;
//! # Ok(()) }
//! ```
//!
//! Nothing is left behind: every cluster has a watchdog process that stops the server and
//! deletes its directory once the test process is gone, however it ended (the shared cluster
//! lives in a static and is never dropped).
//!
//! # Layout
//!
//! - [`postgres`]: the private PostgreSQL cluster.
//!   - `binaries`: finds `initdb`, `pg_ctl` and `postgres` (`EBB_PG_BINDIR`, `PATH`,
//!     `pg_config --bindir`, `/usr/lib/postgresql/*/bin`).
//!   - `server_user`: the unprivileged OS user the server runs as when tests run as root.
//!   - `config`: the `postgresql.conf` and `pg_hba.conf` a cluster gets.
//!   - `startup`: `initdb`, starting the postmaster, waiting until it accepts connections.
//!   - `watchdog`: the process that stops the server and removes its files.
//!   - `database`: [`TestDatabase`], one fresh database per test.
//!   - `error`: [`PgClusterError`].
//! - [`emulators`]: SaaS APIs on `127.0.0.1:0` that follow their public documentation
//!   (batch limits, rate limits with 429s, per-record errors), keep the records they hold,
//!   and inject faults (5xx, timeouts, dropped connections) on demand. They live in
//!   `ebb-sandbox` (which ships in the binary for the quickstart) and are re-exported here.

pub mod postgres;

/// The SaaS API emulators of `ebb-sandbox`, under their testkit name.
pub use ebb_sandbox as emulators;

pub use postgres::{PgCluster, PgClusterBuilder, PgClusterError, TestDatabase};
