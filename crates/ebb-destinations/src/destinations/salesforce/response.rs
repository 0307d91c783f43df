//! Salesforce answers: errors to retry classes, job info, and result CSVs back to
//! per-record results.

use std::collections::HashMap;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::http::{excerpt, retry_after, status_error};
use crate::{DestinationError, RateSignal, RecordResult};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInfo {
    pub id: String,
    pub state: String,
    #[serde(default)]
    pub error_message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiError {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

/// `Sforce-Limit-Info: api-usage=USED/MAX`: requests left of the org's allocation.
pub fn rate_signal(headers: &HeaderMap) -> RateSignal {
    let remaining = headers
        .get("sforce-limit-info")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|part| part.trim().strip_prefix("api-usage="))
        })
        .and_then(|usage| usage.split_once('/'))
        .and_then(|(used, max)| {
            let (used, max): (u64, u64) = (used.trim().parse().ok()?, max.trim().parse().ok()?);
            Some(max.saturating_sub(used))
        });
    RateSignal {
        remaining,
        reset_after: None,
    }
}

/// A non-2xx answer. `REQUEST_LIMIT_EXCEEDED` (Salesforce sends it with 403) and
/// `LIMIT_EXCEEDED` (too many open jobs) are throttling; an invalid session or a missing
/// object is the config's fault; 5xx is temporary.
pub fn error(status: StatusCode, headers: &HeaderMap, body: &str) -> DestinationError {
    let parsed: ApiError = serde_json::from_str::<Vec<ApiError>>(body)
        .ok()
        .and_then(|v| v.into_iter().next())
        .or_else(|| serde_json::from_str(body).ok())
        .unwrap_or_default();
    let said = if parsed.message.is_empty() {
        excerpt(body)
    } else {
        format!("{}: {}", parsed.error_code, parsed.message)
    };
    match parsed.error_code.as_str() {
        "REQUEST_LIMIT_EXCEEDED" | "LIMIT_EXCEEDED" => {
            return DestinationError::Throttled {
                after: retry_after(headers),
                policy: Some(parsed.error_code),
            };
        }
        "INVALID_SESSION_ID" | "INVALID_AUTH_HEADER" => {
            return DestinationError::Fatal {
                reason: format!(
                    "Salesforce refused the access token (HTTP {}): {said}; get a new token for the org",
                    status.as_u16()
                ),
            };
        }
        "NOT_FOUND" | "INVALIDJOB" | "INVALID_TYPE" | "INVALID_FIELD" | "MALFORMED_QUERY" => {
            return DestinationError::Fatal {
                reason: format!(
                    "Salesforce refused the job (HTTP {}): {said}; check the sync's object and match field",
                    status.as_u16()
                ),
            };
        }
        _ => {}
    }
    match status.as_u16() {
        413 => DestinationError::Rejected {
            reason: format!("Salesforce: {said}"),
            field: None,
        },
        _ => match status_error(status, headers, body) {
            DestinationError::Retryable { after, source, .. } => DestinationError::Retryable {
                after,
                reason: format!("Salesforce HTTP {}: {said}", status.as_u16()),
                source,
            },
            other => other,
        },
    }
}

/// What a `Failed` job's `errorMessage` means for its records.
pub fn failed_job(message: &str) -> Option<DestinationError> {
    if message.starts_with("ExceededQuota") {
        return Some(DestinationError::Throttled {
            after: None,
            policy: Some("DAILY_RECORDS".into()),
        });
    }
    if message.starts_with("InvalidBatch") {
        let field = message
            .split_once("Field name not found :")
            .map(|(_, f)| f.trim().to_string());
        return Some(DestinationError::Rejected {
            reason: format!("Salesforce failed the job: {message}"),
            field,
        });
    }
    None
}

/// A result CSV: its header and rows, as text.
pub fn read_results(text: &str) -> Result<(Vec<String>, Vec<Vec<String>>), DestinationError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let bad = |e: csv::Error| DestinationError::Retryable {
        after: None,
        reason: format!("Salesforce sent a result file that is not CSV: {e}"),
        source: None,
    };
    let header = reader
        .headers()
        .map_err(bad)?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for row in reader.records() {
        rows.push(row.map_err(bad)?.iter().map(str::to_string).collect());
    }
    Ok((header, rows))
}

/// The field named by a `CODE:message:FIELDS --` error, if any.
pub fn error_field(error: &str) -> Option<String> {
    let trimmed = error.trim().trim_end_matches("--").trim_end();
    let (_, last) = trimmed.rsplit_once(':')?;
    let first = last.split(',').next()?.trim();
    let ok = !first.is_empty() && first.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then(|| first.to_string())
}

/// Puts the rows of the three result files into `results`, found through the key column
/// (`column` of the result rows, whose values are in `index`: key → record positions).
pub struct ResultMap<'a> {
    pub index: HashMap<&'a str, Vec<usize>>,
    pub column: &'a str,
}

impl ResultMap<'_> {
    fn positions(&self, header: &[String], row: &[String]) -> Vec<usize> {
        let Some(at) = header
            .iter()
            .position(|c| c.eq_ignore_ascii_case(self.column))
        else {
            return Vec::new();
        };
        row.get(at)
            .and_then(|v| self.index.get(v.as_str()))
            .cloned()
            .unwrap_or_default()
    }

    pub fn successful(
        &self,
        (header, rows): &(Vec<String>, Vec<Vec<String>>),
        out: &mut [RecordResult],
    ) {
        for row in rows {
            for i in self.positions(header, row) {
                out[i] = RecordResult::Accepted;
            }
        }
    }

    pub fn failed(
        &self,
        (header, rows): &(Vec<String>, Vec<Vec<String>>),
        out: &mut [RecordResult],
    ) {
        let error_at = header.iter().position(|c| c == "sf__Error");
        for row in rows {
            let error = error_at
                .and_then(|i| row.get(i))
                .cloned()
                .unwrap_or_else(|| "Salesforce failed the record without a reason".into());
            for i in self.positions(header, row) {
                out[i] = RecordResult::Rejected {
                    reason: error.clone(),
                    field: error_field(&error),
                };
            }
        }
    }

    pub fn unprocessed(
        &self,
        (header, rows): &(Vec<String>, Vec<Vec<String>>),
        out: &mut [RecordResult],
    ) {
        for row in rows {
            for i in self.positions(header, row) {
                out[i] = RecordResult::Retryable {
                    after: None,
                    reason: "Salesforce did not process this record (unprocessedrecords)".into(),
                };
            }
        }
    }
}
