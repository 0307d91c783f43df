use crate::retry::RetryClass;

/// A column value could not be turned into its Arrow value.
///
/// Messages name the PostgreSQL type and the reason, never the value itself (row values are
/// not logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The server's text form did not parse.
    #[error("{pg_type} value is not valid text output: {reason}")]
    InvalidText {
        /// The PostgreSQL type.
        pg_type: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// The server's binary form did not parse.
    #[error("{pg_type} value is not valid binary output: {reason}")]
    InvalidBinary {
        /// The PostgreSQL type.
        pg_type: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// A valid value that the Arrow type cannot hold (a numeric `NaN` in a `Decimal128`).
    #[error("{pg_type} value cannot be represented as Arrow {arrow_type}: {reason}")]
    NotRepresentable {
        /// The PostgreSQL type.
        pg_type: String,
        /// The Arrow type.
        arrow_type: String,
        /// Why not.
        reason: &'static str,
    },
    /// Arrays with more than one dimension have no List mapping.
    #[error(
        "{pg_type} value has {dimensions} dimensions; only one-dimensional arrays map to an Arrow List"
    )]
    MultiDimensionalArray {
        /// The PostgreSQL type.
        pg_type: String,
        /// Number of dimensions.
        dimensions: i32,
    },
    /// A type without a known binary form arrived in binary.
    #[error(
        "{pg_type} has no binary mapping in ebb; stream it in text format (binary = false) so it arrives as its text form"
    )]
    BinaryUnsupported {
        /// The PostgreSQL type.
        pg_type: String,
    },
}

impl ValueError {
    /// A value Arrow cannot hold rejects that record; a malformed value means the stream or
    /// the mapping is wrong, which a retry does not fix.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            ValueError::NotRepresentable { .. } | ValueError::MultiDimensionalArray { .. } => {
                RetryClass::Rejected
            }
            ValueError::InvalidText { .. }
            | ValueError::InvalidBinary { .. }
            | ValueError::BinaryUnsupported { .. } => RetryClass::Fatal,
        }
    }
}
