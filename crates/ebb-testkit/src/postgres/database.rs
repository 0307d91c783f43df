//! One fresh database per test.

use super::{HOST, PgClusterError, SUPERUSER};

/// A database of a test cluster that belongs to one test.
///
/// The database is not dropped afterwards: it goes with the cluster.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    name: String,
    port: u16,
}

impl TestDatabase {
    pub(crate) fn new(name: impl Into<String>, port: u16) -> Self {
        Self {
            name: name.into(),
            port,
        }
    }

    /// The database name, `ebb_test_<pid>_<n>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port of its cluster.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq key/value connection string: `host=127.0.0.1 port=.. user=postgres dbname=..`.
    pub fn conn_string(&self) -> String {
        format!(
            "host={HOST} port={} user={SUPERUSER} dbname={}",
            self.port, self.name
        )
    }

    /// A connection URL: `postgres://postgres@127.0.0.1:<port>/<name>`.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@{HOST}:{}/{}", self.port, self.name)
    }

    /// Connects as the superuser, spawning the connection task on the current runtime.
    ///
    /// # Panics
    ///
    /// If the connection fails (this is for tests), with the reason.
    pub async fn connect(&self) -> tokio_postgres::Client {
        self.try_connect()
            .await
            .unwrap_or_else(|err| panic!("{err:?}"))
    }

    pub(crate) async fn try_connect(&self) -> Result<tokio_postgres::Client, PgClusterError> {
        let (client, connection) =
            tokio_postgres::connect(&self.conn_string(), tokio_postgres::NoTls)
                .await
                .map_err(|source| PgClusterError::Sql {
                    action: format!("connect to database {}", self.name),
                    port: self.port,
                    source,
                })?;
        // The connection ends with the client, or when the test's runtime shuts down.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}
