//! The state store of ebb: what must survive a crash besides the snapshots — runs and their
//! logs, the dead-letter queue, the outbox of events, CDC checkpoints, the audit log, API
//! tokens and HTTP idempotency keys.
//!
//! Two backends keep the same records with the same behaviour (one contract test suite
//! runs against both): **SQLite**, the embedded default (`.ebb/state.db` in the project),
//! and **Postgres**, which any number of `ebb serve` workers share. [`StateStore`] is an enum
//! over the two with async methods (no trait object: async methods are not
//! dyn-compatible, and two backends don't need one); [`StateStore::open`] builds it from
//! the `state:` section of `ebb.yml`.
//!
//! # Guarantees
//! - **Runs**: `queued → running → succeeded | partial | failed | cancelled`. A sync has at
//!   most one queued and one running run, enforced by unique partial indexes: a trigger while
//!   a run is queued returns that run ("a trigger during a run is queued once").
//! - **Leases**: a worker claims a run for a lease and extends it with heartbeats; a
//!   running run whose lease expired is claimable by any worker (its `attempts` grows).
//!   Updates by a worker that lost its lease fail with [`StateError::LeaseLost`].
//! - **Schedules**: [`fire_schedule`](StateStore::fire_schedule) fires a sync's schedule at
//!   most once per due instant however many workers ask, and creates the run in the same
//!   transaction; [`finish_run_then`](StateStore::finish_run_then) queues the syncs that
//!   follow a succeeded run in the transaction that finishes it.
//! - **Outbox**: [`finish_run`](StateStore::finish_run) and
//!   [`cancel_run`](StateStore::cancel_run) write the run's final state and a
//!   `run.finished` event in one transaction: the event exists if and only if the change
//!   committed. Event ids increase in commit order per tenant, so replay from a cursor
//!   misses nothing.
//! - **DLQ**: the store implements [`ebb_delivery::DeadLetters`]; `Ok` means durable.
//! - **Migrations** run on open, in one transaction; a database migrated by a newer ebb is
//!   refused with [`StateError::SchemaTooNew`].
//!
//! # Layout
//! - [`model`]: the records (runs, events, checkpoints, ...), shared by both backends.
//! - [`sqlite`], [`postgres`]: the backends; the same public methods on each.
//! - [`migrate`]: the embedded `sql/state/{sqlite,postgres}/NNNN_name.sql` files.
//! - [`redact`]: masking of secrets and e-mail addresses in sample payloads.
//! - `rows`: one row-to-record converter per type, for both backends; `token`: API token
//!   generation and hashing.

use std::path::Path;
use std::time::Duration;

use ebb_core::config::project::StateConfig;
use ebb_delivery::{DeadLetter, DeadLetters, DlqError};

mod error;
pub mod migrate;
pub mod model;
pub mod postgres;
pub mod redact;
mod rows;
pub mod sqlite;
mod token;

