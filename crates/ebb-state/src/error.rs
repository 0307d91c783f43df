//! The state store's errors and their retry class.

use crate::model::RunId;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The `state:` configuration is wrong; the message says how to fix it.
    #[error("{0}")]
    Config(String),

    /// The database was migrated by a newer ebb.
    #[error(
        "state store schema version {found} is newer than this ebb ({known}); upgrade ebb \
         (the database at {location} was migrated by a newer release)"
    )]
    SchemaTooNew {
        found: i64,
        known: i64,
        location: String,
    },

    /// A migration failed; nothing of it was applied.
    #[error("state store migration {version:04}_{name} failed on {location}: {message}")]
    Migration {
        version: i64,
        name: &'static str,
        location: String,
        message: String,
    },

    #[error("state store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },

    #[error("state store {target}: {source}")]
    Postgres {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("{0} not found")]
    NotFound(String),

    /// The run is not in a state that allows the operation (e.g. finishing a queued run,
    /// starting a run while another of its sync runs).
    #[error("run {run}: {message}")]
    InvalidTransition { run: RunId, message: String },

    /// The worker no longer holds the run's lease: another worker took it over, or it was
    /// cancelled. The worker must stop working on the run.
    #[error("run {run}: worker {worker} does not hold its lease ({why})")]
    LeaseLost {
        run: RunId,
        worker: String,
        why: String,
    },

    /// A stored value could not be read back (edited by hand, or written by a newer ebb).
    #[error("state store holds an unreadable value: {0}")]
    Corrupt(String),

    /// A blocking task of the SQLite backend panicked or was cancelled.
    #[error("state store task failed: {0}")]
    Task(String),
}

impl StateError {
    /// Whether trying the same operation again later may succeed: a lost or busy
    /// connection, a serialization conflict, a locked SQLite file.
    pub fn is_retryable(&self) -> bool {
        match self {
            StateError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            StateError::Postgres { source, .. } => {
                source.is_closed()
                    || source.code().is_some_and(|c| {
                        *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                            || *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                            || c.code().starts_with("08")
                    })
                    || source.code().is_none()
            }
            StateError::Task(_) => true,
            _ => false,
        }
    }
}

impl From<StateError> for ebb_delivery::DlqError {
    fn from(err: StateError) -> Self {
        ebb_delivery::DlqError(err.to_string())
    }
}
