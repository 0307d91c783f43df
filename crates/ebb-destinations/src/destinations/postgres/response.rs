//! Postgres errors to retry classes.
//!
//! - data exceptions (SQLSTATE class 22) and integrity violations (23): the content of
//!   the batch is bad; a smaller batch isolates the row ([`DestinationError::Rejected`],
//!   naming the column when Postgres does);
//! - undefined table or column, no unique index for `ON CONFLICT`, permissions: the config
//!   is wrong ([`DestinationError::Fatal`]);
//! - serialization failures, deadlocks, connection and server shutdowns: retryable.

use tokio_postgres::error::SqlState;

use crate::DestinationError;

pub fn error(err: tokio_postgres::Error, table: &str, key: &str) -> DestinationError {
    let Some(db) = err.as_db_error() else {
        return DestinationError::Retryable {
            after: None,
            reason: format!("the Postgres connection failed: {err}"),
            source: Some(Box::new(err)),
        };
    };
    let code = db.code().code();
    let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
    let said = format!("{}{detail} [SQLSTATE {code}]", db.message());
    if *db.code() == SqlState::INVALID_COLUMN_REFERENCE || *db.code() == SqlState::UNDEFINED_TABLE {
        let hint = if *db.code() == SqlState::INVALID_COLUMN_REFERENCE {
            format!("; give {table} a primary key or unique index on \"{key}\"")
        } else {
            format!("; create {table} or fix the sync's object")
        };
        return DestinationError::Fatal {
            reason: format!("Postgres: {said}{hint}"),
        };
    }
    match &code[..2] {
        "21" | "22" | "23" => DestinationError::Rejected {
            reason: format!("Postgres: {said}"),
            field: db
                .column()
                .map(str::to_string)
                .or_else(|| column_in(db.message())),
        },
        "40" | "08" | "53" | "57" => DestinationError::Retryable {
            after: None,
            reason: format!("Postgres: {said}"),
            source: None,
        },
        _ => DestinationError::Fatal {
            reason: format!("Postgres refused the write to {table}: {said}"),
        },
    }
}

/// The column a message names in double quotes after "column", if any.
fn column_in(message: &str) -> Option<String> {
    let after = message.split("column \"").nth(1)?;
    Some(after.split('"').next()?.to_string())
}
