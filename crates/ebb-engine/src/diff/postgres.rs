//! The warehouse-native diff on PostgreSQL: the diff runs inside the warehouse and only the
//! changes leave it.
//!
//! Everything ebb keeps lives in the `ebb_state` schema of the warehouse:
//!
//! | object | what |
//! |---|---|
//! | `ebb_state.diff_snapshots` | one row per sync: version, parent, rows, key and mapped columns, commit time |
//! | `ebb_state."<sync>__snapshot"` | what the sync delivered: `_ebb_key` (primary key), `_ebb_hash`, the mapped columns |
//! | `ebb_state."<sync>__new"`, `__dups`, `__changes` | one run's staging (unlogged; dropped by the commit, replaced by the next run) |
//! | `ebb_state.ebb_v1_*` functions | pieces of the canonical encoding (`i128`, text, timestamps) |
//!
//! A run:
//! 1. **Stage**: `CREATE UNLOGGED TABLE … AS` the model's rows with `_ebb_key` (the same
//!    text as [`canonical::key_strings`]) and `_ebb_hash`, computed in SQL: the
//!    [`canonical`] encoding of the mapped columns, byte for byte the one the DataFusion
//!    engine hashes, digested with `sha256` (the first 8 bytes; Postgres has no xxh3). Rows
//!    with a NULL key part are deleted from staging and counted.
//! 2. **Bad keys**: duplicated keys are counted, sampled (in byte order, as DataFusion sorts)
//!    and left out on both sides.
//! 3. **Find changes** with a full outer join of staging and the snapshot on `_ebb_key`,
//!    inside Postgres, into `__changes`: inserts, deletes (with the last delivered image) and
//!    hash differences, with `_ebb_changed` from comparing each column's canonical encoding.
//! 4. **Emit**: only `__changes` is read out (binary COPY), into the same local staging file
//!    of ChangeBatches the DataFusion engine writes.
//! 5. **Commit**, in one transaction: the snapshot row of every accepted change is replaced
//!    (deletes removed), rejected keys keep their old row, the sync's version advances, and
//!    staging is dropped. A concurrent commit of the same sync is detected by the version.
//!
//! Snapshots of this engine hold a sha256-based digest, not xxh3: they are not read by the
//! DataFusion engine (switching engines re-creates the snapshot by a `full_resync` or a
//! `skip_initial_backfill`-style first run).

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt64Array};
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use ebb_core::change::{self, ChangeBatch, Key, Op};
use ebb_postgres::types::PgType;
use ebb_warehouse::Warehouse;
use ebb_warehouse::postgres::{PgColumn, PgSession, PgWarehouse};
use futures::StreamExt;

use super::{
    BadKeys, DiffOptions, DiffReport, DiffSpec, HASH, Manifest, arrow_err, canonical_columns,
    parquet_err, staging_dir, staging_properties,
};
use crate::EngineError;

/// The schema holding snapshots, staging and the encoding's functions.
pub const STATE_SCHEMA: &str = "ebb_state";
/// bpchar's type oid: its values keep their padding.
const BPCHAR_OID: u32 = 1042;

/// The SQL functions of the canonical encoding (version 1). Plain SQL expressions, so the
/// planner inlines them.
const FUNCTIONS: &str = r"
create or replace function ebb_state.ebb_v1_i64(v int8) returns bytea
language sql immutable parallel safe as $f$
  select case when v < 0 then '\xffffffffffffffff'::bytea else '\x0000000000000000'::bytea end
         || int8send(v)
$f$;
create or replace function ebb_state.ebb_v1_i128(u numeric) returns bytea
language sql immutable parallel safe as $f$
  select int8send((div(u, 18446744073709551616)
                   - case when mod(u, 18446744073709551616) < 0 then 1 else 0 end)::int8)
      || int8send((mod(u, 18446744073709551616)
                   + case when mod(u, 18446744073709551616) < 0 then 18446744073709551616 else 0 end
                   - case when mod(u, 18446744073709551616)
                               + case when mod(u, 18446744073709551616) < 0 then 18446744073709551616 else 0 end
                               >= 9223372036854775808
                          then 18446744073709551616 else 0 end)::int8)
$f$;
create or replace function ebb_state.ebb_v1_nanos(micros int8) returns bytea
language sql immutable parallel safe as $f$
  select case when micros between -9223372036854775 and 9223372036854775
              then ebb_state.ebb_v1_i64(micros * 1000)
              else ebb_state.ebb_v1_i128(micros::numeric * 1000) end
