//! One module a verb.

pub mod cdc;
pub mod check;
pub mod init;
pub mod metrics;
pub mod models;
