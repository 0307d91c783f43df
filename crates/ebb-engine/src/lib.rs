//! ebb's engine on DataFusion: SQL models today; snapshot diffs, semantic metrics and
//! identity resolution as they arrive. It talks to data only through `ebb-warehouse` (and
//! object_store), never to the network itself.
//!
//! # Layout
//! - [`models`]: compile, order, run, contract-check and test a project's SQL models.
//! - [`diff`]: the snapshot diff (canonical row hash, changes as ChangeBatches, snapshots
//!   committed after delivery).
//! - [`metrics`]: the semantic metrics layer: metric queries compiled to SQL for DataFusion
//!   or PostgreSQL and run where the models live.
//! - [`identity`]: identity resolution (normalizers, blocking, match rules, clustering with
//!   guards, stable ids, golden records).

pub mod diff;
pub mod identity;
pub mod metrics;
pub mod models;

use ebb_warehouse::WarehouseError;

/// Why an engine operation failed. Each variant says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the project has no readable ebb.yml; run `ebb check` to see why")]
    NoProject,
    #[error("no model named {0}")]
    UnknownModel(String),
    #[error("model \"{0}\" has no warehouse to run on; declare one under `warehouses:` in ebb.yml")]
    NoWarehouse(String),
    #[error("models form a cycle ({0}); run `ebb check` to see where")]
    Cycle(String),
    #[error("{0}")]
    Warehouse(#[from] WarehouseError),
    #[error("model \"{model}\": {source}")]
    Model {
        model: String,
        #[source]
        source: WarehouseError,
    },
    #[error("{0}")]
    Metrics(#[from] metrics::MetricsError),
    #[error("identity: {0}")]
    Identity(String),
    #[error("diff: {0}")]
    Diff(String),
    #[error("snapshot store: {0}")]
    Snapshot(String),
    #[error("model \"{model}\" breaks its contract: {}", violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Contract {
        model: String,
        violations: Vec<models::Violation>,
    },
}

impl From<object_store::Error> for EngineError {
    fn from(e: object_store::Error) -> Self {
        EngineError::Snapshot(e.to_string())
    }
}

impl EngineError {
    /// A warehouse error while working on `model`.
    pub fn model(model: &str, source: WarehouseError) -> EngineError {
        EngineError::Model {
            model: model.to_string(),
            source,
        }
    }
}
