//! Metric names of ebb-cdc, in one place. Values are emitted as `tracing` events with target
//! `ebb::metrics` (a metrics exporter subscribes to them).

/// Gauge: WAL bytes the slot holds (current WAL position minus confirmed flush LSN).
pub const SLOT_LAG_BYTES: &str = "ebb_cdc_slot_lag_bytes";
/// Counter: changes handed to the sinks.
pub const CHANGES_DELIVERED: &str = "ebb_cdc_changes_delivered_total";

/// Records a gauge value.
pub fn gauge(name: &'static str, pipeline: &str, value: u64) {
    tracing::debug!(target: "ebb::metrics", metric = name, pipeline, value, "gauge");
}

/// Adds to a counter.
pub fn counter(name: &'static str, pipeline: &str, delta: u64) {
    tracing::trace!(target: "ebb::metrics", metric = name, pipeline, delta, "counter");
}
