//! Errors of a CDC pipeline, each with the retry class of ebb-postgres.

use ebb_postgres::RetryClass;
use ebb_postgres::replication::ReplicationError;

/// A pipeline failed. [`retry_class`](Self::retry_class) says whether running it again can help.
#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    /// The replication connection failed (its error says what to do).
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// The slot lost WAL it needed: the stream cannot be resumed.
    #[error(
        "replication slot {slot:?} was invalidated (wal_status = 'lost'): changes since the last checkpoint are gone.\n  \
         recovery: run `ebb cdc drop {pipeline}` and then `ebb cdc run {pipeline}`: a new slot is created and the tables \
         are copied again (snapshot: initial). Raise max_slot_wal_keep_size to avoid this"
    )]
    SlotInvalidated {
        /// The slot.
        slot: String,
        /// The pipeline.
        pipeline: String,
    },
    /// The checkpoint says a slot existed, and it is gone.
    #[error(
        "replication slot {slot:?} of pipeline {pipeline:?} is missing although a checkpoint exists: changes since the \
         checkpoint cannot be recovered.\n  recovery: run `ebb cdc drop {pipeline}` and `ebb cdc run {pipeline}` to start \
         over from a new snapshot"
    )]
    SlotLost {
        /// The slot.
        slot: String,
        /// The pipeline.
        pipeline: String,
    },
    /// The configuration cannot work (missing table, publication, ...).
    #[error("{0}")]
    Config(String),
    /// A sink failed.
    #[error("sink {sink}: {message}")]
    Sink {
        /// Which sink (`ndjson`, `parquet:<path>` ...).
        sink: String,
        /// What happened.
        message: String,
        /// Whether trying again may help.
        retryable: bool,
    },
    /// Local files (checkpoint, spill) failed.
    #[error("{action}: {source}")]
    Io {
        /// What ebb was doing.
        action: String,
        /// The error.
        source: std::io::Error,
    },
    /// A change could not be decoded or built.
    #[error("{0}")]
    Data(String),
}

impl CdcError {
    /// Whether to retry, and how.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            CdcError::Replication(e) => e.retry_class(),
            CdcError::Sink { retryable, .. } => {
                if *retryable {
                    RetryClass::RETRY
                } else {
                    RetryClass::Fatal
                }
            }
            CdcError::Io { .. } => RetryClass::RETRY,
            CdcError::SlotInvalidated { .. }
            | CdcError::SlotLost { .. }
            | CdcError::Config(_)
            | CdcError::Data(_) => RetryClass::Fatal,
        }
    }

    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> CdcError {
        let action = action.into();
        move |source| CdcError::Io { action, source }
    }
}
