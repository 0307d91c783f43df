//! A small bounded pool of `tokio-postgres` connections.
//!
//! At most `size` connections exist at once: a semaphore permit comes with each checked-out
//! connection, and a caller waits for one to come back when all are in use. Connections are
//! opened lazily, reused while healthy, and dropped (never returned) after anything left
//! them in an unknown state, such as a COPY stream abandoned half-way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use super::error::connection_error;
use crate::WarehouseError;

/// How long opening one connection may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Statements every connection runs once, before it is used: results must not depend on the
/// server's or the role's defaults (the lake computes in UTC too).
const SESSION_SETUP: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'";

#[derive(Debug)]
pub(crate) struct Pool {
    config: Config,
    /// `user@host:port/dbname`, for messages: never the password.
    target: String,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    pub(crate) fn new(mut config: Config, size: usize) -> Pool {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("ebb");
        }
        let target = describe(&config);
        Pool {
            config,
            target,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size.max(1))),
        }
    }

    /// `user@host:port/dbname`, safe to print.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// A connection for the caller's exclusive use; waits while all are checked out.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<PooledClient, WarehouseError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| WarehouseError::Connection("the connection pool is closed".into()))?;
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut found = None;
            while let Some(client) = idle.pop() {
                if !client.is_closed() {
                    found = Some(client);
                    break;
                }
            }
            found
        };
        let client = match reused {
            Some(client) => client,
            None => self.connect().await?,
        };
        Ok(PooledClient {
            client: Some(client),
            pool: Arc::clone(self),
            reusable: true,
            _permit: permit,
        })
    }

    async fn connect(&self) -> Result<Client, WarehouseError> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| connection_error(&self.target, &e))?;
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(warehouse = %target, error = %error, "postgres connection ended");
            }
        });
        client
            .batch_execute(SESSION_SETUP)
            .await
            .map_err(|e| connection_error(&self.target, &e))?;
        Ok(client)
    }
}

/// A checked-out connection. It goes back to the pool when dropped, unless
/// [`discard`](Self::discard) was called or the connection closed.
#[derive(Debug)]
pub(crate) struct PooledClient {
    client: Option<Client>,
    pool: Arc<Pool>,
    reusable: bool,
    _permit: OwnedSemaphorePermit,
}

impl PooledClient {
    pub(crate) fn client(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }

    pub(crate) fn client_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until dropped")
    }

    /// Closes the connection instead of returning it to the pool.
    pub(crate) fn discard(&mut self) {
        self.reusable = false;
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && self.reusable
            && !client.is_closed()
        {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.push(client);
        }
    }
}

fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("?");
    let db = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}
