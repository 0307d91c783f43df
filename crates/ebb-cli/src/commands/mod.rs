//! One module a verb.

pub mod cdc;
pub mod check;
pub mod doctor;
pub mod identity;
pub mod init;
pub mod metrics;
pub mod models;
pub mod run;
pub mod runs;
pub mod serve;
pub mod sync;
