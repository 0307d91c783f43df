//! Reading result rows into the model, the same way for both backends.
//!
//! Both backends select the same columns in the same order (the `*_COLS` lists) and JSON
//! as text, so one converter per record type serves both; a backend only implements
//! [`Cols`] for its row type.

use ebb_delivery::DeadLetter;

use crate::StateError;
use crate::model::{AuditEntry, Checkpoint, Event, LogEntry, Run, RunCounts, TokenInfo};

pub(crate) const RUN_COLS: &str = "id, tenant, sync, kind, trigger, status, planned, inserted, \
     updated, deleted, accepted, rejected, retried, skipped_bad_keys, created_at, started_at, \
     finished_at, error, worker, lease_expires_at, attempts";

/// Columns of `run_logs`; `{json}` is how the backend turns JSON into text.
pub(crate) const LOG_COLS: &str = "id, run_id, at, level, message, {sample}";
pub(crate) const EVENT_COLS: &str = "id, tenant, topic, {payload}, created_at, relayed_at";
pub(crate) const LETTER_COLS: &str = "tenant, sync, record_key, {record}, reason, field, \
     failures, first_failed_at, last_failed_at";
pub(crate) const CHECKPOINT_COLS: &str = "name, lsn, {detail}, updated_at";
pub(crate) const AUDIT_COLS: &str = "id, at, tenant, actor, action, target, {details}";
pub(crate) const TOKEN_COLS: &str = "id, tenant, {scopes}, created_at, revoked_at";

