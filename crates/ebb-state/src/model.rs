//! The records the state store keeps, as plain types shared by both backends.
//!
//! Times are Unix milliseconds (`i64`) everywhere: both backends store them as `BIGINT`, so
//! ordering and lease arithmetic are the same in SQLite and Postgres.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::StateError;

/// A run's id: assigned by the store, increasing, so newer runs have larger ids.
pub type RunId = i64;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = StateError;

            fn from_str(s: &str) -> Result<Self, StateError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(StateError::Corrupt(format!(
                        "unknown {} {other:?} (expected one of: {})",
                        $what,
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }
    };
}

text_enum!(
    /// Where a run is in its life: `queued → running → succeeded | partial | failed |
    /// cancelled`.
    RunStatus, "run status" {
        /// Waiting for a worker.
        Queued => "queued",
        /// A worker holds its lease.
        Running => "running",
        /// Every planned record was accepted.
        Succeeded => "succeeded",
        /// Finished, but some records went to the DLQ.
        Partial => "partial",
        /// Stopped by an error; `error` says which.
        Failed => "failed",
        /// Cancelled before it finished.
        Cancelled => "cancelled",
    }
);

impl RunStatus {
    /// Queued or running: the run still holds its sync.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    /// A status a run ends in.
    pub fn is_final(self) -> bool {
        !self.is_active()
    }
}

text_enum!(
    /// What a run runs.
    RunKind, "run kind" {
        /// A reverse-ETL sync.
        Sync => "sync",
        /// A CDC pipeline.
        Cdc => "cdc",
        /// An identity-resolution job.
        Identity => "identity",
    }
);

text_enum!(
    /// What started a run.
    Trigger, "trigger" {
        /// `ebb run` or a person in the UI.
        Manual => "manual",
        /// A cron or interval schedule.
        Schedule => "schedule",
        /// Another sync finished ("after sync A succeeds").
        After => "after",
        /// `POST /v1/syncs/{name}/trigger`.
        Api => "api",
    }
);

text_enum!(
    /// Severity of a run log line.
    LogLevel, "log level" {
        Debug => "debug",
        Info => "info",
        Warn => "warn",
        Error => "error",
    }
);

/// Record counts of a run. They mirror `ebb_delivery::DeliveryReport` plus the sync's
/// own (`planned` rows of the diff, `skipped_bad_keys` rows without a usable key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub planned: i64,
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    pub accepted: i64,
    pub rejected: i64,
    pub retried: i64,
    pub skipped_bad_keys: i64,
}

/// A run as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub tenant: String,
    /// The sync's (or pipeline's) name.
    pub sync: String,
    pub kind: RunKind,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub counts: RunCounts,
    /// Unix milliseconds.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    /// The worker that holds (or last held) the lease.
    pub worker: Option<String>,
    /// While running: the lease ends here unless the worker heartbeats.
    pub lease_expires_at: Option<i64>,
    /// How many times a worker took the run (more than 1 after a takeover).
    pub attempts: i64,
}

/// What [`create_run`](crate::StateStore::create_run) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub tenant: String,
    pub sync: String,
    pub kind: RunKind,
    pub trigger: Trigger,
}

impl NewRun {
    pub fn new(tenant: &str, sync: &str, kind: RunKind, trigger: Trigger) -> NewRun {
        NewRun {
            tenant: tenant.to_string(),
            sync: sync.to_string(),
            kind,
            trigger,
        }
    }
}

/// The answer of [`create_run`](crate::StateStore::create_run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedRun {
    pub run: Run,
    /// False when the sync already had a queued run: that one is returned, and the
    /// trigger is folded into it ("a trigger during a run is queued once").
    pub created: bool,
}

/// How a run ended, for [`finish_run`](crate::StateStore::finish_run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Succeeded, partial, failed or cancelled.
    pub status: RunStatus,
    pub counts: RunCounts,
    pub error: Option<String>,
}

/// Which runs [`list_runs`](crate::StateStore::list_runs) returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub tenant: Option<String>,
    pub sync: Option<String>,
    pub status: Option<RunStatus>,
}

/// One page of a listing. `next_cursor` is `None` on the last page; pass it back as the
/// `cursor` argument to get the next one. Cursors are opaque strings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub id: i64,
    pub run_id: RunId,
    /// Unix milliseconds.
    pub at: i64,
    pub level: LogLevel,
    pub message: String,
    /// A sample record, already redacted (see [`crate::redact`]).
    pub sample: Option<serde_json::Value>,
}

/// An outbox event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Increasing per store; a tenant's events commit in id order, so a consumer that
    /// remembers the last id it saw misses nothing.
    pub id: i64,
    pub tenant: String,
    /// e.g. `run.finished`.
    pub topic: String,
    pub payload: serde_json::Value,
    /// Unix milliseconds.
    pub created_at: i64,
    pub relayed_at: Option<i64>,
}

/// The topic of the event [`finish_run`](crate::StateStore::finish_run) writes.
pub const RUN_FINISHED: &str = "run.finished";

/// A CDC pipeline's checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub name: String,
    /// The flush LSN (`u64` form of `X/Y`).
    pub lsn: u64,
    pub detail: serde_json::Value,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// One audit-log entry: who changed what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub tenant: String,
    /// A token id (`token:12`), a user name, or `cli`.
    pub actor: String,
    /// e.g. `sync.trigger`, `token.create`, `dlq.retry`.
    pub action: String,
    /// What it acted on, e.g. `sync:contacts`.
    pub target: String,
    pub details: serde_json::Value,
}

/// A token as [`create_token`](crate::StateStore::create_token) returns it: the only time
/// the plaintext exists outside the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub id: i64,
    /// `ebb_` + 43 characters; show it once, it cannot be read back.
    pub plaintext: String,
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenGrant {
    pub id: i64,
    pub tenant: String,
    pub scopes: Vec<String>,
}

/// A token's listing entry: never its plaintext or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: i64,
    pub tenant: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A response kept for an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// HTTP status code.
    pub status: u16,
    pub body: String,
}

/// How long a request may hold its idempotency key in flight. A repeat after that (the
/// first request's server died) takes the key over and is handled as new.
pub const IDEMPOTENCY_IN_FLIGHT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The answer of [`begin_idempotent`](crate::StateStore::begin_idempotent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// First use of the key: handle the request, then call `complete_idempotent` (or
    /// `abandon_idempotent` if it failed before doing anything).
    New,
    /// The first request with this key is still being handled (HTTP 409); after
    /// [`IDEMPOTENCY_IN_FLIGHT_TIMEOUT`] a repeat gets `New` instead.
    InFlight,
    /// Already handled: answer with the stored response.
    Done(StoredResponse),
    /// The key was used with another request body (HTTP 422).
    Mismatch,
}
