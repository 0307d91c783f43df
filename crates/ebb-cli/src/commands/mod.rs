//! One module a verb.

pub mod cdc;
pub mod check;
pub mod identity;
pub mod init;
pub mod models;
