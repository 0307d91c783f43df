//! The project format as Rust types: one module a file kind. Every struct denies unknown
//! fields; the deserializer in [`crate::yaml`] turns each mistake into a positioned problem.
//! Checks that need more than one file live in [`crate::project`].

mod common;
pub mod identity;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod project;
pub mod sync;

pub use common::{Duration, KeyColumns, NamedMap};
