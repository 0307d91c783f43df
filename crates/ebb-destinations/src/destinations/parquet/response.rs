//! object_store failures to retry classes.

use crate::DestinationError;

pub fn error(err: object_store::Error, what: &str) -> DestinationError {
    match err {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. }
        | object_store::Error::NotSupported { .. } => DestinationError::Fatal {
            reason: format!("cannot write {what}: {err}"),
        },
        other => DestinationError::Retryable {
            after: None,
            reason: format!("cannot write {what}"),
            source: Some(Box::new(other)),
        },
    }
}
