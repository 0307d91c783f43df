//! Canonical types of ebb: the project format and its validation, diagnostics that point at
//! a file, line and column, and credentials that never print.
//!
//! This crate does no I/O: callers read files and hand their text in.
//!
//! # Layout
//! - [`yaml`]: a YAML tree that keeps positions, and a serde deserializer over it that
//!   reports every problem in a document (unknown keys with suggestions, wrong types,
//!   missing fields) and resolves `${ENV_VAR}` references.
//! - [`config`]: the project format as types: `ebb.yml`, model YAML, syncs, metrics,
//!   identity. Each struct denies unknown fields.
//! - [`project`]: loading a whole project from its files' text, and the checks across files
//!   (unknown `ref()`, missing destinations, duplicate names, cycles).
//! - [`change`]: the canonical ChangeBatch (metadata columns `_ebb_op`, `_ebb_key`,
//!   `_ebb_seq`, `_ebb_changed`, then the entity's columns).
//! - [`diagnostic`]: a problem with its location and fix, and how it prints.
//! - [`Secret`], [`Spanned`]: a credential that prints as `[REDACTED]`; a value with its
//!   position.

pub mod change;
pub mod config;
pub mod diagnostic;
pub mod project;
mod secret;
mod spanned;
pub mod yaml;

pub use diagnostic::{Diagnostic, Severity};
pub use secret::Secret;
pub use spanned::Spanned;
