//! Integration tests of ebb-engine, one binary with modules.

mod diff;
mod golden;
mod metrics;
mod identity;
mod models;
