//! Integration tests of ebb-cdc against real PostgreSQL clusters (ebb-testkit).

mod lake;
mod pipeline;
mod streaming;
mod support;
