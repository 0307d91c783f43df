//! Integration tests of ebb-cdc against real PostgreSQL clusters (ebb-testkit).

mod evolution;
mod lake;
mod pipeline;
mod recovery;
mod streaming;
mod support;
