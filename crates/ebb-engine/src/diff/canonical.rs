//! The canonical row encoding and hash: how ebb decides that a row changed.
//!
//! A row's hash is `xxh3_64` (seed 0) of the concatenated encodings of its mapped columns,
//! taken in ascending order of column name (so reordering a mapping changes nothing). Every
//! value encodes as one tag byte and a payload; payloads are fixed-width or length-prefixed,
//! so no two different rows share an encoding. The encoding depends only on values, never on
//! the machine, the run or the engine that produced them:
//!
//! | tag | value | payload |
//! |---|---|---|
//! | 0 | NULL (of any type) | none — so NULL differs from `''` and from 0 |
//! | 1 | boolean | 1 byte, 0 or 1 |
//! | 2 | integer of any width, signed or not | the value as i128, big-endian (`int4 7` = `int8 7`) |
//! | 3 | float32/float64 | the f64 bits, big-endian; `-0.0` is written as `0.0`, every NaN as one NaN |
//! | 4 | decimal | scale (i8) then the unscaled value as i128, big-endian: `1.10` ≠ `1.1` |
//! | 5 | text (any string layout) | u32 byte length, big-endian, then UTF-8 bytes |
//! | 6 | binary | u32 length, then bytes |
//! | 7 | date | days since 1970-01-01 as i32, big-endian |
//! | 8 | timestamp (any unit, any zone) | nanoseconds since the epoch, UTC, as i128; a timestamp without zone is read as UTC |
//! | 9 | time of day | nanoseconds since midnight as i64 |
//! | 11 | list | u32 element count, then each element |
//! | 12 | struct | each field in order |
//! | 254 | anything else (intervals, maps, ...) | u32 length, then Arrow's display text |
//!
//! Dictionary-encoded values encode as their dictionary value. Keys (`_ebb_key`) use the
//! text form described in `ebb_core::change::Key`.

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, PrimitiveArray, StringArray, StringBuilder,
    UInt64Array,
};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Float16Type, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

const NULL: u8 = 0;
const BOOL: u8 = 1;
const INT: u8 = 2;
const FLOAT: u8 = 3;
const DECIMAL: u8 = 4;
const TEXT: u8 = 5;
const BINARY: u8 = 6;
const DATE: u8 = 7;
const TIMESTAMP: u8 = 8;
const TIME: u8 = 9;
const LIST: u8 = 11;
const STRUCT: u8 = 12;
const OTHER: u8 = 254;

