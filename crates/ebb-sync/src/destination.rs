//! The destination a sync delivers to, built from `ebb.yml` and the sync's target.

use ebb_core::project::{Project, Sync};
use ebb_destinations::AnyDestination;

use crate::SyncError;

/// Builds the destination `sync` names, pointed at its object and match field. No I/O.
pub fn open_destination(project: &Project, sync: &Sync) -> Result<AnyDestination, SyncError> {
    let name = &sync.config.destination.value;
    let error = |reason: String| SyncError::Destination {
        sync: sync.name.clone(),
        destination: name.clone(),
        reason,
    };
    let config = project
        .config
        .as_ref()
        .and_then(|c| c.destinations.get(name))
        .map(|d| &d.value)
        .ok_or_else(|| {
            error(
                "ebb.yml declares no destination by this name; add it under `destinations:`".into(),
            )
        })?;
    AnyDestination::for_sync(name, config, &project.root, &sync.config)
        .map_err(|e| error(e.to_string()))
}
