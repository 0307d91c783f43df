//! Change data capture from PostgreSQL into ChangeBatches, delivered to sinks with nothing
//! lost and nothing applied twice.
//!
//! A [`Pipeline`] owns one logical replication slot. On first start it creates the slot with
//! an exported snapshot, copies the published tables inside that snapshot (binary `COPY`, in
//! parallel ctid ranges), then streams pgoutput v2 from the slot's consistent point. Every
//! change becomes a row of a ChangeBatch (`_ebb_op`, `_ebb_key`, `_ebb_seq`, `_ebb_changed`,
//! then the table's columns). The flush LSN confirmed to PostgreSQL advances only past changes
//! that every sink has durably committed; sinks recover to their last commit on start and
//! the pipeline sends them only what they do not hold.
//!
//! Table-level events travel beside the rows: a `TRUNCATE` is a [`changes::Truncation`] handed
//! to every sink in order; a Relation message that changes a table's columns flushes the rows
//! of the old shape first. Unchanged TOAST values are filled from the old image (`REPLICA
//! IDENTITY FULL`) or listed in [`changes::Delivery::unchanged_toast`], never passed off as NULL.
//! A slot invalidated by `max_slot_wal_keep_size` stops the run with
//! [`CdcError::SlotInvalidated`], whose message gives the recovery (drop, re-snapshot).
//! User documentation: `docs/cdc.md`.
//!
//! # Layout
//!
//! - [`pipeline`]: the run loop ([`Pipeline`], [`PipelineSpec`]), status, drop.
//! - [`source`]: SQL against the source: publication, tables, keys, types, slot lag.
//! - [`snapshot`]: the initial copy inside an exported snapshot.
//! - [`changes`]: rows of one table into ChangeBatches ([`changes::Delivery`]), TOAST fill.
//! - [`txbuf`]: streamed in-progress transactions under a memory budget, spilled beyond it.
//! - [`sink`]: the [`sink::Sink`] durability contract; NDJSON, Parquet lake, discard.
//! - [`checkpoint`]: [`checkpoint::CheckpointStore`] and its file implementation.
//! - [`position`]: positions, `_ebb_seq`, idempotency keys.
//! - [`metrics`]: metric names, and a status in the Prometheus text format.
//! - [`error`]: [`CdcError`] with its retry class.

pub mod changes;
pub mod checkpoint;
pub mod error;
pub mod metrics;
pub mod pipeline;
pub mod position;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod txbuf;

pub use ebb_postgres::Lsn;
pub use error::CdcError;
pub use pipeline::{Pipeline, PipelineSpec, RunSummary, Status};
