//! Fixtures: one backend of the state store, opened as many times as a test needs
//! (several handles stand for several processes sharing one store).

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ebb_state::StateStore;
use ebb_testkit::{PgCluster, TestDatabase};
use tempfile::TempDir;

pub const SCHEMA: &str = "ebb_state";

#[derive(Debug)]
pub enum Fixture {
    Sqlite { dir: TempDir },
    Postgres { db: TestDatabase },
}

impl Fixture {
    pub fn sqlite() -> Fixture {
        Fixture::Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub async fn postgres() -> Fixture {
        Fixture::Postgres {
            db: PgCluster::shared().fresh_database().await,
        }
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match self {
            Fixture::Sqlite { dir } => Some(dir.path().join(".ebb/state.db")),
            Fixture::Postgres { .. } => None,
        }
    }

    /// A new handle on the fixture's store, migrating it on first use.
    pub async fn open(&self) -> StateStore {
        self.try_open().await.unwrap()
    }

    pub async fn try_open(&self) -> Result<StateStore, ebb_state::StateError> {
        match self {
            Fixture::Sqlite { .. } => StateStore::open_sqlite(self.sqlite_path().unwrap()).await,
            Fixture::Postgres { db } => StateStore::open_postgres(&db.url(), None).await,
        }
    }

    /// Runs SQL on the store's database behind ebb's back (as an operator or a bug would).
    pub async fn raw(&self, sql: &str) -> Result<(), String> {
        match self {
            Fixture::Sqlite { .. } => {
                let conn = rusqlite::Connection::open(self.sqlite_path().unwrap())
                    .map_err(|e| e.to_string())?;
                conn.execute_batch(sql).map_err(|e| e.to_string())
            }
            Fixture::Postgres { db } => {
                let client = db.connect().await;
                client
                    .batch_execute(&format!("SET search_path TO {SCHEMA}; {sql}"))
                    .await
                    .map_err(|e| {
                        e.as_db_error()
                            .map_or_else(|| e.to_string(), |d| d.message().to_string())
                    })
            }
        }
    }
}

impl Fixture {
    /// The single integer a query behind ebb's back returns.
    pub async fn count(&self, sql: &str) -> i64 {
        match self {
            Fixture::Sqlite { .. } => {
                let conn = rusqlite::Connection::open(self.sqlite_path().unwrap()).unwrap();
                conn.query_row(sql, [], |r| r.get(0)).unwrap()
            }
            Fixture::Postgres { db } => {
                let client = db.connect().await;
                client
                    .batch_execute(&format!("SET search_path TO {SCHEMA}"))
                    .await
                    .unwrap();
                client.query_one(sql, &[]).await.unwrap().get(0)
            }
        }
    }
}

/// Waits until `f` gives `Some`, or panics after `deadline`.
pub async fn wait_for<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `contract!(a, b)`: each `async fn a(f: Fixture)` of the calling module becomes a test
/// on SQLite and one on Postgres.
#[macro_export]
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Fixture::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Fixture::postgres().await).await;
                }
            )*
        }
    };
}
