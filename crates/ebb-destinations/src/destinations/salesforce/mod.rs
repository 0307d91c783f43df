//! Salesforce through Bulk API 2.0 ingest jobs.
//!
//! One write is one job: open it (`POST jobs/ingest`), upload the records as CSV
//! (`PUT .../batches`), close it (`PATCH` `UploadComplete`), poll until it is
//! `JobComplete` or `Failed`, then read `successfulResults/`, `failedResults/` (each row
//! with `sf__Error`) and `unprocessedrecords/` and map each row back to its record by the
//! key column. A job holds at most 10,000 records, one of the org's internal batches.
//!
//! - Upserts go by the sync's external id field (`externalIdFieldName`), so a retried job
//!   has no further effect. Inserts carry the external id too; a `DUPLICATE_VALUE` on it
//!   means the record is there already, which is what insert-only asks, so it counts as
//!   accepted (a job retried after a lost answer does not dead-letter its own records).
//! - Updates, deletes and archives need record ids: unless the match field is `Id`, they
//!   are read first with `SELECT Id, EXT FROM OBJECT WHERE EXT IN (...)`. A delete of a
//!   record that is not there counts as done; an update of one is rejected. Deletes and
//!   archives both use `delete` (Salesforce's recycle bin is its soft delete).
//! - Polling is the one wait a destination does: it is part of a single write (the job's
//!   answer), not a retry. The first wait is `poll_interval`, doubling up to 2 s; a job not
//!   done within `job_timeout` is aborted and the batch reported retryable.
//! - When a request of a job fails, the job is aborted (best effort) and the error
//!   returned; delivery retries the whole batch as a new job.

mod config;
mod request;
mod response;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::time::Instant;

pub use config::{
    DAILY_API_REQUESTS, DAILY_JOBS, DAILY_RECORDS, DEFAULT_API_VERSION, DEFAULT_JOB_TIMEOUT,
    MAX_JOB_RECORDS, MAX_UPLOAD_BYTES, SalesforceConfig, is_api_name,
};

use crate::http::{client, fingerprint, join, transport_error};
use crate::{
    Capabilities, Destination, DestinationError, Idempotency, MappingProblem, Operation,
    RateSignal, Record, RecordResult, WriteOutcome,
};

#[derive(Debug)]
pub struct SalesforceDestination {
    config: SalesforceConfig,
    client: reqwest::Client,
}

/// The rows of one job: which records, and the value of the key column for each.
struct JobRows<'a> {
    /// Positions in the write's records.
    positions: Vec<usize>,
    records: Vec<&'a Record>,
    keys: Vec<String>,
}

impl SalesforceDestination {
    pub fn new(config: SalesforceConfig) -> Result<SalesforceDestination, DestinationError> {
        config
            .validate()
            .map_err(|reason| DestinationError::Fatal { reason })?;
        Ok(SalesforceDestination {
            client: client(config.timeout)?,
            config,
        })
    }

    fn url(&self, path: &str) -> url::Url {
        join(
            &self.config.instance_url,
            &format!("services/data/v{}/{path}", self.config.api_version),
        )
    }

