//! What a sync run's result becomes in the state store: its log lines (with a redacted
//! sample of bad keys) and the [`RunOutcome`] the run is finished with. The CLI and the
//! server's workers record runs the same way.

use ebb_state::{LogLevel, RunCounts, RunId, RunOutcome, RunStatus, StateStore};
use ebb_sync::{SyncError, SyncOutcome};

/// The counts of a finished sync run.
pub fn counts(o: &SyncOutcome) -> RunCounts {
    let d = &o.diff;
    let r = o.delivery.clone().unwrap_or_default();
    RunCounts {
        planned: o.planned as i64,
        inserted: d.inserts as i64,
        updated: d.updates as i64,
        deleted: d.deletes as i64,
        accepted: r.accepted as i64,
        rejected: r.rejected as i64,
        retried: r.retried as i64,
        skipped_bad_keys: (d.bad_keys.null_key_rows + d.bad_keys.duplicate_rows) as i64,
    }
}

/// Writes the run's log lines (best effort: a log line that cannot be written does not
/// fail the run) and returns the outcome to finish it with.
pub async fn log_result(
    store: &StateStore,
    id: RunId,
    result: &Result<SyncOutcome, SyncError>,
) -> RunOutcome {
    match result {
        Ok(o) => {
            let d = &o.diff;
            let r = o.delivery.clone().unwrap_or_default();
            let counts = counts(o);
            let message = format!(
                "read {} rows: {} inserts, {} updates, {} deletes; {} sent, {} accepted, {} rejected, {} throttled{}",
                d.rows_read,
                d.inserts,
                d.updates,
                d.deletes,
                r.sent,
                r.accepted,
                r.rejected,
                r.throttled,
                r.aborted
                    .as_ref()
                    .map(|a| format!("; stopped: {a}"))
                    .unwrap_or_default()
            );
            let _ = store.append_log(id, LogLevel::Info, &message, None).await;
            if !d.bad_keys.sample_duplicates.is_empty() || d.bad_keys.null_key_rows > 0 {
                let sample = serde_json::json!({
                    "null_key_rows": d.bad_keys.null_key_rows,
                    "duplicate_keys": d.bad_keys.duplicate_keys,
                    "sample_duplicates": d.bad_keys.sample_duplicates,
                });
                let _ = store
                    .append_log(
                        id,
                        LogLevel::Warn,
                        "rows left out for bad keys",
                        Some(&sample),
                    )
                    .await;
            }
            RunOutcome {
                status: match o.status {
                    ebb_sync::RunStatus::Succeeded => RunStatus::Succeeded,
                    ebb_sync::RunStatus::Partial => RunStatus::Partial,
                    ebb_sync::RunStatus::Failed => RunStatus::Failed,
                },
                counts,
                error: r.aborted.clone(),
            }
        }
        Err(err) => {
            let _ = store
                .append_log(id, LogLevel::Error, &err.to_string(), None)
                .await;
            RunOutcome {
                status: RunStatus::Failed,
                counts: RunCounts::default(),
                error: Some(err.to_string()),
            }
        }
    }
}
