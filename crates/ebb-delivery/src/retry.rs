//! When to retry, kept apart from the loop that retries: [`classify`] reads a
//! destination's answer into an [`Action`], and [`RetryPolicy`] says how long to wait and
//! when the budget is spent.

use std::time::Duration;

use ebb_destinations::DestinationError;

/// How delivery retries a batch that failed as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first backoff; each retry doubles it.
    pub base: Duration,
    /// The longest backoff.
    pub max: Duration,
    /// Retries of a temporary failure (5xx, timeout, dropped connection) before the
    /// records go to the DLQ.
    pub attempts: u32,
    /// 429s one batch may meet before its records go to the DLQ (throttling is expected
    /// and paced by the quota, so this budget is larger).
    pub throttles: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(250),
            max: Duration::from_secs(60),
            attempts: 8,
            throttles: 30,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based): exponential, capped, with jitter
    /// in [half, full] so retries of many batches spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max);
        let half = exp / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// What to do with a batch after its write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Slow down, wait, and send the same batch again.
    Throttled { after: Option<Duration> },
    /// Send the same batch again after a backoff (at least `after`).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The batch's content was refused: split it in halves to find the bad record; a single
    /// record goes to the DLQ.
    Split {
        reason: String,
        field: Option<String>,
    },
    /// Nothing will succeed: stop, every undelivered record goes to the DLQ.
    Abort { reason: String },
}

/// The retry class of a failed write.
pub fn classify(err: &DestinationError) -> Action {
    match err {
        DestinationError::Throttled { after, .. } => Action::Throttled { after: *after },
        DestinationError::Retryable { after, .. } => Action::Retry {
            after: *after,
            reason: error_chain(err),
        },
        DestinationError::Rejected { reason, field } => Action::Split {
            reason: reason.clone(),
            field: field.clone(),
        },
        DestinationError::Fatal { reason } => Action::Abort {
            reason: reason.clone(),
        },
    }
}

/// An error and its sources, `: `-separated.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let b1 = p.backoff(1);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b3 = p.backoff(3);
            assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
            assert!(p.backoff(30) <= Duration::from_secs(1));
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(4)).collect();
        assert!(spread.len() > 1, "jittered");
    }

    #[test]
    fn errors_map_to_actions() {
        assert_eq!(
            classify(&DestinationError::Rejected {
                reason: "bad".into(),
                field: None
            }),
            Action::Split {
                reason: "bad".into(),
                field: None
            }
        );
        assert!(matches!(
            classify(&DestinationError::Fatal {
                reason: "gone".into()
            }),
            Action::Abort { .. }
        ));
    }
}