    /// One request: the answer's headers and body, or its error's retry class.
    async fn call(
        &self,
        method: Method,
        url: url::Url,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(HeaderMap, String), DestinationError> {
        let mut request = self
            .client
            .request(method, url)
            .bearer_auth(self.config.token.expose())
            .header("accept", "application/json");
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let resp = request.send().await.map_err(transport_error)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(transport_error)?;
        if !status.is_success() {
            return Err(response::error(status, &headers, &text));
        }
        Ok((headers, text))
    }

    fn json(body: &Value) -> Option<(&'static str, Vec<u8>)> {
        Some((
            "application/json",
            serde_json::to_vec(body).expect("JSON values serialize"),
        ))
    }

    /// Record ids of the live records whose external id is one of `values`.
    async fn lookup_ids(
        &self,
        values: &[&str],
    ) -> Result<HashMap<String, String>, DestinationError> {
        let mut found = HashMap::new();
        for chunk in values.chunks(request::LOOKUP_CHUNK) {
            let mut url = self.url("query");
            url.query_pairs_mut().append_pair(
                "q",
                &request::lookup_query(&self.config.object, &self.config.external_id, chunk),
            );
            let (_, text) = self.call(Method::GET, url, None).await?;
            let body: Value =
                serde_json::from_str(&text).map_err(|e| DestinationError::Retryable {
                    after: None,
                    reason: format!(
                        "Salesforce answered a query with a body that is not JSON: {e}"
                    ),
                    source: None,
                })?;
            for row in body["records"].as_array().into_iter().flatten() {
                let id = row.get("Id").and_then(Value::as_str);
                let ext = row
                    .as_object()
                    .and_then(|o| {
                        o.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(&self.config.external_id))
                    })
                    .and_then(|(_, v)| v.as_str());
                if let (Some(id), Some(ext)) = (id, ext) {
                    found.insert(ext.to_string(), id.to_string());
                }
            }
        }
        Ok(found)
    }

    /// Best effort: a job that will not be used is aborted so it does not stay open.
    async fn abort(&self, job: &str) {
        let body = serde_json::json!({"state": "Aborted"});
        let url = self.url(&format!("jobs/ingest/{job}/"));
        if let Err(err) = self.call(Method::PATCH, url, Self::json(&body)).await {
            tracing::debug!(job = %job, error = %err, "cannot abort the Salesforce job");
        }
    }

    /// Runs one job over `rows` and returns each row's result (in `rows` order) and the
    /// last rate signal.
    async fn run_job(
        &self,
        operation: &str,
        key_column: &str,
        rows: &JobRows<'_>,
    ) -> Result<(Vec<RecordResult>, RateSignal), DestinationError> {
        let keys: Vec<&str> = rows.keys.iter().map(String::as_str).collect();
        let data = request::csv_data(key_column, &keys, &rows.records);
        if data.len() > MAX_UPLOAD_BYTES {
            return Err(DestinationError::Rejected {
                reason: format!(
                    "the job's CSV is {} bytes; Salesforce takes at most {MAX_UPLOAD_BYTES} in one upload",
                    data.len()
                ),
                field: None,
            });
        }
        let external_id = (operation == "upsert").then_some(self.config.external_id.as_str());
        let body = request::job_body(&self.config.object, operation, external_id);
        let (_, text) = self
            .call(Method::POST, self.url("jobs/ingest"), Self::json(&body))
            .await?;
        let job: response::JobInfo =
            serde_json::from_str(&text).map_err(|e| DestinationError::Retryable {
                after: None,
                reason: format!(
                    "Salesforce answered the job creation with an unexpected body: {e}"
                ),
                source: None,
            })?;
        match self.finish_job(&job.id, data, key_column, rows).await {
            Ok(done) => Ok(done),
            Err(err) => {
                self.abort(&job.id).await;
                Err(err)
            }
        }
    }

