//! Parquet export settings: the root (`path`: a folder relative to the project, or
//! `s3://bucket/prefix`) from `ebb.yml`, the dataset folder from the sync's `object`.

use std::path::{Path, PathBuf};

use ebb_core::config::project::DestinationConfig;

/// Records in one file at most.
pub const MAX_FILE_RECORDS: usize = 100_000;

/// Where files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// A local folder (absolute).
    Local(PathBuf),
    /// `s3://bucket/prefix`; credentials and region from the environment (`AWS_*`).
    S3 { bucket: String, prefix: String },
}

#[derive(Debug, Clone)]
pub struct ParquetConfig {
    pub root: Root,
    /// The dataset folder under the root (the sync's `object`).
    pub dataset: String,
}

impl ParquetConfig {
    /// `path` is a folder (relative to `project_dir`) or `s3://bucket/prefix`.
    pub fn new(path: &str, project_dir: &Path, dataset: &str) -> Result<ParquetConfig, String> {
        let root = if let Some(rest) = path.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            Root::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            }
        } else if path.contains("://") {
            return Err(format!(
                "path \"{path}\" is not a folder or s3://bucket/prefix; other stores are not supported"
            ));
        } else {
            Root::Local(project_dir.join(path))
        };
        let config = ParquetConfig {
            root,
            dataset: dataset.to_string(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads the `parquet` kind of a destination in `ebb.yml`.
    pub fn from_config(
        config: &DestinationConfig,
        project_dir: &Path,
        dataset: &str,
    ) -> Result<ParquetConfig, String> {
        let DestinationConfig::Parquet { path } = config else {
            return Err(format!("destination is {}, not parquet", config.kind()));
        };
        ParquetConfig::new(path, project_dir, dataset)
    }

    /// Checks the settings without I/O.
    pub fn validate(&self) -> Result<(), String> {
        if let Root::S3 { bucket, .. } = &self.root
            && bucket.is_empty()
        {
            return Err("path s3:// has no bucket; write s3://bucket/prefix".into());
        }
        if let Root::Local(dir) = &self.root
            && dir.as_os_str().is_empty()
        {
            return Err("path is empty; write a folder like exports/ or s3://bucket/prefix".into());
        }
        let ok = !self.dataset.is_empty()
            && self
                .dataset
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && !self.dataset.starts_with('.');
        if !ok {
            return Err(format!(
                "object \"{}\" is not a folder name; use letters, digits, _, - and .",
                self.dataset
            ));
        }
        Ok(())
    }
}
