//! The Postgres warehouse: model SQL runs inside PostgreSQL (pushdown) and results stream
//! back as Arrow through binary `COPY (query) TO STDOUT`, decoded by `ebb-postgres` with the
//! same type mapping as CDC.
//!
//! - Models are `"<schema>"."<name>"` (schema from the warehouse config, default `public`);
//!   sources are `"<source's schema>"."<identifier>"`, the schema defaulting to the source's
//!   name and the identifier to the table's name (as in dbt).
//! - [`Warehouse::schema`] prepares the query (the server plans it, runs nothing) and maps
//!   each column's type oid and modifier, so `numeric(12,2)` is `Decimal128(12, 2)`.
//! - Views are replaced with `CREATE OR REPLACE VIEW`, or dropped and created again when
//!   their columns changed; tables are built as `<name>__ebb_new` and swapped in inside one
//!   transaction, so a failed run leaves the previous table in place.
//!
//! # Layout
//! - this file: [`PgWarehouse`] and its [`Warehouse`] implementation.
//! - `pool`: a small bounded connection pool.
//! - `schema`: output columns of a prepared statement → [`PgType`](ebb_postgres::types::PgType)
//!   → Arrow, and the COPY statement.
//! - `stream`: the COPY → record batch stream task.
//! - `error`: server errors (message, SQLSTATE, position, hint) as [`WarehouseError`]s.

mod error;
mod pool;
mod schema;
mod stream;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use arrow::datatypes::SchemaRef;
use datafusion::physical_plan::SendableRecordBatchStream;
use ebb_core::config::project::Materialized;
use tokio_postgres::error::SqlState;

use crate::{Materialization, Relation, SourceTable, Warehouse, WarehouseError, quote_ident};
use error::sql_error;
use pool::{Pool, PooledClient};

/// Connections when the config does not say.
pub const DEFAULT_POOL_SIZE: usize = 4;
/// Where models are created when the config does not say.
pub const DEFAULT_SCHEMA: &str = "public";
/// Suffix of the table a `table` model is built into before it replaces the old one.
const NEW_TABLE_SUFFIX: &str = "__ebb_new";

/// `(source, table)` → `(schema, table)` in the database.
type SourceNames = HashMap<(String, String), (String, String)>;

/// A PostgreSQL database where models run. Clones share the pool and the source list.
#[derive(Clone)]
pub struct PgWarehouse {
    pool: Arc<Pool>,
    /// Where models are created.
    schema: String,
    /// `(source, table)` → `(schema, table)` in the database, from `attach_sources`.
    sources: Arc<RwLock<SourceNames>>,
    /// The models' schema is known to exist.
    schema_ready: Arc<AtomicBool>,
}

