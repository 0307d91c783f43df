//! `/users/track` answers to per-record results and rate signals.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::http::{excerpt, header_u64, retry_after, status_error};
use crate::{DestinationError, RateSignal, RecordResult};

#[derive(Debug, Default, Deserialize)]
pub struct TrackResponse {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub errors: Vec<TrackError>,
}

#[derive(Debug, Deserialize)]
pub struct TrackError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub input_array: String,
    #[serde(default)]
    pub index: Option<usize>,
}

/// How long until `X-RateLimit-Reset` (Unix seconds).
fn until_reset(headers: &HeaderMap) -> Option<Duration> {
    let reset = header_u64(headers, "x-ratelimit-reset")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now).max(1)))
}

pub fn rate_signal(headers: &HeaderMap) -> RateSignal {
    RateSignal {
        remaining: header_u64(headers, "x-ratelimit-remaining"),
        reset_after: until_reset(headers),
    }
}

/// A non-2xx answer: 429 waits until `Retry-After` or the reset; 400 refuses the batch's
/// content; 401/403 is a key problem.
pub fn error(status: StatusCode, headers: &HeaderMap, body: &str) -> DestinationError {
    let parsed: TrackResponse = serde_json::from_str(body).unwrap_or_default();
    let message = if parsed.message.is_empty() {
        excerpt(body)
    } else {
        parsed.message
    };
    match status.as_u16() {
        429 => DestinationError::Throttled {
            after: retry_after(headers).or_else(|| until_reset(headers)),
            policy: Some("users/track".into()),
        },
        400 => DestinationError::Rejected {
            reason: format!("HTTP 400: {message}"),
            field: None,
        },
        401 | 403 => DestinationError::Fatal {
            reason: format!(
                "Braze refused the API key (HTTP {}): {message}; check that it has the users.track permission",
                status.as_u16()
            ),
        },
        _ => status_error(status, headers, body),
    }
}

/// Errors name the index of their attributes object; the rest were processed.
pub fn results(n: usize, body: &TrackResponse) -> Vec<RecordResult> {
    let mut out = vec![RecordResult::Accepted; n];
    for e in &body.errors {
        if e.input_array != "attributes" {
            continue;
        }
        if let Some(i) = e.index.filter(|i| *i < n) {
            out[i] = RecordResult::Rejected {
                reason: e.kind.clone(),
                field: None,
            };
        }
    }
    out
}
