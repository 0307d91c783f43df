//! What ebb asks the source database in SQL: the publication, the captured tables, their
//! columns and keys, non-built-in types, slot lag. Everything runs on replication connections
//! (`replication=database` sessions accept SQL), so TLS and authentication are the ones of
//! ebb-postgres.

use std::collections::HashMap;

use ebb_postgres::Lsn;
use ebb_postgres::replication::{QueryResult, ReplicationConnection};
use ebb_postgres::types::{CustomType, PgType, TypeRegistry};

use crate::changes::TableColumn;
use crate::error::CdcError;

/// `'text'` with quotes doubled.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"name"` with quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table as `schema.table` quoted for SQL.
pub fn qualified(table: &str) -> String {
    match table.split_once('.') {
        Some((s, t)) => format!("{}.{}", ident(s), ident(t)),
        None => ident(table),
    }
}

/// `schema.table`, with `public` when no schema is written.
pub fn normalize(table: &str) -> String {
    if table.contains('.') {
        table.to_string()
    } else {
        format!("public.{table}")
    }
}

pub(crate) async fn rows(
    conn: &mut ReplicationConnection,
    sql: &str,
) -> Result<QueryResult, CdcError> {
    Ok(conn
        .simple_query(sql)
        .await?
        .into_iter()
        .rev()
        .find(|r| !r.columns.is_empty())
        .unwrap_or_default())
}

/// A captured table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// `schema.table`.
    pub name: String,
    /// Its oid.
    pub oid: u32,
    /// Columns in order, with the key marked.
    pub columns: Vec<TableColumn>,
    /// Pages, for splitting an initial copy into ctid ranges.
    pub pages: u64,
}

/// Makes sure the publication exists: creates it for `tables` when allowed, checks it
/// otherwise. Returns the tables it publishes (`schema.table`).
pub async fn ensure_publication(
    conn: &mut ReplicationConnection,
    name: &str,
    tables: &[String],
    create: bool,
) -> Result<Vec<String>, CdcError> {
    let exists = !rows(
        conn,
        &format!(
            "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = {}",
            literal(name)
        ),
    )
    .await?
    .rows
    .is_empty();
    if !exists {
        if !create {
            return Err(CdcError::Config(format!(
                "publication {name:?} does not exist: create it (`CREATE PUBLICATION {} FOR TABLE ...`) or set `publication: {{create: true}}`",
                ident(name)
            )));
        }
        let list: Vec<String> = tables.iter().map(|t| qualified(t)).collect();
        conn.simple_query(&format!(
            "CREATE PUBLICATION {} FOR TABLE {}",
            ident(name),
            list.join(", ")
        ))
        .await?;
        tracing::info!(
            publication = name,
            tables = list.len(),
            "publication created"
        );
    }
    let published = rows(
        conn,
        &format!(
            "SELECT schemaname || '.' || tablename FROM pg_catalog.pg_publication_tables WHERE pubname = {} ORDER BY 1",
            literal(name)
        ),
    )
    .await?;
    let published: Vec<String> = published
        .rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    for t in tables {
        if !published.contains(t) {
            return Err(CdcError::Config(format!(
                "table {t} is not in publication {name:?}: run `ALTER PUBLICATION {} ADD TABLE {}`",
                ident(name),
                qualified(t)
            )));
        }
    }
    Ok(if tables.is_empty() {
        published
    } else {
        tables.to_vec()
    })
}

/// The non-built-in types of the database (enums, arrays, domains, others).
pub async fn type_registry(conn: &mut ReplicationConnection) -> Result<TypeRegistry, CdcError> {
    let r = rows(
        conn,
        "SELECT t.oid, t.typname, t.typtype, t.typelem, t.typbasetype, t.typtypmod, t.typcategory \
         FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
    )
    .await?;
    let mut registry = TypeRegistry::new();
    for row in &r.rows {
        let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let Ok(oid) = get(0).parse::<u32>() else {
            continue;
        };
        let name = get(1);
        let element: u32 = get(3).parse().unwrap_or(0);
        let ty = match (get(2).as_str(), get(6).as_str()) {
            ("e", _) => CustomType::Enum { name },
            ("d", _) => CustomType::Domain {
                name,
                base: get(4).parse().unwrap_or(0),
                base_modifier: get(5).parse().unwrap_or(-1),
            },
            (_, "A") if element != 0 => CustomType::Array { name, element },
            _ => CustomType::Other { name },
        };
        registry.insert(oid, ty);
    }
    Ok(registry)
}

