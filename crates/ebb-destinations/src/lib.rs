//! Where ebb delivers: each destination turns a batch of [`Record`]s into the requests its API
//! takes and the API's answer back into one [`RecordResult`] per record.
//!
//! Destinations never retry, sleep or split batches: they say what happened (accepted,
//! rejected with the destination's reason, retryable after a delay, throttled) and
//! `ebb-delivery` decides what to do about it.
//!
//! # Layout
//! - [`any`]: [`AnyDestination`], every destination behind one type, built from a
//!   destination in `ebb.yml` (and a sync's object and match field).
//! - [`destination`]: the [`Destination`] trait, its [`Capabilities`] (batch size, operations,
//!   documented rate limits, idempotency), [`Record`], [`RecordResult`] and
//!   [`DestinationError`] with its retry class.
//! - [`http`]: what HTTP destinations share: base URL and timeout settings, the client, and
//!   reading `Retry-After` and transport failures into a retry class.
//! - [`destinations`]: one folder per destination, each with the same files: `config.rs`
//!   (settings from `ebb.yml`, checked without I/O), `request.rs` (building requests),
//!   `response.rs` (answers to per-record results) and `tests.rs`.
//!   - [`destinations::webhook`]: JSON POSTs signed per the Standard Webhooks spec.
//!   - [`destinations::hubspot`]: HubSpot CRM objects, batch upsert and archive.
//!   - [`destinations::salesforce`]: Salesforce Bulk API 2.0 ingest jobs (CSV upload,
//!     close, poll, successful/failed/unprocessed results mapped back to records).
//!   - [`destinations::braze`]: Braze `/users/track` attributes by `external_id`.

pub mod any;
pub mod destination;
pub mod destinations;
pub mod http;

pub use any::{AnyDestination, Target};
pub use destination::{
    Capabilities, Destination, DestinationError, Idempotency, MappingProblem, Operation, RateLimit,
    RateSignal, Record, RecordResult, WriteOutcome,
};