impl std::fmt::Debug for PgWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWarehouse")
            .field("target", &self.pool.target())
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PgWarehouse {
    /// A warehouse on the database `url` names (`postgres://user:pw@host:port/db` or
    /// `host=.. user=.. dbname=..`). Connects lazily: a wrong address is reported by the
    /// first operation, a malformed URL here.
    pub fn open(
        url: &str,
        schema: Option<&str>,
        pool_size: Option<u32>,
    ) -> Result<PgWarehouse, WarehouseError> {
        let config = tokio_postgres::Config::from_str(url).map_err(|e| {
            // The URL may hold a password: never echo it.
            WarehouseError::Config(format!(
                "the postgres warehouse url is not a valid connection string ({e}); write \
                 postgres://user:password@host:port/database or host=... dbname=..."
            ))
        })?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(WarehouseError::Config(
                "the postgres warehouse url asks for sslmode=require, but ebb's warehouse \
                 connections do not speak TLS yet; use sslmode=prefer or disable, or a local \
                 TLS proxy"
                    .into(),
            ));
        }
        let size = pool_size.map_or(DEFAULT_POOL_SIZE, |n| n as usize);
        if size == 0 {
            return Err(WarehouseError::Config(
                "the postgres warehouse's pool_size is 0; use 1 or more (default 4)".into(),
            ));
        }
        Ok(PgWarehouse {
            pool: Arc::new(Pool::new(config, size)),
            schema: schema.unwrap_or(DEFAULT_SCHEMA).to_string(),
            sources: Arc::new(RwLock::new(HashMap::new())),
            schema_ready: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The schema models are created in.
    pub fn models_schema(&self) -> &str {
        &self.schema
    }

    /// `err` from a statement that holds `sql` after `offset` characters.
    fn error(&self, sql: Option<(&str, usize)>, err: &tokio_postgres::Error) -> WarehouseError {
        sql_error(self.pool.target(), sql, err)
    }

    fn model_sql(&self, name: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(name))
    }

    /// Creates the models' schema if it does not exist yet (once per warehouse).
    async fn ensure_schema(&self, conn: &PooledClient) -> Result<(), WarehouseError> {
        if self.schema_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let exists = conn
            .client()
            .query_opt(
                "select 1 from pg_catalog.pg_namespace where nspname = $1",
                &[&self.schema],
            )
            .await
            .map_err(|e| self.error(None, &e))?
            .is_some();
        if !exists {
            let sql = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&self.schema));
            conn.client()
                .batch_execute(&sql)
                .await
                .map_err(|e| self.error(None, &e))?;
        }
        self.schema_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Prepares `sql` on `conn` and describes its output.
    async fn describe(
        &self,
        conn: &PooledClient,
        sql: &str,
    ) -> Result<Vec<schema::OutputColumn>, WarehouseError> {
        Ok(schema::output_columns(&self.prepare(conn, sql).await?))
    }

    async fn prepare(
        &self,
        conn: &PooledClient,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, WarehouseError> {
        conn.client()
            .prepare(sql)
            .await
            .map_err(|e| self.error(Some((sql, 0)), &e))
    }

    /// The `COPY` that streams `sql`. A whole plain table (`select * from t`, the way syncs
    /// read a table model) is copied as `COPY t`, which PostgreSQL serves without the
    /// executor; anything else as `COPY (sql)`.
    async fn copy_sql(
        &self,
        conn: &PooledClient,
        sql: &str,
        statement: &tokio_postgres::Statement,
        columns: &[schema::OutputColumn],
    ) -> Result<String, WarehouseError> {
        let general = schema::copy_statement(sql, columns);
        let Some(table) = schema::whole_table(sql) else {
            return Ok(general);
        };
        let Some(oid) = statement.columns().first().and_then(|c| c.table_oid()) else {
            return Ok(general);
        };
        if columns.iter().any(|c| c.as_text)
            || statement
                .columns()
                .iter()
                .any(|c| c.table_oid() != Some(oid))
        {
            return Ok(general);
        }
        // Only an ordinary table without children: `COPY parent` would leave out the rows
        // of inheritance children that `select *` returns, and views cannot be copied.
        let plain = conn
            .client()
            .query_opt(
                "select 1 from pg_catalog.pg_class where oid = $1 and relkind = 'r' \
                 and not relhassubclass",
                &[&oid],
            )
            .await
            .map_err(|e| self.error(None, &e))?
            .is_some();
        Ok(if plain {
            format!("COPY {table} TO STDOUT (FORMAT binary)")
        } else {
            general
        })
    }

    async fn materialize_view(&self, name: &str, sql: &str) -> Result<(), WarehouseError> {
        let mut conn = self.pool.get().await?;
        self.ensure_schema(&conn).await?;
        let prefix = format!("CREATE OR REPLACE VIEW {} AS ", self.model_sql(name));
        let replace = format!("{prefix}{sql}");
        match conn.client().batch_execute(&replace).await {
            Ok(()) => return Ok(()),
            // The view's columns changed, or a table has the name: drop it and start over.
            Err(e)
                if matches!(
                    e.code(),
                    Some(c) if *c == SqlState::INVALID_TABLE_DEFINITION
                        || *c == SqlState::WRONG_OBJECT_TYPE
                        || *c == SqlState::FEATURE_NOT_SUPPORTED
                ) => {}
            Err(e) => return Err(self.error(Some((sql, prefix.chars().count())), &e)),
        }
        let tx = conn
            .client_mut()
            .transaction()
            .await
            .map_err(|e| self.error(None, &e))?;
        drop_existing(&tx, &self.schema, name)
            .await
            .map_err(|e| self.error(None, &e))?;
        let prefix = format!("CREATE VIEW {} AS ", self.model_sql(name));
        tx.batch_execute(&format!("{prefix}{sql}"))
            .await
            .map_err(|e| self.error(Some((sql, prefix.chars().count())), &e))?;
        tx.commit().await.map_err(|e| self.error(None, &e))?;
        Ok(())
    }

    async fn materialize_table(&self, name: &str, sql: &str) -> Result<u64, WarehouseError> {
        let mut conn = self.pool.get().await?;
        self.ensure_schema(&conn).await?;
        let new_table = self.model_sql(&format!("{name}{NEW_TABLE_SUFFIX}"));
        let tx = conn
            .client_mut()
            .transaction()
            .await
            .map_err(|e| self.error(None, &e))?;
        // A build that crashed before its swap may have left its table behind.
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {new_table}"))
            .await
            .map_err(|e| self.error(None, &e))?;
        let prefix = format!("CREATE TABLE {new_table} AS ");
        let rows = tx
            .execute(format!("{prefix}{sql}").as_str(), &[])
            .await
            .map_err(|e| self.error(Some((sql, prefix.chars().count())), &e))?;
        drop_existing(&tx, &self.schema, name)
            .await
            .map_err(|e| self.error(None, &e))?;
        let rename = format!("ALTER TABLE {new_table} RENAME TO {}", quote_ident(name));
        tx.batch_execute(&rename)
            .await
            .map_err(|e| self.error(None, &e))?;
        tx.commit().await.map_err(|e| self.error(None, &e))?;
        Ok(rows)
    }
}

/// One output column of a query, as [`PgWarehouse::columns`] describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PgColumn {
    pub name: String,
    /// The type as ebb maps it to Arrow (domains resolved to their base type).
    pub ty: ebb_postgres::types::PgType,
    /// The type's oid as the server reported it (tells `bpchar` from `text`).
    pub type_oid: u32,
    /// ebb reads this column as `::text` (it has no decoder for the binary form).
    pub as_text: bool,
}

