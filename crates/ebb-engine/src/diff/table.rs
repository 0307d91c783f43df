//! The snapshot index's table: open addressing over a flat array of 32-byte slots.
//!
//! Millions of keys make every lookup a cache miss, and a miss costs ~100 ns on a small VM:
//! a general-purpose map spent most of a 10M-row diff waiting on memory. This table works a
//! batch of keys at a time and asks the CPU for the slot of the key a few places ahead
//! ([`prefetch_index`]) while it works on the current one, so the misses overlap.
//!
//! The table starts zeroed (a zeroed slot is a free one), so it costs nothing to clear; its
//! pages are touched once up front, on a thread of its own ([`IdTable::prefaulted`]).
//!
//! A key's home slot is the high half of its identity scaled to the table's length, so the
//! table needs no power-of-two size (it is 3/2 of the keys it was sized for); collisions go
//! to the next free slot (linear probing: the next slot is usually in the same or the next
//! cache line).

use prefetch_index::prefetch_index;

use super::index::{Entry, KeyId};
use crate::EngineError;

/// How many keys ahead a batch prefetches: enough misses in flight to hide the latency.
const AHEAD: usize = 16;

/// A slot: the key's identity, its row hash, and its `pos_state` inverted, so that a zeroed
/// slot reads as `pos_state` `u64::MAX`, which no row position reaches: a free slot.
type Slot = [u64; 4];

fn is_free(slot: &Slot) -> bool {
    slot[3] == 0
}

/// The index's table: a fixed capacity, chosen up front.
pub(super) struct IdTable {
    slots: Vec<Slot>,
    len: usize,
}

impl IdTable {
    /// Slots for `keys` keys: the table stays at most 2/3 full.
    fn capacity(keys: u64) -> u64 {
        keys + keys / 2 + 16
    }

    /// Bytes a table for `keys` keys takes.
    pub(super) fn bytes(keys: u64) -> u64 {
        Self::capacity(keys) * std::mem::size_of::<Slot>() as u64
    }

    /// An empty table with room for `keys` keys.
    pub(super) fn with_capacity(keys: u64) -> Result<IdTable, EngineError> {
        let slots = usize::try_from(Self::capacity(keys))
            .map_err(|_| EngineError::Diff(format!("an index of {keys} keys is too large")))?;
        // Zeroed memory straight from the kernel (calloc), not written until used.
        let table = vec![[0; 4]; slots];
        Ok(IdTable {
            slots: table,
            len: 0,
        })
    }

