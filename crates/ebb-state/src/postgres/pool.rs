//! A small bounded pool of `tokio-postgres` connections (the same shape as the warehouse's).
//!
//! At most `size` connections exist at once: a semaphore permit comes with each checked-out
//! connection. Connections open lazily, start with `search_path` set to the store's schema,
//! and go back to the pool when dropped unless they closed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::StateError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub(crate) struct Pool {
    config: Config,
    /// `user@host:port/dbname`, for messages: never the password.
    target: String,
    /// Run once on every new connection.
    setup: String,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    pub(crate) fn new(mut config: Config, size: usize, setup: String) -> Pool {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("ebb-state");
        }
        let target = describe(&config);
        Pool {
            config,
            target,
            setup,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size.max(1))),
        }
    }

    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// A connection for the caller's exclusive use; waits while all are checked out.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<PooledClient, StateError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StateError::Task("the state store's connection pool is closed".into()))?;
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
            _permit: permit,
        })
    }

    async fn connect(&self) -> Result<Client, StateError> {
        let err = |source| StateError::Postgres {
            target: self.target.clone(),
            source,
        };
        let (client, connection) = self.config.connect(NoTls).await.map_err(err)?;
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(state_store = %target, error = %error, "postgres connection ended");
            }
        });
        client.batch_execute(&self.setup).await.map_err(err)?;
        Ok(client)
    }
}

/// A checked-out connection; it goes back to the pool when dropped, unless it closed.
#[derive(Debug)]
pub(crate) struct PooledClient {
    client: Option<Client>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for PooledClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for PooledClient {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until dropped")
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
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
    format!("postgres {user}@{host}:{port}/{db}")
}