pub use error::StateError;
pub use model::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The state store: SQLite or Postgres. Cloning is cheap and shares the connection(s).
#[derive(Debug, Clone)]
pub enum StateStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            StateStore::Sqlite(s) => s.$method($($arg),*).await,
            StateStore::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl StateStore {
    /// Opens the store `ebb.yml`'s `state:` section describes, and migrates it.
    ///
    /// A relative SQLite path is relative to `project_dir`. The Postgres URL is a
    /// [`Secret`](ebb_core::Secret) whose `${VAR}` references were resolved when the project
    /// was loaded.
    pub async fn open(config: &StateConfig, project_dir: &Path) -> Result<StateStore, StateError> {
        match config {
            StateConfig::Sqlite { path } => {
                let path = Path::new(path);
                let path = if path.is_absolute() {
                    path.to_path_buf()
                } else {
                    project_dir.join(path)
                };
                StateStore::open_sqlite(path).await
            }
            StateConfig::Postgres { url, schema } => {
                StateStore::open_postgres(url.expose(), schema.as_deref()).await
            }
        }
    }

    /// Opens (creating it and its folder if needed) a SQLite state file.
    pub async fn open_sqlite(path: impl AsRef<Path>) -> Result<StateStore, StateError> {
        Ok(StateStore::Sqlite(SqliteStore::open(path).await?))
    }

    /// Connects to a Postgres state store; `schema` defaults to `ebb_state`.
    pub async fn open_postgres(url: &str, schema: Option<&str>) -> Result<StateStore, StateError> {
        Ok(StateStore::Postgres(PgStore::open(url, schema).await?))
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            StateStore::Sqlite(_) => "sqlite",
            StateStore::Postgres(_) => "postgres",
        }
    }

    /// Where the store is, for messages (never a password).
    pub fn location(&self) -> String {
        match self {
            StateStore::Sqlite(s) => s.path().display().to_string(),
            StateStore::Postgres(s) => s.location(),
        }
    }

    /// The schema version the database is at (after the migrations of [`open`](Self::open)).
    pub async fn schema_version(&self) -> Result<i64, StateError> {
        dispatch!(self.schema_version())
    }

    // ---- runs ----------------------------------------------------------------------

    /// Queues a run, or returns the sync's queued run if it has one (`created: false`).
    /// A sync whose run is running gets one queued run behind it.
    pub async fn create_run(&self, new: &NewRun) -> Result<CreatedRun, StateError> {
        dispatch!(self.create_run(new))
    }

    /// Starts a given queued run on `worker` (the CLI's path: create, then start).
    /// Fails with [`StateError::InvalidTransition`] if it is not queued or another run of
    /// its sync is running.
    pub async fn start_run(
        &self,
        id: RunId,
        worker: &str,
        lease: Duration,
    ) -> Result<Run, StateError> {
        dispatch!(self.start_run(id, worker, lease))
    }

    /// Takes the oldest run a worker may run: a queued run whose sync has none running, or
    /// a running run whose lease expired (its worker died). Each run goes to one claimer.
    pub async fn claim_next_run(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Run>, StateError> {
        dispatch!(self.claim_next_run(worker, lease))
    }

    /// Extends the lease to now + `lease`. [`StateError::LeaseLost`] means stop working on
    /// the run: another worker took it, or it was cancelled.
    pub async fn heartbeat(
        &self,
        id: RunId,
        worker: &str,
        lease: Duration,
    ) -> Result<Run, StateError> {
        dispatch!(self.heartbeat(id, worker, lease))
    }

    /// Stores the counts so far of a running run (what `ebb runs show` prints meanwhile).
    pub async fn record_progress(
        &self,
        id: RunId,
        worker: &str,
        counts: &RunCounts,
    ) -> Result<Run, StateError> {
        dispatch!(self.record_progress(id, worker, counts))
    }

    /// Gives a running run up (graceful shutdown without finishing): its lease ends now,
    /// so another worker takes it over at once.
    pub async fn release_run(&self, id: RunId, worker: &str) -> Result<(), StateError> {
        dispatch!(self.release_run(id, worker))
    }

    /// Ends a running run held by `worker` and writes its `run.finished` event, in one
    /// transaction. The same as [`finish_run_then`](Self::finish_run_then) with no runs
    /// to queue.
    pub async fn finish_run(
        &self,
        id: RunId,
        worker: &str,
        outcome: &RunOutcome,
    ) -> Result<Run, StateError> {
        Ok(self.finish_run_then(id, worker, outcome, &[]).await?.0)
    }

    /// [`finish_run`](Self::finish_run), and when the outcome's status is
    /// [`Succeeded`](RunStatus::Succeeded), also queues each of `then` (with
    /// [`create_run`](Self::create_run)'s semantics: a sync that has a queued run keeps
    /// that one) in the SAME transaction: "after sync A succeeds" sequences are never lost
    /// nor doubled by a crash. Returns the finished run and the runs queued (none unless
    /// it succeeded), in `then`'s order.
    pub async fn finish_run_then(
        &self,
        id: RunId,
        worker: &str,
        outcome: &RunOutcome,
        then: &[NewRun],
    ) -> Result<(Run, Vec<CreatedRun>), StateError> {
        dispatch!(self.finish_run_then(id, worker, outcome, then))
    }

    /// Cancels a queued or running run (a running run's worker learns it at its next
    /// heartbeat) and writes its `run.finished` event, in one transaction.
    pub async fn cancel_run(&self, id: RunId, reason: Option<&str>) -> Result<Run, StateError> {
        dispatch!(self.cancel_run(id, reason))
    }

    pub async fn get_run(&self, id: RunId) -> Result<Option<Run>, StateError> {
        dispatch!(self.get_run(id))
    }

    /// The newest run of a sync, whatever its status.
    pub async fn latest_run(&self, tenant: &str, sync: &str) -> Result<Option<Run>, StateError> {
        dispatch!(self.latest_run(tenant, sync))
    }

    /// Runs, newest first, `limit` a page.
    pub async fn list_runs(
        &self,
        filter: &RunFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Run>, StateError> {
        dispatch!(self.list_runs(filter, cursor, limit))
    }

    /// Adds a line to a run's log; `sample` is stored [redacted](redact::redact), and
    /// e-mail addresses in `message` are masked.
    pub async fn append_log(
        &self,
        run_id: RunId,
        level: LogLevel,
        message: &str,
        sample: Option<&serde_json::Value>,
    ) -> Result<i64, StateError> {
        dispatch!(self.append_log(run_id, level, message, sample))
    }

    /// A run's log, oldest line first.
    pub async fn run_log(&self, run_id: RunId) -> Result<Vec<LogEntry>, StateError> {
        dispatch!(self.run_log(run_id))
    }

    // ---- schedules and settings ------------------------------------------------------

    /// Fires a schedule at most once per due instant, whichever worker asks first.
    ///
    /// `due_at` (Unix ms) is the latest instant <= now at which the sync's cron or interval
    /// is due; the caller computes it, the store only remembers the last one fired (table
    /// `schedules`, one row per (tenant, sync)).
    /// - No row yet: the row is written with `last_due_at = due_at` and the answer is
    ///   `Ok(None)`: a schedule seen for the first time waits for its next due instant; it
    ///   does not fire for the past.
    /// - `last_due_at < due_at`: `last_due_at` becomes `due_at` and the run is created
    ///   exactly like [`create_run`](Self::create_run) (folded into the sync's queued run
    ///   if it has one), in one transaction: `Ok(Some(created))`.
    /// - Otherwise (already fired for this instant, or an older `due_at`): `Ok(None)`.
    ///
    /// Of concurrent callers with the same `due_at`, exactly one gets `Some`. Pausing is
    /// not consulted here: the caller skips [`paused_syncs`](Self::paused_syncs).
    pub async fn fire_schedule(
        &self,
        new: &NewRun,
        due_at: i64,
    ) -> Result<Option<CreatedRun>, StateError> {
        dispatch!(self.fire_schedule(new, due_at))
    }

    /// Pauses or resumes a sync's schedule (table `sync_settings`). Idempotent.
    pub async fn set_paused(
        &self,
        tenant: &str,
        sync: &str,
        paused: bool,
    ) -> Result<(), StateError> {
        dispatch!(self.set_paused(tenant, sync, paused))
    }

    /// The paused syncs as (tenant, sync), of one tenant or all, by tenant then sync.
    pub async fn paused_syncs(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<(String, String)>, StateError> {
        dispatch!(self.paused_syncs(tenant))
    }

    // ---- metrics -------------------------------------------------------------------

    /// For Prometheus: the number of runs per (tenant, status), by tenant then status.
    /// Only pairs that have runs are listed.
    pub async fn run_stats(&self) -> Result<Vec<(String, RunStatus, i64)>, StateError> {
        dispatch!(self.run_stats())
    }

    /// For Prometheus: dead letters per (tenant, sync), by tenant then sync. Only syncs
    /// that have dead letters are listed.
    pub async fn dlq_depths(&self) -> Result<Vec<(String, String, i64)>, StateError> {
        dispatch!(self.dlq_depths())
    }

    // ---- DLQ -----------------------------------------------------------------------

    /// A tenant's dead letters (of one sync, or all), by sync then record key.
    pub async fn dlq_list(
        &self,
        tenant: &str,
        sync: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<DeadLetter>, StateError> {
        dispatch!(self.dlq_list(tenant, sync, cursor, limit))
    }

    pub async fn dlq_count(&self, tenant: &str, sync: Option<&str>) -> Result<u64, StateError> {
        dispatch!(self.dlq_count(tenant, sync))
    }

    // ---- outbox --------------------------------------------------------------------

    /// Writes an event on its own (for events not tied to a run's state change).
    pub async fn append_event(
        &self,
        tenant: &str,
        topic: &str,
        payload: &serde_json::Value,
    ) -> Result<i64, StateError> {
        dispatch!(self.append_event(tenant, topic, payload))
    }

    /// Writes several events of one topic in one transaction (ids in the payloads' order).
    /// On Postgres a tenant's event writers take turns until commit (that keeps replay
    /// gap-free), so batching is how one tenant writes many events a second.
    pub async fn append_events(
        &self,
        tenant: &str,
        topic: &str,
        payloads: &[serde_json::Value],
    ) -> Result<Vec<i64>, StateError> {
        dispatch!(self.append_events(tenant, topic, payloads))
    }

    /// A tenant's events with id > `after`, oldest first: replay from a cursor.
    pub async fn events_after(
        &self,
        tenant: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Event>, StateError> {
        dispatch!(self.events_after(tenant, after, limit))
    }

    /// Events not yet relayed, oldest first, of every tenant.
    pub async fn unrelayed(&self, limit: usize) -> Result<Vec<Event>, StateError> {
        dispatch!(self.unrelayed(limit))
    }

    /// Claims up to `limit` unrelayed events, oldest first, for `worker` to relay within
    /// `lease`; then [`mark_relayed`](Self::mark_relayed) what was delivered. While one
    /// worker's claim is live, others get nothing (events leave in id order, from one
    /// relayer at a time); a claim that expires (its worker died) is taken by the next.
    pub async fn claim_events(
        &self,
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Event>, StateError> {
        dispatch!(self.claim_events(worker, limit, lease))
    }

    /// Marks events relayed; they stay for replay.
    pub async fn mark_relayed(&self, ids: &[i64]) -> Result<(), StateError> {
        dispatch!(self.mark_relayed(ids))
    }

    // ---- checkpoints ---------------------------------------------------------------

    pub async fn get_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StateError> {
        dispatch!(self.get_checkpoint(name))
    }

    /// Replaces a pipeline's checkpoint.
    pub async fn put_checkpoint(
        &self,
        name: &str,
        lsn: u64,
        detail: &serde_json::Value,
    ) -> Result<(), StateError> {
        dispatch!(self.put_checkpoint(name, lsn, detail))
    }

    // ---- audit ---------------------------------------------------------------------

    pub async fn audit(
        &self,
        tenant: &str,
        actor: &str,
        action: &str,
        target: &str,
        details: &serde_json::Value,
    ) -> Result<i64, StateError> {
        dispatch!(self.audit(tenant, actor, action, target, details))
    }

    /// A tenant's audit log, newest first.
    pub async fn audit_list(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AuditEntry>, StateError> {
        dispatch!(self.audit_list(tenant, cursor, limit))
    }

    // ---- tokens --------------------------------------------------------------------

    /// A new API token; its plaintext is in the answer and nowhere else.
    pub async fn create_token(
        &self,
        tenant: &str,
        scopes: &[String],
    ) -> Result<NewToken, StateError> {
        dispatch!(self.create_token(tenant, scopes))
    }

    /// The tenant and scopes of a valid, unrevoked token.
    pub async fn verify_token(&self, plaintext: &str) -> Result<Option<TokenGrant>, StateError> {
        dispatch!(self.verify_token(plaintext))
    }

    /// Revokes a tenant's token; false if it has no such live token.
    pub async fn revoke_token(&self, tenant: &str, id: i64) -> Result<bool, StateError> {
        dispatch!(self.revoke_token(tenant, id))
    }

    pub async fn list_tokens(&self, tenant: &str) -> Result<Vec<TokenInfo>, StateError> {
        dispatch!(self.list_tokens(tenant))
    }

    // ---- idempotency keys ----------------------------------------------------------

    /// Claims an `Idempotency-Key` for a request whose body hashes to `request_hash`.
    pub async fn begin_idempotent(
        &self,
        tenant: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Idempotency, StateError> {
        dispatch!(self.begin_idempotent(tenant, key, request_hash))
    }

    /// Stores the response of the request that claimed the key.
    pub async fn complete_idempotent(
        &self,
        tenant: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StateError> {
        dispatch!(self.complete_idempotent(tenant, key, response))
    }

    /// Frees an in-flight key whose request failed before changing anything.
    pub async fn abandon_idempotent(&self, tenant: &str, key: &str) -> Result<(), StateError> {
        dispatch!(self.abandon_idempotent(tenant, key))
    }
}

impl DeadLetters for StateStore {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), DlqError> {
        Ok(dispatch!(self.dlq_put(letters))?)
    }

    async fn pending(&self, tenant: &str, sync: &str) -> Result<Vec<DeadLetter>, DlqError> {
        Ok(dispatch!(self.dlq_pending(tenant, sync))?)
    }

    async fn resolve(&self, tenant: &str, sync: &str, keys: &[String]) -> Result<(), DlqError> {
        Ok(dispatch!(self.dlq_resolve(tenant, sync, keys))?)
    }
}
