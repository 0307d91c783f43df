//! Metric names of ebb-cdc, in one place. Values are emitted as `tracing` events with target
//! `ebb::metrics` (a metrics exporter subscribes to them), and [`render`] writes a pipeline's
//! [`Status`] in the Prometheus text format (`ebb cdc run` keeps it in
//! `.ebb/cdc/NAME.prom`, for a node exporter's textfile collector).

use crate::pipeline::Status;

/// Gauge: WAL bytes the slot holds (current WAL position minus confirmed flush LSN).
pub const SLOT_LAG_BYTES: &str = "ebb_cdc_slot_lag_bytes";
/// Counter: changes handed to the sinks.
pub const CHANGES_DELIVERED: &str = "ebb_cdc_changes_delivered_total";
/// Gauge: 1 while the slot lag is above `lag_warn_bytes`.
pub const SLOT_LAG_WARNING: &str = "ebb_cdc_slot_lag_warning";
/// Gauge: the LSN every sink durably holds (confirmed to PostgreSQL).
pub const FLUSH_LSN: &str = "ebb_cdc_flush_lsn";
/// Counter: bytes of streamed transactions spilled to disk.
pub const SPILLED_BYTES: &str = "ebb_cdc_spilled_bytes_total";

/// `status` of pipeline `pipeline` in the Prometheus text exposition format.
pub fn render(pipeline: &str, status: &Status) -> String {
    let label = pipeline.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: Option<u64>| {
        if let Some(v) = value {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{pipeline=\"{label}\"}} {v}\n"
            ));
        }
    };
    metric(
        SLOT_LAG_BYTES,
        "gauge",
        "WAL bytes the replication slot holds for the pipeline.",
        status.lag_bytes,
    );
    metric(
        SLOT_LAG_WARNING,
        "gauge",
        "1 while the slot lag is above lag_warn_bytes.",
        Some(u64::from(status.lag_warning)),
    );
    metric(
        CHANGES_DELIVERED,
        "counter",
        "Changes handed to the sinks.",
        Some(status.rows),
    );
    metric(
        FLUSH_LSN,
        "gauge",
        "LSN every sink durably holds.",
        Some(status.flush_lsn.0),
    );
    metric(
        SPILLED_BYTES,
        "counter",
        "Bytes of streamed transactions spilled to disk.",
        Some(status.spilled_bytes),
    );
    out
}

/// Records a gauge value.
pub fn gauge(name: &'static str, pipeline: &str, value: u64) {
    tracing::debug!(target: "ebb::metrics", metric = name, pipeline, value, "gauge");
}

/// Adds to a counter.
pub fn counter(name: &'static str, pipeline: &str, delta: u64) {
    tracing::trace!(target: "ebb::metrics", metric = name, pipeline, delta, "counter");
}