/// Appends the canonical encoding of `array[row]` to `out`.
pub fn encode_value(array: &dyn Array, row: usize, out: &mut Vec<u8>) -> Result<(), ArrowError> {
    if array.is_null(row) {
        out.push(NULL);
        return Ok(());
    }
    macro_rules! int {
        ($t:ty) => {{
            out.push(INT);
            out.extend_from_slice(&(array.as_primitive::<$t>().value(row) as i128).to_be_bytes());
        }};
    }
    match array.data_type() {
        DataType::Null => out.push(NULL),
        DataType::Boolean => {
            out.push(BOOL);
            out.push(u8::from(array.as_boolean().value(row)));
        }
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float16 => float(
            f64::from(array.as_primitive::<Float16Type>().value(row)),
            out,
        ),
        DataType::Float32 => float(
            f64::from(array.as_primitive::<Float32Type>().value(row)),
            out,
        ),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row), out),
        DataType::Decimal128(_, scale) => {
            out.push(DECIMAL);
            out.push(*scale as u8);
            out.extend_from_slice(
                &array
                    .as_primitive::<Decimal128Type>()
                    .value(row)
                    .to_be_bytes(),
            );
        }
        DataType::Utf8 => text(array.as_string::<i32>().value(row).as_bytes(), TEXT, out),
        DataType::LargeUtf8 => text(array.as_string::<i64>().value(row).as_bytes(), TEXT, out),
        DataType::Utf8View => text(array.as_string_view().value(row).as_bytes(), TEXT, out),
        DataType::Binary => text(array.as_binary::<i32>().value(row), BINARY, out),
        DataType::LargeBinary => text(array.as_binary::<i64>().value(row), BINARY, out),
        DataType::BinaryView => text(array.as_binary_view().value(row), BINARY, out),
        DataType::FixedSizeBinary(_) => text(array.as_fixed_size_binary().value(row), BINARY, out),
        DataType::Date32 => {
            out.push(DATE);
            out.extend_from_slice(&array.as_primitive::<Date32Type>().value(row).to_be_bytes());
        }
        DataType::Date64 => {
            out.push(DATE);
            let days = array
                .as_primitive::<Date64Type>()
                .value(row)
                .div_euclid(86_400_000);
            out.extend_from_slice(&(days as i32).to_be_bytes());
        }
        DataType::Timestamp(unit, _) => {
            let nanos: i128 = match unit {
                TimeUnit::Second => {
                    array.as_primitive::<TimestampSecondType>().value(row) as i128 * 1_000_000_000
                }
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row) as i128 * 1_000_000
                }
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row) as i128 * 1_000
                }
                TimeUnit::Nanosecond => {
                    array.as_primitive::<TimestampNanosecondType>().value(row) as i128
                }
            };
            out.push(TIMESTAMP);
            out.extend_from_slice(&nanos.to_be_bytes());
        }
        DataType::Time32(unit) => {
            let nanos: i64 = match unit {
                TimeUnit::Second => {
                    i64::from(array.as_primitive::<Time32SecondType>().value(row)) * 1_000_000_000
                }
                _ => {
                    i64::from(array.as_primitive::<Time32MillisecondType>().value(row)) * 1_000_000
                }
            };
            out.push(TIME);
            out.extend_from_slice(&nanos.to_be_bytes());
        }
        DataType::Time64(unit) => {
            let nanos = match unit {
                TimeUnit::Nanosecond => array.as_primitive::<Time64NanosecondType>().value(row),
                _ => array.as_primitive::<Time64MicrosecondType>().value(row) * 1_000,
            };
            out.push(TIME);
            out.extend_from_slice(&nanos.to_be_bytes());
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            let values: ArrayRef = match array.data_type() {
                DataType::List(_) => array.as_list::<i32>().value(row),
                DataType::LargeList(_) => array.as_list::<i64>().value(row),
                _ => array.as_fixed_size_list().value(row),
            };
            out.push(LIST);
            out.extend_from_slice(&(values.len() as u32).to_be_bytes());
            for i in 0..values.len() {
                encode_value(values.as_ref(), i, out)?;
            }
        }
        DataType::Struct(_) => {
            out.push(STRUCT);
            for child in array.as_struct().columns() {
                encode_value(child.as_ref(), row, out)?;
            }
        }
        DataType::Dictionary(_, _) => {
            let dict = array.as_any_dictionary();
            let key = dict.normalized_keys()[row];
            encode_value(dict.values().as_ref(), key, out)?;
        }
        _ => {
            let formatter = ArrayFormatter::try_new(array, &FormatOptions::default())?;
            text(formatter.value(row).to_string().as_bytes(), OTHER, out);
        }
    }
    Ok(())
}

fn float(v: f64, out: &mut Vec<u8>) {
    out.push(FLOAT);
    out.extend_from_slice(&float_bits(v));
}

/// A float's payload: `-0.0` as `0.0`, every NaN as one NaN.
fn float_bits(v: f64) -> [u8; 8] {
    let bits = if v == 0.0 {
        0
    } else if v.is_nan() {
        0x7ff8_0000_0000_0000
    } else {
        v.to_bits()
    };
    bits.to_be_bytes()
}

fn text(bytes: &[u8], tag: u8, out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A column's cells, encoded a whole column at a time: [`row_hashes`] first asks every
/// column for each row's encoded length, lays the rows out end to end in one buffer, then has
/// each column write its cells into place. Type dispatch happens once per column and batch,
/// and each loop is over one type.
trait ColumnEncoding {
    /// Adds the length of each row's encoded cell to `lens`.
    fn add_lens(&self, lens: &mut [usize]);
    /// Writes each row's cell at `at[row]` of `buf` and moves `at[row]` past it.
    fn write(&self, buf: &mut [u8], at: &mut [usize]);
}

/// A fixed-width value: its tag and `W` payload bytes.
struct Fixed<'a, T: ArrowPrimitiveType, F, const W: usize> {
    array: &'a PrimitiveArray<T>,
    tag: u8,
    payload: F,
}

