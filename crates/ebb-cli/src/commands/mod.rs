//! One module a verb.

pub mod check;
pub mod init;
pub mod models;
