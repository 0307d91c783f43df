//! `ebb_period_start(grain, t)`: the first day of the day, week, month, quarter or year that
//! holds `t`, as a DATE.
//!
//! The metrics layer groups by time periods. On DataFusion,
//! `CAST(date_trunc('month', t) AS DATE)` goes through a general calendar path value by value
//! (time zones, sub-day units, a timestamp result, then a cast); over a 100M-row fact table it
//! was the largest part of a metric query. This function finds the same dates from the day
//! number: a lookup in a table of period starts for 1900..2200, and integer arithmetic
//! (Howard Hinnant's `civil_from_days`) outside it.
//! Weeks start on Monday (ISO), as `date_trunc('week')` does in DataFusion and Postgres.
//!
//! `t` may be a DATE or a TIMESTAMP of any unit. A timestamp with a time zone is first taken
//! to that zone's local time, as `CAST(t AS TIMESTAMP)` does; strings are cast to TIMESTAMP.

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, PrimitiveArray};
use arrow::compute::kernels::cast::cast;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow::error::ArrowError;
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The name SQL calls the function by.
pub const NAME: &str = "ebb_period_start";

/// The function, to register on a DataFusion session.
pub fn udf() -> ScalarUDF {
    ScalarUDF::from(PeriodStart {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PeriodStart {
    signature: Signature,
}

/// A calendar period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Period {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Period {
    fn parse(s: &str) -> Option<Period> {
        Some(match s.to_ascii_lowercase().as_str() {
            "day" => Period::Day,
            "week" => Period::Week,
            "month" => Period::Month,
            "quarter" => Period::Quarter,
            "year" => Period::Year,
            _ => return None,
        })
    }

    /// The day number (days since 1970-01-01) of the period's first day.
    #[inline]
    fn start(self, days: i64) -> i64 {
        match self {
            Period::Day => days,
            // 1970-01-01 was a Thursday: Monday is 3 days before it.
            Period::Week => days - (days + 3).rem_euclid(7),
            Period::Month => days - civil(days).2 + 1,
            Period::Quarter => {
                let (y, m, _) = civil(days);
                days_from_civil(y, (m - 1) / 3 * 3 + 1)
            }
            Period::Year => days_from_civil(civil(days).0, 1),
        }
    }
}

/// Year, month (1..=12) and day (1..=31) of a day number (days since 1970-01-01, proleptic
/// Gregorian).
#[inline]
pub fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The day number of the first day of month `m` of year `y`.
#[inline]
fn days_from_civil(y: i64, m: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The first day the lookup tables cover: 1900-01-01.
const TABLE_FIRST: i64 = -25_567;
/// Days the lookup tables cover: 1900-01-01 up to 2200-01-01.
const TABLE_DAYS: usize = 109_573;

/// Period starts of every day of 1900..2200, for months, quarters and years. The calendar
/// arithmetic costs a dozen divisions a value; one lookup in a 430 KiB table is several
/// times cheaper over a large fact table. Days outside the range are computed.
fn table(period: Period) -> Option<&'static [i32]> {
    static TABLES: OnceLock<[Vec<i32>; 3]> = OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        [Period::Month, Period::Quarter, Period::Year].map(|p| {
            (0..TABLE_DAYS as i64)
                .map(|i| p.start(TABLE_FIRST + i) as i32) // in range: 1900..2200
                .collect()
        })
    });
    match period {
        Period::Day | Period::Week => None,
        Period::Month => Some(&tables[0]),
        Period::Quarter => Some(&tables[1]),
        Period::Year => Some(&tables[2]),
    }
}

/// Period starts of an array whose values convert to day numbers by `to_days`.
fn starts<T: ArrowPrimitiveType>(
    array: &ArrayRef,
    period: Period,
    to_days: impl Fn(T::Native) -> i64,
) -> Result<ArrayRef> {
    let values: &PrimitiveArray<T> = array.as_primitive();
    let table = table(period).unwrap_or_default();
    let out: Date32Array = values.try_unary(|v| {
        let days = to_days(v);
        if let Some(&start) = table.get(days.wrapping_sub(TABLE_FIRST) as usize) {
            return Ok(start);
        }
        let day = period.start(days);
        i32::try_from(day).map_err(|_| {
            ArrowError::ComputeError(format!("{NAME}: day {day} is outside the range of DATE"))
        })
    })?;
    Ok(Arc::new(out))
}

fn per_day(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 86_400,
        TimeUnit::Millisecond => 86_400_000,
        TimeUnit::Microsecond => 86_400_000_000,
        TimeUnit::Nanosecond => 86_400_000_000_000,
    }
}

