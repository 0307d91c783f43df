//! Blocking: only records that share a blocking key are compared, so the work grows with
//! the sizes of the blocks rather than with the square of the record count.
//!
//! A rule has one or more passes (each a list of attributes; the key is the hash of their
//! normalized values, a record missing any of them is in no block of that pass). The
//! candidates are the union of the passes' pairs: a pair that an earlier pass already
//! produced is skipped by comparing the earlier passes' keys, without a set of seen pairs.
//! A block larger than the cap is skipped and reported: such a value (a shared inbox, a
//! placeholder phone) would make the work quadratic and says little about identity.

use std::num::NonZeroUsize;

use xxhash_rust::xxh3::Xxh3;

use super::records::Records;

/// A blocking key per record for one pass (`None`: the record has no key in it).
pub fn pass_keys(r: &Records, attrs: &[usize]) -> Vec<Option<u64>> {
    (0..r.len())
        .map(|i| {
            let mut h = Xxh3::new();
            for &a in attrs {
                h.update(r.norm[a].get(i)?.as_bytes());
                h.update(&[0x1f]);
            }
            Some(h.digest())
        })
        .collect()
}

/// A block skipped because it was larger than the cap.
#[derive(Debug, Clone)]
pub struct SkippedBlock {
    pub pass: usize,
    pub size: usize,
    /// One record of the block, to show which value it was.
    pub example: u32,
}

/// The blocks of every pass, ready to be visited in parallel.
#[derive(Debug)]
pub struct Blocking {
    keys: Vec<Vec<Option<u64>>>,
    /// (pass, records of one block), blocks of one record left out.
    blocks: Vec<(usize, Vec<u32>)>,
    pub skipped: Vec<SkippedBlock>,
}

impl Blocking {
    pub fn new(r: &Records, passes: &[Vec<usize>], max_block: usize) -> Blocking {
        let mut keys: Vec<Vec<Option<u64>>> = passes.iter().map(|p| pass_keys(r, p)).collect();
        let mut blocks: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut skipped = Vec::new();
        for (p, k) in keys.iter_mut().enumerate() {
            let mut order: Vec<(u64, u32)> = k
                .iter()
                .enumerate()
                .filter_map(|(i, key)| key.map(|key| (key, i as u32)))
                .collect();
            order.sort_unstable();
            for run in order.chunk_by(|a, b| a.0 == b.0) {
                if run.len() < 2 {
                    continue;
                }
                if run.len() > max_block {
                    skipped.push(SkippedBlock {
                        pass: p,
                        size: run.len(),
                        example: run[0].1,
                    });
                    // Its pairs were not produced: later passes must not skip them as seen.
                    for (_, i) in run {
                        k[*i as usize] = None;
                    }
                    continue;
                }
                blocks.push((p, run.iter().map(|(_, i)| *i).collect()));
            }
        }
        // Big blocks first, so the threads finish together.
        blocks.sort_by_key(|(_, b)| std::cmp::Reverse(b.len()));
        Blocking {
            keys,
            blocks,
            skipped,
        }
    }

    /// Whether an earlier pass than `pass` already put `i` and `j` in one block.
    fn seen(&self, pass: usize, i: u32, j: u32) -> bool {
        self.keys[..pass]
            .iter()
            .any(|k| k[i as usize].is_some() && k[i as usize] == k[j as usize])
    }

    /// Visits every candidate pair once, on all cores: `star` visits only one record of
    /// each block against the others (for rules where a shared key is itself the match).
    /// `filter` drops pairs before `visit` (e.g. same-source pairs in link-only mode).
    /// `visit` hears the pass that produced the pair. Returns each thread's accumulator.
    pub fn visit<T: Send>(
        &self,
        star: bool,
        filter: &(dyn Fn(u32, u32) -> bool + Sync),
        init: &(dyn Fn() -> T + Sync),
        visit: &(dyn Fn(&mut T, u32, u32, usize) + Sync),
    ) -> Vec<T> {
        let threads = std::thread::available_parallelism()
            .map_or(1, NonZeroUsize::get)
            .min(self.blocks.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut acc = init();
                        loop {
                            let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((pass, block)) = self.blocks.get(b) else {
                                break;
                            };
                            self.visit_block(*pass, block, star, filter, &mut acc, visit);
                        }
                        acc
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a blocking thread panicked"))
                .collect()
        })
    }

    fn visit_block<T>(
        &self,
        pass: usize,
        block: &[u32],
        star: bool,
        filter: &(dyn Fn(u32, u32) -> bool + Sync),
        acc: &mut T,
        visit: &(dyn Fn(&mut T, u32, u32, usize) + Sync),
    ) {
        if star {
            let first = block[0];
            for &j in &block[1..] {
                if filter(first, j) && !self.seen(pass, first, j) {
                    visit(acc, first, j, pass);
                }
            }
            return;
        }
        for (x, &i) in block.iter().enumerate() {
            for &j in &block[x + 1..] {
                if filter(i, j) && !self.seen(pass, i, j) {
                    visit(acc, i, j, pass);
                }
            }
        }
    }
}