/// A connection checked out of a [`PgWarehouse`]'s pool, for work that needs several
/// statements on one session (a transaction, staging tables). It goes back to the pool when
/// dropped.
#[derive(Debug)]
pub struct PgSession {
    conn: PooledClient,
    target: String,
}

impl PgSession {
    pub fn client(&self) -> &tokio_postgres::Client {
        self.conn.client()
    }

    pub fn client_mut(&mut self) -> &mut tokio_postgres::Client {
        self.conn.client_mut()
    }

    /// `err` from running `sql` as a [`WarehouseError`] carrying the server's message,
    /// SQLSTATE, position, detail and hint.
    pub fn error(&self, sql: Option<&str>, err: &tokio_postgres::Error) -> WarehouseError {
        sql_error(&self.target, sql.map(|s| (s, 0)), err)
    }

    /// Closes the connection instead of returning it to the pool (its state is unknown).
    pub fn discard(&mut self) {
        self.conn.discard();
    }
}

impl PgWarehouse {
    /// A connection of this warehouse for the caller's exclusive use.
    pub async fn session(&self) -> Result<PgSession, WarehouseError> {
        Ok(PgSession {
            conn: self.pool.get().await?,
            target: self.pool.target().to_string(),
        })
    }

    /// `user@host:port/dbname`, safe to print.
    pub fn target(&self) -> &str {
        self.pool.target()
    }

    /// The columns `sql` returns, with their Postgres types, without running it.
    pub async fn columns(&self, sql: &str) -> Result<Vec<PgColumn>, WarehouseError> {
        let sql = strip_statement_end(sql);
        let conn = self.pool.get().await?;
        let statement = self.prepare(&conn, sql).await?;
        let columns = schema::output_columns(&statement);
        Ok(columns
            .into_iter()
            .zip(statement.columns())
            .map(|(c, s)| PgColumn {
                name: c.name,
                ty: c.ty,
                type_oid: s.type_().oid(),
                as_text: c.as_text,
            })
            .collect())
    }
}

/// Drops whatever relation `schema.name` is (view, table, materialized view), and what
/// depends on it: a run re-creates dependent models after the models they read.
async fn drop_existing(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
    name: &str,
) -> Result<(), tokio_postgres::Error> {
    let row = tx
        .query_opt(
            "select c.relkind::text from pg_catalog.pg_class c \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = $2",
            &[&schema, &name],
        )
        .await?;
    let Some(row) = row else { return Ok(()) };
    let kind = match row.get::<_, String>(0).as_str() {
        "v" => "VIEW",
        "m" => "MATERIALIZED VIEW",
        "f" => "FOREIGN TABLE",
        _ => "TABLE",
    };
    tx.batch_execute(&format!(
        "DROP {kind} {}.{} CASCADE",
        quote_ident(schema),
        quote_ident(name)
    ))
    .await
}