fn period_starts(array: &ArrayRef, period: Period) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Date32 => starts::<Date32Type>(array, period, i64::from),
        DataType::Date64 => starts::<Date64Type>(array, period, |ms| ms.div_euclid(86_400_000)),
        DataType::Timestamp(unit, Some(_)) => {
            // Local time of the zone, as CAST(t AS TIMESTAMP) gives it.
            let local = cast(array, &DataType::Timestamp(*unit, None))?;
            period_starts(&local, period)
        }
        DataType::Timestamp(unit, None) => {
            let n = per_day(*unit);
            let f = move |v: i64| v.div_euclid(n);
            match unit {
                TimeUnit::Second => starts::<TimestampSecondType>(array, period, f),
                TimeUnit::Millisecond => starts::<TimestampMillisecondType>(array, period, f),
                TimeUnit::Microsecond => starts::<TimestampMicrosecondType>(array, period, f),
                TimeUnit::Nanosecond => starts::<TimestampNanosecondType>(array, period, f),
            }
        }
        DataType::Null => Ok(Arc::new(Date32Array::new_null(array.len()))),
        other => exec_err!("{NAME}: expected a DATE or TIMESTAMP, got {other}"),
    }
}

impl ScalarUDFImpl for PeriodStart {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [grain, t] = arg_types else {
            return plan_err!("{NAME} takes two arguments: a grain and a date or timestamp");
        };
        let t = match t {
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) | DataType::Null => {
                t.clone()
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                DataType::Timestamp(TimeUnit::Nanosecond, None)
            }
            other => return plan_err!("{NAME}: expected a DATE or TIMESTAMP, got {other}"),
        };
        Ok(vec![grain.clone(), t])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [grain, t] = args.args.as_slice() else {
            return exec_err!("{NAME} takes two arguments");
        };
        let period = match grain {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)),
            ) => match Period::parse(s) {
                Some(p) => p,
                None => {
                    return exec_err!(
                        "{NAME}: unknown grain '{s}'; use day, week, month, quarter or year"
                    );
                }
            },
            _ => return exec_err!("{NAME}: the grain must be a string literal"),
        };
        match t {
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(period_starts(a, period)?)),
            ColumnarValue::Scalar(s) => {
                let out = period_starts(&s.to_array()?, period)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The period start by walking the calendar one day at a time, for comparison.
    fn reference(days: i64, period: Period) -> i64 {
        let (_, m, d) = civil(days);
        match period {
            Period::Day => days,
            Period::Week => {
                let mut s = days;
                // 1970-01-05 (day 4) was a Monday.
                while (s - 4).rem_euclid(7) != 0 {
                    s -= 1;
                }
                s
            }
            Period::Month => days - (d - 1),
            Period::Quarter => {
                let mut s = days - (d - 1);
                let mut month = m;
                while (month - 1) % 3 != 0 {
                    s -= 1;
                    let (_, pm, pd) = civil(s);
                    s -= pd - 1;
                    month = pm;
                }
                s
            }
            Period::Year => {
                let mut s = days - (d - 1);
                while civil(s).1 != 1 {
                    s -= 1;
                    s -= civil(s).2 - 1;
                }
                s
            }
        }
    }

    #[test]
    fn civil_round_trips_and_walks_one_day_at_a_time() {
        let mut prev = civil(-800_000);
        for days in -799_999..800_000 {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m) + d - 1, days);
            // Each day follows the one before.
            let next_expected = if d == 1 {
                (prev.2 >= 28) && (m == prev.1 % 12 + 1) && (y == prev.0 + i64::from(m == 1))
            } else {
                (y, m, d - 1) == prev
            };
            assert!(next_expected, "{days}: {prev:?} then {:?}", (y, m, d));
            prev = (y, m, d);
        }
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
        assert_eq!(civil(-1), (1969, 12, 31));
        assert_eq!(civil(20_788), (2026, 12, 1));
    }

    #[test]
    fn the_tables_hold_what_the_arithmetic_gives() {
        for p in [Period::Month, Period::Quarter, Period::Year] {
            let t = table(p).unwrap();
            assert_eq!(t.len(), TABLE_DAYS);
            for (i, &start) in t.iter().enumerate() {
                assert_eq!(
                    i64::from(start),
                    p.start(TABLE_FIRST + i as i64),
                    "{p:?} {i}"
                );
            }
        }
        // The days on either side of the table go through the arithmetic.
        let days = Date32Array::from(vec![
            TABLE_FIRST as i32 - 1,
            TABLE_FIRST as i32,
            (TABLE_FIRST + TABLE_DAYS as i64) as i32 - 1,
            (TABLE_FIRST + TABLE_DAYS as i64) as i32,
        ]);
        let days: ArrayRef = Arc::new(days);
        let out = period_starts(&days, Period::Year).unwrap();
        let out: Vec<i64> = out
            .as_primitive::<Date32Type>()
            .values()
            .iter()
            .map(|&d| i64::from(d))
            .collect();
        // 1899-01-01, 1900-01-01, 2199-01-01, 2200-01-01.
        assert_eq!(
            out,
            vec![
                days_from_civil(1899, 1),
                days_from_civil(1900, 1),
                days_from_civil(2199, 1),
                days_from_civil(2200, 1)
            ]
        );
    }

    #[test]
    fn period_starts_match_a_calendar_walk() {
        for days in (-200_000..200_000).step_by(7) {
            for p in [
                Period::Day,
                Period::Week,
                Period::Month,
                Period::Quarter,
                Period::Year,
            ] {
                assert_eq!(p.start(days), reference(days, p), "{p:?} of day {days}");
            }
        }
    }
}
