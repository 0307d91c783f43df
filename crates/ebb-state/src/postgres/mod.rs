//! The Postgres backend: the state store that several `ebb serve` workers share.
//!
//! Everything lives in one schema (default `ebb_state`); each pooled connection starts with
//! `search_path` set to it, so the SQL is unqualified. Times come from the database's clock
//! (`now()`), so workers on machines whose clocks drift still agree on when a lease ends.
//!
//! - **Claiming**: `SELECT .. FOR UPDATE SKIP LOCKED LIMIT 1` picks the oldest claimable run
//!   (queued with no running sibling, or running with an expired lease) and the same
//!   statement marks it running: two workers never get the same run, and neither waits for
//!   the other.
//! - **Outbox order**: a transaction that writes events first takes a transaction-scoped
//!   advisory lock on the tenant, so a tenant's event ids commit in increasing order and a
//!   consumer replaying "after id N" can never skip an event that commits late.
//! - **Schedules**: `fire_schedule` advances `schedules.last_due_at` with
//!   `UPDATE .. WHERE last_due_at < $due`: of concurrent callers, the first takes the row
//!   lock and the others, re-checking the condition on the committed row, match nothing.

mod pool;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ebb_delivery::{DeadLetter, DeadLetters, DlqError};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};

use crate::StateError;
use crate::migrate::{self, LATEST, VERSION_TABLE};
use crate::model::*;
use crate::redact::redact;
use crate::rows::{self, Cols};
use crate::sqlite::{check_final, idempotency_answer, lease_problem, run_not_found, start_problem};
use crate::token;
use pool::Pool;

/// The schema when `state: {type: postgres}` names none.
pub const DEFAULT_SCHEMA: &str = "ebb_state";
/// Connections per store.
const POOL_SIZE: usize = 8;
/// The database clock, in Unix milliseconds.
const NOW: &str = "(extract(epoch from now()) * 1000)::bigint";
/// First key of the outbox's advisory locks (`pg_advisory_xact_lock(class, hashtext(tenant))`).
const OUTBOX_LOCK_CLASS: i32 = 0x6562;

/// The Postgres state store. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Arc<Pool>,
    schema: String,
}

