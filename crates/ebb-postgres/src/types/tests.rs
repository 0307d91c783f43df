use arrow::array::{Array, AsArray};
use arrow::datatypes::*;
use arrow::util::pretty::pretty_format_batches;
use proptest::prelude::*;

use super::*;
use crate::pgoutput::{Column, TupleData};
use crate::retry::RetryClass;

fn text_value(ty: PgType, v: &str) -> Result<arrow::array::ArrayRef, ValueError> {
    let mut b = ColumnBuilder::new(ty);
    b.append_text(v.as_bytes())?;
    Ok(b.finish())
}

fn binary_value(ty: PgType, v: &[u8]) -> Result<arrow::array::ArrayRef, ValueError> {
    let mut b = ColumnBuilder::new(ty);
    b.append_binary(v)?;
    Ok(b.finish())
}

fn numeric_binary(ndigits: &[u16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&i16::try_from(ndigits.len()).unwrap().to_be_bytes());
    v.extend_from_slice(&weight.to_be_bytes());
    v.extend_from_slice(&sign.to_be_bytes());
    v.extend_from_slice(&dscale.to_be_bytes());
    for d in ndigits {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}

#[test]
fn resolve_maps_builtins_and_registry_types() {
    let reg = {
        let mut r = TypeRegistry::new();
        r.insert(
            90_001,
            CustomType::Enum {
                name: "mood".into(),
            },
        );
        r.insert(
            90_002,
            CustomType::Array {
                name: "_mood".into(),
                element: 90_001,
            },
        );
        r.insert(
            90_003,
            CustomType::Domain {
                name: "price".into(),
                base: oid::NUMERIC,
                base_modifier: (10 << 16 | 2) + 4,
            },
        );
        r.insert(
            90_004,
            CustomType::Other {
                name: "hstore".into(),
            },
        );
        r
    };
    let r = |oid, m| PgType::resolve(oid, m, &reg);
    assert_eq!(r(oid::INT8, -1).arrow_type(), DataType::Int64);
    assert_eq!(
        r(oid::NUMERIC, (12 << 16 | 2) + 4).arrow_type(),
        DataType::Decimal128(12, 2)
    );
    assert_eq!(r(oid::NUMERIC, -1), PgType::NumericText);
    assert_eq!(r(oid::NUMERIC, (40 << 16) + 4), PgType::NumericText);
    // numeric(3,5) (PostgreSQL 15): precision raised to the scale.
    assert_eq!(
        r(oid::NUMERIC, (3 << 16 | 5) + 4).arrow_type(),
        DataType::Decimal128(5, 5)
    );
    // numeric(4,-2): negative scale kept.
    assert_eq!(
        r(oid::NUMERIC, (4 << 16 | (-2i32 & 0x7ff)) + 4).arrow_type(),
        DataType::Decimal128(4, -2)
    );
    assert_eq!(
        r(oid::TIMESTAMPTZ, -1).arrow_type(),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(
        r(oid::INT4_ARRAY, -1).arrow_type(),
        DataType::List(Arc::new(
            Field::new("item", DataType::Int32, true).with_metadata(HashMap::from([(
                PG_TYPE_METADATA_KEY.to_owned(),
                "int4".to_owned()
            )]))
        ))
    );
    assert_eq!(
        r(90_002, -1),
        PgType::Array(Box::new(PgType::Enum {
            name: "mood".into()
        }))
    );
    assert_eq!(
        r(90_003, -1),
        PgType::Decimal {
            precision: 10,
            scale: 2
        }
    );
    assert_eq!(r(90_004, -1).to_string(), "hstore");
    assert_eq!(r(90_004, -1).arrow_type(), DataType::Utf8);
    assert_eq!(r(123_456, -1).to_string(), "type 123456");
    let uuid = r(oid::UUID, -1).field("id", false);
    assert_eq!(
        uuid.metadata().get(EXTENSION_NAME_KEY).map(String::as_str),
        Some("arrow.uuid")
    );
}

#[test]
fn text_scalars() {
    let a = text_value(PgType::Bool, "t").unwrap();
    assert!(a.as_boolean().value(0));
    assert!(
        !text_value(PgType::Bool, "false")
            .unwrap()
            .as_boolean()
            .value(0)
    );
    let a = text_value(PgType::Int2, "-32768").unwrap();
    assert_eq!(a.as_primitive::<Int16Type>().value(0), -32768);
    assert!(text_value(PgType::Int2, "32768").is_err());
    let a = text_value(PgType::Oid, "4294967295").unwrap();
    assert_eq!(a.as_primitive::<UInt32Type>().value(0), u32::MAX);
    let a = text_value(PgType::Float8, "-Infinity").unwrap();
    assert_eq!(a.as_primitive::<Float64Type>().value(0), f64::NEG_INFINITY);
    let a = text_value(PgType::Float4, "NaN").unwrap();
    assert!(a.as_primitive::<Float32Type>().value(0).is_nan());
    let a = text_value(PgType::Float8, "1.2345678901234567e-300").unwrap();
    assert_eq!(
        a.as_primitive::<Float64Type>().value(0),
        1.234_567_890_123_456_7e-300
    );
}

#[test]
fn text_numeric_to_decimal() {
    let d = |v: &str, p, s| {
        text_value(
            PgType::Decimal {
                precision: p,
                scale: s,
            },
            v,
        )
        .map(|a| a.as_primitive::<Decimal128Type>().value(0))
    };
    assert_eq!(d("123.45", 5, 2).unwrap(), 12345);
    assert_eq!(d("-0.05", 5, 2).unwrap(), -5);
    assert_eq!(d("7", 5, 2).unwrap(), 700);
    assert_eq!(
        d("99999999999999999999999999999999999999", 38, 0).unwrap(),
        10i128.pow(38) - 1
    );
    assert_eq!(d("12300", 4, -2).unwrap(), 123);
    assert_eq!(d("0.00012", 5, 5).unwrap(), 12);
    let err = d("NaN", 5, 2).unwrap_err();
    assert!(matches!(err, ValueError::NotRepresentable { .. }));
    assert_eq!(err.retry_class(), RetryClass::Rejected);
    assert!(matches!(
        d("1000.00", 5, 2),
        Err(ValueError::NotRepresentable { .. })
    ));
    assert!(matches!(
        d("1.234", 5, 2),
        Err(ValueError::NotRepresentable { .. })
    ));
    assert!(matches!(
        d("1.2.3", 5, 2),
        Err(ValueError::InvalidText { .. })
    ));
    assert!(matches!(d("", 5, 2), Err(ValueError::InvalidText { .. })));
}

#[test]
fn binary_numeric() {
    // 12345.6789 = [1, 2345, 6789], weight 1, dscale 4
    let v = numeric_binary(&[1, 2345, 6789], 1, 0, 4);
    let a = binary_value(
        PgType::Decimal {
            precision: 12,
            scale: 4,
        },
        &v,
    )
    .unwrap();
    assert_eq!(a.as_primitive::<Decimal128Type>().value(0), 123_456_789);
    let a = binary_value(PgType::NumericText, &v).unwrap();
    assert_eq!(a.as_string::<i32>().value(0), "12345.6789");
    // -0.00012 with dscale 6: digits [1, 2000] weight -1
    let v = numeric_binary(&[1, 2000], -1, 0x4000, 6);
    let a = binary_value(PgType::NumericText, &v).unwrap();
    assert_eq!(a.as_string::<i32>().value(0), "-0.000120");
    let a = binary_value(
        PgType::Decimal {
            precision: 8,
            scale: 6,
        },
        &v,
    )
    .unwrap();
    assert_eq!(a.as_primitive::<Decimal128Type>().value(0), -120);
    // 10000000 = [1000] weight 1 → "10000000" (digit group 0 implied)
    let v = numeric_binary(&[1000], 1, 0, 0);
    assert_eq!(
        binary_value(PgType::NumericText, &v)
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "10000000"
    );
    let v = numeric_binary(&[], 0, 0, 2);
    assert_eq!(
        binary_value(PgType::NumericText, &v)
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "0.00"
    );
    let v = numeric_binary(&[], 0, 0xC000, 0);
    assert_eq!(
        binary_value(PgType::NumericText, &v)
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "NaN"
    );
    assert!(matches!(
        binary_value(
            PgType::Decimal {
                precision: 5,
                scale: 0
            },
            &v
        ),
        Err(ValueError::NotRepresentable { .. })
    ));
    assert!(matches!(
        binary_value(PgType::NumericText, &numeric_binary(&[10000], 0, 0, 0)),
        Err(ValueError::InvalidBinary { .. })
    ));
}

#[test]
fn text_dates_and_times() {
    let date = |v| text_value(PgType::Date, v).map(|a| a.as_primitive::<Date32Type>().value(0));
    assert_eq!(date("1970-01-01").unwrap(), 0);
    assert_eq!(date("2000-01-01").unwrap(), 10_957);
    assert_eq!(date("0001-12-31 BC").unwrap(), -719_163);
    assert_eq!(date("infinity").unwrap(), i32::MAX);
    assert_eq!(date("-infinity").unwrap(), i32::MIN);
    assert_eq!(date("12345-06-07").unwrap(), 3_789_548);
    assert!(date("2023-02-29").is_err());
    assert!(date("2023-1-01").is_err());

    let time =
        |v| text_value(PgType::Time, v).map(|a| a.as_primitive::<Time64MicrosecondType>().value(0));
    assert_eq!(time("13:14:15.5").unwrap(), 47_655_500_000);
    assert_eq!(time("24:00:00").unwrap(), 86_400_000_000);
    assert!(time("13:14").is_err());

    let ts =
        |ty, v| text_value(ty, v).map(|a| a.as_primitive::<TimestampMicrosecondType>().value(0));
    assert_eq!(
        ts(PgType::Timestamp, "2000-01-01 00:00:00").unwrap(),
        946_684_800_000_000
    );
    assert_eq!(
        ts(PgType::Timestamp, "1969-12-31 23:59:59.999999").unwrap(),
        -1
    );
    assert_eq!(
        ts(PgType::TimestampTz, "2000-01-01 02:30:00+02:30").unwrap(),
        946_684_800_000_000
    );
    assert_eq!(
        ts(PgType::TimestampTz, "1999-12-31 19:00:00-05").unwrap(),
        946_684_800_000_000
    );
    assert_eq!(ts(PgType::TimestampTz, "infinity").unwrap(), i64::MAX);
    assert!(ts(PgType::TimestampTz, "2000-01-01 00:00:00").is_err());
    let bc = ts(PgType::TimestampTz, "0044-03-15 12:00:00+00 BC").unwrap();
    assert_eq!(
        bc,
        super::datetime::days_from_civil(-43, 3, 15) * 86_400_000_000 + 43_200_000_000
    );
}

#[test]
fn text_intervals_in_each_style() {
    let iv = |v| {
        text_value(PgType::Interval, v)
            .map(|a| a.as_primitive::<IntervalMonthDayNanoType>().value(0))
    };
    let want = IntervalMonthDayNano::new(14, 3, 14_706_500_000_000);
    assert_eq!(iv("1 year 2 mons 3 days 04:05:06.5").unwrap(), want);
    assert_eq!(iv("P1Y2M3DT4H5M6.5S").unwrap(), want);
    assert_eq!(
        iv("@ 1 year 2 mons 3 days 4 hours 5 mins 6.5 secs").unwrap(),
        want
    );
    let neg = IntervalMonthDayNano::new(-14, -3, -14_706_500_000_000);
    assert_eq!(iv("-1 years -2 mons -3 days -04:05:06.5").unwrap(), neg);
    assert_eq!(iv("P-1Y-2M-3DT-4H-5M-6.5S").unwrap(), neg);
    assert_eq!(
        iv("@ 1 year 2 mons 3 days 4 hours 5 mins 6.5 secs ago").unwrap(),
        neg
    );
    assert_eq!(iv("00:00:00").unwrap(), IntervalMonthDayNano::new(0, 0, 0));
    assert_eq!(iv("PT0S").unwrap(), IntervalMonthDayNano::new(0, 0, 0));
    assert_eq!(
        iv("1 day -00:00:00.000001").unwrap(),
        IntervalMonthDayNano::new(0, 1, -1000)
    );
    assert_eq!(
        iv("-178956970 years -8 mons").unwrap(),
        IntervalMonthDayNano::new(i32::MIN, 0, 0)
    );
    assert!(iv("1 fortnight").is_err());
    assert!(iv("").is_err());
}

#[test]
fn text_strings_bytes_uuid_json_inet() {
    let a = text_value(PgType::Text, "héllo").unwrap();
    assert_eq!(a.as_string::<i32>().value(0), "héllo");
    let a = text_value(PgType::Bytea, "\\x00ff10").unwrap();
    assert_eq!(a.as_binary::<i32>().value(0), [0, 255, 16]);
    let a = text_value(PgType::Bytea, "a\\\\b\\001").unwrap();
    assert_eq!(a.as_binary::<i32>().value(0), b"a\\b\x01");
    assert!(text_value(PgType::Bytea, "\\x0").is_err());
    let a = text_value(PgType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
    assert_eq!(
        a.as_fixed_size_binary().value(0),
        [
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11
        ]
    );
    assert!(text_value(PgType::Uuid, "a0eebc99").is_err());
    let a = text_value(PgType::Jsonb, r#"{"a": 1}"#).unwrap();
    assert_eq!(a.as_string::<i32>().value(0), r#"{"a": 1}"#);
    assert!(text_value(PgType::Text, "\u{0}").is_ok());
    let mut b = ColumnBuilder::new(PgType::Text);
    assert!(b.append_text(&[0xff]).is_err());
}

#[test]
fn binary_scalars() {
    let a = binary_value(PgType::Int8, &(-5i64).to_be_bytes()).unwrap();
    assert_eq!(a.as_primitive::<Int64Type>().value(0), -5);
    assert!(binary_value(PgType::Int8, &[1, 2]).is_err());
    let a = binary_value(PgType::Date, &0i32.to_be_bytes()).unwrap();
    assert_eq!(a.as_primitive::<Date32Type>().value(0), 10_957);
    let a = binary_value(PgType::Date, &i32::MIN.to_be_bytes()).unwrap();
    assert_eq!(a.as_primitive::<Date32Type>().value(0), i32::MIN);
    let a = binary_value(PgType::TimestampTz, &1i64.to_be_bytes()).unwrap();
    assert_eq!(
        a.as_primitive::<TimestampMicrosecondType>().value(0),
        946_684_800_000_001
    );
    let mut iv = Vec::new();
    iv.extend_from_slice(&1_500_000i64.to_be_bytes());
    iv.extend_from_slice(&(-2i32).to_be_bytes());
    iv.extend_from_slice(&13i32.to_be_bytes());
    let a = binary_value(PgType::Interval, &iv).unwrap();
    assert_eq!(
        a.as_primitive::<IntervalMonthDayNanoType>().value(0),
        IntervalMonthDayNano::new(13, -2, 1_500_000_000)
    );
    let a = binary_value(PgType::Jsonb, b"\x01{}").unwrap();
    assert_eq!(a.as_string::<i32>().value(0), "{}");
    assert!(binary_value(PgType::Jsonb, b"\x02{}").is_err());
    let a = binary_value(PgType::Inet, &[2, 24, 0, 4, 192, 168, 1, 0]).unwrap();
    assert_eq!(a.as_string::<i32>().value(0), "192.168.1.0/24");
    let a = binary_value(PgType::Inet, &[2, 32, 0, 4, 10, 0, 0, 1]).unwrap();
    assert_eq!(a.as_string::<i32>().value(0), "10.0.0.1");
    let a = binary_value(PgType::Cidr, &[2, 32, 1, 4, 10, 0, 0, 1]).unwrap();
    assert_eq!(a.as_string::<i32>().value(0), "10.0.0.1/32");
    let mut v6 = vec![3, 64, 0, 16, 0x20, 0x01, 0x0d, 0xb8];
    v6.extend_from_slice(&[0; 12]);
    let a = binary_value(PgType::Inet, &v6).unwrap();
    assert_eq!(a.as_string::<i32>().value(0), "2001:db8::/64");
    let err = binary_value(
        PgType::Unknown {
            oid: 1,
            name: Some("hstore".into()),
        },
        b"x",
    )
    .unwrap_err();
    assert!(matches!(err, ValueError::BinaryUnsupported { .. }));
    assert!(err.to_string().contains("hstore"));
}

#[test]
fn arrays_in_text_and_binary() {
    let ty = PgType::Array(Box::new(PgType::Text));
    let mut b = ColumnBuilder::new(ty.clone());
    b.append_text(br#"{a,"b c",NULL,"NULL","q\"x\\y",  d  }"#)
        .unwrap();
    b.append_null();
    b.append_text(b"{}").unwrap();
    b.append_text(b"[0:1]={x,y}").unwrap();
    let a = b.finish();
    let list = a.as_list::<i32>();
    assert_eq!(list.len(), 4);
    let first = list.value(0);
    let first = first.as_string::<i32>();
    assert_eq!(first.len(), 6);
    assert_eq!(first.value(0), "a");
    assert_eq!(first.value(1), "b c");
    assert!(first.is_null(2));
    assert_eq!(first.value(3), "NULL");
    assert_eq!(first.value(4), "q\"x\\y");
    assert_eq!(first.value(5), "d");
    assert!(list.is_null(1));
    assert_eq!(list.value(2).len(), 0);
    assert_eq!(list.value(3).len(), 2);

    let ints = PgType::Array(Box::new(PgType::Int4));
    let err = text_value(ints.clone(), "{{1,2},{3,4}}").unwrap_err();
    assert!(matches!(
        err,
        ValueError::MultiDimensionalArray { dimensions: 2, .. }
    ));
    // A bad element rejects the whole value, and the column stays aligned.
    let mut b = ColumnBuilder::new(ints.clone());
    assert!(b.append_text(b"{1,x,3}").is_err());
    b.append_text(b"{4}").unwrap();
    let a = b.finish();
    assert_eq!(a.len(), 2);
    assert!(a.is_null(0));
    assert_eq!(
        a.as_list::<i32>()
            .value(1)
            .as_primitive::<Int32Type>()
            .values(),
        &[4]
    );

    let mut bin = Vec::new();
    for v in [1i32, 0, 23, 3, 1] {
        bin.extend_from_slice(&v.to_be_bytes());
    }
    bin.extend_from_slice(&4i32.to_be_bytes());
    bin.extend_from_slice(&7i32.to_be_bytes());
    bin.extend_from_slice(&(-1i32).to_be_bytes());
    bin.extend_from_slice(&4i32.to_be_bytes());
    bin.extend_from_slice(&9i32.to_be_bytes());
    let a = binary_value(ints.clone(), &bin).unwrap();
    let v = a.as_list::<i32>().value(0);
    let v = v.as_primitive::<Int32Type>();
    assert_eq!(v.len(), 3);
    assert_eq!(v.value(0), 7);
    assert!(v.is_null(1));
    assert_eq!(v.value(2), 9);
    let mut empty = Vec::new();
    for v in [0i32, 0, 23] {
        empty.extend_from_slice(&v.to_be_bytes());
    }
    assert_eq!(
        binary_value(ints, &empty)
            .unwrap()
            .as_list::<i32>()
            .value(0)
            .len(),
        0
    );
}

#[test]
fn row_batch_builder_keeps_good_rows_and_marks_toast() {
    let mut b = RowBatchBuilder::new([
        ("id", PgType::Int8),
        (
            "price",
            PgType::Decimal {
                precision: 6,
                scale: 2,
            },
        ),
        ("doc", PgType::Text),
    ]);
    let rows = [
        TupleData::from_columns([
            Column::Text(b"1"),
            Column::Text(b"1.50"),
            Column::Text(b"a"),
        ]),
        TupleData::from_columns([Column::Text(b"2"), Column::Text(b"NaN"), Column::Text(b"b")]),
        TupleData::from_columns([Column::Text(b"3"), Column::Null, Column::UnchangedToast]),
        TupleData::from_columns([Column::Text(b"4")]),
    ];
    assert!(b.append_tuple(&rows[0]).is_ok());
    let err = b.append_tuple(&rows[1]).unwrap_err();
    assert_eq!(err.retry_class(), RetryClass::Rejected);
    assert_eq!(
        err.to_string(),
        "row 1, column \"price\": numeric(6,2) value cannot be represented as Arrow \
         Decimal128(6, 2): NaN has no decimal value"
    );
    assert!(b.append_tuple(&rows[2]).is_ok());
    assert!(matches!(
        b.append_tuple(&rows[3]),
        Err(RowError::ColumnCount {
            expected: 3,
            found: 1,
            ..
        })
    ));
    let out = b.finish().unwrap();
    assert_eq!(out.unchanged_toast, vec![(1, 2)]);
    let table = pretty_format_batches(&[out.batch]).unwrap().to_string();
    assert_eq!(
        table,
        "+----+-------+-----+\n\
         | id | price | doc |\n\
         +----+-------+-----+\n\
         | 1  | 1.50  | a   |\n\
         | 3  |       |     |\n\
         +----+-------+-----+"
    );
    assert!(b.is_empty());
    assert_eq!(b.finish().unwrap().batch.num_rows(), 0);
    assert!(b.supports_binary());
    let unknown = RowBatchBuilder::new([(
        "h",
        PgType::Array(Box::new(PgType::Unknown { oid: 1, name: None })),
    )]);
    assert!(!unknown.supports_binary());
}

fn all_types() -> Vec<PgType> {
    let scalars = vec![
        PgType::Bool,
        PgType::Int2,
        PgType::Int4,
        PgType::Int8,
        PgType::Oid,
        PgType::Float4,
        PgType::Float8,
        PgType::Decimal {
            precision: 10,
            scale: 3,
        },
        PgType::Decimal {
            precision: 4,
            scale: -2,
        },
        PgType::NumericText,
        PgType::Text,
        PgType::Bytea,
        PgType::Uuid,
        PgType::Date,
        PgType::Time,
        PgType::Timestamp,
        PgType::TimestampTz,
        PgType::Interval,
        PgType::Json,
        PgType::Jsonb,
        PgType::Enum {
            name: "mood".into(),
        },
        PgType::Inet,
        PgType::Cidr,
        PgType::Unknown { oid: 1, name: None },
    ];
    let arrays: Vec<_> = scalars
        .iter()
        .cloned()
        .map(|t| PgType::Array(Box::new(t)))
        .collect();
    scalars.into_iter().chain(arrays).collect()
}

proptest! {
    #[test]
    fn random_values_never_panic_and_keep_columns_aligned(
        values in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)), 1..6),
    ) {
        for ty in all_types() {
            let mut b = ColumnBuilder::new(ty);
            for (binary, v) in &values {
                let _ = if *binary { b.append_binary(v) } else { b.append_text(v) };
            }
            prop_assert_eq!(b.finish().len(), values.len());
        }
    }

    #[test]
    fn random_text_shaped_values_never_panic(
        v in "[-+0-9:. PTYMDHSa-z{}\",\\\\]{0,30}",
    ) {
        for ty in all_types() {
            let mut b = ColumnBuilder::new(ty);
            let _ = b.append_text(v.as_bytes());
            prop_assert_eq!(b.finish().len(), 1);
        }
    }

    #[test]
    fn decimal_text_and_binary_agree(unscaled in -99_999_999_999i64..99_999_999_999, scale in 0u8..8) {
        let ty = PgType::Decimal { precision: 18, scale: i8::try_from(scale).unwrap() };
        // Text form.
        let pow = 10i64.pow(u32::from(scale));
        let text = if scale == 0 {
            unscaled.to_string()
        } else {
            format!("{}{}.{:0width$}", if unscaled < 0 { "-" } else { "" }, unscaled.abs() / pow, unscaled.abs() % pow, width = usize::from(scale))
        };
        let from_text = text_value(ty.clone(), &text).unwrap();
        prop_assert_eq!(from_text.as_primitive::<Decimal128Type>().value(0), i128::from(unscaled));
        // Binary form: base-10000 digits of |unscaled| × 10^(4k − scale) for alignment.
        let align = (4 - u32::from(scale) % 4) % 4;
        let mut mag = u128::from(unscaled.unsigned_abs()) * 10u128.pow(align);
        let mut digits = Vec::new();
        while mag > 0 {
            digits.push(u16::try_from(mag % 10000).unwrap());
            mag /= 10000;
        }
        digits.reverse();
        let frac_groups = (i16::from(scale) + 3) / 4;
        let weight = i16::try_from(digits.len()).unwrap() - frac_groups - 1;
        let bin = numeric_binary(&digits, weight, if unscaled < 0 { 0x4000 } else { 0 }, u16::from(scale));
        let from_binary = binary_value(ty, &bin).unwrap();
        prop_assert_eq!(from_binary.as_primitive::<Decimal128Type>().value(0), i128::from(unscaled));
        let as_text = binary_value(PgType::NumericText, &bin).unwrap();
        prop_assert_eq!(as_text.as_string::<i32>().value(0), text.as_str());
    }
}