/// Removes a trailing `;` so the SQL can be nested in `COPY (...)`.
fn strip_statement_end(sql: &str) -> &str {
    let mut s = sql.trim_end();
    while let Some(rest) = s.strip_suffix(';') {
        s = rest.trim_end();
    }
    s
}

impl Warehouse for PgWarehouse {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn relation_sql(&self, relation: &Relation) -> String {
        match relation {
            Relation::Model(name) => self.model_sql(name),
            Relation::Source { source, table } => {
                let sources = self.sources.read().unwrap_or_else(|e| e.into_inner());
                match sources.get(&(source.clone(), table.clone())) {
                    Some((schema, name)) => {
                        format!("{}.{}", quote_ident(schema), quote_ident(name))
                    }
                    None => format!("{}.{}", quote_ident(source), quote_ident(table)),
                }
            }
        }
    }

    async fn attach_sources(&self, tables: &[SourceTable]) -> Result<(), WarehouseError> {
        if tables.is_empty() {
            return Ok(());
        }
        let conn = self.pool.get().await?;
        let mut found = Vec::with_capacity(tables.len());
        for t in tables {
            let schema = t.schema.clone().unwrap_or_else(|| t.source.clone());
            let name = t.identifier.clone().unwrap_or_else(|| t.table.clone());
            if t.path.is_some() {
                tracing::warn!(
                    source = %t.source,
                    table = %t.table,
                    "`path` is for lake sources; the postgres warehouse reads {schema}.{name}"
                );
            }
            let exists = conn
                .client()
                .query_opt(
                    "select 1 from information_schema.tables \
                     where table_schema = $1 and table_name = $2",
                    &[&schema, &name],
                )
                .await
                .map_err(|e| self.error(None, &e))?
                .is_some();
            if !exists {
                return Err(WarehouseError::Source {
                    source_name: t.source.clone(),
                    table: t.table.clone(),
                    message: format!(
                        "table or view {}.{} does not exist in the postgres warehouse {} (or this \
                         user may not read it); create it, or point the source at it with \
                         `schema:` on the source or `identifier:` on the table in ebb.yml",
                        quote_ident(&schema),
                        quote_ident(&name),
                        self.pool.target()
                    ),
                });
            }
            found.push(((t.source.clone(), t.table.clone()), (schema, name)));
        }
        let mut sources = self.sources.write().unwrap_or_else(|e| e.into_inner());
        sources.extend(found);
        Ok(())
    }

    async fn query(&self, sql: &str) -> Result<SendableRecordBatchStream, WarehouseError> {
        let sql = strip_statement_end(sql);
        let conn = self.pool.get().await?;
        let statement = self.prepare(&conn, sql).await?;
        let columns = schema::output_columns(&statement);
        let copy_sql = self.copy_sql(&conn, sql, &statement, &columns).await?;
        drop(statement);
        let copy = conn
            .client()
            .copy_out(copy_sql.as_str())
            .await
            .map_err(|e| self.error(None, &e))?;
        let schema = schema::arrow_schema(&columns);
        Ok(stream::batch_stream(
            conn,
            copy,
            &columns,
            schema,
            self.pool.target().to_string(),
        ))
    }

    async fn schema(&self, sql: &str) -> Result<SchemaRef, WarehouseError> {
        let sql = strip_statement_end(sql);
        let conn = self.pool.get().await?;
        let columns = self.describe(&conn, sql).await?;
        Ok(schema::arrow_schema(&columns))
    }

    async fn materialize(
        &self,
        name: &str,
        sql: &str,
        how: Materialized,
    ) -> Result<Materialization, WarehouseError> {
        let sql = strip_statement_end(sql);
        match how {
            Materialized::Ephemeral => Ok(Materialization {
                rows: None,
                location: "ephemeral (inlined where it is used)".into(),
            }),
            Materialized::Parquet => Err(WarehouseError::Unsupported(format!(
                "model \"{name}\": a postgres warehouse keeps models as views or tables; use \
                 `materialized: table` (or run the model on a lake warehouse)"
            ))),
            Materialized::View => {
                self.materialize_view(name, sql).await?;
                Ok(Materialization {
                    rows: None,
                    location: format!("view {}", self.model_sql(name)),
                })
            }
            Materialized::Table => {
                let rows = self.materialize_table(name, sql).await?;
                Ok(Materialization {
                    rows: Some(rows),
                    location: format!("table {}", self.model_sql(name)),
                })
            }
        }
    }
}
