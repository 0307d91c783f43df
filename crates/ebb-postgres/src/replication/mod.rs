//! ebb's own streaming replication connection, on `postgres-protocol`'s codecs and tokio.
//!
//! [`ReplicationConnection::connect`] opens a `replication=database` session (TLS through
//! rustls, authentication trust / cleartext / MD5 / SCRAM-SHA-256), runs replication commands
//! and SQL with the simple query protocol, and becomes a [`ReplicationStream`] with
//! `START_REPLICATION`. Errors a user can act on (bad credentials, no `REPLICATION`
//! privilege, `wal_level` not logical, slot in use, invalidated or missing, publication
//! missing) each have their own [`ReplicationError`] variant.

mod config;
mod connection;
mod error;
mod stream;
mod wire;

pub use config::{ConfigError, Host, ReplicationConfig, SslMode};
pub use connection::{
    CopyOut, CreatedSlot, PgOutputOptions, QueryResult, ReplicationConnection, SlotState,
    SnapshotAction, SystemIdentity,
};
pub use error::{DbError, ReplicationError};
pub use stream::{ReplicationEvent, ReplicationStream, StreamMessage, XLogData};
