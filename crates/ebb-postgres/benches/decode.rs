//! Decode throughput of the pgoutput decoder, alone and into Arrow batches (MB/s of
//! pgoutput messages). Rows are 12-column Inserts in text format, like the end-to-end
//! benchmark's table.

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ebb_postgres::pgoutput::{Column, Decoder, Insert, LogicalMessage, TupleData};
use ebb_postgres::types::{PgType, RowBatchBuilder};

const ROWS: usize = 10_000;

fn messages() -> Vec<Bytes> {
    (0..ROWS)
        .map(|i| {
            let id = i.to_string();
            let amount = format!("{}.{:02}", i * 7 % 100_000, i % 100);
            let name = format!("customer-{i:08}");
            let email = format!("user{i}@example.com");
            let ts = format!(
                "2024-0{}-1{} 12:34:56.{:06}+00",
                1 + i % 9,
                i % 10,
                i % 1_000_000
            );
            let values: [&[u8]; 12] = [
                id.as_bytes(),
                b"42",
                amount.as_bytes(),
                name.as_bytes(),
                email.as_bytes(),
                ts.as_bytes(),
                b"t",
                b"3.25",
                b"active",
                b"1234567890",
                ts.as_bytes(),
                b"a short note about this row",
            ];
            let msg = LogicalMessage::Insert(Insert {
                xid: None,
                relation_id: 16384,
                new: TupleData::from_columns(values.iter().map(|v| Column::Text(v))),
            });
            let mut buf = BytesMut::new();
            msg.encode(&mut buf);
            buf.freeze()
        })
        .collect()
}

fn columns() -> Vec<(&'static str, PgType)> {
    vec![
        ("id", PgType::Int8),
        ("qty", PgType::Int4),
        (
            "amount",
            PgType::Decimal {
                precision: 12,
                scale: 2,
            },
        ),
        ("name", PgType::Text),
        ("email", PgType::Text),
        ("created_at", PgType::TimestampTz),
        ("active", PgType::Bool),
        ("score", PgType::Float8),
        ("status", PgType::Text),
        ("external_id", PgType::Int8),
        ("updated_at", PgType::TimestampTz),
        ("note", PgType::Text),
    ]
}

fn bench(c: &mut Criterion) {
    let messages = messages();
    let bytes: usize = messages.iter().map(Bytes::len).sum();
    let mut group = c.benchmark_group("pgoutput");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut d = Decoder::new(2);
            let mut columns = 0;
            for m in &messages {
                if let LogicalMessage::Insert(i) = d.decode(m).unwrap() {
                    columns += i.new.iter().count();
                }
            }
            columns
        })
    });
    group.bench_function("decode_to_arrow", |b| {
        b.iter(|| {
            let mut d = Decoder::new(2);
            let mut builder = RowBatchBuilder::new(columns());
            let mut rows = 0;
            for m in &messages {
                if let LogicalMessage::Insert(i) = d.decode(m).unwrap() {
                    builder.append_tuple(&i.new).unwrap();
                }
                if builder.len() == 8192 {
                    rows += builder.finish().unwrap().batch.num_rows();
                }
            }
            rows + builder.finish().unwrap().batch.num_rows()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
