//! A table in a PostgreSQL database.
//!
//! One write is one transaction: the records are staged with a single `COPY` into a
//! temporary table, then applied with one statement per distinct set of fields (records
//! that carry only their changed fields leave the other columns as they are):
//!
//! - upsert: `UPDATE ... FROM` the staged rows whose key exists, then `INSERT ... SELECT
//!   ... ON CONFLICT (key) DO UPDATE SET` the carried columns for the others (so a record
//!   with only its changed fields never proposes a row that breaks `NOT NULL`);
//! - insert-only: the same with `DO NOTHING` (existing rows are not touched);
//! - update-only: `UPDATE ... FROM` the staged rows; a key with no row is rejected;
//! - delete and archive: `DELETE ... USING` the staged keys (a missing row is already gone).
//!
//! Postgres casts each JSON value to the column's type (`jsonb_populate_record`). A value
//! that does not fit, or violates a constraint, fails the transaction as a whole: the
//! write is [`DestinationError::Rejected`] with Postgres's message (and column), nothing is
//! applied, and delivery splits the batch until the bad record stands alone. Upserts and
//! deletes by key are idempotent, so a retried write has no further effect.

mod config;
mod request;
mod response;
#[cfg(test)]
mod tests;

use std::pin::pin;

use bytes::Bytes;
use futures::SinkExt;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

pub use config::{MAX_BATCH_RECORDS, PostgresConfig, quote_ident};

use crate::http::fingerprint;
use crate::{
    Capabilities, Destination, DestinationError, Idempotency, MappingProblem, Operation,
    RateSignal, Record, RecordResult, WriteOutcome,
};

#[derive(Debug)]
pub struct PostgresDestination {
    config: PostgresConfig,
    /// One connection, made on the first write and again after it breaks.
    client: Mutex<Option<Client>>,
}

impl PostgresDestination {
    pub fn new(config: PostgresConfig) -> Result<PostgresDestination, DestinationError> {
        config
            .validate()
            .map_err(|reason| DestinationError::Fatal { reason })?;
        config
            .url
            .expose()
            .parse::<tokio_postgres::Config>()
            .map_err(|e| DestinationError::Fatal {
                reason: format!("url is not a Postgres connection string: {e}"),
            })?;
        Ok(PostgresDestination {
            config,
            client: Mutex::new(None),
        })
    }

    async fn connect(&self) -> Result<Client, DestinationError> {
        let (client, connection) = tokio_postgres::connect(self.config.url.expose(), NoTls)
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) if db.code().code().starts_with("28") || db.code().code() == "3D000" => {
                    DestinationError::Fatal {
                        reason: format!(
                            "cannot log in to the destination database: {}",
                            db.message()
                        ),
                    }
                }
                _ => DestinationError::Retryable {
                    after: None,
                    reason: "cannot connect to the destination database".into(),
                    source: Some(Box::new(e)),
                },
            })?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "destination database connection ended");
            }
        });
        Ok(client)
    }

    /// Records grouped by their field names (first-seen order), each group's records in
    /// order: the positions of the records in each group.
    fn groups(records: &[Record]) -> Vec<(Vec<String>, Vec<usize>)> {
        let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let mut names: Vec<String> = r.fields.keys().cloned().collect();
            names.sort();
            match groups.iter_mut().find(|(n, _)| *n == names) {
                Some((_, members)) => members.push(i),
                None => groups.push((names, vec![i])),
            }
        }
        groups
    }

    async fn apply(
        &self,
        client: &mut Client,
        op: Operation,
        records: &[Record],
    ) -> Result<Vec<RecordResult>, tokio_postgres::Error> {
        let table = self.config.qualified_table();
        let key = self.config.key_column.as_str();
        let groups = if op.removes() {
            vec![(Vec::new(), (0..records.len()).collect())]
        } else {
            Self::groups(records)
        };
        let ordered: Vec<&Record> = groups
            .iter()
            .flat_map(|(_, members)| members.iter().map(|i| &records[*i]))
            .collect();
        let tx = client.transaction().await?;
        tx.batch_execute(request::STAGE).await?;
        {
            let sink = tx.copy_in::<_, Bytes>(request::COPY).await?;
            let mut sink = pin!(sink);
            sink.send(Bytes::from(request::copy_text(&ordered, key)))
                .await?;
            sink.as_mut().finish().await?;
        }
        let mut results = vec![RecordResult::Accepted; records.len()];
        let mut lo = 0;
        for (names, members) in &groups {
            let hi = lo + members.len();
            let mut columns: Vec<&str> = vec![key];
            columns.extend(names.iter().map(String::as_str).filter(|c| *c != key));
            match op {
                Operation::Upsert | Operation::Insert => {
                    let upsert = op == Operation::Upsert;
                    if upsert && columns.len() > 1 {
                        let sql = request::update(&table, key, &columns, lo, hi);
                        tx.execute(sql.as_str(), &[]).await?;
                    }
                    let sql = request::upsert(&table, key, &columns, lo, hi, upsert);
                    tx.execute(sql.as_str(), &[]).await?;
                }
                Operation::Update => {
                    let sql = request::update(&table, key, &columns, lo, hi);
                    let found: std::collections::HashSet<String> = tx
                        .query(sql.as_str(), &[])
                        .await?
                        .iter()
                        .map(|row| row.get::<_, String>(0))
                        .collect();
                    for i in members {
                        if !found.contains(&records[*i].id) {
                            results[*i] = RecordResult::Rejected {
                                reason: format!(
                                    "no row of {table} has {key} = {}; update-only does not create rows",
                                    records[*i].id
                                ),
                                field: Some(key.to_string()),
                            };
                        }
                    }
                }
                Operation::Delete | Operation::Archive => {
                    tx.execute(request::delete(&table, key).as_str(), &[])
                        .await?;
                }
            }
            lo = hi;
        }
        tx.commit().await?;
        Ok(results)
    }
}

impl Destination for PostgresDestination {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn account(&self) -> String {
        format!("postgres:{}", fingerprint(&[self.config.url.expose()]))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch_records: MAX_BATCH_RECORDS,
            operations: vec![
                Operation::Upsert,
                Operation::Update,
                Operation::Insert,
                Operation::Delete,
                Operation::Archive,
            ],
            rate_limits: Vec::new(),
            idempotency: Idempotency::ByRecordId,
            partial_updates: true,
        }
    }

    fn validate_mapping(&self, fields: &[&str]) -> Result<(), Vec<MappingProblem>> {
        let problems: Vec<MappingProblem> = fields
            .iter()
            .filter(|f| f.is_empty() || f.len() > 63 || f.contains('\0'))
            .map(|f| MappingProblem {
                field: f.to_string(),
                message: "is not a Postgres column name (1 to 63 characters)".into(),
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
        if records.len() > MAX_BATCH_RECORDS {
            return Err(DestinationError::Fatal {
                reason: format!(
                    "a Postgres write takes at most {MAX_BATCH_RECORDS} records, {} were given",
                    records.len()
                ),
            });
        }
        if records.iter().any(|r| r.op != first.op) {
            return Err(DestinationError::Fatal {
                reason: "a batch mixes operations; delivery sends one operation a batch".into(),
            });
        }
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.connect().await?);
        }
        let client = guard.as_mut().expect("connected above");
        match self.apply(client, first.op, records).await {
            Ok(results) => Ok(WriteOutcome {
                results,
                rate: RateSignal::default(),
            }),
            Err(err) => {
                if client.is_closed() {
                    *guard = None;
                }
                Err(response::error(
                    err,
                    &self.config.qualified_table(),
                    &self.config.key_column,
                ))
            }
        }
    }
}