impl Cols for Row {
    fn i64(&self, i: usize) -> Result<i64, StateError> {
        self.try_get(i).map_err(corrupt)
    }
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, StateError> {
        self.try_get(i).map_err(corrupt)
    }
    fn text(&self, i: usize) -> Result<String, StateError> {
        self.try_get(i).map_err(corrupt)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StateError> {
        self.try_get(i).map_err(corrupt)
    }
}

fn corrupt(e: tokio_postgres::Error) -> StateError {
    StateError::Corrupt(e.to_string())
}

/// A column list with JSON columns as text.
fn sel(list: &str) -> String {
    rows::cols(list, |c| format!("{c}::text"))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

fn limit_plus_one(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Checks a schema name: ebb quotes it, but a name that needs quoting is almost always a
/// typo, so only plain identifiers are accepted.
fn valid_schema(schema: &str) -> Result<(), StateError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StateError::Config(format!(
            "state.schema {schema:?} is not a plain Postgres identifier; use lower-case \
             letters, digits and _ (default {DEFAULT_SCHEMA})"
        )))
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db` or `host=.. dbname=..`),
    /// creates `schema` if needed and migrates it.
    pub async fn open(url: &str, schema: Option<&str>) -> Result<PgStore, StateError> {
        let schema = schema.unwrap_or(DEFAULT_SCHEMA).to_string();
        valid_schema(&schema)?;
        let config = tokio_postgres::Config::from_str(url).map_err(|e| {
            // The URL may hold a password: never echo it.
            StateError::Config(format!(
                "the postgres state store url is not a valid connection string ({e}); write \
                 postgres://user:password@host:port/database or host=... dbname=..."
            ))
        })?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(StateError::Config(
                "the postgres state store url asks for sslmode=require, but the state store's \
                 connections do not speak TLS yet; use sslmode=prefer or disable, or a local \
                 TLS proxy"
                    .into(),
            ));
        }
        let setup = format!("SET search_path TO \"{schema}\"; SET TimeZone = 'UTC'");
        let store = PgStore {
            pool: Arc::new(Pool::new(config, POOL_SIZE, setup)),
            schema,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// `postgres user@host:port/db schema ebb_state`, for messages.
    pub fn location(&self) -> String {
        format!("{} schema {}", self.pool.target(), self.schema)
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn err(&self, source: tokio_postgres::Error) -> StateError {
        StateError::Postgres {
            target: self.location(),
            source,
        }
    }

    async fn migrate(&self) -> Result<(), StateError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let lock_key = format!("ebb_state.migrate:{}", self.schema);
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock_key])
            .await
            .map_err(|e| self.err(e))?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{0}\"; SET LOCAL search_path TO \"{0}\"; {VERSION_TABLE}",
            self.schema
        ))
        .await
        .map_err(|e| self.err(e))?;
        let current: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await
            .map_err(|e| self.err(e))?
            .get(0);
        if current > LATEST {
            return Err(StateError::SchemaTooNew {
                found: current,
                known: LATEST,
                location: self.location(),
            });
        }
        for m in migrate::POSTGRES.iter().filter(|m| m.version > current) {
            tx.batch_execute(m.sql)
                .await
                .map_err(|e| StateError::Migration {
                    version: m.version,
                    name: m.name,
                    location: self.location(),
                    message: e
                        .as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_string()),
                })?;
            tx.execute(
                &format!(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, {NOW})"
                ),
                &[&m.version, &m.name],
            )
            .await
            .map_err(|e| self.err(e))?;
            tracing::info!(state_store = %self.location(), version = m.version, name = m.name, "state store migrated");
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64, StateError> {
        let row = self
            .one_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await?;
        Ok(row.get(0))
    }

    async fn one_row(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, StateError> {
        let client = self.pool.get().await?;
        client.query_one(sql, params).await.map_err(|e| self.err(e))
    }

    async fn all<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: impl Fn(&Row) -> Result<T, StateError>,
    ) -> Result<Vec<T>, StateError> {
        let client = self.pool.get().await?;
        let rows = client.query(sql, params).await.map_err(|e| self.err(e))?;
        rows.iter().map(f).collect()
    }

    async fn opt<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: impl Fn(&Row) -> Result<T, StateError>,
    ) -> Result<Option<T>, StateError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(sql, params)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(f).transpose()
    }

    async fn get_run_on(
        &self,
        c: &impl GenericClient,
        id: RunId,
    ) -> Result<Option<Run>, StateError> {
        let row = c
            .query_opt(
                &format!("SELECT {} FROM runs WHERE id = $1", rows::RUN_COLS),
                &[&id],
            )
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(rows::run).transpose()
    }

    async fn insert_event(
        &self,
        c: &impl GenericClient,
        tenant: &str,
        topic: &str,
        payload: &serde_json::Value,
    ) -> Result<i64, StateError> {
        c.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&OUTBOX_LOCK_CLASS, &tenant],
        )
        .await
        .map_err(|e| self.err(e))?;
        let row = c
            .query_one(
                &format!(
                    "INSERT INTO outbox (tenant, topic, payload, created_at)
                     VALUES ($1, $2, $3::text::jsonb, {NOW}) RETURNING id"
                ),
                &[&tenant, &topic, &payload.to_string()],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.get(0))
    }

    // ---- runs ----------------------------------------------------------------------

    pub async fn create_run(&self, new: &NewRun) -> Result<CreatedRun, StateError> {
        let client = self.pool.get().await?;
        self.create_run_on(&*client, new).await
    }

    /// Queues a run, or returns the sync's queued run, on `c` (a transaction or not).
    async fn create_run_on(
        &self,
        c: &impl GenericClient,
        new: &NewRun,
    ) -> Result<CreatedRun, StateError> {
        // A queued run can be claimed between the INSERT and the SELECT; then try again.
        for _ in 0..10 {
            let inserted = c
                .query_opt(
                    &format!(
                        "INSERT INTO runs (tenant, sync, kind, trigger, status, created_at)
                         VALUES ($1, $2, $3, $4, 'queued', {NOW})
                         ON CONFLICT (tenant, sync) WHERE status = 'queued' DO NOTHING
                         RETURNING {}",
                        rows::RUN_COLS
                    ),
                    &[
                        &new.tenant,
                        &new.sync,
                        &new.kind.as_str(),
                        &new.trigger.as_str(),
                    ],
                )
                .await
                .map_err(|e| self.err(e))?;
            if let Some(row) = inserted {
                return Ok(CreatedRun {
                    run: rows::run(&row)?,
                    created: true,
                });
            }
            let queued = c
                .query_opt(
                    &format!(
                        "SELECT {} FROM runs WHERE tenant = $1 AND sync = $2 AND status = 'queued'",
                        rows::RUN_COLS
                    ),
                    &[&new.tenant, &new.sync],
                )
                .await
                .map_err(|e| self.err(e))?;
            if let Some(row) = queued {
                return Ok(CreatedRun {
                    run: rows::run(&row)?,
                    created: false,
                });
            }
        }
        Err(StateError::Task(format!(
            "could not queue a run of {}/{}: its queued run kept changing; try again",
            new.tenant, new.sync
        )))
    }

    pub async fn start_run(
        &self,
        id: RunId,
        worker: &str,
        lease: Duration,
    ) -> Result<Run, StateError> {
        let client = self.pool.get().await?;
        let updated = client
            .query_opt(
                &format!(
                    "UPDATE runs SET status = 'running', worker = $2, lease_expires_at = {NOW} + $3,
                            started_at = COALESCE(started_at, {NOW}), attempts = attempts + 1
                     WHERE id = $1 AND status = 'queued' RETURNING {}",
                    rows::RUN_COLS
                ),
                &[&id, &worker, &ms(lease)],
            )
            .await;
        match updated {
            Ok(Some(row)) => rows::run(&row),
            Ok(None) => Err(start_problem(id, self.get_run_on(&*client, id).await?)),
            Err(e) if is_unique_violation(&e) => Err(StateError::InvalidTransition {
                run: id,
                message: "another run of its sync is running; it stays queued".into(),
            }),
            Err(e) => Err(self.err(e)),
        }
    }

    pub async fn claim_next_run(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Run>, StateError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "WITH candidate AS (
                 SELECT id FROM runs r
                 WHERE (r.status = 'queued' AND NOT EXISTS (
                            SELECT 1 FROM runs x
                            WHERE x.tenant = r.tenant AND x.sync = r.sync
                              AND x.status = 'running'))
                    OR (r.status = 'running' AND r.lease_expires_at < {NOW})
                 ORDER BY r.id
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE runs SET status = 'running', worker = $1, lease_expires_at = {NOW} + $2,
                    started_at = COALESCE(started_at, {NOW}), attempts = attempts + 1
             WHERE id = (SELECT id FROM candidate)
             RETURNING {}",
            rows::RUN_COLS
        );
        // Two workers can both see a sync's queued run as free while the other's claim of
        // its sibling is uncommitted; the unique index refuses the second, which looks again.
        let mut tries = 0;
        loop {
            match client.query_opt(&sql, &[&worker, &ms(lease)]).await {
                Ok(row) => return row.as_ref().map(rows::run).transpose(),
                Err(e) if is_unique_violation(&e) && tries < 10 => tries += 1,
                Err(e) => return Err(self.err(e)),
            }
        }
    }

    pub async fn heartbeat(
        &self,
        id: RunId,
        worker: &str,
        lease: Duration,
    ) -> Result<Run, StateError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE runs SET lease_expires_at = {NOW} + $3
                     WHERE id = $1 AND status = 'running' AND worker = $2 RETURNING {}",
                    rows::RUN_COLS
                ),
                &[&id, &worker, &ms(lease)],
            )
            .await
            .map_err(|e| self.err(e))?;
        match row {
            Some(row) => rows::run(&row),
            None => Err(lease_problem(
                id,
                worker,
                self.get_run_on(&*client, id).await?,
            )),
        }
    }

    pub async fn record_progress(
        &self,
        id: RunId,
        worker: &str,
        counts: &RunCounts,
    ) -> Result<Run, StateError> {
        let k = counts;
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE runs SET planned = $3, inserted = $4, updated = $5, deleted = $6,
                            accepted = $7, rejected = $8, retried = $9, skipped_bad_keys = $10
                     WHERE id = $1 AND status = 'running' AND worker = $2 RETURNING {}",
                    rows::RUN_COLS
                ),
                &[
                    &id,
                    &worker,
                    &k.planned,
                    &k.inserted,
                    &k.updated,
                    &k.deleted,
                    &k.accepted,
                    &k.rejected,
                    &k.retried,
                    &k.skipped_bad_keys,
                ],
            )
            .await
            .map_err(|e| self.err(e))?;
        match row {
            Some(row) => rows::run(&row),
            None => Err(lease_problem(
                id,
                worker,
                self.get_run_on(&*client, id).await?,
            )),
        }
    }

    pub async fn release_run(&self, id: RunId, worker: &str) -> Result<(), StateError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                &format!(
                    "UPDATE runs SET lease_expires_at = {NOW} - 1
                     WHERE id = $1 AND status = 'running' AND worker = $2"
                ),
                &[&id, &worker],
            )
            .await
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(lease_problem(
                id,
                worker,
                self.get_run_on(&*client, id).await?,
            ));
        }
        Ok(())
    }

    pub async fn finish_run_then(
        &self,
        id: RunId,
        worker: &str,
        outcome: &RunOutcome,
        then: &[NewRun],
    ) -> Result<(Run, Vec<CreatedRun>), StateError> {
        check_final(id, outcome.status)?;
        let k = &outcome.counts;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE runs SET status = $3, planned = $4, inserted = $5, updated = $6,
                            deleted = $7, accepted = $8, rejected = $9, retried = $10,
                            skipped_bad_keys = $11, error = $12, finished_at = {NOW},
                            lease_expires_at = NULL
                     WHERE id = $1 AND status = 'running' AND worker = $2 RETURNING {}",
                    rows::RUN_COLS
                ),
                &[
                    &id,
                    &worker,
                    &outcome.status.as_str(),
                    &k.planned,
                    &k.inserted,
                    &k.updated,
                    &k.deleted,
                    &k.accepted,
                    &k.rejected,
                    &k.retried,
                    &k.skipped_bad_keys,
                    &outcome.error,
                ],
            )
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = row else {
            return Err(lease_problem(id, worker, self.get_run_on(&tx, id).await?));
        };
        let run = rows::run(&row)?;
        let mut queued = Vec::new();
        if run.status == RunStatus::Succeeded {
            for new in then {
                queued.push(self.create_run_on(&tx, new).await?);
            }
        }
        self.insert_event(
            &tx,
            &run.tenant,
            RUN_FINISHED,
            &rows::run_finished_payload(&run),
        )
        .await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok((run, queued))
    }

    pub async fn cancel_run(&self, id: RunId, reason: Option<&str>) -> Result<Run, StateError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE runs SET status = 'cancelled', error = $2, finished_at = {NOW},
                            lease_expires_at = NULL
                     WHERE id = $1 AND status IN ('queued', 'running') RETURNING {}",
                    rows::RUN_COLS
                ),
                &[&id, &reason],
            )
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = row else {
            let current = self
                .get_run_on(&tx, id)
                .await?
                .ok_or_else(|| run_not_found(id))?;
            return Err(StateError::InvalidTransition {
                run: id,
                message: format!("it is already {}", current.status),
            });
        };
        let run = rows::run(&row)?;
        self.insert_event(
            &tx,
            &run.tenant,
            RUN_FINISHED,
            &rows::run_finished_payload(&run),
        )
        .await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(run)
    }

    pub async fn get_run(&self, id: RunId) -> Result<Option<Run>, StateError> {
        let client = self.pool.get().await?;
        self.get_run_on(&*client, id).await
    }

    pub async fn latest_run(&self, tenant: &str, sync: &str) -> Result<Option<Run>, StateError> {
        self.opt(
            &format!(
                "SELECT {} FROM runs WHERE tenant = $1 AND sync = $2 ORDER BY id DESC LIMIT 1",
                rows::RUN_COLS
            ),
            &[&tenant, &sync],
            rows::run,
        )
        .await
    }

    pub async fn list_runs(
        &self,
        filter: &RunFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Run>, StateError> {
        let after = rows::id_cursor(cursor)?;
        let status = filter.status.map(RunStatus::as_str);
        let items = self
            .all(
                &format!(
                    "SELECT {} FROM runs
                     WHERE ($1::text IS NULL OR tenant = $1::text)
                       AND ($2::text IS NULL OR sync = $2::text)
                       AND ($3::text IS NULL OR status = $3::text)
                       AND ($4::bigint IS NULL OR id < $4::bigint)
                     ORDER BY id DESC LIMIT $5",
                    rows::RUN_COLS
                ),
                &[
                    &filter.tenant,
                    &filter.sync,
                    &status,
                    &after,
                    &limit_plus_one(limit),
                ],
                rows::run,
            )
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
        let sample = sample.map(|s| redact(s).to_string());
        let message = crate::redact::mask_email(message).unwrap_or_else(|| message.to_string());
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO run_logs (run_id, at, level, message, sample)
                     VALUES ($1, {NOW}, $2, $3, $4::text::jsonb) RETURNING id"
                ),
                &[&run_id, &level.as_str(), &message, &sample],
            )
            .await;
        match row {
            Ok(row) => Ok(row.get(0)),
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(run_not_found(run_id))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    pub async fn run_log(&self, run_id: RunId) -> Result<Vec<LogEntry>, StateError> {
        self.all(
            &format!(
                "SELECT {} FROM run_logs WHERE run_id = $1 ORDER BY id",
                sel(rows::LOG_COLS)
            ),
            &[&run_id],
            rows::log_entry,
        )
        .await
    }

    // ---- schedules and settings ------------------------------------------------------

    pub async fn fire_schedule(
        &self,
        new: &NewRun,
        due_at: i64,
    ) -> Result<Option<CreatedRun>, StateError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        // A concurrent first sighting waits for the other's INSERT and then does nothing; a
        // concurrent UPDATE waits for the row lock and then sees `last_due_at = due_at`
        // (READ COMMITTED re-checks the WHERE on the newest row): one caller advances it.
        let first_seen = tx
            .execute(
                &format!(
                    "INSERT INTO schedules (tenant, sync, last_due_at, updated_at)
                     VALUES ($1, $2, $3, {NOW}) ON CONFLICT (tenant, sync) DO NOTHING"
                ),
                &[&new.tenant, &new.sync, &due_at],
            )
            .await
            .map_err(|e| self.err(e))?;
        let fired = if first_seen == 1 {
            None
        } else {
            let advanced = tx
                .execute(
                    &format!(
                        "UPDATE schedules SET last_due_at = $3, updated_at = {NOW}
                         WHERE tenant = $1 AND sync = $2 AND last_due_at < $3"
                    ),
                    &[&new.tenant, &new.sync, &due_at],
                )
                .await
                .map_err(|e| self.err(e))?;
            if advanced == 1 {
                Some(self.create_run_on(&tx, new).await?)
            } else {
                None
            }
        };
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(fired)
    }

    pub async fn set_paused(
        &self,
        tenant: &str,
        sync: &str,
        paused: bool,
    ) -> Result<(), StateError> {
        let client = self.pool.get().await?;
        client
            .execute(
                &format!(
                    "INSERT INTO sync_settings (tenant, sync, paused, updated_at)
                     VALUES ($1, $2, $3, {NOW})
                     ON CONFLICT (tenant, sync) DO UPDATE SET paused = excluded.paused,
                         updated_at = excluded.updated_at"
                ),
                &[&tenant, &sync, &paused],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub async fn paused_syncs(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<(String, String)>, StateError> {
        self.all(
            "SELECT tenant, sync FROM sync_settings
             WHERE paused AND ($1::text IS NULL OR tenant = $1::text)
             ORDER BY tenant, sync",
            &[&tenant],
            |r| Ok((r.text(0)?, r.text(1)?)),
        )
        .await
    }

    // ---- metrics -------------------------------------------------------------------

    pub async fn run_stats(&self) -> Result<Vec<(String, RunStatus, i64)>, StateError> {
        self.all(
            "SELECT tenant, status, COUNT(*) FROM runs
             GROUP BY tenant, status ORDER BY tenant COLLATE \"C\", status COLLATE \"C\"",
            &[],
            |r| Ok((r.text(0)?, r.text(1)?.parse()?, r.i64(2)?)),
        )
        .await
    }

    pub async fn dlq_depths(&self) -> Result<Vec<(String, String, i64)>, StateError> {
        self.all(
            "SELECT tenant, sync, COUNT(*) FROM dead_letters
             GROUP BY tenant, sync ORDER BY tenant COLLATE \"C\", sync",
            &[],
            |r| Ok((r.text(0)?, r.text(1)?, r.i64(2)?)),
        )
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
        let (after_sync, after_key) = rows::letter_cursor(cursor)?.unzip();
        let items = self
            .all(
                &format!(
                    "SELECT {} FROM dead_letters
                     WHERE tenant = $1 AND ($2::text IS NULL OR sync = $2::text)
                       AND ($3::text IS NULL OR (sync, record_key) > ($3::text, $4::text))
                     ORDER BY sync, record_key LIMIT $5",
                    sel(rows::LETTER_COLS)
                ),
                &[
                    &tenant,
                    &sync,
                    &after_sync,
                    &after_key,
                    &limit_plus_one(limit),
                ],
                rows::letter,
            )
            .await?;
        Ok(rows::page(items, limit, |l| {
            rows::make_letter_cursor(&l.sync, &l.record.key)
        }))
    }

    pub async fn dlq_count(&self, tenant: &str, sync: Option<&str>) -> Result<u64, StateError> {
        let row = self
            .one_row(
                "SELECT COUNT(*) FROM dead_letters
                 WHERE tenant = $1 AND ($2::text IS NULL OR sync = $2::text)",
                &[&tenant, &sync],
            )
            .await?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    pub async fn dlq_put(&self, letters: Vec<DeadLetter>) -> Result<(), StateError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let stmt = tx
            .prepare(
                "INSERT INTO dead_letters (tenant, sync, record_key, record, reason, field,
                                           failures, first_failed_at, last_failed_at)
                 VALUES ($1, $2, $3, $4::text::jsonb, $5, $6, $7, $8, $9)
                 ON CONFLICT (tenant, sync, record_key) DO UPDATE SET
                     record = excluded.record, reason = excluded.reason, field = excluded.field,
                     failures = dead_letters.failures + excluded.failures,
                     last_failed_at = excluded.last_failed_at",
            )
            .await
            .map_err(|e| self.err(e))?;
        for l in &letters {
            let record = serde_json::to_string(&l.record).map_err(|e| {
                StateError::Corrupt(format!("record {:?} cannot be encoded: {e}", l.record.key))
            })?;
            let failures = i64::from(l.failures);
            let first = i64::try_from(l.first_failed_at).unwrap_or(i64::MAX);
            let last = i64::try_from(l.last_failed_at).unwrap_or(i64::MAX);
            tx.execute(
                &stmt,
                &[
                    &l.tenant,
                    &l.sync,
                    &l.record.key,
                    &record,
                    &l.reason,
                    &l.field,
                    &failures,
                    &first,
                    &last,
                ],
            )
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    pub async fn dlq_pending(
        &self,
        tenant: &str,
        sync: &str,
    ) -> Result<Vec<DeadLetter>, StateError> {
        self.all(
            &format!(
                "SELECT {} FROM dead_letters WHERE tenant = $1 AND sync = $2
                 ORDER BY record_key",
                sel(rows::LETTER_COLS)
            ),
            &[&tenant, &sync],
            rows::letter,
        )
        .await
    }

    pub async fn dlq_resolve(
        &self,
        tenant: &str,
        sync: &str,
        keys: &[String],
    ) -> Result<(), StateError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM dead_letters
                 WHERE tenant = $1 AND sync = $2 AND record_key = ANY($3)",
                &[&tenant, &sync, &keys],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    // ---- outbox --------------------------------------------------------------------

    pub async fn append_event(
        &self,
        tenant: &str,
        topic: &str,
        payload: &serde_json::Value,
    ) -> Result<i64, StateError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let id = self.insert_event(&tx, tenant, topic, payload).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(id)
    }

    pub async fn append_events(
        &self,
        tenant: &str,
        topic: &str,
        payloads: &[serde_json::Value],
    ) -> Result<Vec<i64>, StateError> {
        let texts: Vec<String> = payloads.iter().map(|p| p.to_string()).collect();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&OUTBOX_LOCK_CLASS, &tenant],
        )
        .await
        .map_err(|e| self.err(e))?;
        let rows = tx
            .query(
                &format!(
                    "INSERT INTO outbox (tenant, topic, payload, created_at)
                     SELECT $1, $2, p::jsonb, {NOW}
                     FROM unnest($3::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n
                     RETURNING id"
                ),
                &[&tenant, &topic, &texts],
            )
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    pub async fn events_after(
        &self,
        tenant: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Event>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.all(
            &format!(
                "SELECT {} FROM outbox WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3",
                sel(rows::EVENT_COLS)
            ),
            &[&tenant, &after.unwrap_or(0), &limit],
            rows::event,
        )
        .await
    }

    pub async fn unrelayed(&self, limit: usize) -> Result<Vec<Event>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.all(
            &format!(
                "SELECT {} FROM outbox WHERE relayed_at IS NULL ORDER BY id LIMIT $1",
                sel(rows::EVENT_COLS)
            ),
            &[&limit],
            rows::event,
        )
        .await
    }

    pub async fn claim_events(
        &self,
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Event>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        // Claims take turns, so two relayers never both see the other's claim as absent.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.outbox_relay'))",
            &[],
        )
        .await
        .map_err(|e| self.err(e))?;
        let other: bool = tx
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM outbox WHERE relayed_at IS NULL
                         AND relay_until > {NOW} AND relay_worker <> $1)"
                ),
                &[&worker],
            )
            .await
            .map_err(|e| self.err(e))?
            .get(0);
        if other {
            tx.commit().await.map_err(|e| self.err(e))?;
            return Ok(Vec::new());
        }
        let rows = tx
            .query(
                &format!(
                    "UPDATE outbox SET relay_worker = $1, relay_until = {NOW} + $3
                     WHERE id IN (SELECT id FROM outbox WHERE relayed_at IS NULL
                                  ORDER BY id LIMIT $2)
                     RETURNING {}",
                    sel(rows::EVENT_COLS)
                ),
                &[&worker, &limit, &ms(lease)],
            )
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        let mut events = rows
            .iter()
            .map(rows::event)
            .collect::<Result<Vec<_>, _>>()?;
        events.sort_by_key(|e| e.id);
        Ok(events)
    }

    pub async fn mark_relayed(&self, ids: &[i64]) -> Result<(), StateError> {
        let client = self.pool.get().await?;
        client
            .execute(
                &format!(
                    "UPDATE outbox SET relayed_at = {NOW} WHERE id = ANY($1) AND relayed_at IS NULL"
                ),
                &[&ids],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    // ---- checkpoints ---------------------------------------------------------------

    pub async fn get_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StateError> {
        self.opt(
            &format!(
                "SELECT {} FROM checkpoints WHERE name = $1",
                sel(rows::CHECKPOINT_COLS)
            ),
            &[&name],
            rows::checkpoint,
        )
        .await
    }

    pub async fn put_checkpoint(
        &self,
        name: &str,
        lsn: u64,
        detail: &serde_json::Value,
    ) -> Result<(), StateError> {
        let client = self.pool.get().await?;
        client
            .execute(
                &format!(
                    "INSERT INTO checkpoints (name, lsn, detail, updated_at)
                     VALUES ($1, $2, $3::text::jsonb, {NOW})
                     ON CONFLICT (name) DO UPDATE SET lsn = excluded.lsn,
                         detail = excluded.detail, updated_at = excluded.updated_at"
                ),
                &[&name, &(lsn as i64), &detail.to_string()],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
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
        let row = self
            .one_row(
                &format!(
                    "INSERT INTO audit_log (at, tenant, actor, action, target, details)
                     VALUES ({NOW}, $1, $2, $3, $4, $5::text::jsonb) RETURNING id"
                ),
                &[&tenant, &actor, &action, &target, &details.to_string()],
            )
            .await?;
        Ok(row.get(0))
    }

    pub async fn audit_list(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AuditEntry>, StateError> {
        let after = rows::id_cursor(cursor)?;
        let items = self
            .all(
                &format!(
                    "SELECT {} FROM audit_log
                     WHERE tenant = $1 AND ($2::bigint IS NULL OR id < $2::bigint)
                     ORDER BY id DESC LIMIT $3",
                    sel(rows::AUDIT_COLS)
                ),
                &[&tenant, &after, &limit_plus_one(limit)],
                rows::audit_entry,
            )
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
        let row = self
            .one_row(
                &format!(
                    "INSERT INTO api_tokens (tenant, token_hash, scopes, created_at)
                     VALUES ($1, $2, $3::text::jsonb, {NOW}) RETURNING id"
                ),
                &[
                    &tenant,
                    &token::hash(&plaintext),
                    &token::scopes_json(scopes),
                ],
            )
            .await?;
        Ok(NewToken {
            id: row.get(0),
            plaintext,
        })
    }

    pub async fn verify_token(&self, plaintext: &str) -> Result<Option<TokenGrant>, StateError> {
        self.opt(
            "SELECT id, tenant, scopes::text FROM api_tokens
             WHERE token_hash = $1 AND revoked_at IS NULL",
            &[&token::hash(plaintext)],
            |r| {
                Ok(TokenGrant {
                    id: r.i64(0)?,
                    tenant: r.text(1)?,
                    scopes: rows::scopes(&r.text(2)?)?,
                })
            },
        )
        .await
    }

    pub async fn revoke_token(&self, tenant: &str, id: i64) -> Result<bool, StateError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                &format!(
                    "UPDATE api_tokens SET revoked_at = {NOW}
                     WHERE id = $1 AND tenant = $2 AND revoked_at IS NULL"
                ),
                &[&id, &tenant],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    pub async fn list_tokens(&self, tenant: &str) -> Result<Vec<TokenInfo>, StateError> {
        self.all(
            &format!(
                "SELECT {} FROM api_tokens WHERE tenant = $1 ORDER BY id",
                sel(rows::TOKEN_COLS)
            ),
            &[&tenant],
            rows::token_info,
        )
        .await
    }

    // ---- idempotency keys ----------------------------------------------------------

    pub async fn begin_idempotent(
        &self,
        tenant: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Idempotency, StateError> {
        let client = self.pool.get().await?;
        // A key abandoned between the INSERT and the SELECT is free again: try once more.
        for _ in 0..3 {
            let inserted = client
                .execute(
                    &format!(
                        "INSERT INTO idempotency_keys (tenant, key, request_hash, created_at)
                         VALUES ($1, $2, $3, {NOW}) ON CONFLICT (tenant, key) DO NOTHING"
                    ),
                    &[&tenant, &key, &request_hash],
                )
                .await
                .map_err(|e| self.err(e))?;
            if inserted == 1 {
                return Ok(Idempotency::New);
            }
            let row = client
                .query_opt(
                    &format!(
                        "SELECT request_hash, response_status, response_body, created_at,
                                created_at < {NOW} - $3
                         FROM idempotency_keys WHERE tenant = $1 AND key = $2"
                    ),
                    &[&tenant, &key, &ms(IDEMPOTENCY_IN_FLIGHT_TIMEOUT)],
                )
                .await
                .map_err(|e| self.err(e))?;
            let Some(r) = row else { continue };
            let answer = idempotency_answer(request_hash, r.get(0), r.get(1), r.get(2), r.get(4));
            if answer != Idempotency::New {
                return Ok(answer);
            }
            // Take the stale key over, unless another repeat just did.
            let created_at: i64 = r.get(3);
            let taken = client
                .execute(
                    &format!(
                        "UPDATE idempotency_keys SET created_at = {NOW}
                         WHERE tenant = $1 AND key = $2 AND created_at = $3
                           AND response_status IS NULL"
                    ),
                    &[&tenant, &key, &created_at],
                )
                .await
                .map_err(|e| self.err(e))?;
            if taken == 1 {
                return Ok(Idempotency::New);
            }
        }
        Ok(Idempotency::InFlight)
    }

    pub async fn complete_idempotent(
        &self,
        tenant: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StateError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                &format!(
                    "UPDATE idempotency_keys SET response_status = $3, response_body = $4,
                            completed_at = {NOW}
                     WHERE tenant = $1 AND key = $2"
                ),
                &[&tenant, &key, &i64::from(response.status), &response.body],
            )
            .await
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(StateError::NotFound(format!("idempotency key {key:?}")));
        }
        Ok(())
    }

    pub async fn abandon_idempotent(&self, tenant: &str, key: &str) -> Result<(), StateError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM idempotency_keys
                 WHERE tenant = $1 AND key = $2 AND response_status IS NULL",
                &[&tenant, &key],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

impl DeadLetters for PgStore {
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
