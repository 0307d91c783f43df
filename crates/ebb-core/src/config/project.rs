//! `ebb.yml`: the project's name, warehouses, sources, destinations, state store, defaults
//! and tenants.

use serde::Deserialize;

use super::{Duration, NamedMap};
use crate::{Secret, Spanned};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    pub name: Spanned<String>,
    /// Version of the project format; only 1 exists.
    #[serde(default = "version_one")]
    pub version: Spanned<u32>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub warehouses: NamedMap<Spanned<WarehouseConfig>>,
    /// The warehouse models run on unless they say otherwise; default: the first one.
    #[serde(default)]
    pub default_warehouse: Option<Spanned<String>>,
    #[serde(default)]
    pub sources: NamedMap<SourceConfig>,
    #[serde(default)]
    pub destinations: NamedMap<Spanned<DestinationConfig>>,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub tenants: NamedMap<TenantConfig>,
    /// CDC pipelines declared here rather than in `pipelines/NAME.yml` (same fields).
    #[serde(default)]
    pub pipelines: NamedMap<crate::config::pipeline::PipelineConfig>,
    /// Where `ebb serve` relays the outbox's events (run results, ...).
    #[serde(default)]
    pub events: Option<Spanned<EventsConfig>>,
}

/// `events:` in ebb.yml: the outbox relay of `ebb serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// A webhook destination; each event is one signed message to it.
    pub destination: Spanned<String>,
    /// Only these topics (e.g. `run.finished`); default: every topic.
    #[serde(default)]
    pub topics: Vec<String>,
}

fn version_one() -> Spanned<u32> {
    Spanned::new(1, Default::default())
}

impl ProjectConfig {
    /// The name of the warehouse models use by default.
    pub fn default_warehouse(&self) -> Option<&str> {
        match &self.default_warehouse {
            Some(w) => Some(w.value.as_str()),
            None => self.warehouses.names().next(),
        }
    }
}

/// Where models run and sources live.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WarehouseConfig {
    /// Parquet, CSV and NDJSON files in a local folder or under `s3://bucket/prefix`.
    Lake {
        /// Relative to the project root, or an `s3://` URL.
        path: String,
    },
    /// A PostgreSQL database; models run inside it.
    Postgres {
        url: Secret,
        #[serde(default)]
        schema: Option<String>,
        #[serde(default)]
        pool_size: Option<u32>,
    },
}

impl WarehouseConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            WarehouseConfig::Lake { .. } => "lake",
            WarehouseConfig::Postgres { .. } => "postgres",
        }
    }
}

/// Raw tables that models read with `{{ source('name', 'table') }}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    #[serde(default)]
    pub warehouse: Option<Spanned<String>>,
    /// Postgres schema of the tables.
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tables: NamedMap<SourceTable>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceTable {
    /// Lake: a file or glob relative to the warehouse path.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// Postgres: the table's name when it differs from the key.
    #[serde(default)]
    pub identifier: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Csv,
    Parquet,
    Ndjson,
}

/// Where syncs deliver. Credentials are [`Secret`]s.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DestinationConfig {
    /// JSON POSTs signed per the Standard Webhooks spec.
    Webhook {
        url: String,
        /// `whsec_...` signing key.
        #[serde(default)]
        secret: Option<Secret>,
        /// Extra keys, each signing too, while a key is being rotated.
        #[serde(default)]
        secrets: Vec<Secret>,
        #[serde(default)]
        batch_size: Option<u32>,
        #[serde(default)]
        timeout: Option<Duration>,
    },
    /// HubSpot CRM objects.
    Hubspot {
        token: Secret,
        #[serde(default)]
        base_url: Option<String>,
        #[serde(default)]
        timeout: Option<Duration>,
    },
    /// Salesforce Bulk API 2.0.
    Salesforce {
        instance_url: String,
        token: Secret,
        #[serde(default)]
        api_version: Option<String>,
        #[serde(default)]
        timeout: Option<Duration>,
    },
    /// Braze `/users/track`.
    Braze {
        base_url: String,
        api_key: Secret,
        #[serde(default)]
        timeout: Option<Duration>,
    },
    /// A table in a PostgreSQL database.
    Postgres {
        url: Secret,
        #[serde(default)]
        schema: Option<String>,
    },
    /// Parquet files in a folder or under `s3://`.
    Parquet { path: String },
}

impl DestinationConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            DestinationConfig::Webhook { .. } => "webhook",
            DestinationConfig::Hubspot { .. } => "hubspot",
            DestinationConfig::Salesforce { .. } => "salesforce",
            DestinationConfig::Braze { .. } => "braze",
            DestinationConfig::Postgres { .. } => "postgres",
            DestinationConfig::Parquet { .. } => "parquet",
        }
    }

    /// A URL the destination talks to, for checks that need one.
    pub fn url(&self) -> Option<&str> {
        match self {
            DestinationConfig::Webhook { url, .. } => Some(url),
            DestinationConfig::Hubspot { base_url, .. } => base_url.as_deref(),
            DestinationConfig::Salesforce { instance_url, .. } => Some(instance_url),
            DestinationConfig::Braze { base_url, .. } => Some(base_url),
            DestinationConfig::Postgres { .. } | DestinationConfig::Parquet { .. } => None,
        }
    }
}

/// Where runs, the DLQ and checkpoints are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StateConfig {
    /// The embedded default: a SQLite file in the project.
    Sqlite {
        #[serde(default = "default_state_path")]
        path: String,
    },
    /// A PostgreSQL database, shared by every `ebb serve` worker.
    Postgres {
        url: Secret,
        #[serde(default)]
        schema: Option<String>,
    },
}

fn default_state_path() -> String {
    ".ebb/state.db".into()
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig::Sqlite {
            path: default_state_path(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default)]
    pub materialized: Materialized,
    #[serde(default)]
    pub sync_mode: SyncMode,
    #[serde(default)]
    pub timezone: Option<String>,
}

/// How a model's result is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Materialized {
    #[default]
    View,
    Table,
    Parquet,
    Ephemeral,
}

/// What a sync does with the changes it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Insert new records, update existing ones.
    #[default]
    Upsert,
    /// Only update records that already exist in the destination.
    Update,
    /// Only create records; never touch existing ones.
    Insert,
    /// Upsert, and delete records whose rows left the model.
    Mirror,
    /// Upsert, and archive (soft-delete) records whose rows left the model.
    Archive,
}

impl SyncMode {
    /// The name `mode:` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Upsert => "upsert",
            SyncMode::Update => "update",
            SyncMode::Insert => "insert",
            SyncMode::Mirror => "mirror",
            SyncMode::Archive => "archive",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    #[serde(default)]
    pub description: Option<String>,
}