/// Fills the `{column}` placeholders of a column list: `json_text("payload")` gives the
/// backend's expression for the column as JSON text.
pub(crate) fn cols(list: &str, json_text: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(list.len() + 16);
    let mut rest = list;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e);
        out.push_str(&json_text(&rest[start + 1..end]));
        rest = &rest[(end + 1).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// Typed access to one result row's columns, by position.
pub(crate) trait Cols {
    fn i64(&self, i: usize) -> Result<i64, StateError>;
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, StateError>;
    fn text(&self, i: usize) -> Result<String, StateError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StateError>;

    fn json(&self, i: usize) -> Result<serde_json::Value, StateError> {
        parse_json(&self.text(i)?)
    }

    fn opt_json(&self, i: usize) -> Result<Option<serde_json::Value>, StateError> {
        self.opt_text(i)?.map(|t| parse_json(&t)).transpose()
    }
}

fn parse_json(text: &str) -> Result<serde_json::Value, StateError> {
    serde_json::from_str(text).map_err(|e| StateError::Corrupt(format!("a JSON column: {e}")))
}

pub(crate) fn run(r: &impl Cols) -> Result<Run, StateError> {
    Ok(Run {
        id: r.i64(0)?,
        tenant: r.text(1)?,
        sync: r.text(2)?,
        kind: r.text(3)?.parse()?,
        trigger: r.text(4)?.parse()?,
        status: r.text(5)?.parse()?,
        counts: RunCounts {
            planned: r.i64(6)?,
            inserted: r.i64(7)?,
            updated: r.i64(8)?,
            deleted: r.i64(9)?,
            accepted: r.i64(10)?,
            rejected: r.i64(11)?,
            retried: r.i64(12)?,
            skipped_bad_keys: r.i64(13)?,
        },
        created_at: r.i64(14)?,
        started_at: r.opt_i64(15)?,
        finished_at: r.opt_i64(16)?,
        error: r.opt_text(17)?,
        worker: r.opt_text(18)?,
        lease_expires_at: r.opt_i64(19)?,
        attempts: r.i64(20)?,
    })
}

pub(crate) fn log_entry(r: &impl Cols) -> Result<LogEntry, StateError> {
    Ok(LogEntry {
        id: r.i64(0)?,
        run_id: r.i64(1)?,
        at: r.i64(2)?,
        level: r.text(3)?.parse()?,
        message: r.text(4)?,
        sample: r.opt_json(5)?,
    })
}

pub(crate) fn event(r: &impl Cols) -> Result<Event, StateError> {
    Ok(Event {
        id: r.i64(0)?,
        tenant: r.text(1)?,
        topic: r.text(2)?,
        payload: r.json(3)?,
        created_at: r.i64(4)?,
        relayed_at: r.opt_i64(5)?,
    })
}

pub(crate) fn letter(r: &impl Cols) -> Result<DeadLetter, StateError> {
    let key = r.text(2)?;
    let record = serde_json::from_value(r.json(3)?)
        .map_err(|e| StateError::Corrupt(format!("the dead letter of record {key:?}: {e}")))?;
    Ok(DeadLetter {
        tenant: r.text(0)?,
        sync: r.text(1)?,
        record,
        reason: r.text(4)?,
        field: r.opt_text(5)?,
        failures: u32::try_from(r.i64(6)?).unwrap_or(u32::MAX),
        first_failed_at: u64::try_from(r.i64(7)?).unwrap_or(0),
        last_failed_at: u64::try_from(r.i64(8)?).unwrap_or(0),
    })
}

pub(crate) fn checkpoint(r: &impl Cols) -> Result<Checkpoint, StateError> {
    Ok(Checkpoint {
        name: r.text(0)?,
        lsn: r.i64(1)? as u64,
        detail: r.json(2)?,
        updated_at: r.i64(3)?,
    })
}

pub(crate) fn audit_entry(r: &impl Cols) -> Result<AuditEntry, StateError> {
    Ok(AuditEntry {
        id: r.i64(0)?,
        at: r.i64(1)?,
        tenant: r.text(2)?,
        actor: r.text(3)?,
        action: r.text(4)?,
        target: r.text(5)?,
        details: r.json(6)?,
    })
}

pub(crate) fn token_info(r: &impl Cols) -> Result<TokenInfo, StateError> {
    Ok(TokenInfo {
        id: r.i64(0)?,
        tenant: r.text(1)?,
        scopes: scopes(&r.text(2)?)?,
        created_at: r.i64(3)?,
        revoked_at: r.opt_i64(4)?,
    })
}

pub(crate) fn scopes(text: &str) -> Result<Vec<String>, StateError> {
    serde_json::from_str(text).map_err(|e| StateError::Corrupt(format!("token scopes: {e}")))
}

/// The payload of a `run.finished` event.
pub(crate) fn run_finished_payload(run: &Run) -> serde_json::Value {
    serde_json::json!({
        "run_id": run.id,
        "tenant": run.tenant,
        "sync": run.sync,
        "kind": run.kind,
        "trigger": run.trigger,
        "status": run.status,
        "counts": run.counts,
        "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    })
}

/// Parses a numeric cursor (a run, audit-entry or event id).
pub(crate) fn id_cursor(cursor: Option<&str>) -> Result<Option<i64>, StateError> {
    cursor
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                StateError::Config(format!(
                    "cursor {c:?} is not valid; pass the next_cursor of the previous page"
                ))
            })
        })
        .transpose()
}

/// A DLQ cursor: the (sync, record key) of the last letter of the previous page.
pub(crate) fn letter_cursor(cursor: Option<&str>) -> Result<Option<(String, String)>, StateError> {
    use base64::Engine;
    let Some(c) = cursor else { return Ok(None) };
    let bad = || {
        StateError::Config(format!(
            "cursor {c:?} is not valid; pass the next_cursor of the previous page"
        ))
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

pub(crate) fn make_letter_cursor(sync: &str, key: &str) -> String {
    use base64::Engine;
    let json = serde_json::to_vec(&(sync, key)).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// Cuts a `limit + 1` fetch to a page: `cursor_of` gives the cursor after an item.
pub(crate) fn page<T>(
    mut items: Vec<T>,
    limit: usize,
    cursor_of: impl Fn(&T) -> String,
) -> crate::model::Page<T> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = if more {
        items.last().map(cursor_of)
    } else {
        None
    };
    crate::model::Page { items, next_cursor }
}