$f$;
create or replace function ebb_state.ebb_v1_text(tag bytea, b bytea) returns bytea
language sql immutable parallel safe as $f$
  select tag || int4send(length(b)) || b
$f$;
";

fn quote(name: &str) -> String {
    ebb_warehouse::quote_ident(name)
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The canonical encoding of column `c` (an SQL expression `expr`) as an SQL `bytea`
/// expression that is never NULL: byte for byte what [`super::canonical::encode_value`]
/// writes for the Arrow value ebb's COPY reader makes of it.
pub fn encoding_sql(c: &PgColumn, expr: &str) -> Result<String, EngineError> {
    let inner = if c.as_text {
        format!("ebb_state.ebb_v1_text('\\x05', textsend(({expr})::text))")
    } else {
        match &c.ty {
            PgType::Bool => {
                format!(
                    "case when {expr} then '\\x0101'::bytea when not {expr} then '\\x0100'::bytea end"
                )
            }
            PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid => {
                format!("'\\x02'::bytea || ebb_state.ebb_v1_i64(({expr})::int8)")
            }
            PgType::Float4 | PgType::Float8 => format!(
                "'\\x03'::bytea || case when {expr} = 0 then '\\x0000000000000000'::bytea \
                 when {expr} = 'NaN' then '\\x7ff8000000000000'::bytea \
                 else float8send(({expr})::float8) end"
            ),
            PgType::Decimal { precision, scale } => {
                let unscaled = format!("trunc({expr} * 1e{scale})");
                let value = if *precision <= 18 {
                    format!("ebb_state.ebb_v1_i64(({unscaled})::int8)")
                } else {
                    format!("ebb_state.ebb_v1_i128({unscaled})")
                };
                format!("'\\x04{:02x}'::bytea || {value}", *scale as u8)
            }
            PgType::Text if c.type_oid == BPCHAR_OID => {
                format!("ebb_state.ebb_v1_text('\\x05', bpcharsend({expr}))")
            }
            PgType::Text
            | PgType::NumericText
            | PgType::Json
            | PgType::Jsonb
            | PgType::Enum { .. }
            | PgType::Unknown { .. } => {
                format!("ebb_state.ebb_v1_text('\\x05', textsend(({expr})::text))")
            }
            PgType::Bytea => format!("ebb_state.ebb_v1_text('\\x06', {expr})"),
            PgType::Uuid => format!("'\\x0600000010'::bytea || uuid_send({expr})"),
            PgType::Date => format!(
                "'\\x07'::bytea || int4send(case when {expr} = 'infinity' then 2147483647 \
                 when {expr} = '-infinity' then -2147483648 \
                 else {expr} - date '1970-01-01' end)"
            ),
            PgType::Time => format!(
                "'\\x09'::bytea || int8send((extract(epoch from {expr}) * 1000000000)::int8)"
            ),
            PgType::Timestamp | PgType::TimestampTz => format!(
                "'\\x08'::bytea || ebb_state.ebb_v1_nanos(case when {expr} = 'infinity' then 9223372036854775807::int8 \
                 when {expr} = '-infinity' then -9223372036854775807::int8 - 1 \
                 else (extract(epoch from {expr}) * 1000000)::int8 end)"
            ),
            other => {
                return Err(EngineError::Diff(format!(
                    "mapped column \"{}\" has type {other}, which the warehouse-native diff cannot \
                     encode in SQL; cast it to text in the model, or set the sync's diff engine \
                     to datafusion",
                    c.name
                )));
            }
        }
    };
    Ok(format!("coalesce({inner}, '\\x00'::bytea)"))
}

/// The `_ebb_key` text of the key columns as an SQL expression: the same text as
/// [`super::canonical::key_strings`] (NULL when a part is NULL).
pub fn key_sql(keys: &[(&PgColumn, String)]) -> Result<String, EngineError> {
    let mut parts = Vec::new();
    for (c, expr) in keys {
        let unsupported = || {
            EngineError::Diff(format!(
                "key column \"{}\" has type {}, which the warehouse-native diff cannot key on; \
                 use an integer, text, uuid, date or boolean key (or a numeric one, alone), cast \
                 it to text in the model, or set the sync's diff engine to datafusion",
                c.name, c.ty
            ))
        };
        let (text, number) = if c.as_text {
            (format!("({expr})::text"), false)
        } else {
            match &c.ty {
                PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid => {
                    (format!("({expr})::text"), true)
                }
                PgType::Decimal { scale, .. } if keys.len() == 1 && *scale >= 0 => {
                    (format!("({expr})::text"), true)
                }
                PgType::Text if c.type_oid == BPCHAR_OID => {
                    (format!("convert_from(bpcharsend({expr}), 'UTF8')"), false)
                }
                PgType::Text
                | PgType::NumericText
                | PgType::Json
                | PgType::Jsonb
                | PgType::Enum { .. }
                | PgType::Bool
                | PgType::Date => (format!("({expr})::text"), false),
                PgType::Uuid => (format!("replace(({expr})::text, '-', '')"), false),
                _ => return Err(unsupported()),
            }
        };
        parts.push((text, number));
    }
    if parts.len() == 1 {
        return Ok(parts.remove(0).0);
    }
    let json: Vec<String> = parts
        .into_iter()
        .map(|(text, number)| {
            if number {
                text
            } else {
                format!("to_json({text})::text")
            }
        })
        .collect();
    Ok(format!("'[' || {} || ']'", json.join(" || ',' || ")))
}

/// The row hash over the encodings of the mapped columns (in canonical order).
fn hash_sql(encodings: &[String]) -> String {
    if encodings.is_empty() {
        return "substr(sha256(''::bytea), 1, 8)".into();
    }
    format!("substr(sha256({}), 1, 8)", encodings.join(" || "))
}

/// Table names of one sync inside `ebb_state`.
struct Tables {
    snapshot: String,
    new: String,
    dups: String,
    changes: String,
}

impl Tables {
    fn for_sync(sync: &str) -> Tables {
        // Postgres cuts names at 63 bytes: long sync names get a hash to stay unique.
        let base = if sync.len() <= 40 {
            sync.to_string()
        } else {
            let cut = (0..=30)
                .rev()
                .find(|i| sync.is_char_boundary(*i))
                .unwrap_or(0);
            format!(
                "{}_{:08x}",
                &sync[..cut],
                xxhash_rust::xxh3::xxh3_64(sync.as_bytes()) as u32
            )
        };
        let t = |suffix: &str| {
            format!(
                "{}.{}",
                quote(STATE_SCHEMA),
                quote(&format!("{base}__{suffix}"))
            )
        };
        Tables {
            snapshot: t("snapshot"),
            new: t("new"),
            dups: t("dups"),
            changes: t("changes"),
        }
    }
}

/// Why a commit stopped before its end (the transaction is rolled back).
enum CommitFailure {
    Sql(Option<String>, tokio_postgres::Error),
    /// Another run committed the sync since this diff read its version.
    Moved(Option<i64>),
}

/// A diff computed in Postgres, waiting for delivery and commit.
pub(super) struct PgDiff {
    warehouse: PgWarehouse,
    pub(super) spec: DiffSpec,
    pub(super) columns: Vec<String>,
    pub(super) staging: tempfile::TempDir,
    pub(super) report: DiffReport,
    pub(super) options: DiffOptions,
    base: Option<Manifest>,
    /// The mapped columns' SQL types, in canonical order.
    types: Vec<String>,
}

impl PgDiff {
    pub(super) fn changes_path(&self) -> std::path::PathBuf {
        self.staging.path().join("changes.parquet")
    }
}

fn wh(e: ebb_warehouse::WarehouseError) -> EngineError {
    EngineError::Warehouse(e)
}

async fn exec(s: &PgSession, sql: &str) -> Result<u64, EngineError> {
    s.client()
        .execute(sql, &[])
        .await
        .map_err(|e| wh(s.error(Some(sql), &e)))
}

async fn batch(s: &PgSession, sql: &str) -> Result<(), EngineError> {
    s.client()
        .batch_execute(sql)
        .await
        .map_err(|e| wh(s.error(Some(sql), &e)))
}

/// Creates `ebb_state`, its manifest table and the encoding's functions, once per
/// warehouse (an advisory lock keeps concurrent first runs apart).
async fn ensure_state(s: &mut PgSession) -> Result<(), EngineError> {
    let ready = s
        .client()
        .query_opt(
            "select 1 from pg_catalog.pg_proc p join pg_catalog.pg_namespace n \
             on n.oid = p.pronamespace where n.nspname = 'ebb_state' and p.proname = 'ebb_v1_text'",
            &[],
        )
        .await
        .map_err(|e| wh(s.error(None, &e)))?
        .is_some();
    if ready {
        return Ok(());
    }
    let sql = format!(
        "begin;
         select pg_advisory_xact_lock(7406151129);
         create schema if not exists ebb_state;
         create table if not exists ebb_state.diff_snapshots (
             sync text primary key,
             version bigint not null,
             parent bigint,
             rows bigint not null,
             key_columns text[] not null,
             columns text[] not null,
             committed_at timestamptz not null default now()
         );
         {FUNCTIONS}
         commit;"
    );
    s.client().batch_execute(&sql).await.map_err(|e| {
        let err = wh(s.error(None, &e));
        EngineError::Diff(format!(
            "cannot set up the `ebb_state` schema in the postgres warehouse (ebb keeps the \
             warehouse-native diff's snapshots there; the user needs CREATE on the database): {err}"
        ))
    })?;
    Ok(())
}

/// Sets the warehouse up for the warehouse-native diff: the `ebb_state` schema, its
/// `diff_snapshots` table and the encoding's functions (idempotent; [`super::diff_model`]
/// does it on first use). The warehouse user needs `CREATE` on the database, or an
/// administrator runs this once and grants the user `CREATE, USAGE` on `ebb_state`.
pub async fn prepare_warehouse(warehouse: &PgWarehouse) -> Result<(), EngineError> {
    let mut s = warehouse.session().await.map_err(wh)?;
    ensure_state(&mut s).await
}

/// The columns of a table in `ebb_state` with their SQL types; empty if it does not exist.
async fn table_columns(
    s: &PgSession,
    qualified: &str,
) -> Result<Vec<(String, String)>, EngineError> {
    let rows = s
        .client()
        .query(
            "select a.attname::text, format_type(a.atttypid, a.atttypmod) \
             from pg_catalog.pg_attribute a \
             where a.attrelid = to_regclass($1) and a.attnum > 0 and not a.attisdropped \
             order by a.attnum",
            &[&qualified],
        )
        .await
        .map_err(|e| wh(s.error(None, &e)))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

async fn current_manifest(s: &PgSession, sync: &str) -> Result<Option<Manifest>, EngineError> {
    let row = s
        .client()
        .query_opt(
            "select version, parent, rows, key_columns, columns, \
             to_char(committed_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             from ebb_state.diff_snapshots where sync = $1",
            &[&sync],
        )
        .await
        .map_err(|e| wh(s.error(None, &e)))?;
    Ok(row.map(|r| Manifest {
        sync: sync.to_string(),
        version: r.get::<_, i64>(0) as u64,
        parent: r.get::<_, Option<i64>>(1).map(|v| v as u64),
        rows: r.get::<_, i64>(2) as u64,
        key_columns: r.get(3),
        columns: r.get(4),
        committed_at: r.get(5),
    }))
}

/// Diffs the rows of `model_sql` against the sync's snapshot, inside the Postgres warehouse.
pub(super) async fn diff(
    warehouse: &PgWarehouse,
    model_sql: &str,
    spec: DiffSpec,
    options: DiffOptions,
) -> Result<PgDiff, EngineError> {
    let columns = canonical_columns(&spec, &options)?;
    let staging = staging_dir(&options)?;
    let model_columns = warehouse.columns(model_sql).await.map_err(wh)?;
    let find = |name: &str| model_columns.iter().find(|c| c.name == name);
    let mut keys = Vec::new();
    for k in &spec.key_columns {
        let c = find(k).ok_or_else(|| {
            EngineError::Diff(format!(
                "the key column \"{k}\" of sync \"{}\" is not in the model's result",
                spec.sync
            ))
        })?;
        keys.push((c, format!("q.{}", quote(k))));
    }
    let mut encodings = Vec::new();
    for name in &columns {
        let c = find(name).ok_or_else(|| {
            EngineError::Diff(format!(
                "sync \"{}\" maps column \"{name}\", which the model does not return",
                spec.sync
            ))
        })?;
        encodings.push(encoding_sql(c, &format!("q.{}", quote(name)))?);
    }
    let key = key_sql(&keys)?;
    let hash = hash_sql(&encodings);

    let mut s = warehouse.session().await.map_err(wh)?;
    ensure_state(&mut s).await?;
    let t = Tables::for_sync(&spec.sync);
    let base = current_manifest(&s, &spec.sync).await?;
    let mut report = DiffReport {
        base_version: base.as_ref().map(|m| m.version),
        ..DiffReport::default()
    };

    // 1. Stage the model's rows with key and hash.
    batch(
        &s,
        &format!(
            "drop table if exists {}; drop table if exists {}; drop table if exists {}",
            t.new, t.dups, t.changes
        ),
    )
    .await?;
    let cols_q: Vec<String> = columns.iter().map(|c| format!("q.{}", quote(c))).collect();
    let select_cols = if cols_q.is_empty() {
        String::new()
    } else {
        format!(", {}", cols_q.join(", "))
    };
    let model = super::strip_statement_end(model_sql);
    let stage = format!(
        "create unlogged table {} as select {key} as _ebb_key, {hash} as _ebb_hash{select_cols} \
         from (\n{model}\n) as q",
        t.new
    );
    report.rows_read = exec(&s, &stage).await?;
    report.bad_keys.null_key_rows =
        exec(&s, &format!("delete from {} where _ebb_key is null", t.new)).await?;
    let types: Vec<String> = {
        let staged = table_columns(&s, &t.new).await?;
        columns
            .iter()
            .map(|c| {
                staged
                    .iter()
                    .find(|(n, _)| n == c)
                    .map(|(_, ty)| ty.clone())
                    .unwrap_or_else(|| "text".into())
            })
            .collect()
    };

    // 2. Duplicate keys.
    batch(
        &s,
        &format!(
            "create unlogged table {} as select _ebb_key, count(*) as n from {} \
             group by _ebb_key having count(*) > 1; analyze {}",
            t.dups, t.new, t.new
        ),
    )
    .await?;
    let row = s
        .client()
        .query_one(
            &format!("select count(*), coalesce(sum(n), 0)::int8 from {}", t.dups),
            &[],
        )
        .await
        .map_err(|e| wh(s.error(None, &e)))?;
    report.bad_keys = BadKeys {
        null_key_rows: report.bad_keys.null_key_rows,
        duplicate_keys: row.get::<_, i64>(0) as u64,
        duplicate_rows: row.get::<_, i64>(1) as u64,
        sample_duplicates: Vec::new(),
    };
    if report.bad_keys.duplicate_keys > 0 {
        let rows = s
            .client()
            .query(
                &format!(
                    "select _ebb_key from {} order by _ebb_key collate \"C\" limit 5",
                    t.dups
                ),
                &[],
            )
            .await
            .map_err(|e| wh(s.error(None, &e)))?;
        report.bad_keys.sample_duplicates = rows.iter().map(|r| r.get(0)).collect();
    }
    let clean_rows =
        report.rows_read - report.bad_keys.null_key_rows - report.bad_keys.duplicate_rows;

    // 3. The changes, found by a full outer join inside Postgres.
    let skip_all = base.is_none() && options.skip_initial_backfill;
    let snapshot_cols = table_columns(&s, &t.snapshot).await?;
    let old_source = if snapshot_cols.is_empty() {
        // First run (or the snapshot table was dropped): an empty old side.
        let mut cols = vec![
            "null::text as _ebb_key".to_string(),
            "null::bytea as _ebb_hash".to_string(),
        ];
        for (c, ty) in columns.iter().zip(&types) {
            cols.push(format!("null::{ty} as {}", quote(c)));
        }
        format!("(select {} where false)", cols.join(", "))
    } else {
        let mut cols = vec!["s._ebb_key".to_string(), "s._ebb_hash".to_string()];
        for (c, ty) in columns.iter().zip(&types) {
            // A column the snapshot lacks (or kept with another type) reads as NULL.
            if snapshot_cols.iter().any(|(n, t)| n == c && t == ty) {
                cols.push(format!("s.{}", quote(c)));
            } else {
                cols.push(format!("null::{ty} as {}", quote(c)));
            }
        }
        format!("(select {} from {} s)", cols.join(", "), t.snapshot)
    };
    let filter = if skip_all {
        "false".to_string()
    } else if options.full_resync {
        "true".to_string()
    } else {
        "(n._ebb_key is null) or (o._ebb_key is null) or (n._ebb_hash <> o._ebb_hash)".to_string()
    };
    let mut changed = Vec::new();
    let mut values = Vec::new();
    for (name, c) in columns.iter().zip(columns.iter().map(|n| find(n))) {
        let c = c.ok_or_else(|| EngineError::Diff(format!("column {name} vanished")))?;
        let q = quote(name);
        changed.push(format!(
            "case when ({}) <> ({}) then {} end",
            encoding_sql(c, &format!("n.{q}"))?,
            encoding_sql(c, &format!("o.{q}"))?,
            literal(name)
        ));
        values.push(format!(
            "case when n._ebb_key is null then o.{q} else n.{q} end as {q}"
        ));
    }
    let changed = if changed.is_empty() {
        "array[]::text[]".to_string()
    } else {
        format!("array_remove(array[{}], null)", changed.join(", "))
    };
    let values = if values.is_empty() {
        String::new()
    } else {
        format!(", {}", values.join(", "))
    };
    let changes = format!(
        "create unlogged table {changes} as \
         select coalesce(n._ebb_key, o._ebb_key) as _ebb_key, \
                (case when o._ebb_key is null then 1 when n._ebb_key is null then 3 else 2 end)::int2 as _ebb_op, \
                n._ebb_hash as _ebb_hash, \
                case when n._ebb_key is not null and o._ebb_key is not null then {changed} end as _ebb_changed\
                {values} \
         from (select * from {new} x where not exists (select 1 from {dups} d where d._ebb_key = x._ebb_key)) n \
         full outer join \
              (select * from {old_source} y where not exists (select 1 from {dups} d where d._ebb_key = y._ebb_key)) o \
         on n._ebb_key = o._ebb_key \
         where {filter}",
        changes = t.changes,
        new = t.new,
        dups = t.dups,
    );
    batch(&s, &changes).await?;
    if !options.full_resync {
        // Same values under a different hash (the mapping gained an empty column): nothing
        // to send, as in the DataFusion engine.
        exec(
            &s,
            &format!(
                "delete from {} where _ebb_op = 2 and cardinality(_ebb_changed) = 0",
                t.changes
            ),
        )
        .await?;
    }
    drop(s);

    // 4. Read the changes out into ChangeBatches.
    let mut pending = PgDiff {
        warehouse: warehouse.clone(),
        spec,
        columns,
        staging,
        report,
        options,
        base,
        types,
    };
    pending
        .emit(model_columns_in_order(&model_columns, &pending.columns))
        .await?;
    if skip_all {
        pending.report.marked_synced = Some(clean_rows);
        pending.report.unchanged = clean_rows;
    } else {
        pending.report.unchanged =
            clean_rows.saturating_sub(pending.report.inserts + pending.report.updates);
    }
    Ok(pending)
}

fn model_columns_in_order<'a>(all: &'a [PgColumn], names: &[String]) -> Vec<&'a PgColumn> {
    names
        .iter()
        .filter_map(|n| all.iter().find(|c| &c.name == n))
        .collect()
}

