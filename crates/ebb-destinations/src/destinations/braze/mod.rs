//! Braze `/users/track`: user attributes by `external_id`, 75 objects a request.
//!
//! Upserts create or update a user; updates set `_update_existing_only`. Setting the same
//! attributes again has no further effect, so retries are safe. Partial failures come back
//! in a 2xx answer's `errors`, each with the index of its object.

mod config;
mod request;
mod response;
#[cfg(test)]
mod tests;

pub use config::{BrazeConfig, MAX_OBJECTS, USERS_TRACK};

use crate::http::{client, fingerprint, join, transport_error};
use crate::{
    Capabilities, Destination, DestinationError, Idempotency, MappingProblem, Operation, Record,
    RecordResult, WriteOutcome,
};

#[derive(Debug)]
pub struct BrazeDestination {
    config: BrazeConfig,
    client: reqwest::Client,
}

impl BrazeDestination {
    pub fn new(config: BrazeConfig) -> Result<BrazeDestination, DestinationError> {
        config
            .validate()
            .map_err(|reason| DestinationError::Fatal { reason })?;
        Ok(BrazeDestination {
            client: client(config.timeout)?,
            config,
        })
    }
}

impl Destination for BrazeDestination {
    fn kind(&self) -> &'static str {
        "braze"
    }

    fn account(&self) -> String {
        format!(
            "braze:{}",
            fingerprint(&[self.config.base_url.as_str(), self.config.api_key.expose()])
        )
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch_records: MAX_OBJECTS,
            operations: vec![Operation::Upsert, Operation::Update],
            rate_limits: vec![self.config.rate_limit],
            idempotency: Idempotency::ByRecordId,
            partial_updates: true,
        }
    }

    fn validate_mapping(&self, fields: &[&str]) -> Result<(), Vec<MappingProblem>> {
        let problems: Vec<MappingProblem> = fields
            .iter()
            .filter(|f| f.is_empty() || f.starts_with('$') || f.starts_with('_') || **f == "external_id")
            .map(|f| MappingProblem {
                field: f.to_string(),
                message: "Braze attribute names may not be empty, start with $ or _, or be external_id (the match sets it)".into(),
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    async fn write(&self, records: &[Record]) -> Result<WriteOutcome, DestinationError> {
        let Some(first) = records.first() else {
            return Ok(WriteOutcome::default());
        };
        if records.len() > MAX_OBJECTS {
            return Err(DestinationError::Fatal {
                reason: format!(
                    "a Braze request takes at most {MAX_OBJECTS} attributes objects, {} were given",
                    records.len()
                ),
            });
        }
        if !matches!(first.op, Operation::Upsert | Operation::Update) {
            return Ok(WriteOutcome {
                results: vec![
                    RecordResult::Rejected {
                        reason: format!("the braze destination does not do {}", first.op),
                        field: None,
                    };
                    records.len()
                ],
                rate: Default::default(),
            });
        }
        let body = request::track_body(records);
        let resp = self
            .client
            .post(join(&self.config.base_url, "users/track"))
            .bearer_auth(self.config.api_key.expose())
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).expect("JSON values serialize"))
            .send()
            .await
            .map_err(transport_error)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(transport_error)?;
        if !status.is_success() {
            return Err(response::error(status, &headers, &text));
        }
        let parsed: response::TrackResponse =
            serde_json::from_str(&text).map_err(|e| DestinationError::Retryable {
                after: None,
                reason: format!("Braze answered with a body that is not a track response: {e}"),
                source: None,
            })?;
        Ok(WriteOutcome {
            results: response::results(records.len(), &parsed),
            rate: response::rate_signal(&headers),
        })
    }
}
