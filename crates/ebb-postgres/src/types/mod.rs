//! Mapping PostgreSQL types to Arrow, shared by pgoutput's text and binary formats and by
//! binary `COPY`.
//!
//! | PostgreSQL | Arrow |
//! |---|---|
//! | `bool` | Boolean |
//! | `int2`, `int4`, `int8` | Int16, Int32, Int64 |
//! | `oid` | UInt32 |
//! | `float4`, `float8` | Float32, Float64 |
//! | `numeric(p, s)` | Decimal128(p, s) (see below) |
//! | `numeric` (no typmod) | Utf8, the exact decimal text (see below) |
//! | `text`, `varchar`, `bpchar`, `name`, `"char"` | Utf8 |
//! | `bytea` | Binary |
//! | `uuid` | FixedSizeBinary(16), extension `arrow.uuid` |
//! | `date` | Date32 |
//! | `time` | Time64(µs) |
//! | `timestamp` | Timestamp(µs, none) |
//! | `timestamptz` | Timestamp(µs, "UTC") |
//! | `interval` | Interval(MonthDayNano) |
//! | `json`, `jsonb` | Utf8, extension `arrow.json` |
//! | enums | Utf8 (the label) |
//! | `inet`, `cidr` | Utf8 (PostgreSQL's text form) |
//! | one-dimensional arrays of the above | List of the element's type |
//! | domains | their base type |
//! | anything else | Utf8 with the type's text form, and a warning naming the type |
//!
//! **Numeric.** A `numeric(p, s)` column becomes `Decimal128(p, s)`, exactly. When the scale
//! is larger than the precision (allowed since PostgreSQL 15) the Arrow precision is raised to
//! the scale; a negative scale is kept. `NaN` and `±Infinity`, which no decimal can hold, are
//! rejected values ([`ValueError::NotRepresentable`]).
//! **Unconstrained `numeric`** (and any precision or scale above 38) has no fixed scale: any
//! choice of Arrow decimal would round some values or overflow on others, silently. ebb maps it
//! to **Utf8 holding PostgreSQL's exact text** (`"12.500"`, `"NaN"`), so nothing is lost and
//! a consumer casts to the decimal it needs. Give the column a typmod to get a Decimal128.
//!
//! **Special values.** `±infinity` dates and timestamps become the minimum and maximum of the
//! Arrow type (`i32::MIN/MAX` days, `i64::MIN/MAX` microseconds), as PostgreSQL itself stores
//! them. Time values `24:00:00` are kept as 86 400 000 000 µs.
//!
//! **Text formats** expected from the server are its defaults with `DateStyle = ISO`,
//! `IntervalStyle = postgres` or `iso_8601`, and `bytea_output = hex` (escape is accepted too);
//! the replication connection pins them at startup. `timestamptz` text must carry its UTC offset.

mod binary;
mod builder;
mod datetime;
mod error;
pub mod oid;
mod rows;
#[cfg(test)]
mod tests;
mod text;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};

pub use builder::ColumnBuilder;
pub use error::ValueError;
pub use rows::{RowBatch, RowBatchBuilder, RowError};

/// Field metadata key holding the PostgreSQL type name of a column.
pub const PG_TYPE_METADATA_KEY: &str = "ebb.pg_type";
/// Field metadata key of Arrow extension types.
pub const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";

/// Largest precision and scale of Arrow's Decimal128.
const DECIMAL128_MAX: i32 = 38;

/// A type that is not built in, described by the catalog (`pg_type`), so that [`PgType::resolve`]
/// can map it. ebb-cdc fills the registry from the catalog or from pgoutput Type messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomType {
    /// `typtype = 'e'`.
    Enum {
        /// Type name.
        name: String,
    },
    /// An array type (`typcategory = 'A'`) of `element`.
    Array {
        /// Type name.
        name: String,
        /// Element type oid.
        element: u32,
    },
    /// A domain over `base`.
    Domain {
        /// Type name.
        name: String,
        /// Base type oid.
        base: u32,
        /// Base type modifier (`typtypmod`).
        base_modifier: i32,
    },
    /// Any other type: its values arrive as text.
    Other {
        /// Type name.
        name: String,
    },
}

/// The non-built-in types known to a stream, keyed by oid.
#[derive(Debug, Clone, Default)]
pub struct TypeRegistry {
    types: HashMap<u32, CustomType>,
}