impl PgDiff {
    /// Streams `__changes` out of the warehouse into the local staging file of ChangeBatches.
    async fn emit(&mut self, mapped: Vec<&PgColumn>) -> Result<(), EngineError> {
        let t = Tables::for_sync(&self.spec.sync);
        let mut select = vec![
            "_ebb_key".to_string(),
            "_ebb_op".to_string(),
            "_ebb_changed".to_string(),
        ];
        select.extend(self.columns.iter().map(|c| quote(c)));
        let mut stream = self
            .warehouse
            .query(&format!("select {} from {}", select.join(", "), t.changes))
            .await
            .map_err(wh)?;
        let entity_fields: Vec<Field> = mapped.iter().map(|c| c.ty.field(&c.name, true)).collect();
        let entity_schema: SchemaRef = Arc::new(Schema::new(entity_fields));
        let schema = super::changes_schema(&entity_schema);
        let file = File::create(self.changes_path())
            .map_err(|e| EngineError::Diff(format!("staging: {e}")))?;
        let mut writer =
            ArrowWriter::try_new(file, Arc::clone(&schema), Some(staging_properties()))
                .map_err(parquet_err)?;
        let mut seq = 0u64;
        while let Some(b) = stream.next().await {
            let b = b.map_err(|e| EngineError::Warehouse(e.into()))?;
            let rows = b.num_rows();
            if rows == 0 {
                continue;
            }
            let keys = b.column(0).as_string::<i32>();
            let op_codes = b.column(1).as_primitive::<arrow::datatypes::Int16Type>();
            let changed_lists = b.column(2).as_list::<i32>();
            let mut ops = Vec::with_capacity(rows);
            let mut out_keys = Vec::with_capacity(rows);
            let mut changed = Vec::with_capacity(rows);
            for row in 0..rows {
                let op = match op_codes.value(row) {
                    3 => Op::Delete,
                    _ if self.options.full_resync => Op::Upsert,
                    1 => Op::Insert,
                    _ => Op::Update,
                };
                match op {
                    Op::Insert => self.report.inserts += 1,
                    Op::Delete => self.report.deletes += 1,
                    Op::Update | Op::Upsert => self.report.updates += 1,
                }
                ops.push(op);
                out_keys.push(Key::single(keys.value(row)));
                changed.push(if op == Op::Update && !changed_lists.is_null(row) {
                    let names = changed_lists.value(row);
                    let names = names.as_string::<i32>();
                    Some(
                        (0..names.len())
                            .map(|i| names.value(i).to_string())
                            .collect(),
                    )
                } else {
                    None
                });
            }
            let seqs: Vec<u64> = (seq..seq + rows as u64).collect();
            seq += rows as u64;
            let entity =
                RecordBatch::try_new(Arc::clone(&entity_schema), b.columns()[3..].to_vec())
                    .map_err(arrow_err)?;
            let cb = ChangeBatch::from_parts(&ops, &out_keys, &seqs, &changed, &entity)
                .map_err(arrow_err)?;
            let mut cols = cb.into_batch().columns().to_vec();
            cols.push(Arc::new(UInt64Array::new_null(rows)));
            let staged = RecordBatch::try_new(Arc::clone(&schema), cols).map_err(arrow_err)?;
            writer.write(&staged).map_err(parquet_err)?;
        }
        writer.close().map_err(parquet_err)?;
        Ok(())
    }

