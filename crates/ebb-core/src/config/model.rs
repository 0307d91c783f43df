//! `models/NAME.yml`: what a model promises (key, columns, types, tests).

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::KeyColumns;
use super::project::Materialized;
use crate::Spanned;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub materialized: Option<Spanned<Materialized>>,
    #[serde(default)]
    pub warehouse: Option<Spanned<String>>,
    #[serde(default)]
    pub primary_key: Option<Spanned<KeyColumns>>,
    #[serde(default)]
    pub columns: Vec<ColumnConfig>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl ModelConfig {
    pub fn column(&self, name: &str) -> Option<&ColumnConfig> {
        self.columns.iter().find(|c| c.name.value == name)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    pub name: Spanned<String>,
    /// A declared type is a contract: a model whose output drifts from it fails.
    #[serde(default, rename = "type")]
    pub data_type: Option<Spanned<ColumnType>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tests: Vec<Spanned<ColumnTest>>,
}

/// A test on a column, run by `ebb models test`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ColumnTest {
    NotNull,
    Unique,
    AcceptedValues {
        values: Vec<String>,
    },
    /// Every value appears in `field` of the model `to` (written `ref('name')` or `name`).
    Relationships {
        to: String,
        field: String,
    },
}

/// The column types a model may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum ColumnType {
    Boolean,
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    Decimal { precision: u8, scale: i8 },
    Text,
    Date,
    Timestamp,
    TimestampTz,
    Json,
    Uuid,
    Bytea,
}

impl TryFrom<String> for ColumnType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl FromStr for ColumnType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        let ty = match lower.as_str() {
            "boolean" | "bool" => ColumnType::Boolean,
            "smallint" | "int2" => ColumnType::SmallInt,
            "integer" | "int" | "int4" => ColumnType::Integer,
            "bigint" | "int8" => ColumnType::BigInt,
            "real" | "float4" => ColumnType::Real,
            "double" | "double precision" | "float8" | "float" => ColumnType::Double,
            "text" | "varchar" | "string" => ColumnType::Text,
            "date" => ColumnType::Date,
            "timestamp" | "timestamp without time zone" => ColumnType::Timestamp,
            "timestamptz" | "timestamp with time zone" => ColumnType::TimestampTz,
            "json" | "jsonb" => ColumnType::Json,
            "uuid" => ColumnType::Uuid,
            "bytea" | "binary" => ColumnType::Bytea,
            other => {
                let args = other
                    .strip_prefix("decimal")
                    .or_else(|| other.strip_prefix("numeric"))
                    .and_then(|rest| rest.trim().strip_prefix('('))
                    .and_then(|rest| rest.strip_suffix(')'));
                let Some(args) = args else {
                    return Err(format!(
                        "unknown column type \"{s}\"; use one of: boolean, smallint, integer, \
                         bigint, real, double, decimal(p,s), text, date, timestamp, timestamptz, \
                         json, uuid, bytea"
                    ));
                };
                let (p, sc) = args.split_once(',').unwrap_or((args, "0"));
                let precision: u8 = p.trim().parse().map_err(|_| bad_decimal(s))?;
                let scale: i8 = sc.trim().parse().map_err(|_| bad_decimal(s))?;
                if precision == 0 || precision > 38 || scale < 0 || scale as u8 > precision {
                    return Err(bad_decimal(s));
                }
                ColumnType::Decimal { precision, scale }
            }
        };
        Ok(ty)
    }
}

fn bad_decimal(s: &str) -> String {
    format!(
        "\"{s}\": write decimal(precision, scale) with 1 <= precision <= 38 and 0 <= scale <= precision"
    )
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ColumnType::Boolean => "boolean",
            ColumnType::SmallInt => "smallint",
            ColumnType::Integer => "integer",
            ColumnType::BigInt => "bigint",
            ColumnType::Real => "real",
            ColumnType::Double => "double",
            ColumnType::Decimal { precision, scale } => {
                return write!(f, "decimal({precision},{scale})");
            }
            ColumnType::Text => "text",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
            ColumnType::TimestampTz => "timestamptz",
            ColumnType::Json => "json",
            ColumnType::Uuid => "uuid",
            ColumnType::Bytea => "bytea",
        };
        f.write_str(s)
    }
}

/// Strips `ref('name')` / `ref("name")` down to `name`; plain names pass through.
pub fn ref_target(text: &str) -> &str {
    let t = text.trim();
    t.strip_prefix("ref(")
        .and_then(|r| r.strip_suffix(')'))
        .map(|r| r.trim().trim_matches(|c| c == '\'' || c == '"'))
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_parse() {
        assert_eq!("BIGINT".parse::<ColumnType>(), Ok(ColumnType::BigInt));
        assert_eq!(
            "decimal(12, 2)".parse::<ColumnType>(),
            Ok(ColumnType::Decimal {
                precision: 12,
                scale: 2
            })
        );
        assert!("decimal(50,2)".parse::<ColumnType>().is_err());
        assert!(
            "strng"
                .parse::<ColumnType>()
                .unwrap_err()
                .contains("unknown column type")
        );
    }

    #[test]
    fn ref_targets() {
        assert_eq!(ref_target("ref('users')"), "users");
        assert_eq!(ref_target("ref(\"users\")"), "users");
        assert_eq!(ref_target("users"), "users");
    }
}