impl TypeRegistry {
    /// An empty registry: only built-in types are known.
    pub fn new() -> TypeRegistry {
        TypeRegistry::default()
    }

    /// Adds or replaces a type.
    pub fn insert(&mut self, oid: u32, ty: CustomType) {
        self.types.insert(oid, ty);
    }

    /// Looks a type up.
    pub fn get(&self, oid: u32) -> Option<&CustomType> {
        self.types.get(&oid)
    }
}

/// A column's PostgreSQL type, resolved to how its values become Arrow values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    /// `bool`
    Bool,
    /// `int2`
    Int2,
    /// `int4`
    Int4,
    /// `int8`
    Int8,
    /// `oid`
    Oid,
    /// `float4`
    Float4,
    /// `float8`
    Float8,
    /// `numeric(p, s)` as Decimal128 with this precision and scale.
    Decimal {
        /// Arrow precision.
        precision: u8,
        /// Arrow scale.
        scale: i8,
    },
    /// `numeric` without a usable typmod, as its exact text.
    NumericText,
    /// `text`, `varchar`, `bpchar`, `name`, `"char"`.
    Text,
    /// `bytea`
    Bytea,
    /// `uuid`
    Uuid,
    /// `date`
    Date,
    /// `time`
    Time,
    /// `timestamp`
    Timestamp,
    /// `timestamptz`
    TimestampTz,
    /// `interval`
    Interval,
    /// `json`
    Json,
    /// `jsonb`
    Jsonb,
    /// An enum type.
    Enum {
        /// Type name.
        name: String,
    },
    /// `inet`
    Inet,
    /// `cidr`
    Cidr,
    /// A one-dimensional array.
    Array(Box<PgType>),
    /// A type without a mapping: values are kept as their text form.
    Unknown {
        /// Type oid.
        oid: u32,
        /// Type name, when known.
        name: Option<String>,
    },
}

impl PgType {
    /// Resolves a column's type oid and modifier (as a Relation message or the catalog reports
    /// them). Logs a warning naming the type when it has no mapping.
    pub fn resolve(oid: u32, modifier: i32, registry: &TypeRegistry) -> PgType {
        let ty = Self::resolve_quiet(oid, modifier, registry, 0);
        if let Some((oid, name)) = ty.unknown_part() {
            tracing::warn!(
                type_oid = oid,
                type_name = name.unwrap_or("?"),
                "PostgreSQL type has no Arrow mapping; its values arrive as text (Utf8)"
            );
        }
        ty
    }

    fn unknown_part(&self) -> Option<(u32, Option<&str>)> {
        match self {
            PgType::Unknown { oid, name } => Some((*oid, name.as_deref())),
            PgType::Array(inner) => inner.unknown_part(),
            _ => None,
        }
    }

    fn resolve_quiet(oid: u32, modifier: i32, registry: &TypeRegistry, depth: u8) -> PgType {
        use oid::*;
        match oid {
            BOOL => PgType::Bool,
            INT2 => PgType::Int2,
            INT4 => PgType::Int4,
            INT8 => PgType::Int8,
            OID => PgType::Oid,
            FLOAT4 => PgType::Float4,
            FLOAT8 => PgType::Float8,
            NUMERIC => numeric(modifier),
            TEXT | VARCHAR | BPCHAR | NAME | CHAR => PgType::Text,
            BYTEA => PgType::Bytea,
            UUID => PgType::Uuid,
            DATE => PgType::Date,
            TIME => PgType::Time,
            TIMESTAMP => PgType::Timestamp,
            TIMESTAMPTZ => PgType::TimestampTz,
            INTERVAL => PgType::Interval,
            JSON => PgType::Json,
            JSONB => PgType::Jsonb,
            INET => PgType::Inet,
            CIDR => PgType::Cidr,
            _ if depth > 8 => PgType::Unknown { oid, name: None },
            _ => {
                if let Some(element) = array_element(oid) {
                    // An array column's typmod is its element's.
                    return PgType::Array(Box::new(Self::resolve_quiet(
                        element,
                        modifier,
                        registry,
                        depth + 1,
                    )));
                }
                match registry.get(oid) {
                    Some(CustomType::Enum { name }) => PgType::Enum { name: name.clone() },
                    Some(CustomType::Array { element, .. }) => PgType::Array(Box::new(
                        Self::resolve_quiet(*element, modifier, registry, depth + 1),
                    )),
                    Some(CustomType::Domain {
                        base,
                        base_modifier,
                        ..
                    }) => Self::resolve_quiet(*base, *base_modifier, registry, depth + 1),
                    Some(CustomType::Other { name }) => PgType::Unknown {
                        oid,
                        name: Some(name.clone()),
                    },
                    None => PgType::Unknown { oid, name: None },
                }
            }
        }
    }

