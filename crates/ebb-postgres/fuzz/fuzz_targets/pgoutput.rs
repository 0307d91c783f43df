//! `cargo fuzz run pgoutput`: arbitrary bytes through the pgoutput decoder, and every tuple it
//! accepts through the text and binary value parsers into Arrow. Nothing may panic.
#![no_main]

use bytes::Bytes;
use ebb_postgres::pgoutput::{Decoder, LogicalMessage};
use ebb_postgres::types::{PgType, RowBatchBuilder};
use libfuzzer_sys::fuzz_target;

const TYPES: [PgType; 12] = [
    PgType::Bool,
    PgType::Int8,
    PgType::Float8,
    PgType::Decimal {
        precision: 10,
        scale: 2,
    },
    PgType::NumericText,
    PgType::Text,
    PgType::Bytea,
    PgType::Uuid,
    PgType::TimestampTz,
    PgType::Interval,
    PgType::Inet,
    PgType::Date,
];

fuzz_target!(|data: &[u8]| {
    let Some((&version, rest)) = data.split_first() else {
        return;
    };
    let mut decoder = Decoder::new(u32::from(version % 4) + 1);
    // Several messages: a length byte, then the message.
    let mut rest = rest;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (message, tail) = tail.split_at(len);
        rest = tail;
        let Ok(message) = decoder.decode(&Bytes::copy_from_slice(message)) else {
            continue;
        };
        let tuple = match &message {
            LogicalMessage::Insert(i) => &i.new,
            LogicalMessage::Update(u) => &u.new,
            LogicalMessage::Delete(d) => &d.old.tuple,
            _ => continue,
        };
        let columns = (0..tuple.len()).map(|i| {
            let ty = TYPES[i % TYPES.len()].clone();
            let ty = if i / TYPES.len() % 2 == 1 {
                PgType::Array(Box::new(ty))
            } else {
                ty
            };
            (format!("c{i}"), ty)
        });
        let mut builder = RowBatchBuilder::new(columns);
        let _ = builder.append_tuple(tuple);
        let _ = builder.finish();
    }
});
