//! The SQL of a write. Records are staged with one `COPY` into a temporary table of
//! `(ord, doc jsonb)`, and `jsonb_populate_record(NULL::table, doc)` turns each document
//! into a row of the target table's own types, so Postgres does every cast (and refuses
//! a value that does not fit, naming it).

use serde_json::Value;

use crate::Record;
use crate::destinations::postgres::config::quote_ident;

/// The staging table, dropped at commit.
pub const STAGE: &str = "CREATE TEMP TABLE IF NOT EXISTS ebb_stage (ord int NOT NULL, doc jsonb NOT NULL) ON COMMIT DELETE ROWS";

pub const COPY: &str = "COPY ebb_stage (ord, doc) FROM STDIN";

/// The COPY text of the records: each a JSON object of its fields with the key column set
/// to the record's id. Backslashes are doubled (COPY's text format); JSON text has no raw
/// tabs or newlines.
pub fn copy_text(records: &[&Record], key_column: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut doc = r.fields.clone();
        doc.insert(key_column.to_string(), Value::String(r.id.clone()));
        let json = Value::Object(doc).to_string();
        out.extend_from_slice(i.to_string().as_bytes());
        out.push(b'\t');
        out.extend_from_slice(json.replace('\\', "\\\\").as_bytes());
        out.push(b'\n');
    }
    out
}

/// `(r)."a", (r)."b"`: the populated record's columns.
fn selected(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| format!("(r).{}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn listed(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The staged rows `lo..hi` as records of the table.
fn source(table: &str, lo: usize, hi: usize) -> String {
    format!(
        "(SELECT ord, jsonb_populate_record(NULL::{table}, doc) AS r FROM ebb_stage WHERE ord >= {lo} AND ord < {hi}) s"
    )
}

/// Upsert (or insert-only with `update: false`) of staged rows `lo..hi` that carry
/// `columns` (the key column first).
///
/// An upsert runs after [`update`] of the same rows and inserts only keys that are not
/// there: Postgres checks `NOT NULL` on the proposed row before it looks for a conflict,
/// so a record carrying only its changed fields must not be proposed as an insert when
/// its row exists. `ON CONFLICT DO UPDATE` still covers a row inserted concurrently.
pub fn upsert(
    table: &str,
    key: &str,
    columns: &[&str],
    lo: usize,
    hi: usize,
    update: bool,
) -> String {
    let rest: Vec<&str> = columns.iter().copied().filter(|c| *c != key).collect();
    let action = if update && !rest.is_empty() {
        format!(
            "DO UPDATE SET {}",
            rest.iter()
                .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        "DO NOTHING".into()
    };
    let k = quote_ident(key);
    let missing = if update {
        format!(" WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.{k} = (s.r).{k})")
    } else {
        String::new()
    };
    format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {}{missing} ORDER BY s.ord ON CONFLICT ({k}) {action}",
        listed(columns),
        selected(columns).replace("(r)", "(s.r)"),
        source(table, lo, hi),
    )
}

/// Update-only of staged rows `lo..hi`: the keys of the rows it found.
pub fn update(table: &str, key: &str, columns: &[&str], lo: usize, hi: usize) -> String {
    let rest: Vec<&str> = columns.iter().copied().filter(|c| *c != key).collect();
    let k = quote_ident(key);
    let set = if rest.is_empty() {
        format!("{k} = t.{k}")
    } else {
        rest.iter()
            .map(|c| format!("{} = (s.r).{}", quote_ident(c), quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "UPDATE {table} AS t SET {set} FROM {} WHERE t.{k} = (s.r).{k} RETURNING t.{k}::text",
        source(table, lo, hi)
    )
}

/// Deletes by the staged rows' keys.
pub fn delete(table: &str, key: &str) -> String {
    let k = quote_ident(key);
    format!(
        "DELETE FROM {table} AS t USING {} WHERE t.{k} = (s.r).{k}",
        source(table, 0, i32::MAX as usize)
    )
}