    async fn finish_job(
        &self,
        id: &str,
        data: Vec<u8>,
        key_column: &str,
        rows: &JobRows<'_>,
    ) -> Result<(Vec<RecordResult>, RateSignal), DestinationError> {
        let job_url = |suffix: &str| self.url(&format!("jobs/ingest/{id}/{suffix}"));
        self.call(Method::PUT, job_url("batches"), Some(("text/csv", data)))
            .await?;
        let close = serde_json::json!({"state": "UploadComplete"});
        self.call(Method::PATCH, job_url(""), Self::json(&close))
            .await?;
        let deadline = Instant::now() + self.config.job_timeout;
        let mut wait = self.config.poll_interval;
        let (state, error_message, headers) = loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
            let (headers, text) = self.call(Method::GET, job_url(""), None).await?;
            let info: response::JobInfo =
                serde_json::from_str(&text).map_err(|e| DestinationError::Retryable {
                    after: None,
                    reason: format!("Salesforce answered a job poll with an unexpected body: {e}"),
                    source: None,
                })?;
            if matches!(info.state.as_str(), "JobComplete" | "Failed" | "Aborted") {
                break (info.state, info.error_message, headers);
            }
            if Instant::now() >= deadline {
                return Err(DestinationError::Retryable {
                    after: None,
                    reason: format!(
                        "Salesforce job {id} was still {} after {:?}",
                        info.state, self.config.job_timeout
                    ),
                    source: None,
                });
            }
        };
        if state == "Aborted" {
            return Err(DestinationError::Retryable {
                after: None,
                reason: format!("Salesforce job {id} was aborted by someone else"),
                source: None,
            });
        }
        if state == "Failed"
            && let Some(err) = error_message.as_deref().and_then(response::failed_job)
        {
            if let DestinationError::Rejected { reason, field } = err {
                // The job's columns are the records' fields: every record is refused.
                let results = vec![RecordResult::Rejected { reason, field }; rows.positions.len()];
                return Ok((results, response::rate_signal(&headers)));
            }
            return Err(err);
        }
        let mut index: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, key) in rows.keys.iter().enumerate() {
            index.entry(key.as_str()).or_default().push(i);
        }
        let map = response::ResultMap {
            index,
            column: key_column,
        };
        let mut results = vec![
            RecordResult::Retryable {
                after: None,
                reason: format!(
                    "Salesforce job {id} ended {state} without a result for this record{}",
                    error_message.map(|m| format!(" ({m})")).unwrap_or_default()
                ),
            };
            rows.positions.len()
        ];
        let mut rate = response::rate_signal(&headers);
        for which in ["successfulResults", "failedResults", "unprocessedrecords"] {
            let (headers, text) = self
                .call(Method::GET, job_url(&format!("{which}/")), None)
                .await?;
            rate = response::rate_signal(&headers);
            let parsed = response::read_results(&text)?;
            match which {
                "successfulResults" => map.successful(&parsed, &mut results),
                "failedResults" => map.failed(&parsed, &mut results),
                _ => map.unprocessed(&parsed, &mut results),
            }
        }
        Ok((results, rate))
    }

    async fn write_op(
        &self,
        op: Operation,
        records: &[Record],
    ) -> Result<WriteOutcome, DestinationError> {
        let n = records.len();
        let mut results = vec![RecordResult::Accepted; n];
        let needs_ids = matches!(
            op,
            Operation::Update | Operation::Delete | Operation::Archive
        ) && !self.config.by_record_id();
        let mut rows = JobRows {
            positions: Vec::new(),
            records: Vec::new(),
            keys: Vec::new(),
        };
        if needs_ids {
            let values: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
            let ids = self.lookup_ids(&values).await?;
            for (i, record) in records.iter().enumerate() {
                match ids.get(&record.id) {
                    Some(id) => {
                        rows.positions.push(i);
                        rows.records.push(record);
                        rows.keys.push(id.clone());
                    }
                    None if op == Operation::Update => {
                        results[i] = RecordResult::Rejected {
                            reason: format!(
                                "no {} has {} = {}; update-only does not create records",
                                self.config.object, self.config.external_id, record.id
                            ),
                            field: Some(self.config.external_id.clone()),
                        };
                    }
                    // Already gone: the delete has its effect.
                    None => {}
                }
            }
        } else {
            for (i, record) in records.iter().enumerate() {
                if record.id.is_empty() {
                    results[i] = RecordResult::Rejected {
                        reason: format!(
                            "MISSING_ARGUMENT: the match value ({}) is empty",
                            self.config.external_id
                        ),
                        field: Some(self.config.external_id.clone()),
                    };
                    continue;
                }
                rows.positions.push(i);
                rows.records.push(record);
                rows.keys.push(record.id.clone());
            }
        }
        if rows.positions.is_empty() {
            return Ok(WriteOutcome {
                results,
                rate: RateSignal::default(),
            });
        }
        let (operation, key_column) = match op {
            Operation::Upsert => ("upsert", self.config.external_id.as_str()),
            Operation::Insert => ("insert", self.config.external_id.as_str()),
            Operation::Update => ("update", "Id"),
            Operation::Delete | Operation::Archive => ("delete", "Id"),
        };
        // Deletes carry only the Id column.
        let stripped: Vec<Record>;
        if op.removes() {
            stripped = rows
                .records
                .iter()
                .map(|r| Record {
                    fields: Default::default(),
                    ..(*r).clone()
                })
                .collect();
            rows.records = stripped.iter().collect();
        }
        let (job_results, rate) = self.run_job(operation, key_column, &rows).await?;
        for (result, i) in job_results.into_iter().zip(&rows.positions) {
            results[*i] = match result {
                RecordResult::Rejected { reason, .. }
                    if op == Operation::Insert && reason.starts_with("DUPLICATE_VALUE") =>
                {
                    RecordResult::Accepted
                }
                other => other,
            };
        }
        Ok(WriteOutcome { results, rate })
    }
}

