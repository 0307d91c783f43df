//! The SQLite backend: the embedded default, one file (`.ebb/state.db`).
//!
//! One connection per store, used from `spawn_blocking` tasks behind a mutex (SQLite
//! serializes writers anyway). The file is in WAL mode, so readers never wait for the
//! writer, with `synchronous=FULL` (an `Ok` means the change survives a power cut, which
//! the DLQ's contract needs) and a busy timeout, so several processes on one file wait for
//! each other instead of failing. Every read-modify-write (creating a run, claiming one,
//! finishing one with its outbox event) runs in a `BEGIN IMMEDIATE` transaction: it takes
//! the write lock first, so two processes never both see a run as free.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ebb_delivery::{DeadLetter, DeadLetters, DlqError};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::StateError;
use crate::migrate::{self, LATEST, VERSION_TABLE};
use crate::model::*;
use crate::redact::redact;
use crate::rows::{self, Cols};
use crate::token;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQLite state store. Cloning shares the connection.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// Errors inside a blocking task: SQLite's own get the file's path attached on the way out.
enum SqErr {
    Db(rusqlite::Error),
    State(StateError),
}

impl From<rusqlite::Error> for SqErr {
    fn from(e: rusqlite::Error) -> Self {
        SqErr::Db(e)
    }
}

impl From<StateError> for SqErr {
    fn from(e: StateError) -> Self {
        SqErr::State(e)
    }
}

type SqResult<T> = Result<T, SqErr>;

impl Cols for Row<'_> {
    fn i64(&self, i: usize) -> Result<i64, StateError> {
        self.get(i).map_err(corrupt)
    }
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, StateError> {
        self.get(i).map_err(corrupt)
    }
    fn text(&self, i: usize) -> Result<String, StateError> {
        self.get(i).map_err(corrupt)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StateError> {
        self.get(i).map_err(corrupt)
    }
}

fn corrupt(e: rusqlite::Error) -> StateError {
    StateError::Corrupt(e.to_string())
}

fn sel(list: &str) -> String {
    rows::cols(list, str::to_string)
}

fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl Fn(&Row<'_>) -> Result<T, StateError>,
) -> SqResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(f(row)?);
    }
    Ok(out)
}

fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl Fn(&Row<'_>) -> Result<T, StateError>,
) -> SqResult<Option<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    match rows.next()? {
        Some(row) => Ok(Some(f(row)?)),
        None => Ok(None),
    }
}

