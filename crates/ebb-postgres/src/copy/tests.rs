use arrow::array::AsArray;
use arrow::datatypes::Int32Type;
use proptest::prelude::*;

use super::*;

fn stream(rows: &[&[Option<&[u8]>]]) -> Vec<u8> {
    let mut v = SIGNATURE.to_vec();
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    for row in rows {
        v.extend_from_slice(&i16::try_from(row.len()).unwrap().to_be_bytes());
        for f in *row {
            match f {
                None => v.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    v.extend_from_slice(&i32::try_from(b.len()).unwrap().to_be_bytes());
                    v.extend_from_slice(b);
                }
            }
        }
    }
    v.extend_from_slice(&(-1i16).to_be_bytes());
    v
}

fn reader() -> BinaryCopyReader {
    BinaryCopyReader::new([("id", PgType::Int4), ("name", PgType::Text)], 2)
}

#[test]
fn reads_rows_across_chunk_boundaries() {
    let one = 1i32.to_be_bytes();
    let two = 2i32.to_be_bytes();
    let three = 3i32.to_be_bytes();
    let data = stream(&[
        &[Some(&one), Some(b"a")],
        &[Some(&two), None],
        &[Some(&three), Some(b"c")],
    ]);
    for chunk_size in [1, 3, 7, data.len()] {
        let mut r = reader();
        let mut batches = Vec::new();
        for chunk in data.chunks(chunk_size) {
            r.push(chunk).unwrap();
            batches.extend(std::iter::from_fn(|| r.next_batch()));
        }
        batches.extend(r.finish().unwrap());
        assert_eq!(batches.len(), 2, "chunk size {chunk_size}");
        assert_eq!(batches[0].batch.num_rows(), 2);
        let ids: Vec<i32> = batches
            .iter()
            .flat_map(|b| {
                b.batch
                    .column(0)
                    .as_primitive::<Int32Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids, [1, 2, 3]);
        assert!(batches[0].batch.column(1).is_null(1));
    }
}

#[test]
fn rejects_bad_streams() {
    let mut r = reader();
    assert!(matches!(r.push(b"COPY"), Err(CopyError::Header { .. })));
    let mut r = reader();
    let one = 1i32.to_be_bytes();
    let data = stream(&[&[Some(&one)]]);
    assert!(matches!(r.push(&data), Err(CopyError::Row { row: 0, .. })));
    // No trailer.
    let mut r = reader();
    let data = stream(&[&[Some(&one), Some(b"a")]]);
    r.push(&data[..data.len() - 2]).unwrap();
    assert_eq!(
        r.finish().unwrap_err(),
        CopyError::Stream("the stream ended before its trailer")
    );
    // A value that does not convert rejects its row only.
    let mut r = reader();
    let data = stream(&[&[Some(b"xx"), Some(b"a")], &[Some(&one), Some(b"b")]]);
    r.push(&data).unwrap();
    assert_eq!(r.take_rejected().len(), 1);
    let batches = r.finish().unwrap();
    assert_eq!(batches[0].batch.num_rows(), 1);
}

proptest! {
    #[test]
    fn random_bytes_never_panic(
        prefix in any::<bool>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        chunk in 1usize..50,
    ) {
        let mut r = reader();
        let mut data = if prefix { stream(&[])[..19].to_vec() } else { Vec::new() };
        data.extend_from_slice(&bytes);
        for c in data.chunks(chunk) {
            if r.push(c).is_err() {
                break;
            }
        }
        let _ = r.finish();
    }
}