impl<T, F, const W: usize> ColumnEncoding for Fixed<'_, T, F, W>
where
    T: ArrowPrimitiveType,
    F: Fn(T::Native) -> [u8; W],
{
    fn add_lens(&self, lens: &mut [usize]) {
        for (row, len) in lens.iter_mut().enumerate() {
            *len += if self.array.is_null(row) { 1 } else { 1 + W };
        }
    }

    fn write(&self, buf: &mut [u8], at: &mut [usize]) {
        let values = self.array.values();
        let nulls = self.array.nulls().filter(|n| n.null_count() > 0);
        for (row, at) in at.iter_mut().enumerate() {
            if nulls.is_some_and(|n| n.is_null(row)) {
                buf[*at] = NULL;
                *at += 1;
            } else {
                let cell = &mut buf[*at..*at + 1 + W];
                cell[0] = self.tag;
                cell[1..].copy_from_slice(&(self.payload)(values[row]));
                *at += 1 + W;
            }
        }
    }
}

fn fixed<'a, T, F, const W: usize>(
    array: &'a dyn Array,
    tag: u8,
    payload: F,
) -> Box<dyn ColumnEncoding + 'a>
where
    T: ArrowPrimitiveType,
    F: Fn(T::Native) -> [u8; W] + 'a,
{
    Box::new(Fixed {
        array: array.as_primitive::<T>(),
        tag,
        payload,
    })
}

/// Length-prefixed bytes (text and binary of every layout).
struct Bytes<F> {
    nulls: Option<arrow::buffer::NullBuffer>,
    tag: u8,
    value: F,
}

impl<F> Bytes<F> {
    fn is_null(&self, row: usize) -> bool {
        self.nulls.as_ref().is_some_and(|n| n.is_null(row))
    }
}

impl<'a, F: Fn(usize) -> &'a [u8]> ColumnEncoding for Bytes<F> {
    fn add_lens(&self, lens: &mut [usize]) {
        for (row, len) in lens.iter_mut().enumerate() {
            *len += if self.is_null(row) {
                1
            } else {
                5 + (self.value)(row).len()
            };
        }
    }

    fn write(&self, buf: &mut [u8], at: &mut [usize]) {
        for (row, at) in at.iter_mut().enumerate() {
            if self.is_null(row) {
                buf[*at] = NULL;
                *at += 1;
            } else {
                let v = (self.value)(row);
                let cell = &mut buf[*at..*at + 5 + v.len()];
                cell[0] = self.tag;
                cell[1..5].copy_from_slice(&(v.len() as u32).to_be_bytes());
                cell[5..].copy_from_slice(v);
                *at += 5 + v.len();
            }
        }
    }
}

fn bytes<'a>(
    array: &'a dyn Array,
    tag: u8,
    value: impl Fn(usize) -> &'a [u8] + 'a,
) -> Box<dyn ColumnEncoding + 'a> {
    Box::new(Bytes {
        nulls: array.nulls().filter(|n| n.null_count() > 0).cloned(),
        tag,
        value,
    })
}

/// Booleans: tag and one byte.
struct Bool<'a>(&'a arrow::array::BooleanArray);

impl ColumnEncoding for Bool<'_> {
    fn add_lens(&self, lens: &mut [usize]) {
        for (row, len) in lens.iter_mut().enumerate() {
            *len += if self.0.is_null(row) { 1 } else { 2 };
        }
    }

    fn write(&self, buf: &mut [u8], at: &mut [usize]) {
        for (row, at) in at.iter_mut().enumerate() {
            if self.0.is_null(row) {
                buf[*at] = NULL;
                *at += 1;
            } else {
                buf[*at] = BOOL;
                buf[*at + 1] = u8::from(self.0.value(row));
                *at += 2;
            }
        }
    }
}

/// Any other type: each cell through [`encode_value`], once, up front.
struct ByValue {
    encoded: Vec<u8>,
    ends: Vec<usize>,
}

impl ColumnEncoding for ByValue {
    fn add_lens(&self, lens: &mut [usize]) {
        let mut start = 0;
        for (len, end) in lens.iter_mut().zip(&self.ends) {
            *len += end - start;
            start = *end;
        }
    }

    fn write(&self, buf: &mut [u8], at: &mut [usize]) {
        let mut start = 0;
        for (at, end) in at.iter_mut().zip(&self.ends) {
            let cell = &self.encoded[start..*end];
            buf[*at..*at + cell.len()].copy_from_slice(cell);
            *at += cell.len();
            start = *end;
        }
    }
}

fn int_payload<N: Into<i128>>(v: N) -> [u8; 16] {
    v.into().to_be_bytes()
}

