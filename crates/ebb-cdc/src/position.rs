//! Positions in the change stream: what a sink holds, what the pipeline may confirm, and how a
//! change's `_ebb_seq` is derived from its transaction's commit LSN.

use std::collections::BTreeMap;

use ebb_postgres::Lsn;
use serde::{Deserialize, Serialize};

/// Bits of `_ebb_seq` that hold a change's index within its transaction.
pub const SEQ_INDEX_BITS: u32 = 24;

/// `_ebb_seq` of the `index`-th change of the transaction that committed at `commit_lsn`:
/// `(commit_lsn / 8) * 2^24 + index`.
///
/// Commit records are 8-byte aligned and at least 32 bytes apart, so the sequence increases
/// along the stream for transactions of up to 4 * 2^24 (67 million) changes, while commit LSNs
/// stay below 2^43 (8 TiB of WAL). Rows of an initial copy all get `seq(snapshot_lsn, 0)`: they
/// are inserts of distinct keys. Exactness (deduplication, idempotency keys) never relies on
/// the sequence: every sink also records the full commit LSN (`_ebb_lsn`) of each change.
pub fn seq(commit_lsn: Lsn, index: u64) -> u64 {
    ((commit_lsn.0 >> 3) << SEQ_INDEX_BITS).wrapping_add(index)
}

/// The idempotency key of a change: `slot/commit LSN/index`.
pub fn idempotency_key(slot: &str, commit_lsn: Lsn, index: u64) -> String {
    format!("{slot}/{commit_lsn}/{index}")
}

/// What a sink durably holds (or what the whole pipeline does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Commit LSN of the last transaction whose changes are all held (0: none yet).
    pub commit_lsn: u64,
    /// The position that may be confirmed to PostgreSQL: the end of that transaction's
    /// commit record, or a later point where nothing of the published tables happened.
    pub flush_lsn: u64,
    /// Tables whose initial copy is held, with the LSN of the snapshot they were copied in
    /// (0: not copied, streaming from the slot's start). Changes of a table that committed
    /// before its snapshot are already in the copy and are not delivered again.
    #[serde(default)]
    pub tables: BTreeMap<String, u64>,
}

impl Position {
    /// Whether a change of `table` that committed at `commit_lsn` is already held.
    pub fn holds(&self, table: &str, commit_lsn: u64) -> bool {
        commit_lsn <= self.commit_lsn || self.tables.get(table).is_some_and(|s| commit_lsn < *s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_orders_transactions_then_changes() {
        let a = Lsn(0x16_B374_D848);
        let b = Lsn(a.0 + 32);
        assert!(seq(a, 0) < seq(a, 1));
        assert!(seq(a, 4 * (1 << 24) - 1) < seq(b, 0));
        assert_eq!(idempotency_key("s", a, 3), "s/16/B374D848/3");
    }

    #[test]
    fn positions_hold_what_they_cover() {
        let p = Position {
            commit_lsn: 100,
            flush_lsn: 120,
            tables: [("public.t".to_string(), 500)].into(),
        };
        assert!(p.holds("public.u", 100));
        assert!(!p.holds("public.u", 101));
        assert!(p.holds("public.t", 499));
        assert!(!p.holds("public.t", 500));
    }
}
