//! Parquet files on object_store (a local folder or `s3://`): bulk export.
//!
//! Each write is one file, `ROOT/DATASET/part-HASH.parquet`, holding the batch's records:
//! ebb's columns (`_ebb_op`, `_ebb_key`, `_ebb_id`, `_ebb_idempotency_key`) and the
//! records' fields. The file appears whole or not at all: it is one `put`, which
//! object_store makes atomic (a local file is written under a temporary name and renamed
//! into place; an S3 object exists only once its upload completes). The name comes from
//! the records' idempotency keys, so a retried write replaces its own file rather than
//! adding a copy. Deletes are rows with `_ebb_op = delete` and no fields: the export is a
//! change log, which readers fold by `_ebb_key`.

mod config;
mod request;
mod response;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::OnceCell;

pub use config::{MAX_FILE_RECORDS, ParquetConfig, Root};
pub use request::{META_COLUMNS, batch, file_name};

use crate::http::fingerprint;
use crate::{
    Capabilities, Destination, DestinationError, Idempotency, MappingProblem, Operation,
    RateSignal, Record, WriteOutcome,
};

#[derive(Debug)]
pub struct ParquetDestination {
    config: ParquetConfig,
    /// Made on the first write (a local root's folder is created then).
    store: OnceCell<(Arc<dyn ObjectStore>, StorePath)>,
}

impl ParquetDestination {
    pub fn new(config: ParquetConfig) -> Result<ParquetDestination, DestinationError> {
        config
            .validate()
            .map_err(|reason| DestinationError::Fatal { reason })?;
        Ok(ParquetDestination {
            config,
            store: OnceCell::new(),
        })
    }

    async fn store(&self) -> Result<&(Arc<dyn ObjectStore>, StorePath), DestinationError> {
        self.store
            .get_or_try_init(|| async {
                let fatal = |reason: String| DestinationError::Fatal { reason };
                match &self.config.root {
                    Root::Local(dir) => {
                        let dir = dir.join(&self.config.dataset);
                        tokio::task::spawn_blocking({
                            let dir = dir.clone();
                            move || std::fs::create_dir_all(dir)
                        })
                        .await
                        .map_err(|e| fatal(e.to_string()))?
                        .map_err(|e| fatal(format!("cannot create {}: {e}", dir.display())))?;
                        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                            .map_err(|e| fatal(format!("{}: {e}", dir.display())))?;
                        Ok((
                            Arc::new(store) as Arc<dyn ObjectStore>,
                            StorePath::default(),
                        ))
                    }
                    Root::S3 { bucket, prefix } => {
                        let store = object_store::aws::AmazonS3Builder::from_env()
                            .with_bucket_name(bucket)
                            .build()
                            .map_err(|e| fatal(format!("s3://{bucket}: {e}")))?;
                        let path = StorePath::from(
                            format!("{prefix}/{}", self.config.dataset).trim_start_matches('/'),
                        );
                        Ok((Arc::new(store) as Arc<dyn ObjectStore>, path))
                    }
                }
            })
            .await
    }
}

impl Destination for ParquetDestination {
    fn kind(&self) -> &'static str {
        "parquet"
    }

    fn account(&self) -> String {
        let root = match &self.config.root {
            Root::Local(dir) => dir.display().to_string(),
            Root::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        };
        format!("parquet:{}", fingerprint(&[&root]))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch_records: MAX_FILE_RECORDS,
            operations: vec![
                Operation::Upsert,
                Operation::Update,
                Operation::Insert,
                Operation::Delete,
                Operation::Archive,
            ],
            rate_limits: Vec::new(),
            idempotency: Idempotency::Keyed,
            partial_updates: false,
        }
    }

    fn validate_mapping(&self, fields: &[&str]) -> Result<(), Vec<MappingProblem>> {
        let problems: Vec<MappingProblem> = fields
            .iter()
            .filter(|f| f.is_empty() || META_COLUMNS.contains(f))
            .map(|f| MappingProblem {
                field: f.to_string(),
                message: "is empty or one of ebb's columns (_ebb_op, _ebb_key, _ebb_id, _ebb_idempotency_key); map it to another name".into(),
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    async fn write(&self, records: &[Record]) -> Result<WriteOutcome, DestinationError> {
        if records.is_empty() {
            return Ok(WriteOutcome::default());
        }
        if records.len() > MAX_FILE_RECORDS {
            return Err(DestinationError::Fatal {
                reason: format!(
                    "a Parquet file takes at most {MAX_FILE_RECORDS} records here, {} were given",
                    records.len()
                ),
            });
        }
        let bytes = batch(records)
            .and_then(|b| request::parquet_bytes(&b))
            .map_err(|reason| DestinationError::Rejected {
                reason,
                field: None,
            })?;
        let (store, root) = self.store().await?;
        let path = root.clone().join(file_name(records).as_str());
        store
            .put(&path, bytes.into())
            .await
            .map_err(|e| response::error(e, path.as_ref()))?;
        Ok(WriteOutcome::all_accepted(
            records.len(),
            RateSignal::default(),
        ))
    }
}

impl ParquetDestination {
    /// Where the files of this destination go (for messages): a folder or an S3 prefix.
    pub fn location(&self) -> String {
        match &self.config.root {
            Root::Local(dir) => dir.join(&self.config.dataset).display().to_string(),
            Root::S3 { bucket, prefix } => {
                format!(
                    "s3://{bucket}/{}",
                    format!("{prefix}/{}", self.config.dataset).trim_start_matches('/')
                )
            }
        }
    }
}
