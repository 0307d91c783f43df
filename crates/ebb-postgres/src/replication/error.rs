//! Errors of the replication connection, classified so that a user can act on them.

use std::fmt;
use std::time::Duration;

use crate::pgoutput::DecodeError;
use crate::retry::RetryClass;

/// An error or notice the server sent (`ErrorResponse`), with its fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbError {
    /// `ERROR`, `FATAL`, `PANIC` (or a notice severity).
    pub severity: String,
    /// The SQLSTATE code.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// Optional detail.
    pub detail: Option<String>,
    /// Optional hint.
    pub hint: Option<String>,
}

impl DbError {
    pub(super) fn parse(body: &[u8]) -> DbError {
        let mut e = DbError::default();
        let mut rest = body;
        while let Some((&kind, tail)) = rest.split_first() {
            if kind == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            let value = String::from_utf8_lossy(&tail[..end]).into_owned();
            rest = tail.get(end + 1..).unwrap_or(&[]);
            match kind {
                b'V' => e.severity = value,
                b'S' if e.severity.is_empty() => e.severity = value,
                b'C' => e.code = value,
                b'M' => e.message = value,
                b'D' => e.detail = Some(value),
                b'H' => e.hint = Some(value),
                _ => {}
            }
        }
        e
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {}

/// A replication connection failed. Every variant says what to do in its message and how to
/// retry in [`retry_class`](Self::retry_class).
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The connection broke or could not be opened.
    #[error("connection to PostgreSQL failed: {0}")]
    Io(#[from] std::io::Error),
    /// Connecting took longer than `connect_timeout`.
    #[error("connecting to PostgreSQL timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The server refused the user name or password.
    #[error(
        "PostgreSQL rejected the credentials of role {user:?}: check the user and password ({source})"
    )]
    BadCredentials {
        /// The role.
        user: String,
        /// The server's error.
        source: Box<DbError>,
    },
    /// The server requires a password and none was configured.
    #[error("PostgreSQL asks role {user:?} for a password, and none is configured")]
    PasswordRequired {
        /// The role.
        user: String,
    },
    /// `pg_hba.conf` has no line allowing this connection.
    #[error(
        "PostgreSQL refused the replication connection of role {user:?}: add a `host <db> {user} ...` line for replication connections to pg_hba.conf ({source})"
    )]
    AccessDenied {
        /// The role.
        user: String,
        /// The server's error.
        source: Box<DbError>,
    },
    /// The role may not open replication connections.
    #[error(
        "role {user:?} may not stream changes: run `ALTER ROLE {user} WITH REPLICATION;` as a superuser ({source})"
    )]
    NoReplicationPrivilege {
        /// The role.
        user: String,
        /// The server's error.
        source: Box<DbError>,
    },
    /// Logical decoding is off.
    #[error(
        "PostgreSQL has wal_level = {actual}, logical decoding needs `wal_level = logical` \
         (ALTER SYSTEM SET wal_level = logical; then restart the server)"
    )]
    WalLevelNotLogical {
        /// The server's setting.
        actual: String,
    },
    /// Another connection is streaming from the slot.
    #[error(
        "replication slot {slot:?} is in use by process {pid:?}: stop the other consumer or wait for it to exit"
    )]
    SlotActive {
        /// Slot name.
        slot: String,
        /// The walsender holding the slot, when known.
        pid: Option<i32>,
    },
    /// `CREATE_REPLICATION_SLOT` of a slot that exists.
    #[error("replication slot {slot:?} already exists")]
    SlotAlreadyExists {
        /// Slot name.
        slot: String,
    },
    /// The slot does not exist.
    #[error("replication slot {slot:?} does not exist: create it (ebb does on first start)")]
    SlotMissing {
        /// Slot name.
        slot: String,
    },
    /// The server removed WAL the slot still needed (`wal_status = 'lost'`).
    #[error(
        "replication slot {slot:?} was invalidated (wal_status = 'lost'): the WAL it needed is gone. \
         Drop the slot and resynchronise from a new snapshot; raise max_slot_wal_keep_size to avoid this"
    )]
    SlotInvalidated {
        /// Slot name.
        slot: String,
    },
    /// A publication named in `START_REPLICATION` does not exist.
    #[error(
        "publication {publication:?} does not exist in this database: CREATE PUBLICATION {publication} FOR TABLE ..."
    )]
    PublicationMissing {
        /// The missing publication.
        publication: String,
    },
    /// TLS was required and the server does not offer it.
    #[error("sslmode requires TLS and the server does not support it")]
    TlsNotSupported,
    /// The TLS configuration is unusable.
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    /// Any other error the server reported.
    #[error("PostgreSQL: {0}")]
    Server(#[source] Box<DbError>),
    /// The server sent something the protocol does not allow here.
    #[error("unexpected message from PostgreSQL: {0}")]
    Protocol(String),
    /// An XLogData payload is not valid pgoutput.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The server's authentication method is not supported.
    #[error(
        "PostgreSQL asked for authentication method {0}, which ebb does not support (use scram-sha-256, md5, password or trust)"
    )]
    UnsupportedAuthentication(String),
}

