//! Helpers shared by the integration tests.

use std::future::Future;
use std::time::Duration;

use ebb_postgres::replication::ReplicationConfig;
use ebb_testkit::TestDatabase;

/// A replication config for a test database (trust authentication, no TLS offered).
pub fn config(db: &TestDatabase) -> ReplicationConfig {
    ReplicationConfig::parse(&db.conn_string()).expect("testkit conn string parses")
}

/// Runs `f` until it returns `Some`, or panics after `limit` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
