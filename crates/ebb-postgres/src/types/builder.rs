//! [`ColumnBuilder`]: one Arrow array builder per column, fed text or binary values.

use std::sync::Arc;

use arrow::array::NullBufferBuilder;
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, IntervalMonthDayNanoBuilder, ListArray, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder, UInt32Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, FieldRef};

use super::text::ParseError;
use super::{PgType, ValueError, binary, text};

/// Builds the Arrow array of one column from PostgreSQL values in text or binary format,
/// with the mapping of [`PgType::arrow_type`].
///
/// Every append adds exactly one slot, also when it fails: a value that does not convert
/// becomes a null and the error is returned, so the columns of a row stay aligned.
#[derive(Debug)]
pub struct ColumnBuilder {
    ty: PgType,
    inner: Inner,
    /// Reused buffers for values that need decoding (bytea hex, numeric text).
    bytes: Vec<u8>,
    string: String,
}

#[derive(Debug)]
enum Inner {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt32(UInt32Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal {
        builder: Decimal128Builder,
        precision: u8,
        scale: i8,
    },
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Date32(Date32Builder),
    Time64(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    List {
        field: FieldRef,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        child: Box<ColumnBuilder>,
    },
}

impl ColumnBuilder {
    /// A builder for values of `ty`.
    pub fn new(ty: PgType) -> ColumnBuilder {
        let inner = match &ty {
            PgType::Bool => Inner::Bool(BooleanBuilder::new()),
            PgType::Int2 => Inner::Int16(Int16Builder::new()),
            PgType::Int4 => Inner::Int32(Int32Builder::new()),
            PgType::Int8 => Inner::Int64(Int64Builder::new()),
            PgType::Oid => Inner::UInt32(UInt32Builder::new()),
            PgType::Float4 => Inner::Float32(Float32Builder::new()),
            PgType::Float8 => Inner::Float64(Float64Builder::new()),
            PgType::Decimal { precision, scale } => Inner::Decimal {
                builder: Decimal128Builder::new()
                    .with_data_type(DataType::Decimal128(*precision, *scale)),
                precision: *precision,
                scale: *scale,
            },
            PgType::NumericText
            | PgType::Text
            | PgType::Json
            | PgType::Jsonb
            | PgType::Enum { .. }
            | PgType::Inet
            | PgType::Cidr
            | PgType::Unknown { .. } => Inner::Utf8(StringBuilder::new()),
            PgType::Bytea => Inner::Binary(BinaryBuilder::new()),
            PgType::Uuid => Inner::Uuid(FixedSizeBinaryBuilder::new(16)),
            PgType::Date => Inner::Date32(Date32Builder::new()),
            PgType::Time => Inner::Time64(Time64MicrosecondBuilder::new()),
            PgType::Timestamp => Inner::Timestamp(TimestampMicrosecondBuilder::new()),
            PgType::TimestampTz => {
                Inner::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            PgType::Interval => Inner::Interval(IntervalMonthDayNanoBuilder::new()),
            PgType::Array(element) => Inner::List {
                field: Arc::new(element.field("item", true)),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(0),
                child: Box::new(ColumnBuilder::new((**element).clone())),
            },
        };
        ColumnBuilder {
            ty,
            inner,
            bytes: Vec::new(),
            string: String::new(),
        }
    }

    /// The column's PostgreSQL type.
    pub fn pg_type(&self) -> &PgType {
        &self.ty
    }

    /// Number of values appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        use arrow::array::ArrayBuilder;
        match &self.inner {
            Inner::Bool(b) => b.len(),
            Inner::Int16(b) => b.len(),
            Inner::Int32(b) => b.len(),
            Inner::Int64(b) => b.len(),
            Inner::UInt32(b) => b.len(),
            Inner::Float32(b) => b.len(),
            Inner::Float64(b) => b.len(),
            Inner::Decimal { builder, .. } => builder.len(),
            Inner::Utf8(b) => b.len(),
            Inner::Binary(b) => b.len(),
            Inner::Uuid(b) => b.len(),
            Inner::Date32(b) => b.len(),
            Inner::Time64(b) => b.len(),
            Inner::Timestamp(b) => b.len(),
            Inner::Interval(b) => b.len(),
            Inner::List { offsets, .. } => offsets.len() - 1,
        }
    }

    /// Whether no values were appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a null.
    pub fn append_null(&mut self) {
        match &mut self.inner {
            Inner::Bool(b) => b.append_null(),
            Inner::Int16(b) => b.append_null(),
            Inner::Int32(b) => b.append_null(),
            Inner::Int64(b) => b.append_null(),
            Inner::UInt32(b) => b.append_null(),
            Inner::Float32(b) => b.append_null(),
            Inner::Float64(b) => b.append_null(),
            Inner::Decimal { builder, .. } => builder.append_null(),
            Inner::Utf8(b) => b.append_null(),
            Inner::Binary(b) => b.append_null(),
            Inner::Uuid(b) => b.append_null(),
            Inner::Date32(b) => b.append_null(),
            Inner::Time64(b) => b.append_null(),
            Inner::Timestamp(b) => b.append_null(),
            Inner::Interval(b) => b.append_null(),
            Inner::List {
                offsets,
                nulls,
                child,
                ..
            } => {
                // Elements a failed value already appended stay in the child, under a null.
                offsets.push(i32::try_from(child.len()).unwrap_or(i32::MAX));
                nulls.append_null();
            }
        }
    }

    /// Appends a value in the type's text output format.
    pub fn append_text(&mut self, value: &[u8]) -> Result<(), ValueError> {
        self.try_append_text(value).map_err(|e| {
            self.append_null();
            self.error(e, false)
        })
    }

    /// Appends a value in the type's binary send format.
    pub fn append_binary(&mut self, value: &[u8]) -> Result<(), ValueError> {
        if !self.supports_binary() {
            self.append_null();
            return Err(ValueError::binary_unsupported(&self.ty));
        }
        self.try_append_binary(value).map_err(|e| {
            self.append_null();
            self.error(e, true)
        })
    }

    fn error(&self, e: ParseError, binary: bool) -> ValueError {
        let pg_type = self.ty.to_string();
        match e {
            ParseError::Invalid(reason) if binary => ValueError::InvalidBinary { pg_type, reason },
            ParseError::Invalid(reason) => ValueError::InvalidText { pg_type, reason },
            ParseError::NotRepresentable(reason) => ValueError::NotRepresentable {
                pg_type,
                arrow_type: self.ty.arrow_type().to_string(),
                reason,
            },
            ParseError::MultiDimensional(dimensions) => ValueError::MultiDimensionalArray {
                pg_type,
                dimensions,
            },
        }
    }

    /// Appends nothing on error (lists excepted: see [`Self::append_null`]).
    fn try_append_text(&mut self, v: &[u8]) -> Result<(), ParseError> {
        match &mut self.inner {
            Inner::Bool(b) => b.append_value(text::bool(v)?),
            Inner::Int16(b) => b.append_value(text::int(v)?),
            Inner::Int32(b) => b.append_value(text::int(v)?),
            Inner::Int64(b) => b.append_value(text::int(v)?),
            Inner::UInt32(b) => b.append_value(text::int(v)?),
            Inner::Float32(b) => b.append_value(text::float(v)?),
            Inner::Float64(b) => b.append_value(text::float(v)?),
            Inner::Decimal {
                builder,
                precision,
                scale,
            } => builder.append_value(text::decimal(v, *precision, *scale)?),
            Inner::Utf8(b) => b.append_value(text::utf8(v)?),
            Inner::Binary(b) => {
                text::bytea(v, &mut self.bytes)?;
                b.append_value(&self.bytes);
            }
            Inner::Uuid(b) => b
                .append_value(text::uuid(v)?)
                .map_err(|_| ParseError::Invalid("uuid"))?,
            Inner::Date32(b) => b.append_value(text::date(v)?),
            Inner::Time64(b) => b.append_value(text::time(v)?),
            Inner::Timestamp(b) => b.append_value(if self.ty == PgType::TimestampTz {
                text::timestamptz(v)?
            } else {
                text::timestamp(v)?
            }),
            Inner::Interval(b) => b.append_value(text::interval(v)?),
            Inner::List {
                offsets,
                nulls,
                child,
                ..
            } => {
                let result = text::array(v, |element| match element {
                    None => {
                        child.append_null();
                        Ok(())
                    }
                    Some(e) => child
                        .try_append_text(e)
                        .inspect_err(|_| child.append_null()),
                });
                result?;
                offsets.push(i32::try_from(child.len()).map_err(|_| {
                    ParseError::NotRepresentable("more than i32::MAX list elements in a batch")
                })?);
                nulls.append_non_null();
            }
        }
        Ok(())
    }

    fn try_append_binary(&mut self, v: &[u8]) -> Result<(), ParseError> {
        match &mut self.inner {
            Inner::Bool(b) => b.append_value(binary::bool(v)?),
            Inner::Int16(b) => b.append_value(binary::i16(v)?),
            Inner::Int32(b) => b.append_value(binary::i32(v)?),
            Inner::Int64(b) => b.append_value(binary::i64(v)?),
            Inner::UInt32(b) => b.append_value(binary::u32(v)?),
            Inner::Float32(b) => b.append_value(binary::f32(v)?),
            Inner::Float64(b) => b.append_value(binary::f64(v)?),
            Inner::Decimal {
                builder,
                precision,
                scale,
            } => builder.append_value(binary::decimal(v, *precision, *scale)?),
            Inner::Utf8(b) => match &self.ty {
                PgType::NumericText => {
                    binary::numeric_text(v, &mut self.string)?;
                    b.append_value(&self.string);
                }
                PgType::Inet | PgType::Cidr => {
                    binary::inet_text(v, self.ty == PgType::Cidr, &mut self.string)?;
                    b.append_value(&self.string);
                }
                PgType::Jsonb => b.append_value(text::utf8(binary::jsonb(v)?)?),
                PgType::Unknown { .. } => {
                    return Err(ParseError::Invalid("binary form of an unmapped type"));
                }
                // text, varchar, bpchar, name, "char", json, enum labels: the text itself.
                _ => b.append_value(text::utf8(v)?),
            },
            Inner::Binary(b) => b.append_value(v),
            Inner::Uuid(b) => b
                .append_value(binary::uuid(v)?)
                .map_err(|_| ParseError::Invalid("uuid"))?,
            Inner::Date32(b) => b.append_value(binary::date(v)?),
            Inner::Time64(b) => b.append_value(binary::i64(v)?),
            Inner::Timestamp(b) => b.append_value(binary::timestamp(v)?),
            Inner::Interval(b) => b.append_value(binary::interval(v)?),
            Inner::List {
                offsets,
                nulls,
                child,
                ..
            } => {
                let result = binary::array(v, |element| match element {
                    None => {
                        child.append_null();
                        Ok(())
                    }
                    Some(e) => child
                        .try_append_binary(e)
                        .inspect_err(|_| child.append_null()),
                });
                result?;
                offsets.push(i32::try_from(child.len()).map_err(|_| {
                    ParseError::NotRepresentable("more than i32::MAX list elements in a batch")
                })?);
                nulls.append_non_null();
            }
        }
        Ok(())
    }

    /// Whether binary values of this type can be converted (false for unmapped types, whose
    /// binary form ebb cannot turn into text).
    pub fn supports_binary(&self) -> bool {
        match &self.ty {
            PgType::Unknown { .. } => false,
            PgType::Array(_) => match &self.inner {
                Inner::List { child, .. } => child.supports_binary(),
                _ => true,
            },
            _ => true,
        }
    }

    /// The values appended so far, as an array; the builder is empty afterwards.
    pub fn finish(&mut self) -> ArrayRef {
        match &mut self.inner {
            Inner::Bool(b) => Arc::new(b.finish()),
            Inner::Int16(b) => Arc::new(b.finish()),
            Inner::Int32(b) => Arc::new(b.finish()),
            Inner::Int64(b) => Arc::new(b.finish()),
            Inner::UInt32(b) => Arc::new(b.finish()),
            Inner::Float32(b) => Arc::new(b.finish()),
            Inner::Float64(b) => Arc::new(b.finish()),
            Inner::Decimal { builder, .. } => Arc::new(builder.finish()),
            Inner::Utf8(b) => Arc::new(b.finish()),
            Inner::Binary(b) => Arc::new(b.finish()),
            Inner::Uuid(b) => Arc::new(b.finish()),
            Inner::Date32(b) => Arc::new(b.finish()),
            Inner::Time64(b) => Arc::new(b.finish()),
            Inner::Timestamp(b) => Arc::new(b.finish()),
            Inner::Interval(b) => Arc::new(b.finish()),
            Inner::List {
                field,
                offsets,
                nulls,
                child,
            } => {
                let values = child.finish();
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                // Offsets are non-decreasing and end at the child's length by construction.
                Arc::new(ListArray::new(
                    field.clone(),
                    offsets,
                    values,
                    nulls.finish(),
                ))
            }
        }
    }
}

impl ValueError {
    pub(super) fn binary_unsupported(ty: &PgType) -> ValueError {
        ValueError::BinaryUnsupported {
            pg_type: ty.to_string(),
        }
    }
}