    /// Commits in one transaction: accepted changes replace their snapshot rows, rejected
    /// keys keep theirs, the version advances, staging is dropped.
    pub(super) async fn commit(self, rejected: &HashSet<String>) -> Result<Manifest, EngineError> {
        let t = Tables::for_sync(&self.spec.sync);
        let mut s = self.warehouse.session().await.map_err(wh)?;
        let sync = self.spec.sync.clone();
        let tx = s
            .client_mut()
            .transaction()
            .await
            .map_err(|e| EngineError::Diff(format!("begin: {e}")))?;
        let run =
            async |sql: &str| -> Result<u64, tokio_postgres::Error> { tx.execute(sql, &[]).await };
        let result: Result<Manifest, CommitFailure> = async {
            // The version this diff was based on must still be current.
            let current: Option<i64> = tx
                .query_opt(
                    "select version from ebb_state.diff_snapshots where sync = $1 for update",
                    &[&sync],
                )
                .await
                .map_err(|e| CommitFailure::Sql(None, e))?
                .map(|r| r.get(0));
            if current.map(|v| v as u64) != self.base.as_ref().map(|m| m.version) {
                return Err(CommitFailure::Moved(current));
            }
            // The snapshot table, with exactly the mapped columns of this run.
            let existing = {
                let rows = tx
                    .query(
                        "select a.attname::text, format_type(a.atttypid, a.atttypmod) \
                         from pg_catalog.pg_attribute a \
                         where a.attrelid = to_regclass($1) and a.attnum > 0 and not a.attisdropped",
                        &[&t.snapshot],
                    )
                    .await
                    .map_err(|e| CommitFailure::Sql(None, e))?;
                rows.iter()
                    .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                    .collect::<Vec<_>>()
            };
            if existing.is_empty() {
                let mut cols = vec!["_ebb_key text primary key".to_string(), "_ebb_hash bytea not null".to_string()];
                for (c, ty) in self.columns.iter().zip(&self.types) {
                    cols.push(format!("{} {ty}", quote(c)));
                }
                let sql = format!("create table {} ({})", t.snapshot, cols.join(", "));
                run(&sql).await.map_err(|e| CommitFailure::Sql(Some(sql.clone()), e))?;
            } else {
                for (name, ty) in &existing {
                    if name == change::KEY || name == HASH {
                        continue;
                    }
                    let keep = self
                        .columns
                        .iter()
                        .zip(&self.types)
                        .any(|(c, t)| c == name && t == ty);
                    if !keep {
                        let sql = format!("alter table {} drop column {}", t.snapshot, quote(name));
                        run(&sql).await.map_err(|e| CommitFailure::Sql(Some(sql.clone()), e))?;
                    }
                }
                for (c, ty) in self.columns.iter().zip(&self.types) {
                    if !existing.iter().any(|(n, t)| n == c && t == ty) {
                        let sql = format!("alter table {} add column {} {ty}", t.snapshot, quote(c));
                        run(&sql).await.map_err(|e| CommitFailure::Sql(Some(sql.clone()), e))?;
                    }
                }
            }
            let cols: String = self
                .columns
                .iter()
                .map(|c| format!(", {}", quote(c)))
                .collect();
            let (removed, added) = if self.base.is_none() && self.options.skip_initial_backfill {
                let sql = format!(
                    "insert into {snap} (_ebb_key, _ebb_hash{cols}) \
                     select _ebb_key, _ebb_hash{cols} from {new} x \
                     where not exists (select 1 from {dups} d where d._ebb_key = x._ebb_key)",
                    snap = t.snapshot,
                    new = t.new,
                    dups = t.dups
                );
                (0, run(&sql).await.map_err(|e| CommitFailure::Sql(Some(sql.clone()), e))?)
            } else {
                let sql = "create temp table ebb_rejected (k text primary key) on commit drop";
                run(sql).await.map_err(|e| CommitFailure::Sql(Some(sql.into()), e))?;
                let keys: Vec<&str> = rejected.iter().map(String::as_str).collect();
                tx.execute(
                    "insert into ebb_rejected select distinct unnest($1::text[])",
                    &[&keys],
                )
                .await
                .map_err(|e| CommitFailure::Sql(None, e))?;
                let accepted = "not exists (select 1 from ebb_rejected r where r.k = c._ebb_key)";
                let sql = format!(
                    "delete from {snap} s using {changes} c where s._ebb_key = c._ebb_key and {accepted}",
                    snap = t.snapshot,
                    changes = t.changes
                );
                let removed = run(&sql).await.map_err(|e| CommitFailure::Sql(Some(sql.clone()), e))?;
                let sql = format!(
                    "insert into {snap} (_ebb_key, _ebb_hash{cols}) \
                     select _ebb_key, _ebb_hash{cols} from {changes} c where _ebb_op <> 3 and {accepted}",
                    snap = t.snapshot,
                    changes = t.changes
                );
                (removed, run(&sql).await.map_err(|e| CommitFailure::Sql(Some(sql.clone()), e))?)
            };
            let rows = self.base.as_ref().map_or(0, |m| m.rows) + added - removed;
            let version = self.base.as_ref().map_or(1, |m| m.version + 1);
            let row = tx
                .query_one(
                    "insert into ebb_state.diff_snapshots as d \
                       (sync, version, parent, rows, key_columns, columns, committed_at) \
                     values ($1, $2, $3, $4, $5, $6, now()) \
                     on conflict (sync) do update set version = excluded.version, \
                       parent = excluded.parent, rows = excluded.rows, \
                       key_columns = excluded.key_columns, columns = excluded.columns, \
                       committed_at = excluded.committed_at \
                     returning to_char(committed_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                    &[
                        &sync,
                        &(version as i64),
                        &self.base.as_ref().map(|m| m.version as i64),
                        &(rows as i64),
                        &self.spec.key_columns,
                        &self.columns,
                    ],
                )
                .await
                .map_err(|e| CommitFailure::Sql(None, e))?;
            let sql = format!(
                "drop table if exists {}; drop table if exists {}; drop table if exists {}",
                t.new, t.dups, t.changes
            );
            tx.batch_execute(&sql).await.map_err(|e| CommitFailure::Sql(Some(sql.clone()), e))?;
            Ok(Manifest {
                sync: sync.clone(),
                version,
                parent: self.base.as_ref().map(|m| m.version),
                rows,
                key_columns: self.spec.key_columns.clone(),
                columns: self.columns.clone(),
                committed_at: row.get(0),
            })
        }
        .await;
        let manifest = match result {
            Ok(m) => m,
            Err(CommitFailure::Moved(current)) => {
                drop(tx);
                return Err(EngineError::Diff(format!(
                    "sync \"{sync}\": its snapshot moved to version {} while this diff (based on \
                     {}) was being delivered: another run committed first; run the sync again",
                    current.map_or("none".into(), |v| v.to_string()),
                    self.base
                        .as_ref()
                        .map_or("none".into(), |m| m.version.to_string())
                )));
            }
            Err(CommitFailure::Sql(sql, e)) => {
                drop(tx);
                return Err(wh(s.error(sql.as_deref(), &e)));
            }
        };
        tx.commit()
            .await
            .map_err(|e| EngineError::Diff(format!("commit of sync \"{sync}\": {e}")))?;
        Ok(manifest)
    }
}