/// The encoding of `array`'s cells: typed loops for the common types, [`encode_value`] for
/// the rest. Both write the same bytes (a unit test holds them to it).
fn column_encoding<'a>(
    array: &'a dyn Array,
    rows: usize,
) -> Result<Box<dyn ColumnEncoding + 'a>, ArrowError> {
    Ok(match array.data_type() {
        DataType::Boolean => Box::new(Bool(array.as_boolean())),
        DataType::Int8 => fixed::<Int8Type, _, 16>(array, INT, int_payload),
        DataType::Int16 => fixed::<Int16Type, _, 16>(array, INT, int_payload),
        DataType::Int32 => fixed::<Int32Type, _, 16>(array, INT, int_payload),
        DataType::Int64 => fixed::<Int64Type, _, 16>(array, INT, int_payload),
        DataType::UInt8 => fixed::<UInt8Type, _, 16>(array, INT, int_payload),
        DataType::UInt16 => fixed::<UInt16Type, _, 16>(array, INT, int_payload),
        DataType::UInt32 => fixed::<UInt32Type, _, 16>(array, INT, int_payload),
        DataType::UInt64 => fixed::<UInt64Type, _, 16>(array, INT, int_payload),
        DataType::Float32 => fixed::<Float32Type, _, 8>(array, FLOAT, |v| float_bits(f64::from(v))),
        DataType::Float64 => fixed::<Float64Type, _, 8>(array, FLOAT, float_bits),
        DataType::Decimal128(_, scale) => {
            let scale = *scale as u8;
            fixed::<Decimal128Type, _, 17>(array, DECIMAL, move |v| {
                let mut p = [scale; 17];
                p[1..].copy_from_slice(&v.to_be_bytes());
                p
            })
        }
        DataType::Date32 => fixed::<Date32Type, _, 4>(array, DATE, |v| v.to_be_bytes()),
        DataType::Timestamp(TimeUnit::Second, _) => {
            fixed::<TimestampSecondType, _, 16>(array, TIMESTAMP, |v| {
                (i128::from(v) * 1_000_000_000).to_be_bytes()
            })
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            fixed::<TimestampMillisecondType, _, 16>(array, TIMESTAMP, |v| {
                (i128::from(v) * 1_000_000).to_be_bytes()
            })
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            fixed::<TimestampMicrosecondType, _, 16>(array, TIMESTAMP, |v| {
                (i128::from(v) * 1_000).to_be_bytes()
            })
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            fixed::<TimestampNanosecondType, _, 16>(array, TIMESTAMP, int_payload)
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            bytes(array, TEXT, move |row| a.value(row).as_bytes())
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            bytes(array, TEXT, move |row| a.value(row).as_bytes())
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            bytes(array, TEXT, move |row| a.value(row).as_bytes())
        }
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            bytes(array, BINARY, move |row| a.value(row))
        }
        DataType::LargeBinary => {
            let a = array.as_binary::<i64>();
            bytes(array, BINARY, move |row| a.value(row))
        }
        _ => {
            let mut encoded = Vec::with_capacity(rows * 16);
            let mut ends = Vec::with_capacity(rows);
            for row in 0..rows {
                encode_value(array, row, &mut encoded)?;
                ends.push(encoded.len());
            }
            Box::new(ByValue { encoded, ends })
        }
    })
}

/// The canonical hash of each row over `columns` (given in canonical order: ascending name).
pub fn row_hashes(columns: &[&dyn Array], rows: usize) -> Result<UInt64Array, ArrowError> {
    let encodings = columns
        .iter()
        .map(|c| column_encoding(*c, rows))
        .collect::<Result<Vec<_>, _>>()?;
    let mut lens = vec![0usize; rows];
    for e in &encodings {
        e.add_lens(&mut lens);
    }
    // Rows end to end: `at` starts at each row's first byte and ends past its last.
    let mut at = Vec::with_capacity(rows);
    let mut total = 0;
    for len in &lens {
        at.push(total);
        total += len;
    }
    // Every byte is written below, so a buffer left from the last batch on this thread
    // serves as it is (a fresh one would be zeroed first: a megabyte a batch).
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let hashes: Vec<u64> = BUF.with_borrow_mut(|buf| {
        if buf.len() < total {
            buf.resize(total, 0);
        }
        for e in &encodings {
            e.write(buf, &mut at);
        }
        at.iter()
            .zip(&lens)
            .map(|(end, len)| xxhash_rust::xxh3::xxh3_64(&buf[end - len..*end]))
            .collect()
    });
    Ok(UInt64Array::from(hashes))
}

