//! Idempotency keys, derived only from where a change came from, so a retry, a restarted
//! run or a second run that sends the same change carries the same key.
//!
//! - Syncs: `sync + key + row hash` (the hash of the operation and the mapped values), so
//!   the same row state sent again is recognised, and a new state of the row is not.
//! - CDC: `slot + LSN + index`; ebb's `_ebb_seq` holds the commit LSN and the change's
//!   index in it, so `slot + _ebb_seq` is that key.

use sha2::{Digest, Sha256};

use ebb_destinations::Operation;

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A reverse-ETL sync, by name.
    Sync { name: String },
    /// A CDC pipeline, by replication slot.
    Cdc { slot: String },
}

/// The hash of a record's state: its operation and its mapped values, in field order.
pub fn row_hash(op: Operation, fields: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut h = Sha256::new();
    h.update(op.as_str().as_bytes());
    for (k, v) in fields {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.to_string().as_bytes());
    }
    hex(&h.finalize()[..16])
}

/// The key of a sync's record.
pub fn for_sync(sync: &str, key: &str, row_hash: &str) -> String {
    let mut h = Sha256::new();
    for part in [sync, key, row_hash] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("s_{}", hex(&h.finalize()[..16]))
}

/// The key of a CDC change: slot, then `_ebb_seq` (commit LSN and index) in hex.
pub fn for_cdc(slot: &str, seq: u64) -> String {
    format!("c_{slot}_{seq:016x}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_depend_on_origin_and_state_only() {
        let a = json!({"email": "a@x.io", "mrr": 1})
            .as_object()
            .unwrap()
            .clone();
        let b = json!({"email": "a@x.io", "mrr": 2})
            .as_object()
            .unwrap()
            .clone();
        let ha = row_hash(Operation::Upsert, &a);
        assert_eq!(ha, row_hash(Operation::Upsert, &a.clone()));
        assert_ne!(ha, row_hash(Operation::Upsert, &b));
        assert_ne!(ha, row_hash(Operation::Delete, &a));
        assert_eq!(for_sync("s", "1", &ha), for_sync("s", "1", &ha));
        assert_ne!(for_sync("s", "1", &ha), for_sync("s", "2", &ha));
        assert_ne!(for_sync("s1", "", &ha), for_sync("s", "1", &ha));
        assert_eq!(for_cdc("slot", 0x10), "c_slot_0000000000000010");
    }
}
