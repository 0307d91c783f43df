//! One folder per destination, each with the same files: `mod.rs` (the [`Destination`]
//! implementation), `config.rs`, `request.rs`, `response.rs` and `tests.rs`.
//!
//! [`Destination`]: crate::Destination

pub mod braze;
pub mod hubspot;
pub mod parquet;
pub mod postgres;
pub mod salesforce;
pub mod webhook;