fn is_unique_violation(e: &SqErr) -> bool {
    matches!(e, SqErr::Db(rusqlite::Error::SqliteFailure(f, _))
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

fn json_text(v: &serde_json::Value) -> String {
    v.to_string()
}

impl SqliteStore {
    /// Opens (creating if needed, with its folder) the state file and migrates it.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StateError> {
        let path = path.as_ref().to_path_buf();
        let display = path.display().to_string();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_blocking(&p))
            .await
            .map_err(|e| StateError::Task(e.to_string()))?
            .map_err(|e| match e {
                SqErr::Db(source) => StateError::Sqlite {
                    path: display,
                    source,
                },
                SqErr::State(s) => s,
            })?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
            }),
        })
    }

    /// The file, for messages.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the connection in a blocking task.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> SqResult<T> + Send + 'static,
    ) -> Result<T, StateError> {
        let inner = Arc::clone(&self.inner);
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| StateError::Task(e.to_string()))?;
        result.map_err(|e| match e {
            SqErr::Db(source) => StateError::Sqlite {
                path: self.inner.path.display().to_string(),
                source,
            },
            SqErr::State(s) => s,
        })
    }

    /// The schema version the file is at.
    pub async fn schema_version(&self) -> Result<i64, StateError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    // ---- runs ----------------------------------------------------------------------

    pub async fn create_run(&self, new: &NewRun) -> Result<CreatedRun, StateError> {
        let new = new.clone();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let created = create_run_in(&tx, &new)?;
            tx.commit()?;
            Ok(created)
        })
        .await
    }

    pub async fn start_run(
        &self,
        id: RunId,
        worker: &str,
        lease: Duration,
    ) -> Result<Run, StateError> {
        let worker = worker.to_string();
        self.with(move |c| {
            let now = now_ms();
            let updated = one(
                c,
                &format!(
                    "UPDATE runs SET status = 'running', worker = ?2, lease_expires_at = ?3,
                            started_at = COALESCE(started_at, ?4), attempts = attempts + 1
                     WHERE id = ?1 AND status = 'queued' RETURNING {}",
                    rows::RUN_COLS
                ),
                params![id, worker, now + ms(lease), now],
                |r: &Row<'_>| rows::run(r),
            );
            match updated {
                Ok(Some(run)) => Ok(run),
                Err(e) if is_unique_violation(&e) => Err(StateError::InvalidTransition {
                    run: id,
                    message: "another run of its sync is running; it stays queued".into(),
                }
                .into()),
                Err(e) => Err(e),
                Ok(None) => Err(not_startable(c, id)?.into()),
            }
        })
        .await
    }

    pub async fn claim_next_run(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Run>, StateError> {
        let worker = worker.to_string();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms();
            let id: Option<i64> = tx
                .query_row(
                    "SELECT id FROM runs r
                     WHERE (r.status = 'queued' AND NOT EXISTS (
                               SELECT 1 FROM runs x
                               WHERE x.tenant = r.tenant AND x.sync = r.sync
                                 AND x.status = 'running'))
                        OR (r.status = 'running' AND r.lease_expires_at < ?1)
                     ORDER BY id LIMIT 1",
                    params![now],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(id) = id else { return Ok(None) };
            let run = one(
                &tx,
                &format!(
                    "UPDATE runs SET status = 'running', worker = ?2, lease_expires_at = ?3,
                            started_at = COALESCE(started_at, ?4), attempts = attempts + 1
                     WHERE id = ?1 RETURNING {}",
                    rows::RUN_COLS
                ),
                params![id, worker, now + ms(lease), now],
                |r: &Row<'_>| rows::run(r),
            )?;
            tx.commit()?;
            Ok(run)
        })
        .await
    }

    pub async fn heartbeat(
        &self,
        id: RunId,
        worker: &str,
        lease: Duration,
    ) -> Result<Run, StateError> {
        let worker = worker.to_string();
        self.with(move |c| {
            let run = one(
                c,
                &format!(
                    "UPDATE runs SET lease_expires_at = ?3
                     WHERE id = ?1 AND status = 'running' AND worker = ?2 RETURNING {}",
                    rows::RUN_COLS
                ),
                params![id, worker, now_ms() + ms(lease)],
                |r: &Row<'_>| rows::run(r),
            )?;
            match run {
                Some(run) => Ok(run),
                None => Err(lease_lost(c, id, &worker)?.into()),
            }
        })
        .await
    }

    pub async fn record_progress(
        &self,
        id: RunId,
        worker: &str,
        counts: &RunCounts,
    ) -> Result<Run, StateError> {
        let (worker, k) = (worker.to_string(), *counts);
        self.with(move |c| {
            let run = one(
                c,
                &format!(
                    "UPDATE runs SET planned = ?3, inserted = ?4, updated = ?5, deleted = ?6,
                            accepted = ?7, rejected = ?8, retried = ?9, skipped_bad_keys = ?10
                     WHERE id = ?1 AND status = 'running' AND worker = ?2 RETURNING {}",
                    rows::RUN_COLS
                ),
                params![
                    id,
                    worker,
                    k.planned,
                    k.inserted,
                    k.updated,
                    k.deleted,
                    k.accepted,
                    k.rejected,
                    k.retried,
                    k.skipped_bad_keys
                ],
                |r: &Row<'_>| rows::run(r),
            )?;
            match run {
                Some(run) => Ok(run),
                None => Err(lease_lost(c, id, &worker)?.into()),
            }
        })
        .await
    }

    pub async fn release_run(&self, id: RunId, worker: &str) -> Result<(), StateError> {
        let worker = worker.to_string();
        self.with(move |c| {
            let n = c.execute(
                "UPDATE runs SET lease_expires_at = ?3
                 WHERE id = ?1 AND status = 'running' AND worker = ?2",
                params![id, worker, now_ms() - 1],
            )?;
            if n == 0 {
                return Err(lease_lost(c, id, &worker)?.into());
            }
            Ok(())
        })
        .await
    }

    pub async fn finish_run_then(
        &self,
        id: RunId,
        worker: &str,
        outcome: &RunOutcome,
        then: &[NewRun],
    ) -> Result<(Run, Vec<CreatedRun>), StateError> {
        check_final(id, outcome.status)?;
        let (worker, outcome, then) = (worker.to_string(), outcome.clone(), then.to_vec());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let k = outcome.counts;
            let now = now_ms();
            let run = one(
                &tx,
                &format!(
                    "UPDATE runs SET status = ?3, planned = ?4, inserted = ?5, updated = ?6,
                            deleted = ?7, accepted = ?8, rejected = ?9, retried = ?10,
                            skipped_bad_keys = ?11, error = ?12, finished_at = ?13,
                            lease_expires_at = NULL
                     WHERE id = ?1 AND status = 'running' AND worker = ?2 RETURNING {}",
                    rows::RUN_COLS
                ),
                params![
                    id,
                    worker,
                    outcome.status.as_str(),
                    k.planned,
                    k.inserted,
                    k.updated,
                    k.deleted,
                    k.accepted,
                    k.rejected,
                    k.retried,
                    k.skipped_bad_keys,
                    outcome.error,
                    now
                ],
                |r: &Row<'_>| rows::run(r),
            )?;
            let Some(run) = run else {
                return Err(lease_lost(&tx, id, &worker)?.into());
            };
            let queued = if run.status == RunStatus::Succeeded {
                then.iter()
                    .map(|new| create_run_in(&tx, new))
                    .collect::<SqResult<Vec<_>>>()?
            } else {
                Vec::new()
            };
            insert_event(
                &tx,
                &run.tenant,
                RUN_FINISHED,
                &rows::run_finished_payload(&run),
            )?;
            tx.commit()?;
            Ok((run, queued))
        })
        .await
    }

    pub async fn cancel_run(&self, id: RunId, reason: Option<&str>) -> Result<Run, StateError> {
        let reason = reason.map(str::to_string);
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let run = one(
                &tx,
                &format!(
                    "UPDATE runs SET status = 'cancelled', error = ?2, finished_at = ?3,
                            lease_expires_at = NULL
                     WHERE id = ?1 AND status IN ('queued', 'running') RETURNING {}",
                    rows::RUN_COLS
                ),
                params![id, reason, now_ms()],
                |r: &Row<'_>| rows::run(r),
            )?;
            let Some(run) = run else {
                let current = get_run(&tx, id)?.ok_or_else(|| run_not_found(id))?;
                return Err(StateError::InvalidTransition {
                    run: id,
                    message: format!("it is already {}", current.status),
                }
                .into());
            };
            insert_event(
                &tx,
                &run.tenant,
                RUN_FINISHED,
                &rows::run_finished_payload(&run),
            )?;
            tx.commit()?;
            Ok(run)
        })
        .await
    }

    pub async fn get_run(&self, id: RunId) -> Result<Option<Run>, StateError> {
        self.with(move |c| get_run(c, id)).await
    }

    pub async fn latest_run(&self, tenant: &str, sync: &str) -> Result<Option<Run>, StateError> {
        let (tenant, sync) = (tenant.to_string(), sync.to_string());
        self.with(move |c| {
            one(
                c,
                &format!(
                    "SELECT {} FROM runs WHERE tenant = ?1 AND sync = ?2 ORDER BY id DESC LIMIT 1",
                    rows::RUN_COLS
                ),
                params![tenant, sync],
                |r: &Row<'_>| rows::run(r),
            )
        })
        .await
    }

    pub async fn list_runs(
        &self,
        filter: &RunFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Run>, StateError> {
        let after = rows::id_cursor(cursor)?;
        let filter = filter.clone();
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let items = self
            .with(move |c| {
                all(
                    c,
                    &format!(
                        "SELECT {} FROM runs
                         WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR sync = ?2)
                           AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR id < ?4)
                         ORDER BY id DESC LIMIT ?5",
                        rows::RUN_COLS
                    ),
                    params![
                        filter.tenant,
                        filter.sync,
                        filter.status.map(RunStatus::as_str),
                        after,
                        fetch
                    ],
                    |r: &Row<'_>| rows::run(r),
                )
            })
            .await?;
        Ok(rows::page(items, limit, |r| r.id.to_string()))
    }

    pub async fn append_log(
        &self,
        run_id: RunId,
        level: LogLevel,
        message: &str,
        sample: Option<&serde_json::Value>,
    ) -> Result<i64, StateError> {
        let message = crate::redact::mask_email(message).unwrap_or_else(|| message.to_string());
        let sample = sample.map(|s| json_text(&redact(s)));
        self.with(move |c| {
            let id = c.query_row(
                "INSERT INTO run_logs (run_id, at, level, message, sample)
                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                params![run_id, now_ms(), level.as_str(), message, sample],
                |r| r.get(0),
            );
            match id {
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    Err(run_not_found(run_id).into())
                }
                other => Ok(other?),
            }
        })
        .await
    }

    pub async fn run_log(&self, run_id: RunId) -> Result<Vec<LogEntry>, StateError> {
        self.with(move |c| {
            all(
                c,
                &format!(
                    "SELECT {} FROM run_logs WHERE run_id = ?1 ORDER BY id",
                    sel(rows::LOG_COLS)
                ),
                params![run_id],
                |r: &Row<'_>| rows::log_entry(r),
            )
        })
        .await
    }

    // ---- schedules and settings ------------------------------------------------------

    pub async fn fire_schedule(
        &self,
        new: &NewRun,
        due_at: i64,
    ) -> Result<Option<CreatedRun>, StateError> {
        let new = new.clone();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms();
            let first_seen = tx.execute(
                "INSERT INTO schedules (tenant, sync, last_due_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant, sync) DO NOTHING",
                params![new.tenant, new.sync, due_at, now],
            )?;
            let fired = if first_seen == 1 {
                None
            } else {
                let advanced = tx.execute(
                    "UPDATE schedules SET last_due_at = ?3, updated_at = ?4
                     WHERE tenant = ?1 AND sync = ?2 AND last_due_at < ?3",
                    params![new.tenant, new.sync, due_at, now],
                )?;
                if advanced == 1 {
                    Some(create_run_in(&tx, &new)?)
                } else {
                    None
                }
            };
            tx.commit()?;
            Ok(fired)
        })
        .await
    }

    pub async fn set_paused(
        &self,
        tenant: &str,
        sync: &str,
        paused: bool,
    ) -> Result<(), StateError> {
        let (tenant, sync) = (tenant.to_string(), sync.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO sync_settings (tenant, sync, paused, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, sync) DO UPDATE SET paused = excluded.paused,
                     updated_at = excluded.updated_at",
                params![tenant, sync, paused, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn paused_syncs(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<(String, String)>, StateError> {
        let tenant = tenant.map(str::to_string);
        self.with(move |c| {
            all(
                c,
                "SELECT tenant, sync FROM sync_settings
                 WHERE paused = 1 AND (?1 IS NULL OR tenant = ?1)
                 ORDER BY tenant, sync",
                params![tenant],
                |r: &Row<'_>| Ok((r.text(0)?, r.text(1)?)),
            )
        })
        .await
    }

    // ---- metrics -------------------------------------------------------------------

    pub async fn run_stats(&self) -> Result<Vec<(String, RunStatus, i64)>, StateError> {
        self.with(|c| {
            all(
                c,
                "SELECT tenant, status, COUNT(*) FROM runs
                 GROUP BY tenant, status ORDER BY tenant, status",
                [],
                |r: &Row<'_>| Ok((r.text(0)?, r.text(1)?.parse()?, r.i64(2)?)),
            )
        })
        .await
    }

    pub async fn dlq_depths(&self) -> Result<Vec<(String, String, i64)>, StateError> {
        self.with(|c| {
            all(
                c,
                "SELECT tenant, sync, COUNT(*) FROM dead_letters
                 GROUP BY tenant, sync ORDER BY tenant, sync",
                [],
                |r: &Row<'_>| Ok((r.text(0)?, r.text(1)?, r.i64(2)?)),
            )
        })
        .await
    }

    // ---- DLQ -----------------------------------------------------------------------

    pub async fn dlq_list(
        &self,
        tenant: &str,
        sync: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<DeadLetter>, StateError> {
        let after = rows::letter_cursor(cursor)?;
        let (tenant, sync) = (tenant.to_string(), sync.map(str::to_string));
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let (after_sync, after_key) = after.unzip();
        let items = self
            .with(move |c| {
                all(
                    c,
                    &format!(
                        "SELECT {} FROM dead_letters
                         WHERE tenant = ?1 AND (?2 IS NULL OR sync = ?2)
                           AND (?3 IS NULL OR (sync, record_key) > (?3, ?4))
                         ORDER BY sync, record_key LIMIT ?5",
                        sel(rows::LETTER_COLS)
                    ),
                    params![tenant, sync, after_sync, after_key, fetch],
                    |r: &Row<'_>| rows::letter(r),
                )
            })
            .await?;
        Ok(rows::page(items, limit, |l| {
            rows::make_letter_cursor(&l.sync, &l.record.key)
        }))
    }

    pub async fn dlq_count(&self, tenant: &str, sync: Option<&str>) -> Result<u64, StateError> {
        let (tenant, sync) = (tenant.to_string(), sync.map(str::to_string));
        self.with(move |c| {
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM dead_letters WHERE tenant = ?1 AND (?2 IS NULL OR sync = ?2)",
                params![tenant, sync],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    pub async fn dlq_put(&self, letters: Vec<DeadLetter>) -> Result<(), StateError> {
        let mut encoded = Vec::with_capacity(letters.len());
        for l in letters {
            let record = serde_json::to_string(&l.record).map_err(|e| {
                StateError::Corrupt(format!("record {:?} cannot be encoded: {e}", l.record.key))
            })?;
            encoded.push((l, record));
        }
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO dead_letters (tenant, sync, record_key, record, reason, field,
                                               failures, first_failed_at, last_failed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (tenant, sync, record_key) DO UPDATE SET
                         record = excluded.record, reason = excluded.reason,
                         field = excluded.field,
                         failures = dead_letters.failures + excluded.failures,
                         last_failed_at = excluded.last_failed_at",
                )?;
                for (l, record) in &encoded {
                    stmt.execute(params![
                        l.tenant,
                        l.sync,
                        l.record.key,
                        record,
                        l.reason,
                        l.field,
                        i64::from(l.failures),
                        i64::try_from(l.first_failed_at).unwrap_or(i64::MAX),
                        i64::try_from(l.last_failed_at).unwrap_or(i64::MAX)
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn dlq_pending(
        &self,
        tenant: &str,
        sync: &str,
    ) -> Result<Vec<DeadLetter>, StateError> {
        let (tenant, sync) = (tenant.to_string(), sync.to_string());
        self.with(move |c| {
            all(
                c,
                &format!(
                    "SELECT {} FROM dead_letters WHERE tenant = ?1 AND sync = ?2
                     ORDER BY record_key",
                    sel(rows::LETTER_COLS)
                ),
                params![tenant, sync],
                |r: &Row<'_>| rows::letter(r),
            )
        })
        .await
    }

    pub async fn dlq_resolve(
        &self,
        tenant: &str,
        sync: &str,
        keys: &[String],
    ) -> Result<(), StateError> {
        let (tenant, sync, keys) = (tenant.to_string(), sync.to_string(), keys.to_vec());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(
                    "DELETE FROM dead_letters WHERE tenant = ?1 AND sync = ?2 AND record_key = ?3",
                )?;
                for key in &keys {
                    stmt.execute(params![tenant, sync, key])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    // ---- outbox --------------------------------------------------------------------

    pub async fn append_event(
        &self,
        tenant: &str,
        topic: &str,
        payload: &serde_json::Value,
    ) -> Result<i64, StateError> {
        let (tenant, topic, payload) = (tenant.to_string(), topic.to_string(), payload.clone());
        self.with(move |c| insert_event(c, &tenant, &topic, &payload))
            .await
    }

    pub async fn append_events(
        &self,
        tenant: &str,
        topic: &str,
        payloads: &[serde_json::Value],
    ) -> Result<Vec<i64>, StateError> {
        let (tenant, topic, payloads) = (tenant.to_string(), topic.to_string(), payloads.to_vec());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let ids = payloads
                .iter()
                .map(|p| insert_event(&tx, &tenant, &topic, p))
                .collect::<SqResult<Vec<i64>>>()?;
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    pub async fn events_after(
        &self,
        tenant: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Event>, StateError> {
        let tenant = tenant.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            all(
                c,
                &format!(
                    "SELECT {} FROM outbox WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                    sel(rows::EVENT_COLS)
                ),
                params![tenant, after.unwrap_or(0), limit],
                |r: &Row<'_>| rows::event(r),
            )
        })
        .await
    }

    pub async fn unrelayed(&self, limit: usize) -> Result<Vec<Event>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            all(
                c,
                &format!(
                    "SELECT {} FROM outbox WHERE relayed_at IS NULL ORDER BY id LIMIT ?1",
                    sel(rows::EVENT_COLS)
                ),
                params![limit],
                |r: &Row<'_>| rows::event(r),
            )
        })
        .await
    }

    pub async fn claim_events(
        &self,
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Event>, StateError> {
        let worker = worker.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms();
            let other: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE relayed_at IS NULL
                     AND relay_until > ?1 AND relay_worker <> ?2)",
                params![now, worker],
                |r| r.get(0),
            )?;
            if other {
                return Ok(Vec::new());
            }
            let events = all(
                &tx,
                &format!(
                    "SELECT {} FROM outbox WHERE relayed_at IS NULL ORDER BY id LIMIT ?1",
                    sel(rows::EVENT_COLS)
                ),
                params![limit],
                |r: &Row<'_>| rows::event(r),
            )?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE outbox SET relay_worker = ?2, relay_until = ?3 WHERE id = ?1",
                )?;
                for e in &events {
                    stmt.execute(params![e.id, worker, now.saturating_add(lease)])?;
                }
            }
            tx.commit()?;
            Ok(events)
        })
        .await
    }

    pub async fn mark_relayed(&self, ids: &[i64]) -> Result<(), StateError> {
        let ids = ids.to_vec();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let now = now_ms();
                let mut stmt = tx.prepare_cached(
                    "UPDATE outbox SET relayed_at = ?2 WHERE id = ?1 AND relayed_at IS NULL",
                )?;
                for id in &ids {
                    stmt.execute(params![id, now])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    // ---- checkpoints ---------------------------------------------------------------

    pub async fn get_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StateError> {
        let name = name.to_string();
        self.with(move |c| {
            one(
                c,
                &format!(
                    "SELECT {} FROM checkpoints WHERE name = ?1",
                    sel(rows::CHECKPOINT_COLS)
                ),
                params![name],
                |r: &Row<'_>| rows::checkpoint(r),
            )
        })
        .await
    }

    pub async fn put_checkpoint(
        &self,
        name: &str,
        lsn: u64,
        detail: &serde_json::Value,
    ) -> Result<(), StateError> {
        let (name, detail) = (name.to_string(), json_text(detail));
        self.with(move |c| {
            c.execute(
                "INSERT INTO checkpoints (name, lsn, detail, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET lsn = excluded.lsn, detail = excluded.detail,
                     updated_at = excluded.updated_at",
                params![name, lsn as i64, detail, now_ms()],
            )?;
            Ok(())
        })
        .await
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
        let args = [tenant, actor, action, target].map(str::to_string);
        let details = json_text(details);
        self.with(move |c| {
            let [tenant, actor, action, target] = args;
            Ok(c.query_row(
                "INSERT INTO audit_log (at, tenant, actor, action, target, details)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                params![now_ms(), tenant, actor, action, target, details],
                |r| r.get(0),
            )?)
        })
        .await
    }

    pub async fn audit_list(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AuditEntry>, StateError> {
        let after = rows::id_cursor(cursor)?;
        let tenant = tenant.to_string();
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let items = self
            .with(move |c| {
                all(
                    c,
                    &format!(
                        "SELECT {} FROM audit_log WHERE tenant = ?1 AND (?2 IS NULL OR id < ?2)
                         ORDER BY id DESC LIMIT ?3",
                        sel(rows::AUDIT_COLS)
                    ),
                    params![tenant, after, fetch],
                    |r: &Row<'_>| rows::audit_entry(r),
                )
            })
            .await?;
        Ok(rows::page(items, limit, |a| a.id.to_string()))
    }

    // ---- tokens --------------------------------------------------------------------

    pub async fn create_token(
        &self,
        tenant: &str,
        scopes: &[String],
    ) -> Result<NewToken, StateError> {
        let plaintext = token::generate()?;
        let (tenant, hash, scopes) = (
            tenant.to_string(),
            token::hash(&plaintext),
            token::scopes_json(scopes),
        );
        let id = self
            .with(move |c| {
                Ok(c.query_row(
                    "INSERT INTO api_tokens (tenant, token_hash, scopes, created_at)
                     VALUES (?1, ?2, ?3, ?4) RETURNING id",
                    params![tenant, hash, scopes, now_ms()],
                    |r| r.get(0),
                )?)
            })
            .await?;
        Ok(NewToken { id, plaintext })
    }

    pub async fn verify_token(&self, plaintext: &str) -> Result<Option<TokenGrant>, StateError> {
        let hash = token::hash(plaintext);
        self.with(move |c| {
            one(
                c,
                "SELECT id, tenant, scopes FROM api_tokens
                 WHERE token_hash = ?1 AND revoked_at IS NULL",
                params![hash],
                |r| {
                    Ok(TokenGrant {
                        id: r.i64(0)?,
                        tenant: r.text(1)?,
                        scopes: rows::scopes(&r.text(2)?)?,
                    })
                },
            )
        })
        .await
    }

    pub async fn revoke_token(&self, tenant: &str, id: i64) -> Result<bool, StateError> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            let n = c.execute(
                "UPDATE api_tokens SET revoked_at = ?3
                 WHERE id = ?1 AND tenant = ?2 AND revoked_at IS NULL",
                params![id, tenant, now_ms()],
            )?;
            Ok(n > 0)
        })
        .await
    }

    pub async fn list_tokens(&self, tenant: &str) -> Result<Vec<TokenInfo>, StateError> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            all(
                c,
                &format!(
                    "SELECT {} FROM api_tokens WHERE tenant = ?1 ORDER BY id",
                    sel(rows::TOKEN_COLS)
                ),
                params![tenant],
                |r: &Row<'_>| rows::token_info(r),
            )
        })
        .await
    }

    // ---- idempotency keys ----------------------------------------------------------

    pub async fn begin_idempotent(
        &self,
        tenant: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Idempotency, StateError> {
        let args = [tenant, key, request_hash].map(str::to_string);
        self.with(move |c| {
            let [tenant, key, hash] = args;
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let inserted = tx.execute(
                "INSERT INTO idempotency_keys (tenant, key, request_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant, key) DO NOTHING",
                params![tenant, key, hash, now_ms()],
            )?;
            let answer = if inserted == 1 {
                Idempotency::New
            } else {
                let (stored_hash, status, body, created_at): (
                    String,
                    Option<i64>,
                    Option<String>,
                    i64,
                ) = tx.query_row(
                    "SELECT request_hash, response_status, response_body, created_at
                     FROM idempotency_keys WHERE tenant = ?1 AND key = ?2",
                    params![tenant, key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?;
                let now = now_ms();
                let stale = created_at < now - ms(IDEMPOTENCY_IN_FLIGHT_TIMEOUT);
                let answer = idempotency_answer(&hash, stored_hash, status, body, stale);
                if answer == Idempotency::New {
                    tx.execute(
                        "UPDATE idempotency_keys SET created_at = ?3 WHERE tenant = ?1 AND key = ?2",
                        params![tenant, key, now],
                    )?;
                }
                answer
            };
            tx.commit()?;
            Ok(answer)
        })
        .await
    }

    pub async fn complete_idempotent(
        &self,
        tenant: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StateError> {
        let args = [tenant, key].map(str::to_string);
        let response = response.clone();
        self.with(move |c| {
            let [tenant, key] = args;
            let n = c.execute(
                "UPDATE idempotency_keys SET response_status = ?3, response_body = ?4,
                        completed_at = ?5
                 WHERE tenant = ?1 AND key = ?2",
                params![
                    tenant,
                    key,
                    i64::from(response.status),
                    response.body,
                    now_ms()
                ],
            )?;
            if n == 0 {
                return Err(StateError::NotFound(format!("idempotency key {key:?}")).into());
            }
            Ok(())
        })
        .await
    }

    pub async fn abandon_idempotent(&self, tenant: &str, key: &str) -> Result<(), StateError> {
        let args = [tenant, key].map(str::to_string);
        self.with(move |c| {
            let [tenant, key] = args;
            c.execute(
                "DELETE FROM idempotency_keys
                 WHERE tenant = ?1 AND key = ?2 AND response_status IS NULL",
                params![tenant, key],
            )?;
            Ok(())
        })
        .await
    }
}

/// What a repeated key means. `stale`: the first request has been in flight longer than
/// [`IDEMPOTENCY_IN_FLIGHT_TIMEOUT`] (its server died): the repeat takes the key over.
pub(crate) fn idempotency_answer(
    hash: &str,
    stored_hash: String,
    status: Option<i64>,
    body: Option<String>,
    stale: bool,
) -> Idempotency {
    if stored_hash != hash {
        return Idempotency::Mismatch;
    }
    match status {
        None if stale => Idempotency::New,
        None => Idempotency::InFlight,
        Some(status) => Idempotency::Done(StoredResponse {
            status: u16::try_from(status).unwrap_or(500),
            body: body.unwrap_or_default(),
        }),
    }
}

pub(crate) fn check_final(id: RunId, status: RunStatus) -> Result<(), StateError> {
    if status.is_final() {
        Ok(())
    } else {
        Err(StateError::InvalidTransition {
            run: id,
            message: format!(
                "a run finishes as succeeded, partial, failed or cancelled, not {status}"
            ),
        })
    }
}

pub(crate) fn run_not_found(id: RunId) -> StateError {
    StateError::NotFound(format!("run {id}"))
}

/// Why a worker's update of a running run matched nothing.
pub(crate) fn lease_problem(id: RunId, worker: &str, current: Option<Run>) -> StateError {
    let Some(run) = current else {
        return run_not_found(id);
    };
    let why = if run.status != RunStatus::Running {
        format!("the run is {}", run.status)
    } else {
        format!(
            "worker {} holds it now",
            run.worker.as_deref().unwrap_or("?")
        )
    };
    StateError::LeaseLost {
        run: id,
        worker: worker.to_string(),
        why,
    }
}

pub(crate) fn start_problem(id: RunId, current: Option<Run>) -> StateError {
    match current {
        None => run_not_found(id),
        Some(run) => StateError::InvalidTransition {
            run: id,
            message: format!("it is {}, not queued", run.status),
        },
    }
}

/// Queues a run, or returns the sync's queued run, inside the caller's transaction.
fn create_run_in(c: &Connection, new: &NewRun) -> SqResult<CreatedRun> {
    let queued = one(
        c,
        &format!(
            "SELECT {} FROM runs WHERE tenant = ?1 AND sync = ?2 AND status = 'queued'",
            rows::RUN_COLS
        ),
        params![new.tenant, new.sync],
        |r: &Row<'_>| rows::run(r),
    )?;
    if let Some(run) = queued {
        return Ok(CreatedRun {
            run,
            created: false,
        });
    }
    let run = one(
        c,
        &format!(
            "INSERT INTO runs (tenant, sync, kind, trigger, status, created_at)
             VALUES (?1, ?2, ?3, ?4, 'queued', ?5) RETURNING {}",
            rows::RUN_COLS
        ),
        params![
            new.tenant,
            new.sync,
            new.kind.as_str(),
            new.trigger.as_str(),
            now_ms()
        ],
        |r: &Row<'_>| rows::run(r),
    )?
    .ok_or_else(|| StateError::Corrupt("INSERT .. RETURNING gave no row".into()))?;
    Ok(CreatedRun { run, created: true })
}

fn get_run(c: &Connection, id: RunId) -> SqResult<Option<Run>> {
    one(
        c,
        &format!("SELECT {} FROM runs WHERE id = ?1", rows::RUN_COLS),
        params![id],
        |r: &Row<'_>| rows::run(r),
    )
}

fn lease_lost(c: &Connection, id: RunId, worker: &str) -> SqResult<StateError> {
    Ok(lease_problem(id, worker, get_run(c, id)?))
}

fn not_startable(c: &Connection, id: RunId) -> SqResult<StateError> {
    Ok(start_problem(id, get_run(c, id)?))
}

fn insert_event(
    c: &Connection,
    tenant: &str,
    topic: &str,
    payload: &serde_json::Value,
) -> SqResult<i64> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO outbox (tenant, topic, payload, created_at) VALUES (?1, ?2, ?3, ?4)
         RETURNING id",
    )?;
    Ok(
        stmt.query_row(params![tenant, topic, json_text(payload), now_ms()], |r| {
            r.get(0)
        })?,
    )
}

fn open_blocking(path: &Path) -> SqResult<Connection> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            StateError::Config(format!(
                "cannot create the state store's folder {}: {e}",
                dir.display()
            ))
        })?;
    }
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), journal_mode = %mode, "state store is not in WAL mode");
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    migrate_blocking(&mut conn, path)?;
    Ok(conn)
}

fn migrate_blocking(conn: &mut Connection, path: &Path) -> SqResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(VERSION_TABLE)?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    if current > LATEST {
        return Err(StateError::SchemaTooNew {
            found: current,
            known: LATEST,
            location: path.display().to_string(),
        }
        .into());
    }
    for m in migrate::SQLITE.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sql).map_err(|e| StateError::Migration {
            version: m.version,
            name: m.name,
            location: path.display().to_string(),
            message: e.to_string(),
        })?;
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, now_ms()],
        )?;
        tracing::info!(path = %path.display(), version = m.version, name = m.name, "state store migrated");
    }
    tx.commit()?;
    Ok(())
}

impl DeadLetters for SqliteStore {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), DlqError> {
        Ok(self.dlq_put(letters).await?)
    }

    async fn pending(&self, tenant: &str, sync: &str) -> Result<Vec<DeadLetter>, DlqError> {
        Ok(self.dlq_pending(tenant, sync).await?)
    }

    async fn resolve(&self, tenant: &str, sync: &str, keys: &[String]) -> Result<(), DlqError> {
        Ok(self.dlq_resolve(tenant, sync, keys).await?)
    }
}
