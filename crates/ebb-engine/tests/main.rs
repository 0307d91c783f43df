//! Integration tests of ebb-engine, one binary with modules.

mod diff;
mod golden;
mod identity;
mod metrics;
mod models;