/// The canonical hash of each row, one value at a time through [`encode_value`]: the
/// definition [`row_hashes`] must match.
pub fn row_hashes_by_value(columns: &[&dyn Array], rows: usize) -> Result<UInt64Array, ArrowError> {
    let mut buf = Vec::with_capacity(256);
    let mut hashes = Vec::with_capacity(rows);
    for row in 0..rows {
        buf.clear();
        for col in columns {
            encode_value(*col, row, &mut buf)?;
        }
        hashes.push(xxhash_rust::xxh3::xxh3_64(&buf));
    }
    Ok(UInt64Array::from(hashes))
}

/// Whether two values encode the same (the test `_ebb_changed` uses per column).
pub fn same_value(a: &dyn Array, ai: usize, b: &dyn Array, bi: usize) -> Result<bool, ArrowError> {
    let mut x = Vec::new();
    let mut y = Vec::new();
    encode_value(a, ai, &mut x)?;
    encode_value(b, bi, &mut y)?;
    Ok(x == y)
}

/// The `_ebb_key` text of each row: one column's display text, or a JSON array of several
/// columns' values (numbers as JSON numbers, everything else as strings). A row with a NULL
/// key part gets a NULL key.
pub fn key_strings(columns: &[&dyn Array], rows: usize) -> Result<StringArray, ArrowError> {
    // One integer or string column: Arrow's cast writes the same text as its display.
    if let [column] = columns
        && (column.data_type().is_integer()
            || matches!(
                column.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ))
    {
        let text = arrow::compute::cast(*column, &DataType::Utf8)?;
        return Ok(text.as_string::<i32>().clone());
    }
    let options = FormatOptions::default();
    let formatters = columns
        .iter()
        .map(|c| ArrayFormatter::try_new(*c, &options))
        .collect::<Result<Vec<_>, _>>()?;
    let numeric: Vec<bool> = columns
        .iter()
        .map(|c| {
            c.data_type().is_integer()
                || c.data_type().is_floating()
                || matches!(c.data_type(), DataType::Decimal128(..))
        })
        .collect();
    let mut out = StringBuilder::with_capacity(rows, rows * 8);
    for row in 0..rows {
        if columns.iter().any(|c| c.is_null(row)) {
            out.append_null();
            continue;
        }
        if columns.len() == 1 {
            out.append_value(formatters[0].value(row).to_string());
            continue;
        }
        let parts: Vec<serde_json::Value> = formatters
            .iter()
            .zip(&numeric)
            .map(|(f, is_num)| {
                let text = f.value(row).to_string();
                if *is_num && let Ok(n) = text.parse::<serde_json::Number>() {
                    return serde_json::Value::Number(n);
                }
                serde_json::Value::String(text)
            })
            .collect();
        out.append_value(serde_json::Value::Array(parts).to_string());
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        Decimal128Array, Float64Array, Int32Array, Int64Array, StringArray,
        TimestampMicrosecondArray, TimestampNanosecondArray,
    };

    use std::sync::Arc;

    use super::*;

    fn enc(a: &dyn Array, row: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(a, row, &mut out).unwrap();
        out
    }

    #[test]
    fn null_differs_from_empty_string_and_zero() {
        let s = StringArray::from(vec![None, Some("")]);
        let i = Int64Array::from(vec![0]);
        assert_ne!(enc(&s, 0), enc(&s, 1));
        assert_ne!(enc(&s, 0), enc(&i, 0));
    }

    #[test]
    fn integer_widths_and_timestamp_units_agree() {
        assert_eq!(
            enc(&Int32Array::from(vec![7]), 0),
            enc(&Int64Array::from(vec![7]), 0)
        );
        let micros =
            TimestampMicrosecondArray::from(vec![1_700_000_000_000_000]).with_timezone("UTC");
        let nanos = TimestampNanosecondArray::from(vec![1_700_000_000_000_000_000]);
        assert_eq!(enc(&micros, 0), enc(&nanos, 0));
    }

    #[test]
    fn floats_are_canonical_and_decimals_keep_scale() {
        let f = Float64Array::from(vec![0.0, -0.0, f64::NAN, -f64::NAN]);
        assert_eq!(enc(&f, 0), enc(&f, 1));
        assert_eq!(enc(&f, 2), enc(&f, 3));
        let a = Decimal128Array::from(vec![110])
            .with_precision_and_scale(10, 2)
            .unwrap();
        let b = Decimal128Array::from(vec![11])
            .with_precision_and_scale(10, 1)
            .unwrap();
        assert_ne!(enc(&a, 0), enc(&b, 0));
    }

    #[test]
    fn adjacent_strings_cannot_collide() {
        let a = StringArray::from(vec!["ab", "c"]);
        let b = StringArray::from(vec!["a", "bc"]);
        let h1 = row_hashes(&[&a, &b], 2).unwrap();
        // Row 0: ("ab","a"); row 1: ("c","bc"). Swapping the split must change the hash.
        let x = StringArray::from(vec!["a"]);
        let y = StringArray::from(vec!["ba"]);
        let h2 = row_hashes(&[&x, &y], 1).unwrap();
        assert_ne!(h1.value(0), h2.value(0));
    }

    #[test]
    fn the_hash_is_fixed_across_machines_and_releases() {
        // Pinned values: changing the encoding would make every sync resend every row.
        let id = Int64Array::from(vec![42]);
        let name = StringArray::from(vec![Some("Zoë")]);
        let h = row_hashes(&[&id, &name], 1).unwrap();
        assert_eq!(h.value(0), pinned_hash());
        assert_eq!(h.value(0), 14_484_185_655_233_305_904);
    }

    /// xxh3_64 of [2, 0x00.. 42 as i128 BE, 5, 0,0,0,4, "Zoë" as UTF-8].
    fn pinned_hash() -> u64 {
        let mut bytes = vec![INT];
        bytes.extend_from_slice(&42i128.to_be_bytes());
        bytes.push(TEXT);
        bytes.extend_from_slice(&4u32.to_be_bytes());
        bytes.extend_from_slice("Zoë".as_bytes());
        xxhash_rust::xxh3::xxh3_64(&bytes)
    }

    #[test]
    fn the_fast_row_hash_is_the_value_by_value_hash() {
        use arrow::array::{
            BinaryArray, BooleanArray, Date32Array, Float32Array, Int8Array, LargeStringArray,
            ListArray, StringViewArray, TimestampMillisecondArray, TimestampSecondArray,
            UInt64Array,
        };
        use arrow::datatypes::Int32Type;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(BooleanArray::from(vec![
                Some(true),
                None,
                Some(false),
                Some(true),
            ])),
            Arc::new(Int8Array::from(vec![Some(-128), Some(0), None, Some(127)])),
            Arc::new(Int64Array::from(vec![i64::MIN, -1, 0, i64::MAX])),
            Arc::new(UInt64Array::from(vec![
                Some(u64::MAX),
                None,
                Some(0),
                Some(7),
            ])),
            Arc::new(Float32Array::from(vec![
                Some(-0.0),
                Some(f32::NAN),
                None,
                Some(1.5),
            ])),
            Arc::new(Float64Array::from(vec![
                f64::NAN,
                -0.0,
                f64::INFINITY,
                f64::MIN,
            ])),
            Arc::new(
                Decimal128Array::from(vec![Some(i128::MAX), None, Some(-1), Some(0)])
                    .with_precision_and_scale(38, 4)
                    .unwrap(),
            ),
            Arc::new(StringArray::from(vec![
                Some(""),
                None,
                Some("Zoë"),
                Some("a\"b"),
            ])),
            Arc::new(LargeStringArray::from(vec![
                Some("x"),
                Some(""),
                None,
                Some("😀"),
            ])),
            Arc::new(StringViewArray::from(vec![
                Some("a long string beyond twelve bytes"),
                None,
                Some(""),
                Some("s"),
            ])),
            Arc::new(BinaryArray::from(vec![
                Some(&b""[..]),
                None,
                Some(&b"\x00\xff"[..]),
                Some(&b"z"[..]),
            ])),
            Arc::new(Date32Array::from(vec![
                Some(i32::MIN),
                Some(0),
                None,
                Some(i32::MAX),
            ])),
            Arc::new(TimestampSecondArray::from(vec![
                Some(i64::MIN),
                None,
                Some(0),
                Some(1),
            ])),
            Arc::new(
                TimestampMillisecondArray::from(vec![
                    Some(-1),
                    Some(1_700_000_000_000),
                    None,
                    Some(i64::MAX),
                ])
                .with_timezone("+02:00"),
            ),
            Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                Some(vec![Some(1), None]),
                None,
                Some(vec![]),
                Some(vec![Some(3)]),
            ])),
        ];
        let refs: Vec<&dyn Array> = columns.iter().map(|c| c.as_ref()).collect();
        assert_eq!(
            row_hashes(&refs, 4).unwrap(),
            row_hashes_by_value(&refs, 4).unwrap()
        );
        // Sliced arrays (offsets) too.
        let sliced: Vec<ArrayRef> = columns.iter().map(|c| c.slice(1, 3)).collect();
        let refs: Vec<&dyn Array> = sliced.iter().map(|c| c.as_ref()).collect();
        assert_eq!(
            row_hashes(&refs, 3).unwrap(),
            row_hashes_by_value(&refs, 3).unwrap()
        );
        // Keys: the cast fast path writes the display text.
        let ints = Int8Array::from(vec![Some(-5), None, Some(100)]);
        let keys = key_strings(&[&ints], 3).unwrap();
        assert_eq!(
            (keys.value(0), keys.is_null(1), keys.value(2)),
            ("-5", true, "100")
        );
    }

    #[test]
    fn column_wise_hashes_match_over_random_batches() {
        use arrow::array::{BooleanArray, Date32Array, Float32Array, UInt32Array};
        let mut rng = fastrand::Rng::with_seed(7);
        // Batches of different sizes one after another on this thread: the encoding buffer
        // left by a large batch must not leak into a smaller one.
        for rows in [3000usize, 17, 1, 900, 0, 2500] {
            let null = |rng: &mut fastrand::Rng| rng.u8(..) < 40;
            let columns: Vec<ArrayRef> = vec![
                Arc::new(
                    (0..rows)
                        .map(|_| (!null(&mut rng)).then(|| rng.bool()))
                        .collect::<BooleanArray>(),
                ),
                Arc::new(
                    (0..rows)
                        .map(|_| (!null(&mut rng)).then(|| rng.i64(..)))
                        .collect::<Int64Array>(),
                ),
                Arc::new(
                    (0..rows)
                        .map(|_| (!null(&mut rng)).then(|| rng.u32(..)))
                        .collect::<UInt32Array>(),
                ),
                Arc::new(
                    (0..rows)
                        .map(|_| {
                            (!null(&mut rng)).then(|| match rng.u8(..4) {
                                0 => f64::NAN,
                                1 => -0.0,
                                _ => rng.f64() * 1e9 - 5e8,
                            })
                        })
                        .collect::<Float64Array>(),
                ),
                Arc::new(
                    (0..rows)
                        .map(|_| (!null(&mut rng)).then(|| rng.f32()))
                        .collect::<Float32Array>(),
                ),
                Arc::new(
                    (0..rows)
                        .map(|_| (!null(&mut rng)).then(|| i128::from(rng.i64(..)) * 1000))
                        .collect::<Decimal128Array>()
                        .with_precision_and_scale(38, 3)
                        .unwrap(),
                ),
                Arc::new(
                    (0..rows)
                        .map(|_| {
                            (!null(&mut rng)).then(|| {
                                let len = rng.usize(..40);
                                (0..len).map(|_| rng.char(..)).collect::<String>()
                            })
                        })
                        .collect::<StringArray>(),
                ),
                Arc::new(
                    (0..rows)
                        .map(|_| (!null(&mut rng)).then(|| rng.i32(..)))
                        .collect::<Date32Array>(),
                ),
                Arc::new(
                    (0..rows)
                        .map(|_| (!null(&mut rng)).then(|| rng.i64(-(1 << 50)..1 << 50)))
                        .collect::<TimestampMicrosecondArray>(),
                ),
            ];
            let refs: Vec<&dyn Array> = columns.iter().map(|c| c.as_ref()).collect();
            assert_eq!(
                row_hashes(&refs, rows).unwrap(),
                row_hashes_by_value(&refs, rows).unwrap(),
                "{rows} rows"
            );
        }
    }

    #[test]
    fn keys_are_text_or_json_arrays() {
        let org = StringArray::from(vec![Some("acme"), None]);
        let id = Int64Array::from(vec![1, 2]);
        let single = key_strings(&[&id], 2).unwrap();
        assert_eq!(single.value(0), "1");
        let composite = key_strings(&[&org, &id], 2).unwrap();
        assert_eq!(composite.value(0), "[\"acme\",1]");
        assert!(composite.is_null(1));
    }
}
