//! Model contracts: the column types a model's YAML declares, checked against the Arrow
//! schema its SQL produces (before anything is written).

use arrow::datatypes::{DataType, Schema};
use ebb_core::config::model::{ColumnType, ModelConfig};

/// One declared column the model's output does not honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub column: String,
    /// The declared type.
    pub expected: String,
    /// What the SQL returns, or `None` when the column is missing.
    pub actual: Option<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.actual {
            None => write!(
                f,
                "column \"{}\" is declared ({}) but the model does not return it",
                self.column, self.expected
            ),
            Some(actual) => write!(
                f,
                "column \"{}\" is declared {} but the model returns {actual}",
                self.column, self.expected
            ),
        }
    }
}

/// Declared columns that are missing or have another type.
pub fn check(config: &ModelConfig, schema: &Schema) -> Vec<Violation> {
    let mut out = Vec::new();
    for col in &config.columns {
        let Some(declared) = &col.data_type else {
            continue;
        };
        let declared = declared.value;
        match schema.field_with_name(&col.name.value) {
            Err(_) => out.push(Violation {
                column: col.name.value.clone(),
                expected: declared.to_string(),
                actual: None,
            }),
            Ok(field) if !matches(declared, field.data_type()) => out.push(Violation {
                column: col.name.value.clone(),
                expected: declared.to_string(),
                actual: Some(describe(field.data_type())),
            }),
            Ok(_) => {}
        }
    }
    out
}

/// Whether an Arrow type honours a declared column type. String, binary and timestamp types
/// match whatever their physical layout or unit; numbers must match exactly.
pub fn matches(declared: ColumnType, actual: &DataType) -> bool {
    use DataType as D;
    let is_string = matches!(actual, D::Utf8 | D::LargeUtf8 | D::Utf8View)
        || matches!(actual, D::Dictionary(_, v) if matches!(**v, D::Utf8 | D::LargeUtf8 | D::Utf8View));
    match declared {
        ColumnType::Boolean => matches!(actual, D::Boolean),
        ColumnType::SmallInt => matches!(actual, D::Int16),
        ColumnType::Integer => matches!(actual, D::Int32),
        ColumnType::BigInt => matches!(actual, D::Int64),
        ColumnType::Real => matches!(actual, D::Float32),
        ColumnType::Double => matches!(actual, D::Float64),
        ColumnType::Decimal { precision, scale } => matches!(
            actual,
            D::Decimal128(p, s) | D::Decimal256(p, s) if *p == precision && *s == scale
        ),
        ColumnType::Text | ColumnType::Json => is_string,
        ColumnType::Date => matches!(actual, D::Date32 | D::Date64),
        ColumnType::Timestamp => matches!(actual, D::Timestamp(_, None)),
        ColumnType::TimestampTz => matches!(actual, D::Timestamp(_, Some(_))),
        ColumnType::Uuid => is_string || matches!(actual, D::FixedSizeBinary(16)),
        ColumnType::Bytea => matches!(actual, D::Binary | D::LargeBinary | D::BinaryView),
    }
}

/// An Arrow type in the words of the declared types, where there is one.
fn describe(t: &DataType) -> String {
    use DataType as D;
    match t {
        D::Boolean => "boolean".into(),
        D::Int16 => "smallint".into(),
        D::Int32 => "integer".into(),
        D::Int64 => "bigint".into(),
        D::Float32 => "real".into(),
        D::Float64 => "double".into(),
        D::Decimal128(p, s) | D::Decimal256(p, s) => format!("decimal({p},{s})"),
        D::Utf8 | D::LargeUtf8 | D::Utf8View => "text".into(),
        D::Date32 | D::Date64 => "date".into(),
        D::Timestamp(_, None) => "timestamp".into(),
        D::Timestamp(_, Some(_)) => "timestamptz".into(),
        D::Binary | D::LargeBinary | D::BinaryView => "bytea".into(),
        other => format!("{other} (no declared type matches it)"),
    }
}

#[cfg(test)]
mod unit_tests {
    use arrow::datatypes::{Field, TimeUnit};

    use super::*;

    fn config(yaml: &str) -> ModelConfig {
        let node = ebb_core::yaml::parse(yaml).unwrap();
        let env = |_: &str| None;
        ebb_core::yaml::from_node::<ModelConfig>(&node, &env)
            .value
            .unwrap()
    }

    #[test]
    fn missing_and_retyped_columns_are_violations() {
        let c = config(
            "columns:\n  - { name: id, type: bigint }\n  - { name: amount, type: 'decimal(12,2)' }\n  - { name: at, type: timestamptz }\n  - { name: gone, type: text }\n  - { name: free }\n",
        );
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("amount", DataType::Decimal128(12, 2), true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("free", DataType::Float64, true),
        ]);
        let v = check(&c, &schema);
        assert_eq!(
            v.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "column \"id\" is declared bigint but the model returns integer",
                "column \"gone\" is declared (text) but the model does not return it",
            ]
        );
    }
}
