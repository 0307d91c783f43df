//! Webhook: JSON POSTs of changes, signed per the Standard Webhooks spec.
//!
//! One message per change, or `batch_size` changes per message. The `webhook-id` is derived
//! from the changes' idempotency keys, so a retried message has the same id and receivers
//! that deduplicate on it (as the spec asks) apply it once. A 410 Gone disables the
//! destination: every later write fails with [`DestinationError::Fatal`] without a request.

mod config;
mod request;
mod response;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use config::{MAX_BATCH_SIZE, WebhookConfig, signing_key};
pub use request::{body, message_id, signature};

use crate::http::{client, fingerprint, transport_error};
use crate::{
    Capabilities, Destination, DestinationError, Idempotency, MappingProblem, Operation, Record,
    WriteOutcome,
};

#[derive(Debug)]
pub struct WebhookDestination {
    config: WebhookConfig,
    keys: Vec<Vec<u8>>,
    client: reqwest::Client,
    disabled: AtomicBool,
}

impl WebhookDestination {
    pub fn new(config: WebhookConfig) -> Result<WebhookDestination, DestinationError> {
        let fatal = |reason: String| DestinationError::Fatal { reason };
        config.validate().map_err(fatal)?;
        let keys = config
            .secrets
            .iter()
            .map(signing_key)
            .collect::<Result<_, _>>()
            .map_err(fatal)?;
        Ok(WebhookDestination {
            client: client(config.timeout)?,
            config,
            keys,
            disabled: AtomicBool::new(false),
        })
    }

    /// Whether a 410 Gone disabled this endpoint.
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }
}

impl Destination for WebhookDestination {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn account(&self) -> String {
        format!("webhook:{}", fingerprint(&[self.config.url.as_str()]))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch_records: self.config.batch_size,
            operations: vec![
                Operation::Upsert,
                Operation::Update,
                Operation::Insert,
                Operation::Delete,
                Operation::Archive,
            ],
            rate_limits: self.config.rate_limit.into_iter().collect(),
            idempotency: Idempotency::Keyed,
            partial_updates: false,
        }
    }

    fn validate_mapping(&self, fields: &[&str]) -> Result<(), Vec<MappingProblem>> {
        let problems: Vec<MappingProblem> = fields
            .iter()
            .filter(|f| f.is_empty())
            .map(|f| MappingProblem {
                field: f.to_string(),
                message: "a JSON field name may not be empty".into(),
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    async fn write(&self, records: &[Record]) -> Result<WriteOutcome, DestinationError> {
        if self.is_disabled() {
            return Err(DestinationError::Fatal {
                reason: "the webhook endpoint answered 410 Gone earlier and is disabled".into(),
            });
        }
        if records.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let batched = self.config.batch_size > 1;
        let body = request::body(records, batched);
        let id = request::message_id(records);
        self.send(&id, body, records.len()).await
    }
}

impl WebhookDestination {
    /// Sends one message that is not a change (an outbox event, say), signed like the
    /// changes. `id` is its `webhook-id`: keep it the same on every retry of the message.
    pub async fn post_message(&self, id: &str, body: Vec<u8>) -> Result<(), DestinationError> {
        if self.is_disabled() {
            return Err(DestinationError::Fatal {
                reason: "the webhook endpoint answered 410 Gone earlier and is disabled".into(),
            });
        }
        self.send(id, body, 1).await.map(|_| ())
    }

    async fn send(
        &self,
        id: &str,
        body: Vec<u8>,
        records: usize,
    ) -> Result<WriteOutcome, DestinationError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut req = self
            .client
            .post(self.config.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string());
        if !self.keys.is_empty() {
            req = req.header(
                "webhook-signature",
                request::signature(&self.keys, id, timestamp, &body),
            );
        }
        let resp = req.body(body).send().await.map_err(transport_error)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(transport_error)?;
        let outcome = response::outcome(status, &headers, &text, records);
        if status == reqwest::StatusCode::GONE {
            self.disabled.store(true, Ordering::Relaxed);
        }
        outcome
    }
}