impl Destination for SalesforceDestination {
    fn kind(&self) -> &'static str {
        "salesforce"
    }

    fn account(&self) -> String {
        format!(
            "salesforce:{}",
            fingerprint(&[
                self.config.instance_url.as_str(),
                self.config.token.expose()
            ])
        )
    }

    fn capabilities(&self) -> Capabilities {
        let mut operations = vec![
            Operation::Upsert,
            Operation::Update,
            Operation::Delete,
            Operation::Archive,
        ];
        if !self.config.by_record_id() {
            operations.push(Operation::Insert);
        }
        Capabilities {
            max_batch_records: MAX_JOB_RECORDS,
            operations,
            rate_limits: self.config.rate_limits.clone(),
            idempotency: Idempotency::ByRecordId,
            partial_updates: true,
        }
    }

    /// Create, upload, close, two polls, three result files; an id lookup before
    /// updates and deletes by external id.
    fn requests_per_write(&self, op: Operation) -> usize {
        let lookup = matches!(
            op,
            Operation::Update | Operation::Delete | Operation::Archive
        ) && !self.config.by_record_id();
        8 + usize::from(lookup)
    }

    fn validate_mapping(&self, fields: &[&str]) -> Result<(), Vec<MappingProblem>> {
        let problems: Vec<MappingProblem> = fields
            .iter()
            .filter(|f| !is_api_name(f) || f.eq_ignore_ascii_case("Id"))
            .map(|f| MappingProblem {
                field: f.to_string(),
                message: if f.eq_ignore_ascii_case("Id") {
                    "Id is the record id; match on it (match.destination: Id) instead of mapping to it".into()
                } else {
                    "is not a Salesforce field API name; use letters, digits and single underscores, e.g. MRR__c".into()
                },
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
        if records.len() > MAX_JOB_RECORDS {
            return Err(DestinationError::Fatal {
                reason: format!(
                    "a Salesforce job takes at most {MAX_JOB_RECORDS} records here, {} were given",
                    records.len()
                ),
            });
        }
        if records.iter().any(|r| r.op != first.op) {
            return Err(DestinationError::Fatal {
                reason: "a batch mixes operations; delivery sends one operation a batch".into(),
            });
        }
        if first.op == Operation::Insert && self.config.by_record_id() {
            return Ok(WriteOutcome {
                results: vec![
                    RecordResult::Rejected {
                        reason: "insert-only needs an external id field as the match (match.destination), not Id".into(),
                        field: None,
                    };
                    records.len()
                ],
                rate: RateSignal::default(),
            });
        }
        self.write_op(first.op, records).await
    }
}
