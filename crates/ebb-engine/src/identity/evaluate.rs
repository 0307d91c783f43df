//! Precision and recall against known identities, counted over pairs of records: a
//! predicted pair is two records in one cluster, a true pair two records of one entity.
//! Cluster-level pairs are the strict measure: one false link that chains two people
//! together costs every pair between them. In link-only mode only pairs across sources
//! count.

use std::collections::HashMap;

use super::records::Records;

/// Pair counts and the scores they give.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Records found in the truth table.
    pub records: u64,
    pub true_pairs: u64,
    pub predicted_pairs: u64,
    pub correct_pairs: u64,
}

impl Evaluation {
    pub fn precision(&self) -> f64 {
        if self.predicted_pairs == 0 {
            1.0
        } else {
            self.correct_pairs as f64 / self.predicted_pairs as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.true_pairs == 0 {
            1.0
        } else {
            self.correct_pairs as f64 / self.true_pairs as f64
        }
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

/// Pairs within groups: `items` are (group, source) per record.
fn pairs<K: std::hash::Hash + Eq>(items: impl Iterator<Item = (K, u16)>, link_only: bool) -> u64 {
    let mut total: HashMap<K, u64> = HashMap::new();
    let mut per_source: HashMap<(K, u16), u64> = HashMap::new();
    for (k, s) in items {
        if link_only {
            // Keyed by hash of the group and source, to subtract same-source pairs.
            *per_source.entry((k, s)).or_insert(0) += 1;
        } else {
            *total.entry(k).or_insert(0) += 1;
        }
    }
    let c2 = |n: u64| n * n.saturating_sub(1) / 2;
    if !link_only {
        return total.values().map(|&n| c2(n)).sum();
    }
    let mut group: HashMap<&K, u64> = HashMap::new();
    let mut same = 0;
    for ((k, _), n) in &per_source {
        *group.entry(k).or_insert(0) += n;
        same += c2(*n);
    }
    group.values().map(|&n| c2(n)).sum::<u64>() - same
}

/// Scores `cluster_of` (per record) against `truth`: (source, record id) → entity.
pub fn evaluate(
    r: &Records,
    cluster_of: &[u32],
    truth: &HashMap<(String, String), String>,
    link_only: bool,
) -> Evaluation {
    let mut known: Vec<(usize, &str)> = Vec::new();
    for i in 0..r.len() {
        let key = (
            r.source_name(i).to_string(),
            r.key.get(i).unwrap_or_default().to_string(),
        );
        if let Some((_, e)) = truth.get_key_value(&key) {
            known.push((i, e.as_str()));
        }
    }
    let src = |i: usize| r.source[i];
    Evaluation {
        records: known.len() as u64,
        true_pairs: pairs(known.iter().map(|&(i, e)| (e, src(i))), link_only),
        predicted_pairs: pairs(
            known.iter().map(|&(i, _)| (cluster_of[i], src(i))),
            link_only,
        ),
        correct_pairs: pairs(
            known.iter().map(|&(i, e)| ((cluster_of[i], e), src(i))),
            link_only,
        ),
    }
}
