//! Integration tests of ebb-postgres against real PostgreSQL clusters (ebb-testkit).

mod auth;
mod copy;
mod errors;
mod oracle;
mod replication;
mod support;
