//! The receiver's answer to per-change results.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::http::{excerpt, retry_after, status_error};
use crate::{DestinationError, RateSignal, WriteOutcome};

/// What a receiver's status means for the `n` changes of one message.
///
/// 2xx accepts all of them. 410 Gone means the receiver asks never to be called again.
/// 400, 413 and 422 refuse the message for its content (a smaller batch may isolate the
/// bad change); the reason is the body's `error` or `message`, with its `field` if any.
pub fn outcome(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    n: usize,
) -> Result<WriteOutcome, DestinationError> {
    if status.is_success() {
        return Ok(WriteOutcome::all_accepted(n, RateSignal::default()));
    }
    match status.as_u16() {
        410 => Err(DestinationError::Fatal {
            reason: "the webhook endpoint answered 410 Gone and is disabled; re-enable it after the receiver is fixed".into(),
        }),
        400 | 413 | 422 => {
            let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
            let text = |k: &str| {
                parsed
                    .as_ref()
                    .and_then(|v| v.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            let reason = text("error")
                .or_else(|| text("message"))
                .unwrap_or_else(|| excerpt(body));
            Err(DestinationError::Rejected {
                reason: format!("HTTP {}: {reason}", status.as_u16()),
                field: text("field"),
            })
        }
        429 => Err(DestinationError::Throttled {
            after: retry_after(headers),
            policy: None,
        }),
        _ => Err(status_error(status, headers, body)),
    }
}
