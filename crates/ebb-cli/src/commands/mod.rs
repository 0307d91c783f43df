//! One module a verb.

pub mod check;
pub mod init;
