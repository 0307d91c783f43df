//! Integration tests of ebb-server, one binary with modules.

mod api;
mod common;
mod psql;
