//! Match rules, compiled against the attribute list: deterministic (`exact`), fuzzy
//! (similarity thresholds) and Fellegi-Sunter (per-level m/u weights, a probability
//! threshold). A rule says whether a pair matches, with a score for ordering edges, and can
//! say in words why a pair does or does not match.

use std::collections::HashMap;

use ebb_core::config::identity::{FuzzyMethod, IdentityConfig, MatchRule};

use super::records::Records;

/// One similarity comparison of a fuzzy rule.
#[derive(Debug, Clone)]
pub struct Fuzzy {
    pub attr: usize,
    pub method: FuzzyMethod,
    pub threshold: f64,
}

/// A compiled match rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub exact: Vec<usize>,
    pub fuzzy: Vec<Fuzzy>,
    /// Blocking passes (attribute indices); a candidate shares every attribute of one pass.
    pub passes: Vec<Vec<usize>>,
    pub fs: Option<FsModel>,
}

/// The similarity of two normalized values, 1.0 for identical.
pub fn similarity(method: FuzzyMethod, a: &str, b: &str) -> f64 {
    if a == b {
        return 1.0;
    }
    match method {
        FuzzyMethod::JaroWinkler => strsim::jaro_winkler(a, b),
        FuzzyMethod::Levenshtein => strsim::normalized_levenshtein(a, b),
        FuzzyMethod::Exact => 0.0,
    }
}

