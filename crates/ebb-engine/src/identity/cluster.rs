//! Clustering: connected components of the matched pairs, with guards.
//!
//! Edges are taken strongest first (score, then rule order) into a union-find, like
//! Kruskal's maximum spanning forest. An edge is refused when joining its two components
//! would put two different values of a strong attribute (a Stripe id, an SSN) in one
//! cluster, or grow it beyond `max_cluster_size`. So a chain of weak links that would merge
//! two customers is cut at its weakest edges, and the strong evidence stays. The kept edges
//! form a spanning forest: the path between two records in it is the rule chain that joined
//! them.

use std::collections::{HashMap, VecDeque};

use super::records::Records;

/// A matched pair: records `a` < `b`, the rule (index) that matched them, and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edge {
    pub a: u32,
    pub b: u32,
    pub rule: u16,
    pub score: f32,
}

/// Why an edge was not used.
#[derive(Debug, Clone, PartialEq)]
pub enum Cut {
    /// Joining would put two values of a strong attribute in one cluster.
    Conflict {
        attribute: usize,
        values: (String, String),
    },
    /// Joining would make a cluster larger than the limit.
    TooLarge { size: usize, limit: usize },
}

/// The clusters of a resolution.
#[derive(Debug)]
pub struct Clusters {
    /// Per record, its cluster: the smallest record index in it.
    pub of: Vec<u32>,
    /// The edges of the spanning forest.
    pub kept: Vec<Edge>,
    /// Edges refused by a guard.
    pub cut: Vec<(Edge, Cut)>,
    /// Matched pairs already joined through stronger edges.
    pub redundant: u64,
}

struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
    /// Strong values (attribute, normalized value's record) per root; tiny.
    strong: Vec<Vec<(u16, u32)>>,
}

impl UnionFind {
    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }
}

/// Clusters `n` records from `edges` under the guards.
pub fn cluster(
    r: &Records,
    mut edges: Vec<Edge>,
    strong: &[usize],
    max_size: Option<usize>,
) -> Clusters {
    let n = r.len();
    // One edge per pair: the best.
    edges.sort_unstable_by(|x, y| {
        (x.a, x.b)
            .cmp(&(y.a, y.b))
            .then(y.score.total_cmp(&x.score))
            .then(x.rule.cmp(&y.rule))
    });
    edges.dedup_by(|later, first| later.a == first.a && later.b == first.b);
    edges.sort_unstable_by(|x, y| {
        y.score
            .total_cmp(&x.score)
            .then(x.rule.cmp(&y.rule))
            .then((x.a, x.b).cmp(&(y.a, y.b)))
    });
    let mut uf = UnionFind {
        parent: (0..n as u32).collect(),
        size: vec![1; n],
        strong: vec![Vec::new(); n],
    };
    for (i, slot) in uf.strong.iter_mut().enumerate() {
        for (k, &a) in strong.iter().enumerate() {
            if r.norm[a].get(i).is_some() {
                slot.push((k as u16, i as u32));
            }
        }
    }
    let mut kept = Vec::new();
    let mut cut = Vec::new();
    let mut redundant = 0;
    for e in edges {
        let (ra, rb) = (uf.find(e.a), uf.find(e.b));
        if ra == rb {
            redundant += 1;
            continue;
        }
        let conflict = uf.strong[ra as usize].iter().find_map(|&(k, x)| {
            uf.strong[rb as usize].iter().find_map(|&(k2, y)| {
                let a = strong[k as usize];
                (k == k2 && r.norm[a].get(x as usize) != r.norm[a].get(y as usize)).then(|| {
                    Cut::Conflict {
                        attribute: a,
                        values: (
                            r.norm[a].get(x as usize).unwrap_or_default().to_string(),
                            r.norm[a].get(y as usize).unwrap_or_default().to_string(),
                        ),
                    }
                })
            })
        });
        if let Some(c) = conflict {
            cut.push((e, c));
            continue;
        }
        let size = (uf.size[ra as usize] + uf.size[rb as usize]) as usize;
        if let Some(limit) = max_size
            && size > limit
        {
            cut.push((e, Cut::TooLarge { size, limit }));
            continue;
        }
        let (big, small) = if uf.size[ra as usize] >= uf.size[rb as usize] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        uf.parent[small as usize] = big;
        uf.size[big as usize] = size as u32;
        let moved = std::mem::take(&mut uf.strong[small as usize]);
        for (k, x) in moved {
            if !uf.strong[big as usize].iter().any(|(k2, _)| *k2 == k) {
                uf.strong[big as usize].push((k, x));
            }
        }
        kept.push(e);
    }
    // Label each cluster by its smallest record.
    let mut label: Vec<u32> = vec![u32::MAX; n];
    let mut of = vec![0u32; n];
    for i in 0..n as u32 {
        let root = uf.find(i) as usize;
        if label[root] == u32::MAX {
            label[root] = i;
        }
        of[i as usize] = label[root];
    }
    Clusters {
        of,
        kept,
        cut,
        redundant,
    }
}

impl Clusters {
    /// The chain of kept edges from `a` to `b`, if they are in one cluster.
    pub fn path(&self, a: u32, b: u32) -> Option<Vec<Edge>> {
        if self.of[a as usize] != self.of[b as usize] {
            return None;
        }
        let cluster = self.of[a as usize];
        let mut adj: HashMap<u32, Vec<Edge>> = HashMap::new();
        for e in self
            .kept
            .iter()
            .filter(|e| self.of[e.a as usize] == cluster)
        {
            adj.entry(e.a).or_default().push(*e);
            adj.entry(e.b).or_default().push(*e);
        }
        let mut came: HashMap<u32, Edge> = HashMap::new();
        let mut queue = VecDeque::from([a]);
        while let Some(x) = queue.pop_front() {
            if x == b {
                break;
            }
            for e in adj.get(&x).into_iter().flatten() {
                let y = if e.a == x { e.b } else { e.a };
                if y != a && !came.contains_key(&y) {
                    came.insert(y, *e);
                    queue.push_back(y);
                }
            }
        }
        let mut path = Vec::new();
        let mut x = b;
        while x != a {
            let e = came.get(&x)?;
            path.push(*e);
            x = if e.a == x { e.b } else { e.a };
        }
        path.reverse();
        Some(path)
    }

    /// Records per cluster label.
    pub fn sizes(&self) -> HashMap<u32, u32> {
        let mut sizes = HashMap::new();
        for &c in &self.of {
            *sizes.entry(c).or_insert(0) += 1;
        }
        sizes
    }
}
