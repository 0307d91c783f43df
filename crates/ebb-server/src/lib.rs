//! ebb's network endpoints and its service:
//!
//! - [`serve`]: `ebb serve`, an HTTP API under `/v1` ([`api`]), a scheduler ([`schedule`])
//!   and workers ([`worker`]) that share runs with any number of other `ebb serve`
//!   processes through one state store, and relay the outbox's events ([`relay`]).
//! - [`pgwire`]: the metrics SQL endpoint on the PostgreSQL wire protocol
//!   (`ebb metrics serve`).
//!
//! The engine (`ebb-engine`) never does network I/O; this crate puts it on a socket.

pub mod api;
pub mod json;
pub mod pgwire;
pub mod record;
pub mod relay;
pub mod schedule;
pub mod serve;
pub mod worker;

use ebb_core::project::Sync;

/// The tenant a sync belongs to (`tenant:` in its yml, or `default`).
pub fn tenant_of(sync: &Sync) -> &str {
    sync.config
        .tenant
        .as_ref()
        .map_or(ebb_sync::DEFAULT_TENANT, |t| t.value.as_str())
}
