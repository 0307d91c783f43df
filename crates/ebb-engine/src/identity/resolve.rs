//! The resolver: rules over blocked candidate pairs, then clustering under the guards.
//! Pure Rust over [`Records`]; no I/O.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ebb_core::config::identity::{IdentityConfig, IdentityMode};

use super::blocking::Blocking;
use super::cluster::{Clusters, Cut, Edge, cluster};
use super::normalize::Normalizer;
use super::records::Records;
use super::rules::{self, Rule};

/// The default cap on block size.
pub const DEFAULT_MAX_BLOCK: usize = 1000;
/// Random pairs sampled to estimate Fellegi-Sunter u probabilities.
const U_SAMPLE: usize = 200_000;

/// An identity space compiled from its config.
#[derive(Debug, Clone)]
pub struct Resolver {
    pub attributes: Vec<(String, Normalizer)>,
    pub strong: Vec<usize>,
    pub rules: Vec<Rule>,
    pub max_cluster: Option<usize>,
    pub max_block: usize,
    pub link_only: bool,
}

/// Per-rule counts of one resolution.
#[derive(Debug, Clone, Default)]
pub struct RuleStats {
    pub name: String,
    pub compared: u64,
    pub matched: u64,
    /// Fellegi-Sunter: the estimated prior and the pairs it was estimated on.
    pub prior: Option<f64>,
    pub elapsed: Duration,
}

/// What a resolution found.
#[derive(Debug)]
pub struct Resolution {
    pub clusters: Clusters,
    pub rules: Vec<RuleStats>,
    /// Oversized blocks skipped, as warnings for the user.
    pub warnings: Vec<String>,
    /// The rules as used (Fellegi-Sunter ones with their estimated m/u).
    pub trained: Vec<Rule>,
}

impl Resolution {
    pub fn compared(&self) -> u64 {
        self.rules.iter().map(|r| r.compared).sum()
    }
    pub fn matched(&self) -> u64 {
        self.rules.iter().map(|r| r.matched).sum()
    }
}

struct Acc {
    edges: Vec<Edge>,
    compared: u64,
}