    /// [`IdTable::with_capacity`], with every page of the table already in memory: the
    /// kernel's zeroing of half a gigabyte costs a few hundred milliseconds, which this lets
    /// another thread pay while the snapshot's keys are read.
    pub(super) fn prefaulted(keys: u64) -> Result<IdTable, EngineError> {
        let mut table = Self::with_capacity(keys)?;
        // One write a 4 KiB page (128 slots); black_box keeps the compiler from dropping
        // zero stores into memory it knows to be zero.
        for slot in std::hint::black_box(&mut table.slots)
            .iter_mut()
            .step_by(128)
        {
            slot[3] = 0;
        }
        Ok(table)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn home(&self, id: KeyId) -> usize {
        ((u128::from(id.0) * self.slots.len() as u128) >> 64) as usize
    }

    /// The slot holding `id`, or the free slot where it would go.
    fn find(slots: &[Slot], id: KeyId, home: usize) -> (usize, bool) {
        let mut i = home;
        loop {
            let slot = &slots[i];
            if is_free(slot) {
                return (i, false);
            }
            if slot[0] == id.0 && slot[1] == id.1 {
                return (i, true);
            }
            i += 1;
            if i == slots.len() {
                i = 0;
            }
        }
    }

    /// Inserts the keys `ids` with their entries; stops at the first key already in the
    /// table (or past the capacity) and returns false.
    pub(super) fn insert_all(
        &mut self,
        ids: &[KeyId],
        entries: impl Iterator<Item = Entry>,
    ) -> bool {
        let homes: Vec<usize> = ids.iter().map(|id| self.home(*id)).collect();
        // Past the sized capacity the probe sequences would grow without bound.
        let room = (self.slots.len() - 16) * 2 / 3;
        let mut len = self.len;
        let slots = &mut self.slots[..];
        let mut ok = true;
        for (i, entry) in entries.enumerate().take(ids.len()) {
            if let Some(ahead) = homes.get(i + AHEAD) {
                prefetch_index(&*slots, *ahead);
            }
            let (at, found) = Self::find(slots, ids[i], homes[i]);
            if found || len >= room {
                ok = false;
                break;
            }
            slots[at] = [ids[i].0, ids[i].1, entry.hash, !entry.pos_state];
            len += 1;
        }
        self.len = len;
        ok
    }

    /// Looks up each of `ids` (`None`: no key) in order, handing `visit` the row number and
    /// the key's entry if the table holds it.
    pub(super) fn probe_all(
        &mut self,
        ids: &[Option<KeyId>],
        mut visit: impl FnMut(usize, Option<&mut Entry>),
    ) {
        let homes: Vec<usize> = ids
            .iter()
            .map(|id| id.map_or(usize::MAX, |id| self.home(id)))
            .collect();
        let slots = &mut self.slots[..];
        for (row, id) in ids.iter().enumerate() {
            if let Some(ahead) = homes.get(row + AHEAD)
                && *ahead != usize::MAX
            {
                prefetch_index(&*slots, *ahead);
            }
            let Some(id) = id else {
                visit(row, None);
                continue;
            };
            match Self::find(slots, *id, homes[row]) {
                (at, true) => {
                    let slot = &mut slots[at];
                    let mut entry = Entry {
                        hash: slot[2],
                        pos_state: !slot[3],
                    };
                    visit(row, Some(&mut entry));
                    slot[3] = !entry.pos_state;
                }
                _ => visit(row, None),
            }
        }
    }

    /// Every key's entry, in no particular order.
    pub(super) fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.slots.iter().filter(|s| !is_free(s)).map(|s| Entry {
            hash: s[2],
            pos_state: !s[3],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> KeyId {
        KeyId::of(&n.to_string())
    }

    #[test]
    fn keys_are_found_with_their_entries_and_absent_keys_are_not() {
        let n = 50_000u64;
        let mut table = IdTable::with_capacity(n).unwrap();
        let ids: Vec<KeyId> = (0..n).map(id).collect();
        let entries = (0..n).map(|i| Entry {
            hash: i * 7,
            pos_state: i,
        });
        assert!(table.insert_all(&ids, entries));
        assert_eq!(table.len(), n as usize);
        // Present, absent and NULL keys, interleaved.
        let probes: Vec<Option<KeyId>> = (0..2 * n)
            .map(|i| if i % 7 == 3 { None } else { Some(id(i)) })
            .collect();
        let mut seen = 0;
        table.probe_all(&probes, |row, entry| {
            let i = row as u64;
            match entry {
                Some(e) => {
                    assert!(i < n && i % 7 != 3, "row {row} found");
                    assert_eq!((e.hash, e.pos_state), (i * 7, i));
                    e.pos_state |= 1 << 62;
                    seen += 1;
                }
                None => assert!(i >= n || i % 7 == 3, "row {row} not found"),
            }
        });
        assert_eq!(seen, (0..n).filter(|i| i % 7 != 3).count());
        let marked = table.entries().filter(|e| e.pos_state >> 62 == 1).count();
        assert_eq!(marked, seen);
        assert_eq!(table.entries().count(), n as usize);
    }

    #[test]
    fn a_key_inserted_twice_or_past_the_capacity_is_refused() {
        let mut table = IdTable::with_capacity(10).unwrap();
        let e = Entry {
            hash: 1,
            pos_state: 0,
        };
        assert!(table.insert_all(&[id(1), id(2)], [e, e].into_iter()));
        assert!(!table.insert_all(&[id(3), id(1)], [e, e].into_iter()));
        let more: Vec<KeyId> = (10..40).map(id).collect();
        assert!(!table.insert_all(&more, std::iter::repeat(e)));
        assert!(
            table.len() < table.slots.len(),
            "a free slot is always left"
        );
    }

    #[test]
    fn identities_at_the_ends_of_the_range_wrap_around() {
        let mut table = IdTable::with_capacity(4).unwrap();
        let last = table.slots.len() - 1;
        // Home slots at the very end: the probe sequence wraps to the start.
        let ids = [
            KeyId(u64::MAX, 1),
            KeyId(u64::MAX, 2),
            KeyId(u64::MAX - 1, 3),
        ];
        assert_eq!(table.home(ids[0]), last);
        let e = |p| Entry {
            hash: 0,
            pos_state: p,
        };
        assert!(table.insert_all(&ids, [e(0), e(1), e(2)].into_iter()));
        let mut found = Vec::new();
        table.probe_all(
            &[Some(ids[2]), Some(ids[1]), Some(KeyId(u64::MAX, 9))],
            |row, entry| {
                found.push((row, entry.map(|e| e.pos_state)));
            },
        );
        assert_eq!(found, [(0, Some(2)), (1, Some(1)), (2, None)]);
    }
}
