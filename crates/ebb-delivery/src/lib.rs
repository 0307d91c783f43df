//! Delivery: gets records to a destination once in effect, within the account's documented
//! limits, or into the dead-letter queue with the destination's reason. It knows no single
//! SaaS API: destinations (`ebb-destinations`) say what they can take and what happened,
//! this crate decides batching, pacing, retries and splitting.
//!
//! The entry points are [`deliver_changes`] (change batches and a sync's plan) and
//! [`deliver`] (records already planned); both return a [`DeliveryReport`] with
//! planned/sent/accepted/rejected/retried counts and the keys accepted, which is what a
//! sync commits to its snapshot.
//!
//! # Layout
//! - [`plan`]: sync modes (upsert, update, insert, mirror, archive) and field mapping turn
//!   change batches into records; updates carry only their changed fields where the
//!   destination takes partial updates.
//! - [`idempotency`]: keys from a record's origin (`sync + key + row hash`, `slot + LSN +
//!   index`).
//! - [`quota`]: per-account pacing from the documented limits, AIMD on 429, rate headers,
//!   fair shares (counted in requests) between the tenants of an account and between a
//!   tenant's syncs, real-time first.
//! - [`retry`]: the retry class of a failure and the backoff policy.
//! - [`dlq`]: the [`DeadLetters`] trait and an in-memory store.
//! - [`deliver`](mod@deliver): the loop.

pub mod deliver;
pub mod dlq;
pub mod idempotency;
pub mod plan;
pub mod quota;
pub mod retry;

pub use deliver::{DeliveryError, DeliveryOptions, DeliveryReport, deliver, deliver_changes};
pub use dlq::{DeadLetter, DeadLetters, DlqError, MemoryDeadLetters};
pub use idempotency::Origin;
pub use plan::{PlanError, SyncPlan};
pub use quota::{AccountQuota, Flow, Priority, Quotas};
pub use retry::RetryPolicy;