impl Resolver {
    pub fn new(config: &IdentityConfig) -> Result<Resolver, String> {
        let attributes = config
            .attributes
            .iter()
            .map(|(name, a)| {
                Normalizer::new(a)
                    .map(|n| (name.value.clone(), n))
                    .map_err(|e| format!("attributes.{name}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let names: Vec<String> = attributes.iter().map(|(n, _)| n.clone()).collect();
        let strong = config
            .attributes
            .iter()
            .enumerate()
            .filter(|(_, (_, a))| a.strong)
            .map(|(i, _)| i)
            .collect();
        Ok(Resolver {
            rules: rules::compile(config, &names)?,
            attributes,
            strong,
            max_cluster: config.max_cluster_size.as_ref().map(|m| m.value as usize),
            max_block: config
                .max_block_size
                .as_ref()
                .map_or(DEFAULT_MAX_BLOCK, |m| m.value as usize),
            link_only: config.mode == IdentityMode::LinkOnly,
        })
    }

    /// Resolves `r`: every rule over its candidate pairs, then clustering. `progress` hears
    /// each step as it starts.
    pub fn resolve(&self, r: &Records, progress: &dyn Fn(&str)) -> Resolution {
        let mut edges = Vec::new();
        let mut stats = Vec::new();
        let mut warnings = Vec::new();
        let mut trained = Vec::new();
        let link_only = self.link_only;
        let filter =
            move |i: u32, j: u32| !link_only || r.source[i as usize] != r.source[j as usize];
        for (k, rule) in self.rules.iter().enumerate() {
            progress(&format!(
                "rule {} ({}/{})",
                rule.name,
                k + 1,
                self.rules.len()
            ));
            let started = Instant::now();
            let blocking = Blocking::new(r, &rule.passes, self.max_block);
            for s in &blocking.skipped {
                let pass: Vec<String> = rule.passes[s.pass]
                    .iter()
                    .map(|&a| {
                        format!(
                            "{}={}",
                            r.attributes[a],
                            r.norm[a].get(s.example as usize).unwrap_or_default()
                        )
                    })
                    .collect();
                warnings.push(format!(
                    "rule {}: skipped a block of {} records sharing {} (more than max_block_size {})",
                    rule.name,
                    s.size,
                    pass.join(", "),
                    self.max_block
                ));
            }
            let mut rule = rule.clone();
            let mut plain = rule.clone();
            plain.fs = None;
            if let Some(fs) = &mut rule.fs {
                // Level patterns of every candidate, then EM over their counts.
                let fs_ref = &*fs;
                let rule_passes = plain.passes.clone();
                let parts = blocking.visit(
                    false,
                    &filter,
                    &|| (Vec::<(u32, u32, u64)>::new(), HashMap::<u64, u64>::new()),
                    &|acc, i, j, pass| {
                        let p =
                            fs_ref.pattern_in_pass(r, i as usize, j as usize, &rule_passes[pass]);
                        acc.0.push((i, j, p));
                        *acc.1.entry(p).or_insert(0) += 1;
                    },
                );
                let mut counts: HashMap<u64, u64> = HashMap::new();
                let mut pairs = Vec::new();
                for (p, c) in parts {
                    pairs.extend(p);
                    for (k, v) in c {
                        *counts.entry(k).or_insert(0) += v;
                    }
                }
                let random = random_patterns(r, fs, link_only);
                fs.train(&counts, &random);
                let probability: HashMap<u64, f64> =
                    counts.keys().map(|p| (*p, fs.probability(*p))).collect();
                let has_plain = !plain.exact.is_empty() || !plain.fuzzy.is_empty();
                let mut matched = 0;
                for (i, j, p) in &pairs {
                    if probability[p] < fs.threshold {
                        continue;
                    }
                    let score = if has_plain {
                        plain.score(r, *i as usize, *j as usize)
                    } else {
                        Some(1.0)
                    };
                    if let Some(score) = score {
                        matched += 1;
                        edges.push(Edge {
                            a: *i,
                            b: *j,
                            rule: k as u16,
                            score: score.min(probability[p]) as f32,
                        });
                    }
                }
                stats.push(RuleStats {
                    name: plain.name.clone(),
                    compared: pairs.len() as u64,
                    matched,
                    prior: Some(fs.prior),
                    elapsed: started.elapsed(),
                });
            } else {
                let star = rule.block_is_match() && !link_only;
                let rule_ref = &rule;
                let parts = blocking.visit(
                    star,
                    &filter,
                    &|| Acc {
                        edges: Vec::new(),
                        compared: 0,
                    },
                    &|acc, i, j, _| {
                        acc.compared += 1;
                        if let Some(score) = rule_ref.score(r, i as usize, j as usize) {
                            acc.edges.push(Edge {
                                a: i,
                                b: j,
                                rule: k as u16,
                                score: score as f32,
                            });
                        }
                    },
                );
                let mut s = RuleStats {
                    name: rule.name.clone(),
                    elapsed: started.elapsed(),
                    ..RuleStats::default()
                };
                for p in parts {
                    s.compared += p.compared;
                    s.matched += p.edges.len() as u64;
                    edges.extend(p.edges);
                }
                stats.push(s);
            }
            trained.push(rule);
        }
        progress("clustering");
        let clusters = cluster(r, edges, &self.strong, self.max_cluster);
        let conflicts = clusters
            .cut
            .iter()
            .filter(|(_, c)| matches!(c, Cut::Conflict { .. }))
            .count();
        let too_large = clusters.cut.len() - conflicts;
        if conflicts > 0 {
            warnings.push(format!(
                "{conflicts} matched pair{} not merged: they would join two different values of a strong attribute",
                if conflicts == 1 { "" } else { "s" }
            ));
        }
        if too_large > 0 {
            warnings.push(format!(
                "{too_large} matched pair{} not merged: the cluster would exceed max_cluster_size {}",
                if too_large == 1 { "" } else { "s" },
                self.max_cluster.unwrap_or_default()
            ));
        }
        Resolution {
            clusters,
            rules: stats,
            warnings,
            trained,
        }
    }
}

/// Level patterns of random pairs (a fixed seed, so runs repeat), for u.
fn random_patterns(r: &Records, fs: &rules::FsModel, link_only: bool) -> HashMap<u64, u64> {
    let n = r.len() as u64;
    let mut out = HashMap::new();
    if n < 2 || fs.comparisons.iter().all(|c| c.fixed_u) {
        return out;
    }
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let pairs = (n * (n - 1) / 2).min(U_SAMPLE as u64);
    let mut drawn = 0;
    let mut tries = 0;
    while drawn < pairs && tries < pairs * 4 {
        tries += 1;
        let (i, j) = ((next() % n) as usize, (next() % n) as usize);
        if i == j || (link_only && r.source[i] == r.source[j]) {
            continue;
        }
        drawn += 1;
        *out.entry(fs.pattern(r, i, j)).or_insert(0) += 1;
    }
    out
}
