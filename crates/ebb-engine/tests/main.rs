//! Integration tests of ebb-engine, one binary with modules.

mod golden;
mod models;
