//! Wire-level PostgreSQL for ebb: everything that reads bytes a PostgreSQL server sends.
//!
//! Upstream `tokio-postgres` cannot speak the streaming replication protocol, so ebb has its
//! own replication connection built on `postgres-protocol`'s message codecs and tokio, and its
//! own decoder of the `pgoutput` logical decoding plugin. Values become Arrow arrays through
//! one type mapping shared by pgoutput's text and binary formats and by binary `COPY`.
//!
//! Nothing here panics on bytes from the network: decoders return typed errors naming the
//! message and offset, and are covered by property tests and a fuzz target.
//!
//! # Layout
//!
//! - [`pgoutput`]: the pgoutput messages (protocol versions 1–4), a zero-copy [`pgoutput::Decoder`]
//!   that tracks streamed blocks, and an encoder used by tests.
//! - [`lsn`]: [`Lsn`] and [`PgTimestamp`], the positions and times of the protocol.
//! - [`replication`]: the replication connection (startup, TLS, authentication, replication
//!   commands, the CopyBoth stream with keepalives and standby status updates).
//! - [`types`]: the PostgreSQL → Arrow type mapping ([`types::PgType`]), text and binary
//!   value parsers, and the builders that turn rows into Arrow batches
//!   ([`types::RowBatchBuilder`]).
//! - [`copy`]: binary `COPY ... TO STDOUT` into Arrow batches ([`copy::BinaryCopyReader`]).
//! - [`retry`]: [`RetryClass`], carried by every error of this crate.

pub mod copy;
pub mod lsn;
pub mod pgoutput;
pub mod replication;
pub mod retry;
pub mod types;

pub use lsn::{Lsn, PgTimestamp};
pub use retry::RetryClass;
