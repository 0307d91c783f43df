//! Where changes go: the [`Sink`] contract, and the sinks built from pipeline config.
//!
//! # The durability contract
//!
//! A sink receives [`Delivery`]s with [`Sink::write`] and, at transaction boundaries,
//! [`Sink::commit`] with the [`Position`] that everything written so far completes.
//!
//! - `write` accepts changes; they are **not** durable and may be lost in a crash.
//! - `truncate` accepts a `TRUNCATE` of a table, in order with the changes written before
//!   and after it, under the same rule as `write`.
//! - `commit` makes everything written so far durable together with the position (now, or
//!   later by the sink's own policy, e.g. when a Parquet file rolls; always now with
//!   `force`) and returns the position that **is** durable. The pipeline confirms to
//!   PostgreSQL only positions that every sink returned.
//! - `open` recovers after a crash: it discards whatever was written after the last durable
//!   commit (a half line, an unlisted file) and returns that commit's position, so that the
//!   pipeline delivers each change exactly once. A sink that cannot roll back (stdout)
//!   returns `None` and is at-least-once.
//!
//! Errors carry a retry class (`CdcError::Sink { retryable }`); the pipeline stops on any.

mod discard;
mod ndjson;
mod parquet;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use ebb_core::config::pipeline::SinkConfig;

pub use discard::DiscardSink;
pub use ndjson::NdjsonSink;
pub use parquet::{ManifestEntry, ManifestFile, ParquetLakeSink, read_manifest};

use crate::changes::{Delivery, Truncation};
use crate::error::CdcError;
use crate::position::Position;

/// Column added to every sink's output: the change's commit LSN.
pub const LSN_COLUMN: &str = "_ebb_lsn";
/// Column added to NDJSON output: the change's table.
pub const TABLE_COLUMN: &str = "_ebb_table";

/// A destination of changes with the durability contract above.
pub trait Sink: Send {
    /// A short name for logs and errors.
    fn name(&self) -> String;
    /// Recovers to the last durable commit and returns its position (`None`: the sink keeps
    /// no position; the pipeline's checkpoint decides).
    fn open(&mut self) -> impl Future<Output = Result<Option<Position>, CdcError>> + Send;
    /// Accepts changes (not yet durable).
    fn write(&mut self, delivery: &Delivery) -> impl Future<Output = Result<(), CdcError>> + Send;
    /// Accepts a `TRUNCATE` of a table (not yet durable).
    fn truncate(
        &mut self,
        truncation: &Truncation,
    ) -> impl Future<Output = Result<(), CdcError>> + Send;
    /// Everything written so far completes `position`; returns the durable position.
    fn commit(
        &mut self,
        position: &Position,
        force: bool,
    ) -> impl Future<Output = Result<Position, CdcError>> + Send;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Sink`] behind a pointer, for the registry of a pipeline's sinks.
pub trait DynSink: Send {
    /// See [`Sink::name`].
    fn name(&self) -> String;
    /// See [`Sink::open`].
    fn open(&mut self) -> BoxFuture<'_, Result<Option<Position>, CdcError>>;
    /// See [`Sink::write`].
    fn write<'a>(&'a mut self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), CdcError>>;
    /// See [`Sink::truncate`].
    fn truncate<'a>(
        &'a mut self,
        truncation: &'a Truncation,
    ) -> BoxFuture<'a, Result<(), CdcError>>;
    /// See [`Sink::commit`].
    fn commit<'a>(
        &'a mut self,
        position: &'a Position,
        force: bool,
    ) -> BoxFuture<'a, Result<Position, CdcError>>;
}

impl<S: Sink> DynSink for S {
    fn name(&self) -> String {
        Sink::name(self)
    }
    fn open(&mut self) -> BoxFuture<'_, Result<Option<Position>, CdcError>> {
        Box::pin(Sink::open(self))
    }
    fn write<'a>(&'a mut self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), CdcError>> {
        Box::pin(Sink::write(self, delivery))
    }
    fn truncate<'a>(
        &'a mut self,
        truncation: &'a Truncation,
    ) -> BoxFuture<'a, Result<(), CdcError>> {
        Box::pin(Sink::truncate(self, truncation))
    }
    fn commit<'a>(
        &'a mut self,
        position: &'a Position,
        force: bool,
    ) -> BoxFuture<'a, Result<Position, CdcError>> {
        Box::pin(Sink::commit(self, position, force))
    }
}

impl std::fmt::Debug for dyn DynSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sink({})", self.name())
    }
}

/// Builds a sink from config; relative paths are relative to `root` (the project).
pub fn build(config: &SinkConfig, root: &Path) -> Result<Box<dyn DynSink>, CdcError> {
    Ok(match config {
        SinkConfig::Ndjson { path } => match path.as_deref() {
            None | Some("-") => Box::new(NdjsonSink::stdout()),
            Some(p) => Box::new(NdjsonSink::file(root.join(p))),
        },
        SinkConfig::Parquet {
            path,
            roll_bytes,
            roll_interval,
        } => {
            let mut sink = ParquetLakeSink::open_url(path, root)?;
            if let Some(b) = roll_bytes {
                sink.set_roll_bytes(usize::try_from(b.0).unwrap_or(usize::MAX));
            }
            if let Some(i) = roll_interval {
                sink.set_roll_interval(i.0);
            }
            Box::new(sink)
        }
        SinkConfig::Discard {} => Box::new(DiscardSink::default()),
    })
}

pub(crate) fn sink_error(sink: &str, retryable: bool) -> impl Fn(String) -> CdcError + use<> {
    let sink = sink.to_string();
    move |message| CdcError::Sink {
        sink: sink.clone(),
        message,
        retryable,
    }
}
