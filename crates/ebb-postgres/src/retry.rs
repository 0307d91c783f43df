//! How a caller should react to an error: the retry class that every error of this crate carries.
//!
//! Deciding *whether* to retry lives here, next to the errors; the retry loop lives with the
//! caller (ebb-cdc, ebb-warehouse).

use std::time::Duration;

/// What a failed operation asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// A transient failure (network, server restart, slot briefly held by another process):
    /// reconnect and try again, after `after` if given.
    Retryable {
        /// The wait the failure itself suggests, if any.
        after: Option<Duration>,
    },
    /// This one record or value is bad (e.g. a `NaN` that an Arrow decimal cannot hold);
    /// the stream itself is fine.
    Rejected,
    /// Retrying cannot help until a person changes something: configuration, privileges,
    /// server settings, or a slot that must be recreated.
    Fatal,
}

impl RetryClass {
    /// Retry without a suggested wait.
    pub const RETRY: RetryClass = RetryClass::Retryable { after: None };

    /// Whether trying again may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, RetryClass::Retryable { .. })
    }
}