impl Rule {
    pub fn compile(rule: &MatchRule, attrs: &[String]) -> Result<Rule, String> {
        let find = |name: &str| {
            attrs.iter().position(|a| a == name).ok_or_else(|| {
                format!(
                    "rule \"{}\": \"{name}\" is not declared under `attributes:`",
                    rule.name.value
                )
            })
        };
        let exact = rule
            .exact
            .iter()
            .map(|a| find(&a.value))
            .collect::<Result<Vec<_>, _>>()?;
        let fuzzy = rule
            .fuzzy
            .iter()
            .map(|f| {
                Ok(Fuzzy {
                    attr: find(&f.attribute.value)?,
                    method: f.method,
                    threshold: f.threshold.value,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut passes = rule
            .passes()
            .iter()
            .map(|p| p.iter().map(|a| find(a)).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        if passes.is_empty() {
            // An exact rule blocks on what it compares; otherwise one block of everything.
            passes.push(exact.clone());
        }
        let fs = match &rule.fellegi_sunter {
            None => None,
            Some(fs) => {
                let comparisons = fs
                    .comparisons
                    .value
                    .iter()
                    .map(|c| {
                        let levels: Vec<f64> = c.levels.iter().map(|l| l.value).collect();
                        let n = levels.len() + 2;
                        let m = c.m.as_ref().map(|m| m.value.clone());
                        let u = c.u.as_ref().map(|u| u.value.clone());
                        for p in [&m, &u].into_iter().flatten() {
                            if p.len() != n {
                                return Err(format!(
                                    "rule \"{}\": m/u of \"{}\" need {n} values",
                                    rule.name.value, c.attribute.value
                                ));
                            }
                        }
                        Ok(FsComparison {
                            attr: find(&c.attribute.value)?,
                            method: c.method,
                            fixed_m: m.is_some(),
                            fixed_u: u.is_some(),
                            m: m.unwrap_or_else(|| initial_m(n)),
                            u: u.unwrap_or_else(|| initial_u(n)),
                            levels,
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                if comparisons.len() > 16 {
                    return Err(format!(
                        "rule \"{}\": at most 16 Fellegi-Sunter comparisons",
                        rule.name.value
                    ));
                }
                if comparisons.iter().any(|c| c.levels.len() > 12) {
                    return Err(format!(
                        "rule \"{}\": at most 12 levels per comparison",
                        rule.name.value
                    ));
                }
                Some(FsModel {
                    threshold: fs.threshold.value,
                    fixed_prior: fs.prior.as_ref().map(|p| p.value),
                    prior: fs.prior.as_ref().map_or(0.05, |p| p.value),
                    max_iterations: fs.max_iterations.unwrap_or(25),
                    comparisons,
                    trained_on: 0,
                })
            }
        };
        Ok(Rule {
            name: rule.name.value.clone(),
            exact,
            fuzzy,
            passes,
            fs,
        })
    }

    /// Whether every pair in a block matches (an exact rule blocked on its own attributes),
    /// so a star of edges connects the block without comparing all its pairs.
    pub fn block_is_match(&self) -> bool {
        self.fuzzy.is_empty()
            && self.fs.is_none()
            && self.passes.len() == 1
            && self.passes[0] == self.exact
            && !self.exact.is_empty()
    }

    /// The pair's score when it matches (1.0 for exact rules, the lowest similarity for
    /// fuzzy ones, the match probability for Fellegi-Sunter ones).
    pub fn score(&self, r: &Records, i: usize, j: usize) -> Option<f64> {
        for &a in &self.exact {
            match (r.norm[a].get(i), r.norm[a].get(j)) {
                (Some(x), Some(y)) if x == y => {}
                _ => return None,
            }
        }
        let mut score: f64 = 1.0;
        for f in &self.fuzzy {
            let (Some(x), Some(y)) = (r.norm[f.attr].get(i), r.norm[f.attr].get(j)) else {
                return None;
            };
            let s = similarity(f.method, x, y);
            if s < f.threshold {
                return None;
            }
            score = score.min(s);
        }
        if let Some(fs) = &self.fs {
            let pattern = match self.first_pass(r, i, j) {
                Some(pass) => fs.pattern_in_pass(r, i, j, &self.passes[pass]),
                None => fs.pattern(r, i, j),
            };
            let p = fs.probability(pattern);
            if p < fs.threshold {
                return None;
            }
            score = score.min(p);
        }
        Some(score)
    }

    /// The first blocking pass in which `i` and `j` share a key.
    pub fn first_pass(&self, r: &Records, i: usize, j: usize) -> Option<usize> {
        self.passes.iter().position(|p| {
            !p.is_empty()
                && p.iter()
                    .all(|&a| r.norm[a].get(i).is_some() && r.norm[a].get(i) == r.norm[a].get(j))
        })
    }

    /// In words: how the rule judges the pair.
    pub fn describe(&self, r: &Records, i: usize, j: usize) -> String {
        let mut parts = Vec::new();
        let mut ok = true;
        let shown = |v: Option<&str>| v.map_or("(missing)".to_string(), |v| format!("\"{v}\""));
        for &a in &self.exact {
            let (x, y) = (r.norm[a].get(i), r.norm[a].get(j));
            let same = x.is_some() && x == y;
            ok &= same;
            parts.push(if same {
                format!("{} equal {}", r.attributes[a], shown(x))
            } else {
                format!("{} differs: {} vs {}", r.attributes[a], shown(x), shown(y))
            });
        }
        for f in &self.fuzzy {
            let (x, y) = (r.norm[f.attr].get(i), r.norm[f.attr].get(j));
            match (x, y) {
                (Some(a), Some(b)) => {
                    let s = similarity(f.method, a, b);
                    ok &= s >= f.threshold;
                    parts.push(format!(
                        "{} {} {s:.3} {} {} (\"{a}\" vs \"{b}\")",
                        r.attributes[f.attr],
                        method_name(f.method),
                        if s >= f.threshold { ">=" } else { "<" },
                        f.threshold
                    ));
                }
                _ => {
                    ok = false;
                    parts.push(format!("{} missing", r.attributes[f.attr]));
                }
            }
        }
        if let Some(fs) = &self.fs {
            let pattern = match self.first_pass(r, i, j) {
                Some(pass) => fs.pattern_in_pass(r, i, j, &self.passes[pass]),
                None => fs.pattern(r, i, j),
            };
            let p = fs.probability(pattern);
            ok &= p >= fs.threshold;
            let weights: Vec<String> = fs
                .comparisons
                .iter()
                .enumerate()
                .map(|(k, c)| match level_of(pattern, k) {
                    NULL_LEVEL => format!("{} not counted (0)", r.attributes[c.attr]),
                    l => format!(
                        "{} {} ({:+.1})",
                        r.attributes[c.attr],
                        c.level_name(l),
                        c.weight(l)
                    ),
                })
                .collect();
            parts.push(format!(
                "match probability {p:.4} {} {} [{}]",
                if p >= fs.threshold { ">=" } else { "<" },
                fs.threshold,
                weights.join(", ")
            ));
        }
        format!(
            "{}: {}",
            if ok { "matches" } else { "no match" },
            parts.join("; ")
        )
    }
}

fn method_name(m: FuzzyMethod) -> &'static str {
    match m {
        FuzzyMethod::JaroWinkler => "jaro_winkler",
        FuzzyMethod::Levenshtein => "levenshtein",
        FuzzyMethod::Exact => "exact",
    }
}

/// Compiles every rule of a config.
pub fn compile(config: &IdentityConfig, attrs: &[String]) -> Result<Vec<Rule>, String> {
    config
        .rules
        .value
        .iter()
        .map(|r| Rule::compile(r, attrs))
        .collect()
}

/// The level a comparison takes when a value is missing: no evidence either way.
pub const NULL_LEVEL: u8 = 0xF;

/// One attribute's Fellegi-Sunter comparison: levels exact, each similarity threshold,
/// different.
#[derive(Debug, Clone)]
pub struct FsComparison {
    pub attr: usize,
    pub method: FuzzyMethod,
    pub levels: Vec<f64>,
    pub m: Vec<f64>,
    pub u: Vec<f64>,
    pub fixed_m: bool,
    pub fixed_u: bool,
}

impl FsComparison {
    fn level(&self, x: Option<&str>, y: Option<&str>) -> u8 {
        let (Some(x), Some(y)) = (x, y) else {
            return NULL_LEVEL;
        };
        if x == y {
            return 0;
        }
        if !self.levels.is_empty() {
            let s = similarity(self.method, x, y);
            for (k, l) in self.levels.iter().enumerate() {
                if s >= *l {
                    return k as u8 + 1;
                }
            }
        }
        self.levels.len() as u8 + 1
    }

    /// log2(m/u) of a level: its evidence for a match.
    pub fn weight(&self, level: u8) -> f64 {
        let l = level as usize;
        (self.m[l] / self.u[l]).log2()
    }

    fn level_name(&self, level: u8) -> String {
        let l = level as usize;
        if l == 0 {
            "exact".into()
        } else if l <= self.levels.len() {
            format!(">= {}", self.levels[l - 1])
        } else {
            "different".into()
        }
    }
}

/// A Fellegi-Sunter model: comparisons with m/u per level, a prior and a threshold.
#[derive(Debug, Clone)]
pub struct FsModel {
    pub threshold: f64,
    pub fixed_prior: Option<f64>,
    /// P(match) for a candidate pair.
    pub prior: f64,
    pub max_iterations: u32,
    pub comparisons: Vec<FsComparison>,
    /// Candidate pairs EM ran over (0 when nothing was estimated).
    pub trained_on: u64,
}

fn initial_m(n: usize) -> Vec<f64> {
    // Matches mostly agree exactly, sometimes nearly, rarely not at all.
    let mut m = vec![0.0; n];
    m[0] = 0.85;
    let rest = 0.15 / (n - 1) as f64;
    for v in m.iter_mut().skip(1) {
        *v = rest;
    }
    m
}

fn initial_u(n: usize) -> Vec<f64> {
    let mut u = vec![0.0; n];
    u[0] = 0.01;
    let near = 0.04 / (n.saturating_sub(2)).max(1) as f64;
    for v in u.iter_mut().take(n - 1).skip(1) {
        *v = near;
    }
    u[n - 1] = 1.0 - u.iter().take(n - 1).sum::<f64>();
    u
}

fn level_of(pattern: u64, k: usize) -> u8 {
    ((pattern >> (4 * k)) & 0xF) as u8
}

impl FsModel {
    /// Every comparison's level, 4 bits each.
    pub fn pattern(&self, r: &Records, i: usize, j: usize) -> u64 {
        let mut p = 0u64;
        for (k, c) in self.comparisons.iter().enumerate() {
            let l = c.level(r.norm[c.attr].get(i), r.norm[c.attr].get(j));
            p |= u64::from(l) << (4 * k);
        }
        p
    }

    /// The pattern of a pair that blocking pass `pass` (its attributes) produced: the
    /// comparisons of those attributes are left out (neutral). The pass made them agree, so
    /// among its candidates they say nothing about a match; counting them would take every
    /// blocked non-match for a likely match.
    pub fn pattern_in_pass(&self, r: &Records, i: usize, j: usize, pass: &[usize]) -> u64 {
        let mut p = self.pattern(r, i, j);
        for (k, c) in self.comparisons.iter().enumerate() {
            if pass.contains(&c.attr) {
                p |= u64::from(NULL_LEVEL) << (4 * k);
            }
        }
        p
    }

    pub fn probability(&self, pattern: u64) -> f64 {
        let (mut pm, mut pu) = (self.prior.ln(), (1.0 - self.prior).ln());
        for (k, c) in self.comparisons.iter().enumerate() {
            let l = level_of(pattern, k);
            if l != NULL_LEVEL {
                pm += c.m[l as usize].ln();
                pu += c.u[l as usize].ln();
            }
        }
        1.0 / (1.0 + (pu - pm).exp())
    }

    /// Sets u from random pairs (how often unrelated records agree by chance), then
    /// estimates m, u and the prior by expectation-maximisation over the candidate pairs'
    /// level patterns. Given values stay as given.
    pub fn train(&mut self, candidates: &HashMap<u64, u64>, random: &HashMap<u64, u64>) {
        let total: u64 = candidates.values().sum();
        self.trained_on = total;
        if !random.is_empty() {
            for (k, c) in self.comparisons.iter_mut().enumerate() {
                if c.fixed_u {
                    continue;
                }
                let n = c.levels.len() + 2;
                let mut counts = vec![1.0; n];
                for (p, w) in random {
                    let l = level_of(*p, k);
                    if l != NULL_LEVEL {
                        counts[l as usize] += *w as f64;
                    }
                }
                let sum: f64 = counts.iter().sum();
                c.u = counts.iter().map(|x| x / sum).collect();
            }
        }
        if total == 0 {
            return;
        }
        let patterns: Vec<(u64, f64)> = candidates.iter().map(|(p, w)| (*p, *w as f64)).collect();
        for _ in 0..self.max_iterations {
            let mut m_counts: Vec<Vec<f64>> = self
                .comparisons
                .iter()
                .map(|c| vec![0.01; c.levels.len() + 2])
                .collect();
            let mut u_counts = m_counts.clone();
            let mut matches = 0.0;
            for (p, w) in &patterns {
                let g = self.probability(*p);
                matches += g * w;
                for (k, _) in self.comparisons.iter().enumerate() {
                    let l = level_of(*p, k);
                    if l != NULL_LEVEL {
                        m_counts[k][l as usize] += g * w;
                        u_counts[k][l as usize] += (1.0 - g) * w;
                    }
                }
            }
            let mut change: f64 = 0.0;
            for (k, c) in self.comparisons.iter_mut().enumerate() {
                if !c.fixed_m {
                    let sum: f64 = m_counts[k].iter().sum();
                    for (l, v) in c.m.iter_mut().enumerate() {
                        let new = m_counts[k][l] / sum;
                        change = change.max((new - *v).abs());
                        *v = new;
                    }
                }
                if !c.fixed_u && random.is_empty() {
                    let sum: f64 = u_counts[k].iter().sum();
                    for (l, v) in c.u.iter_mut().enumerate() {
                        *v = u_counts[k][l] / sum;
                    }
                }
            }
            if self.fixed_prior.is_none() {
                let new = (matches / total as f64).clamp(1e-6, 1.0 - 1e-6);
                change = change.max((new - self.prior).abs());
                self.prior = new;
            }
            if change < 1e-5 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn em_separates_matches_from_non_matches() {
        let comparison = |attr| FsComparison {
            attr,
            method: FuzzyMethod::JaroWinkler,
            levels: vec![0.9],
            m: initial_m(3),
            u: initial_u(3),
            fixed_m: false,
            fixed_u: false,
        };
        let mut model = FsModel {
            threshold: 0.5,
            fixed_prior: None,
            prior: 0.05,
            max_iterations: 50,
            comparisons: vec![comparison(0), comparison(1), comparison(2)],
            trained_on: 0,
        };
        let pat = |a: u64, b: u64, c: u64| a | (b << 4) | (c << 8);
        let n = u64::from(NULL_LEVEL);
        // Candidates of a pass blocked on attribute 0 (so it is left out): 300 matches that
        // agree on the others or nearly, 700 non-matches that agree by chance at most once.
        let mut cand = HashMap::new();
        cand.insert(pat(n, 0, 0), 250);
        cand.insert(pat(n, 1, 0), 50);
        cand.insert(pat(n, 2, 2), 600);
        cand.insert(pat(n, 0, 2), 50);
        cand.insert(pat(n, 2, 0), 50);
        let mut random = HashMap::new();
        random.insert(pat(2, 2, 2), 9_700);
        random.insert(pat(2, 2, 0), 100);
        random.insert(pat(0, 2, 2), 100);
        random.insert(pat(2, 0, 2), 100);
        model.train(&cand, &random);
        assert!(model.probability(pat(n, 0, 0)) > 0.99);
        assert!(model.probability(pat(n, 1, 0)) > 0.9);
        assert!(model.probability(pat(n, 2, 2)) < 0.05);
        assert!(model.comparisons[1].weight(0) > 0.0);
        assert!(model.comparisons[1].weight(2) < 0.0);
        // 30 % are matches; the 100 chance agreements on one attribute blur that a little.
        assert!((0.25..0.45).contains(&model.prior), "prior {}", model.prior);
    }
}
