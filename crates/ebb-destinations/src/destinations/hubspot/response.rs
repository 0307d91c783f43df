//! HubSpot answers to per-record results and rate signals.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::http::{excerpt, header_u64, retry_after, status_error};
use crate::{DestinationError, RateSignal, RecordResult};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    #[serde(default)]
    pub results: Vec<BatchResult>,
    #[serde(default)]
    pub errors: Vec<BatchError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    pub id: String,
    #[serde(default)]
    pub properties: HashMap<String, Option<String>>,
    #[serde(default)]
    pub object_write_trace_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct BatchError {
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub context: HashMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    policy_name: Option<String>,
}

/// `X-HubSpot-RateLimit-Remaining` and `-Interval-Milliseconds` (the window; when it ends
/// is not sent, so the whole interval is the safe bound).
pub fn rate_signal(headers: &HeaderMap) -> RateSignal {
    RateSignal {
        remaining: header_u64(headers, "x-hubspot-ratelimit-remaining"),
        reset_after: header_u64(headers, "x-hubspot-ratelimit-interval-milliseconds")
            .map(Duration::from_millis),
    }
}

/// A non-2xx answer: 429 is throttling (with its policy name: `TEN_SECONDLY_ROLLING`,
/// `DAILY`), 400 a batch refused for its content, 401/403 a token problem.
pub fn error(status: StatusCode, headers: &HeaderMap, body: &str) -> DestinationError {
    let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    match status.as_u16() {
        429 => {
            let after = retry_after(headers).or_else(|| {
                (parsed.policy_name.as_deref() == Some("DAILY")).then(|| Duration::from_secs(3600))
            });
            DestinationError::Throttled {
                after,
                policy: parsed.policy_name,
            }
        }
        400 => DestinationError::Rejected {
            reason: format!(
                "{}: {}",
                parsed.category.as_deref().unwrap_or("HTTP 400"),
                if parsed.message.is_empty() {
                    excerpt(body)
                } else {
                    parsed.message
                }
            ),
            field: None,
        },
        401 | 403 => DestinationError::Fatal {
            reason: format!(
                "HubSpot refused the token (HTTP {}): {}; check the private app's token and its crm.objects scopes",
                status.as_u16(),
                parsed.message
            ),
        },
        _ => status_error(status, headers, body),
    }
}

/// Maps a batch upsert/update answer (200 or 207) back to the `n` records by
/// `objectWriteTraceId`: in `results` → accepted; in `errors` → rejected with HubSpot's
/// category, message and property; in neither → retryable.
pub fn write_results(n: usize, body: &BatchResponse) -> Vec<RecordResult> {
    let mut out = vec![
        RecordResult::Retryable {
            after: None,
            reason: "HubSpot returned no result for this input".into(),
        };
        n
    ];
    let index = |trace: &str| trace.parse::<usize>().ok().filter(|i| *i < n);
    for result in &body.results {
        if let Some(i) = result.object_write_trace_id.as_deref().and_then(index) {
            out[i] = RecordResult::Accepted;
        }
    }
    for error in &body.errors {
        let field = error
            .context
            .get("propertyName")
            .and_then(|p| p.first())
            .cloned();
        for trace in error
            .context
            .get("objectWriteTraceId")
            .into_iter()
            .flatten()
        {
            if let Some(i) = index(trace) {
                out[i] = RecordResult::Rejected {
                    reason: format!("{}: {}", error.category, error.message),
                    field: field.clone(),
                };
            }
        }
    }
    out
}

/// Record ids found by a `batch/read` by `idProperty`: id property value → record id.
pub fn found_ids(body: &BatchResponse, id_property: &str) -> HashMap<String, String> {
    body.results
        .iter()
        .filter_map(|r| {
            let value = r.properties.get(id_property)?.clone()?;
            Some((value, r.id.clone()))
        })
        .collect()
}
