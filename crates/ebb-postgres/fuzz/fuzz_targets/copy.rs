//! `cargo fuzz run copy`: arbitrary bytes, in arbitrary chunks, through the binary COPY
//! reader. Nothing may panic.
#![no_main]

use ebb_postgres::copy::{BinaryCopyReader, SIGNATURE};
use ebb_postgres::types::PgType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let mut reader = BinaryCopyReader::new(
        [
            ("a", PgType::Int4),
            ("b", PgType::Text),
            (
                "c",
                PgType::Array(Box::new(PgType::Decimal {
                    precision: 8,
                    scale: 3,
                })),
            ),
            ("d", PgType::Interval),
        ],
        16,
    );
    // Start with a valid header half of the time, so that rows are reached.
    if chunk & 1 == 1 {
        let mut header = SIGNATURE.to_vec();
        header.extend_from_slice(&[0; 8]);
        let _ = reader.push(&header);
    }
    for piece in rest.chunks(usize::from(chunk).max(1)) {
        if reader.push(piece).is_err() {
            return;
        }
        while reader.next_batch().is_some() {}
    }
    let _ = reader.finish();
});
