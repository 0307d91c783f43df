//! HubSpot CRM objects through the v3 batch endpoints.
//!
//! Upserts and updates go to `batch/upsert` / `batch/update` by `idProperty`, at most 100
//! inputs a request, each with an `objectWriteTraceId` so a 207 answer maps errors back to
//! records. Deletes and archives read the records' ids by `idProperty` (`batch/read`) and
//! archive them (`batch/archive`); a record that is not there counts as removed. Upserts
//! and archives by id are idempotent, so a retried batch has no further effect.

mod config;
mod request;
mod response;
#[cfg(test)]
mod tests;

use serde_json::Value;

pub use config::{DAILY, DEFAULT_BASE_URL, HubspotConfig, MAX_BATCH_INPUTS, TEN_SECONDLY};

use crate::http::{client, fingerprint, join, transport_error};
use crate::{
    Capabilities, Destination, DestinationError, Idempotency, MappingProblem, Operation,
    RateSignal, Record, RecordResult, WriteOutcome,
};

#[derive(Debug)]
pub struct HubspotDestination {
    config: HubspotConfig,
    client: reqwest::Client,
}

impl HubspotDestination {
    pub fn new(config: HubspotConfig) -> Result<HubspotDestination, DestinationError> {
        config
            .validate()
            .map_err(|reason| DestinationError::Fatal { reason })?;
        Ok(HubspotDestination {
            client: client(config.timeout)?,
            config,
        })
    }

    /// POSTs `body` to `batch/{action}`: the status, rate signal and body text.
    async fn post(
        &self,
        action: &str,
        body: &Value,
    ) -> Result<(reqwest::StatusCode, RateSignal, String), DestinationError> {
        let url = join(
            &self.config.base_url,
            &format!("crm/v3/objects/{}/batch/{action}", self.config.object_type),
        );
        let resp = self
            .client
            .post(url)
            .bearer_auth(self.config.token.expose())
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).expect("JSON values serialize"))
            .send()
            .await
            .map_err(transport_error)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(transport_error)?;
        if !status.is_success() {
            return Err(response::error(status, &headers, &text));
        }
        Ok((status, response::rate_signal(&headers), text))
    }

    fn parse(text: &str) -> Result<response::BatchResponse, DestinationError> {
        if text.trim().is_empty() {
            return Ok(response::BatchResponse::default());
        }
        serde_json::from_str(text).map_err(|e| DestinationError::Retryable {
            after: None,
            reason: format!("HubSpot answered with a body that is not a batch response: {e}"),
            source: None,
        })
    }

    async fn write_batch(
        &self,
        action: &str,
        records: &[Record],
    ) -> Result<WriteOutcome, DestinationError> {
        let body = request::write_body(records, &self.config.id_property);
        let (_, rate, text) = self.post(action, &body).await?;
        let parsed = Self::parse(&text)?;
        Ok(WriteOutcome {
            results: response::write_results(records.len(), &parsed),
            rate,
        })
    }

    async fn archive(&self, records: &[Record]) -> Result<WriteOutcome, DestinationError> {
        let body = request::read_body(records, &self.config.id_property);
        let (_, _, text) = self.post("read", &body).await?;
        let found = response::found_ids(&Self::parse(&text)?, &self.config.id_property);
        let ids: Vec<String> = records
            .iter()
            .filter_map(|r| found.get(&r.id).cloned())
            .collect();
        let mut rate = RateSignal::default();
        if !ids.is_empty() {
            rate = self.post("archive", &request::archive_body(&ids)).await?.1;
        }
        Ok(WriteOutcome::all_accepted(records.len(), rate))
    }
}

impl Destination for HubspotDestination {
    fn kind(&self) -> &'static str {
        "hubspot"
    }

    fn account(&self) -> String {
        format!(
            "hubspot:{}",
            fingerprint(&[self.config.base_url.as_str(), self.config.token.expose()])
        )
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch_records: MAX_BATCH_INPUTS,
            operations: vec![
                Operation::Upsert,
                Operation::Update,
                Operation::Delete,
                Operation::Archive,
            ],
            rate_limits: self.config.rate_limits.clone(),
            idempotency: Idempotency::ByRecordId,
            partial_updates: true,
        }
    }

    fn requests_per_write(&self, op: Operation) -> usize {
        if op.removes() { 2 } else { 1 }
    }

    fn validate_mapping(&self, fields: &[&str]) -> Result<(), Vec<MappingProblem>> {
        let problems: Vec<MappingProblem> = fields
            .iter()
            .filter(|f| !config::is_internal_name(f))
            .map(|f| MappingProblem {
                field: f.to_string(),
                message: format!(
                    "is not a HubSpot property's internal name; write it in lowercase with underscores, e.g. \"{}\"",
                    suggest(f)
                ),
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
        if records.len() > MAX_BATCH_INPUTS {
            return Err(DestinationError::Fatal {
                reason: format!(
                    "a HubSpot batch takes at most {MAX_BATCH_INPUTS} inputs, {} were given",
                    records.len()
                ),
            });
        }
        if records.iter().any(|r| r.op != first.op) {
            return Err(DestinationError::Fatal {
                reason: "a batch mixes operations; delivery sends one operation a batch".into(),
            });
        }
        match first.op {
            Operation::Upsert => self.write_batch("upsert", records).await,
            Operation::Update => self.write_batch("update", records).await,
            Operation::Delete | Operation::Archive => self.archive(records).await,
            Operation::Insert => Ok(WriteOutcome {
                results: vec![
                    RecordResult::Rejected {
                        reason: "the hubspot destination does not do insert-only; use mode upsert"
                            .into(),
                        field: None,
                    };
                    records.len()
                ],
                rate: RateSignal::default(),
            }),
        }
    }
}

/// `Lead Score` → `lead_score`.
fn suggest(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}