    /// The Arrow type of this column's values.
    pub fn arrow_type(&self) -> DataType {
        match self {
            PgType::Bool => DataType::Boolean,
            PgType::Int2 => DataType::Int16,
            PgType::Int4 => DataType::Int32,
            PgType::Int8 => DataType::Int64,
            PgType::Oid => DataType::UInt32,
            PgType::Float4 => DataType::Float32,
            PgType::Float8 => DataType::Float64,
            PgType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            PgType::Bytea => DataType::Binary,
            PgType::Uuid => DataType::FixedSizeBinary(16),
            PgType::Date => DataType::Date32,
            PgType::Time => DataType::Time64(TimeUnit::Microsecond),
            PgType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PgType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            PgType::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            PgType::NumericText
            | PgType::Text
            | PgType::Json
            | PgType::Jsonb
            | PgType::Enum { .. }
            | PgType::Inet
            | PgType::Cidr
            | PgType::Unknown { .. } => DataType::Utf8,
            PgType::Array(element) => DataType::List(Arc::new(element.field("item", true))),
        }
    }

    /// An Arrow field for a column of this type, with the PostgreSQL type name in its metadata
    /// (and the Arrow extension name for `uuid`, `json` and `jsonb`).
    pub fn field(&self, name: &str, nullable: bool) -> Field {
        let mut metadata = HashMap::from([(PG_TYPE_METADATA_KEY.to_owned(), self.to_string())]);
        match self {
            PgType::Uuid => {
                metadata.insert(EXTENSION_NAME_KEY.to_owned(), "arrow.uuid".to_owned());
            }
            PgType::Json | PgType::Jsonb => {
                metadata.insert(EXTENSION_NAME_KEY.to_owned(), "arrow.json".to_owned());
            }
            _ => {}
        }
        Field::new(name, self.arrow_type(), nullable).with_metadata(metadata)
    }
}

/// `numeric`'s typmod: `((precision << 16) | (scale & 0x7ff)) + 4`, scale an 11-bit signed value.
fn numeric(modifier: i32) -> PgType {
    if modifier < 4 {
        return PgType::NumericText;
    }
    let m = modifier - 4;
    let precision = (m >> 16) & 0xffff;
    let scale = ((m & 0x7ff) ^ 1024) - 1024;
    let arrow_precision = precision.max(scale);
    if precision < 1 || arrow_precision > DECIMAL128_MAX || scale < -DECIMAL128_MAX {
        return PgType::NumericText;
    }
    match (u8::try_from(arrow_precision), i8::try_from(scale)) {
        (Ok(precision), Ok(scale)) => PgType::Decimal { precision, scale },
        _ => PgType::NumericText,
    }
}

impl fmt::Display for PgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgType::Bool => f.write_str("bool"),
            PgType::Int2 => f.write_str("int2"),
            PgType::Int4 => f.write_str("int4"),
            PgType::Int8 => f.write_str("int8"),
            PgType::Oid => f.write_str("oid"),
            PgType::Float4 => f.write_str("float4"),
            PgType::Float8 => f.write_str("float8"),
            PgType::Decimal { precision, scale } => write!(f, "numeric({precision},{scale})"),
            PgType::NumericText => f.write_str("numeric"),
            PgType::Text => f.write_str("text"),
            PgType::Bytea => f.write_str("bytea"),
            PgType::Uuid => f.write_str("uuid"),
            PgType::Date => f.write_str("date"),
            PgType::Time => f.write_str("time"),
            PgType::Timestamp => f.write_str("timestamp"),
            PgType::TimestampTz => f.write_str("timestamptz"),
            PgType::Interval => f.write_str("interval"),
            PgType::Json => f.write_str("json"),
            PgType::Jsonb => f.write_str("jsonb"),
            PgType::Enum { name } => f.write_str(name),
            PgType::Inet => f.write_str("inet"),
            PgType::Cidr => f.write_str("cidr"),
            PgType::Array(element) => write!(f, "{element}[]"),
            PgType::Unknown {
                name: Some(name), ..
            } => f.write_str(name),
            PgType::Unknown { oid, name: None } => write!(f, "type {oid}"),
        }
    }
}