impl From<DbError> for ReplicationError {
    fn from(e: DbError) -> Self {
        ReplicationError::Server(Box::new(e))
    }
}

impl ReplicationError {
    /// How to react to this error.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            ReplicationError::Io(_)
            | ReplicationError::ConnectTimeout(_)
            | ReplicationError::Protocol(_) => RetryClass::RETRY,
            ReplicationError::SlotActive { .. } => RetryClass::Retryable {
                after: Some(Duration::from_secs(10)),
            },
            ReplicationError::Server(e) => sqlstate_retry_class(&e.code),
            ReplicationError::Decode(e) => e.retry_class(),
            ReplicationError::BadCredentials { .. }
            | ReplicationError::PasswordRequired { .. }
            | ReplicationError::AccessDenied { .. }
            | ReplicationError::NoReplicationPrivilege { .. }
            | ReplicationError::WalLevelNotLogical { .. }
            | ReplicationError::SlotAlreadyExists { .. }
            | ReplicationError::SlotMissing { .. }
            | ReplicationError::SlotInvalidated { .. }
            | ReplicationError::PublicationMissing { .. }
            | ReplicationError::TlsNotSupported
            | ReplicationError::TlsConfig(_)
            | ReplicationError::UnsupportedAuthentication(_) => RetryClass::Fatal,
        }
    }

    /// The server's error, for the variants that carry one.
    pub fn db_error(&self) -> Option<&DbError> {
        match self {
            ReplicationError::Server(e)
            | ReplicationError::BadCredentials { source: e, .. }
            | ReplicationError::AccessDenied { source: e, .. }
            | ReplicationError::NoReplicationPrivilege { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// Retry classes by SQLSTATE class: connection problems, resource shortages, shutdowns and
/// serialization failures are transient; everything else needs a person.
fn sqlstate_retry_class(code: &str) -> RetryClass {
    match code.get(..2) {
        Some("08" | "53" | "40") => RetryClass::RETRY,
        Some("57") if code != "57014" => RetryClass::Retryable {
            after: Some(Duration::from_secs(5)),
        },
        _ if code == "55006" => RetryClass::Retryable {
            after: Some(Duration::from_secs(10)),
        },
        _ => RetryClass::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_error_fields_and_classifies() {
        let body = b"SFATAL\0VFATAL\0C57P01\0Mterminating connection\0Hreconnect\0\0";
        let e = DbError::parse(body);
        assert_eq!(e.severity, "FATAL");
        assert_eq!(e.code, "57P01");
        assert_eq!(
            e.to_string(),
            "FATAL 57P01: terminating connection (hint: reconnect)"
        );
        assert!(ReplicationError::from(e).retry_class().is_retryable());
        let e = DbError {
            code: "42P01".into(),
            ..DbError::default()
        };
        assert_eq!(ReplicationError::from(e).retry_class(), RetryClass::Fatal);
        // Truncated fields never panic.
        assert_eq!(DbError::parse(b"Mabc").message, "abc");
    }
}
