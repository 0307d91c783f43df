//! The dead-letter queue: records a destination refused, with its reason, kept until a
//! later delivery gets them through. The state store (SQLite / Postgres) implements
//! [`DeadLetters`] durably; [`MemoryDeadLetters`] is the in-memory one for tests and
//! one-off runs.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use ebb_destinations::Record;
use serde::{Deserialize, Serialize};

/// One refused record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub tenant: String,
    /// The sync (or CDC pipeline) that sent it.
    pub sync: String,
    pub record: Record,
    /// The destination's own words.
    pub reason: String,
    /// The field the destination named, if any.
    pub field: Option<String>,
    /// Deliveries that tried this record and failed.
    pub failures: u32,
    /// Unix seconds.
    pub first_failed_at: u64,
    pub last_failed_at: u64,
}

impl DeadLetter {
    pub fn new(
        tenant: &str,
        sync: &str,
        record: Record,
        reason: String,
        field: Option<String>,
    ) -> DeadLetter {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        DeadLetter {
            tenant: tenant.to_string(),
            sync: sync.to_string(),
            record,
            reason,
            field,
            failures: 1,
            first_failed_at: now,
            last_failed_at: now,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("dead-letter store: {0}")]
pub struct DlqError(pub String);

/// Where refused records wait for the next delivery.
///
/// A letter is identified by (tenant, sync, record key): a later letter for the same
/// record replaces the earlier one and adds to its `failures`. `Ok` from [`put`] means the
/// letters are durable; delivery acknowledges the rows upstream only after that.
///
/// [`put`]: DeadLetters::put
pub trait DeadLetters: Send + Sync {
    fn put(&self, letters: Vec<DeadLetter>) -> impl Future<Output = Result<(), DlqError>> + Send;

    /// Every letter of a sync, oldest record key first; they stay until resolved.
    fn pending(
        &self,
        tenant: &str,
        sync: &str,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, DlqError>> + Send;

    /// Removes the letters of records that have been delivered (or superseded) since.
    fn resolve(
        &self,
        tenant: &str,
        sync: &str,
        keys: &[String],
    ) -> impl Future<Output = Result<(), DlqError>> + Send;
}

/// Dead letters in memory.
#[derive(Debug, Default)]
pub struct MemoryDeadLetters {
    letters: Mutex<BTreeMap<(String, String, String), DeadLetter>>,
}

impl MemoryDeadLetters {
    pub fn new() -> MemoryDeadLetters {
        MemoryDeadLetters::default()
    }

    /// Every letter, of every sync.
    pub fn all(&self) -> Vec<DeadLetter> {
        self.letters.lock().unwrap().values().cloned().collect()
    }
}

impl DeadLetters for MemoryDeadLetters {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), DlqError> {
        let mut map = self.letters.lock().unwrap();
        for mut letter in letters {
            let id = (
                letter.tenant.clone(),
                letter.sync.clone(),
                letter.record.key.clone(),
            );
            if let Some(old) = map.get(&id) {
                letter.failures += old.failures;
                letter.first_failed_at = old.first_failed_at;
            }
            map.insert(id, letter);
        }
        Ok(())
    }

    async fn pending(&self, tenant: &str, sync: &str) -> Result<Vec<DeadLetter>, DlqError> {
        Ok(self
            .letters
            .lock()
            .unwrap()
            .values()
            .filter(|l| l.tenant == tenant && l.sync == sync)
            .cloned()
            .collect())
    }

    async fn resolve(&self, tenant: &str, sync: &str, keys: &[String]) -> Result<(), DlqError> {
        let mut map = self.letters.lock().unwrap();
        for key in keys {
            map.remove(&(tenant.to_string(), sync.to_string(), key.clone()));
        }
        Ok(())
    }
}
