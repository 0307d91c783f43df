//! The contract between delivery and a destination.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a record asks the destination to do. Sync modes and CDC operations map onto these
/// (see `ebb-delivery`'s planning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Create the record, or update it when it exists.
    Upsert,
    /// Update a record that exists; a missing one is an error.
    Update,
    /// Create a record; never touch an existing one.
    Insert,
    /// Remove the record.
    Delete,
    /// Soft-delete the record (where the destination has no soft delete, this deletes).
    Archive,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Upsert => "upsert",
            Operation::Update => "update",
            Operation::Insert => "insert",
            Operation::Delete => "delete",
            Operation::Archive => "archive",
        }
    }

    /// Delete and archive carry only the record's identity.
    pub fn removes(self) -> bool {
        matches!(self, Operation::Delete | Operation::Archive)
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change, mapped to the destination's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub op: Operation,
    /// The entity's key in ebb (`_ebb_key`), for reports and the DLQ.
    pub key: String,
    /// The value that finds the record in the destination: the match column's value
    /// (HubSpot `idProperty`, Salesforce external id, Braze `external_id`), or the key.
    pub id: String,
    /// Destination field name to value. Empty for deletes.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Derived from the record's origin, the same on every retry and every run that sends
    /// the same change (see `ebb-delivery`'s `idempotency`).
    pub idempotency_key: String,
}

/// What happened to one record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordResult {
    /// The destination durably holds the change.
    Accepted,
    /// The record itself is bad: retrying it unchanged fails again.
    Rejected {
        reason: String,
        field: Option<String>,
    },
    /// The record was not applied but may succeed later.
    Retryable {
        after: Option<Duration>,
        reason: String,
    },
}

/// What the destination said about its rate limit on a successful answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateSignal {
    /// Requests left in the current window.
    pub remaining: Option<u64>,
    /// When the current window ends.
    pub reset_after: Option<Duration>,
}

/// The answer to [`Destination::write`]: one result per record, in the records' order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub results: Vec<RecordResult>,
    pub rate: RateSignal,
}

impl WriteOutcome {
    pub fn all_accepted(n: usize, rate: RateSignal) -> WriteOutcome {
        WriteOutcome {
            results: vec![RecordResult::Accepted; n],
            rate,
        }
    }
}

/// A batch failed as a whole. The variant is the retry class; whether and when to retry is
/// decided by delivery.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// 429 or the API's equivalent: wait `after` (when the destination said), slow down.
    #[error("throttled by the destination{}{}",
        policy.as_ref().map(|p| format!(" ({p})")).unwrap_or_default(),
        after.map(|a| format!(", retry after {a:?}")).unwrap_or_default())]
    Throttled {
        after: Option<Duration>,
        policy: Option<String>,
    },
    /// A temporary failure (5xx, timeout, dropped connection): the same batch may succeed.
    /// Whether the destination applied some of it is unknown.
    #[error("temporary failure: {reason}")]
    Retryable {
        after: Option<Duration>,
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The destination refused the batch as a whole because of its content, without saying
    /// which record: a smaller batch may isolate the bad record.
    #[error("rejected: {reason}")]
    Rejected {
        reason: String,
        field: Option<String>,
    },
    /// Configuration or credentials are wrong, or the endpoint is gone: nothing will succeed
    /// until a person fixes it.
    #[error("{reason}")]
    Fatal { reason: String },
}

/// A documented rate limit: at most `requests` in any `per` window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

impl RateLimit {
    pub fn per_second(&self) -> f64 {
        f64::from(self.requests) / self.per.as_secs_f64()
    }
}

/// How a retried request is recognised by the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// The destination takes [`Record::idempotency_key`] and ignores repeats.
    Keyed,
    /// The operations are idempotent by the record's id (upserts and deletes by key): a
    /// repeat has no further effect.
    ByRecordId,
    /// A repeat may apply twice.
    None,
}

/// What a destination can do and what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Records in one request at most.
    pub max_batch_records: usize,
    pub operations: Vec<Operation>,
    /// The account's documented limits; the tightest one paces requests.
    pub rate_limits: Vec<RateLimit>,
    pub idempotency: Idempotency,
    /// An update may carry only the fields that changed: the destination leaves the other
    /// fields as they are (CRM APIs, a table's `UPDATE`). False where a message stands for
    /// the whole record (a webhook's after-image, a Parquet export's rows).
    pub partial_updates: bool,
}

impl Capabilities {
    pub fn supports(&self, op: Operation) -> bool {
        self.operations.contains(&op)
    }
}

/// A mapped field the destination cannot take, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingProblem {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for MappingProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field \"{}\": {}", self.field, self.message)
    }
}

/// A place ebb delivers records to.
///
/// # Contract
/// - [`write`](Destination::write) sends one batch of at most
///   [`Capabilities::max_batch_records`] records, all with the same [`Operation`], in one
///   request (or one job, for bulk APIs).
/// - `Ok` means the destination answered: each record's result says whether the
///   destination *durably* holds it ([`RecordResult::Accepted`]), refused it for a reason
///   that names the record ([`RecordResult::Rejected`]) or did not apply it but may later
///   ([`RecordResult::Retryable`]). There is exactly one result per record, in order.
/// - `Err` means nothing about single records is known; the error's variant is the retry
///   class. After a [`DestinationError::Retryable`] the batch may have been applied in part,
///   so delivery retries it with the same idempotency keys.
/// - Delivery is at-least-once; the effect is exactly-once where [`Capabilities::idempotency`]
///   is `Keyed` or `ByRecordId`.
/// - A destination never sleeps, retries or splits a batch itself.
pub trait Destination: Send + Sync {
    /// `"hubspot"`, `"webhook"`, ...
    fn kind(&self) -> &'static str;

    /// Identifies the account whose rate limits this destination spends (a hash of the
    /// credentials and base URL, never the credentials): destinations with the same account
    /// share one quota.
    fn account(&self) -> String;

    fn capabilities(&self) -> Capabilities;

    /// Requests one [`write`](Destination::write) of this operation makes (a HubSpot
    /// archive reads ids first: two), so pacing counts every request.
    fn requests_per_write(&self, op: Operation) -> usize {
        let _ = op;
        1
    }

    /// Checks, without I/O, that the destination can take these field names.
    fn validate_mapping(&self, fields: &[&str]) -> Result<(), Vec<MappingProblem>>;

    fn write(
        &self,
        records: &[Record],
    ) -> impl Future<Output = Result<WriteOutcome, DestinationError>> + Send;
}
