//! ebb's network endpoints. Today: the metrics SQL endpoint on the PostgreSQL wire protocol
//! (`ebb metrics serve`). The HTTP API of `ebb serve` belongs here too when it arrives.
//!
//! The engine (`ebb-engine`) never does network I/O; this crate puts it on a socket.
//!
//! # Layout
//! - [`pgwire`]: metrics as SQL tables for psql and BI tools.

pub mod pgwire;