/// The tables' columns and keys: the primary key, else the replica identity index, else
/// every column.
pub async fn describe_tables(
    conn: &mut ReplicationConnection,
    tables: &[String],
    registry: &TypeRegistry,
) -> Result<Vec<TableInfo>, CdcError> {
    let mut out = Vec::new();
    for table in tables {
        let r = rows(
            conn,
            &format!(
                "SELECT c.oid, pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::bigint AS relpages \
                 FROM pg_catalog.pg_class c WHERE c.oid = to_regclass({})",
                literal(&qualified(table))
            ),
        )
        .await?;
        let Some(oid) = r.get(0, "oid").and_then(|o| o.parse::<u32>().ok()) else {
            return Err(CdcError::Config(format!("table {table} does not exist")));
        };
        let pages: u64 = r
            .get(0, "relpages")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let cols = rows(
            conn,
            &format!(
                "SELECT a.attname, a.atttypid, a.atttypmod, \
                   coalesce((SELECT a.attnum = ANY(i.indkey) FROM pg_catalog.pg_index i \
                     WHERE i.indrelid = a.attrelid AND (i.indisprimary OR i.indisreplident) \
                     ORDER BY i.indisprimary DESC LIMIT 1), false) AS is_key \
                 FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped \
                   AND a.attgenerated = '' \
                 ORDER BY a.attnum"
            ),
        )
        .await?;
        let columns = cols
            .rows
            .iter()
            .map(|row| {
                let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
                TableColumn {
                    name: get(0),
                    ty: PgType::resolve(
                        get(1).parse().unwrap_or(0),
                        get(2).parse().unwrap_or(-1),
                        registry,
                    ),
                    is_key: get(3) == "t",
                }
            })
            .collect();
        out.push(TableInfo {
            name: table.clone(),
            oid,
            columns,
            pages,
        });
    }
    Ok(out)
}

/// The key columns of each table, by name.
pub fn key_columns(tables: &[TableInfo]) -> HashMap<String, Vec<String>> {
    tables
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.columns
                    .iter()
                    .filter(|c| c.is_key)
                    .map(|c| c.name.clone())
                    .collect(),
            )
        })
        .collect()
}

/// The slot's row in `pg_replication_slots` with its lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotLag {
    /// Whether a consumer streams from it.
    pub active: bool,
    /// `reserved`, `extended`, `unreserved`, `lost`.
    pub wal_status: Option<String>,
    /// What the consumer confirmed.
    pub confirmed_flush_lsn: Option<Lsn>,
    /// WAL the slot holds: the current WAL position minus `confirmed_flush_lsn`.
    pub lag_bytes: Option<u64>,
}

/// The slot's state and lag, `None` if there is no such slot.
pub async fn slot_lag(
    conn: &mut ReplicationConnection,
    slot: &str,
) -> Result<Option<SlotLag>, CdcError> {
    let r = rows(
        conn,
        &format!(
            "SELECT active, wal_status, confirmed_flush_lsn, \
               (pg_catalog.pg_current_wal_lsn() - confirmed_flush_lsn)::bigint AS lag \
             FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
            literal(slot)
        ),
    )
    .await?;
    if r.rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(SlotLag {
        active: r.get(0, "active") == Some("t"),
        wal_status: r.get(0, "wal_status").map(str::to_owned),
        confirmed_flush_lsn: r.get(0, "confirmed_flush_lsn").and_then(|l| l.parse().ok()),
        lag_bytes: r
            .get(0, "lag")
            .and_then(|l| l.parse::<i64>().ok())
            .map(|l| l.max(0) as u64),
    }))
}
